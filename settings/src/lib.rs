//! trilog-settings: the settings of trilog's binaries, from three layers.
//!
//! A setting is a flag of the binary's clap command (`--node-id`); the
//! same setting is the environment variable `TRILOG_` + its name in upper
//! case with `_` for `-` (`TRILOG_NODE_ID`) and the key of a TOML file
//! named by `--config` (`node_id = 1`). Flags win over the environment,
//! which wins over the file, which wins over the defaults.
//!
//! Guarantees: a key of the file that names no setting is refused, and so
//! is a value of the wrong type or one the flag's own parser refuses, each
//! naming the file and the key, before the binary starts anything; a value
//! the file gives goes through the very parser its flag does, so the file
//! cannot express anything the command line cannot.

mod error;
mod file;
mod layer;
mod show;

pub use error::SettingsError;
pub use layer::{parse, with_env, Settings, Source};
