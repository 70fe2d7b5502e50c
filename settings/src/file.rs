//! The config file: a flat TOML table of settings, turned into the flag
//! tokens that would set the same values on the command line.

use std::ffi::OsString;
use std::path::Path;

use clap::{Arg, ArgAction};

use crate::error::SettingsError;

/// The bytes a config file may have: settings are a few dozen lines.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// The file's table, key by key, in the file's order.
pub fn read_table(path: &Path) -> Result<toml::Table, SettingsError> {
    let read = |source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > CONFIG_FILE_BYTES_MAX {
        return Err(SettingsError::BadValue {
            path: path.to_path_buf(),
            key: String::new(),
            why: format!("{len} bytes; a config file has at most {CONFIG_FILE_BYTES_MAX}"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    text.parse::<toml::Table>()
        .map_err(|e| SettingsError::Toml {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
}

/// The flag tokens that set `arg` to `value` (none for a false switch).
/// `Err` says why the value's type does not fit the flag.
pub fn tokens(arg: &Arg, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let flag = format!("--{}", arg.get_long().unwrap_or(arg.get_id().as_str()));
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match value {
            toml::Value::Boolean(true) => Ok(vec![flag.into()]),
            toml::Value::Boolean(false) => Ok(Vec::new()),
            other => Err(format!("expected true or false, got {}", other.type_str())),
        };
    }
    let scalar = |v: &toml::Value| -> Result<String, String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(format!("expected a value, got {}", other.type_str())),
        }
    };
    match value {
        // One token, as a user types `--cores 0,1` (with args overriding
        // themselves, a repeated flag keeps only its last value).
        toml::Value::Array(items) if arg.get_value_delimiter().is_some() => {
            let delimiter = arg.get_value_delimiter().unwrap_or(',').to_string();
            let items: Result<Vec<String>, String> = items.iter().map(scalar).collect();
            Ok(vec![flag.into(), items?.join(&delimiter).into()])
        }
        toml::Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => {
            let mut out = Vec::with_capacity(items.len() * 2);
            for item in items {
                out.push(OsString::from(&flag));
                out.push(scalar(item)?.into());
            }
            Ok(out)
        }
        toml::Value::Array(_) => Err("expected one value, got an array".to_string()),
        v => Ok(vec![flag.into(), scalar(v)?.into()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_flag_tokens() {
        let port = Arg::new("port").long("port");
        let t = |arg: &Arg, v: toml::Value| tokens(arg, &v);
        assert_eq!(
            t(&port, 7400.into()),
            Ok(vec!["--port".into(), "7400".into()])
        );
        assert_eq!(t(&port, "x".into()), Ok(vec!["--port".into(), "x".into()]));
        assert!(t(&port, toml::Value::Array(vec![1.into()])).is_err());
        let replace = Arg::new("replace")
            .long("replace")
            .action(ArgAction::SetTrue);
        assert_eq!(t(&replace, true.into()), Ok(vec!["--replace".into()]));
        assert_eq!(t(&replace, false.into()), Ok(vec![]));
        assert!(t(&replace, 1.into()).is_err());
        let cores = Arg::new("cores").long("cores").value_delimiter(',');
        assert_eq!(
            t(&cores, toml::Value::Array(vec![0.into(), 1.into()])),
            Ok(vec!["--cores".into(), "0,1".into()])
        );
    }

    #[test]
    fn reads_tables_and_refuses_what_is_not_toml() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "node_id = 3\nzone = \"a\"\n").expect("write");
        let table = read_table(&good).expect("a table");
        assert_eq!(table.get("node_id"), Some(&toml::Value::Integer(3)));
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "node_id = \n").expect("write");
        assert!(matches!(read_table(&bad), Err(SettingsError::Toml { .. })));
        assert!(matches!(
            read_table(&dir.path().join("absent.toml")),
            Err(SettingsError::Read { .. })
        ));
    }
}
