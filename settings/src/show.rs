//! The settings in effect, as a config file (`--print-config`).

use std::fmt::Write;

use clap::{ArgAction, Command};

use crate::layer::{Settings, Source};

impl Settings {
    /// Every setting of `cmd` as a line of TOML, with where its value came
    /// from; unset settings are commented out. The result, saved, is a
    /// config file that gives the same settings.
    pub fn show(&self, cmd: &Command) -> String {
        let mut out = String::new();
        if let Some(path) = &self.file {
            let _ = writeln!(out, "# config file: {}", path.display());
        }
        for key in crate::layer::keys(cmd) {
            let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == key.as_str()) else {
                continue;
            };
            let source = self.source(&key);
            let value = if matches!(arg.get_action(), ArgAction::SetTrue) {
                Some(toml::Value::Boolean(self.matches.get_flag(&key)))
            } else {
                self.matches.get_raw(&key).map(|raw| {
                    let items: Vec<toml::Value> =
                        raw.map(|v| typed(&v.to_string_lossy())).collect();
                    let many = matches!(arg.get_action(), ArgAction::Append)
                        || arg.get_value_delimiter().is_some();
                    match items.as_slice() {
                        [one] if !many => one.clone(),
                        _ => toml::Value::Array(items),
                    }
                })
            };
            match value {
                Some(v) => {
                    let _ = writeln!(out, "{key} = {v}  # {}", describe(source));
                }
                None => {
                    let _ = writeln!(out, "# {key} =  (not set)");
                }
            }
        }
        out
    }
}

/// An integer where the text is one, a string otherwise: the file's
/// parser takes either for a flag's value, so the output reads back.
fn typed(text: &str) -> toml::Value {
    match text.parse::<i64>() {
        Ok(i) => toml::Value::Integer(i),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

fn describe(source: Source) -> &'static str {
    match source {
        Source::Flag => "flag",
        Source::Env => "environment",
        Source::File => "file",
        Source::Default => "default",
        Source::Unset => "unset",
    }
}
