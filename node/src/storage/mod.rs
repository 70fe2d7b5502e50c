//! Storage: segment files on direct I/O.
