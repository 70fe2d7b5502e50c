//! The embedded metadata store.
