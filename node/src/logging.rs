//! The node's logs: through `tracing`, to stderr, as text or as JSON (one
//! object per line, for a log shipper), filtered by `log_level` (an
//! `EnvFilter` directive: `info`, or `warn,trilog_node=debug`). The `log`
//! records of the node's dependencies (glommio, the metadata crate) come
//! through the same subscriber.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, thread, the
    /// message and its fields.
    Json,
}

/// Why the log settings were refused.
#[derive(Debug, thiserror::Error)]
#[error("log_level (--log-level) {level:?}: {why}")]
pub struct LogLevelError {
    level: String,
    why: String,
}

/// The filter `level` names, checked.
pub fn filter(level: &str) -> Result<EnvFilter, LogLevelError> {
    EnvFilter::try_new(level).map_err(|e| LogLevelError {
        level: level.to_string(),
        why: e.to_string(),
    })
}

/// Installs the process's subscriber (once; later calls change nothing,
/// as when nodes run inside a test process).
pub fn init(format: LogFormat, filter: EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_thread_names(true);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_level_names_the_key() {
        assert!(filter("info").is_ok());
        assert!(filter("warn,trilog_node=debug").is_ok());
        let e = filter("trilog_node=loud").expect_err("not a level");
        assert!(e.to_string().starts_with("log_level (--log-level)"), "{e}");
    }
}
