//! Why settings were refused.

use std::path::PathBuf;

/// Why the settings were refused. `Clap` is clap's own answer (bad flags,
/// or `--help` and `--version`, which are not failures: print it with
/// [`clap::Error::print`] and exit as [`clap::Error::exit_code`] says).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: not TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("config file {path}: unknown key `{key}` (the keys are: {known})")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("config file {path}: key `{key}`: {why}")]
    BadValue {
        path: PathBuf,
        key: String,
        why: String,
    },
}

impl SettingsError {
    /// The exit status a binary gives for this error: clap's own (0 for
    /// `--help`, 2 for a usage error), and 2 for a bad file.
    pub fn exit_code(&self) -> i32 {
        match self {
            SettingsError::Clap(e) => e.exit_code(),
            _ => 2,
        }
    }
}
