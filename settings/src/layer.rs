//! Flags over environment over file over defaults.
//!
//! clap already puts flags over environment variables over defaults. The
//! file's layer goes between the environment and the defaults: a first,
//! tolerant parse finds `--config` and which settings the flags and the
//! environment already give; every other key of the file becomes the flag
//! tokens that would set it, checked by that flag's own parser, and goes
//! in front of the real arguments for the final parse.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::builder::Resettable;
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

use crate::error::SettingsError;
use crate::file;

/// The id of the setting naming the config file.
pub const CONFIG_ID: &str = "config";

/// Settings that only steer the binary's own run; they are no key of a
/// file and have no environment variable.
const NOT_SETTINGS: [&str; 4] = ["help", "version", "print_config", CONFIG_ID];

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
    Unset,
}

/// The parsed settings and where each came from.
#[derive(Debug)]
pub struct Settings {
    pub matches: ArgMatches,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// The settings the file gave (and nothing above it overrode).
    from_file: BTreeSet<String>,
}

impl Settings {
    pub fn source(&self, id: &str) -> Source {
        if self.from_file.contains(id) {
            return Source::File;
        }
        match self.matches.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) => Source::Env,
            Some(ValueSource::DefaultValue) => Source::Default,
            _ => Source::Unset,
        }
    }
}

/// `cmd` with the environment variable `prefix` + ID in upper case on each
/// of its own settings (not its subcommands').
pub fn with_env(cmd: Command, prefix: &str) -> Command {
    cmd.mut_args(|arg| {
        let id = arg.get_id().as_str().to_string();
        if NOT_SETTINGS.contains(&id.as_str()) && id != CONFIG_ID || arg.get_env().is_some() {
            return arg;
        }
        if arg.is_positional() {
            return arg;
        }
        arg.env(clap::builder::Str::from(format!(
            "{prefix}{}",
            id.to_uppercase()
        )))
    })
}

/// Parses `argv` (the binary's name first) for `cmd`, whose settings are
/// flags, environment variables (see [`with_env`]) and the keys of the
/// file named by its `config` argument, if it has one.
pub fn parse<I, T>(cmd: Command, argv: I) -> Result<Settings, SettingsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let cmd = cmd.args_override_self(true);
    let config = cmd
        .get_arguments()
        .any(|a| a.get_id() == CONFIG_ID)
        .then(|| first_pass(&cmd, &argv))
        .flatten();
    let Some((path, given)) = config else {
        let matches = cmd.try_get_matches_from(argv)?;
        return Ok(Settings {
            matches,
            file: None,
            from_file: BTreeSet::new(),
        });
    };
    let (injected, from_file) = file_tokens(&cmd, &path, &given)?;
    let mut full = Vec::with_capacity(argv.len() + injected.len());
    full.extend(argv.first().cloned());
    full.extend(injected);
    full.extend(argv.into_iter().skip(1));
    let matches = cmd.try_get_matches_from(full)?;
    Ok(Settings {
        matches,
        file: Some(path),
        from_file,
    })
}

/// The config file's path and the settings the flags or the environment
/// give, from a parse that forgives missing and bad arguments (the final
/// parse reports those). `None` without a config file.
fn first_pass(cmd: &Command, argv: &[OsString]) -> Option<(PathBuf, Vec<String>)> {
    let tolerant = cmd
        .clone()
        .mut_args(|a| a.required(false))
        .subcommand_required(false)
        .arg_required_else_help(false)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .ignore_errors(true);
    let m = tolerant.try_get_matches_from(argv).ok()?;
    let path = m.get_one::<PathBuf>(CONFIG_ID)?.clone();
    let given = cmd
        .get_arguments()
        .map(|a| a.get_id().as_str())
        .filter(|id| {
            matches!(
                m.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(str::to_string)
        .collect();
    Some((path, given))
}

/// The flag tokens of the file's keys that neither a flag nor the
/// environment gives, each checked by its flag's parser.
fn file_tokens(
    cmd: &Command,
    path: &Path,
    given: &[String],
) -> Result<(Vec<OsString>, BTreeSet<String>), SettingsError> {
    let table = file::read_table(path)?;
    let mut tokens = Vec::new();
    let mut from_file = BTreeSet::new();
    for (key, value) in &table {
        let bad = |why: String| SettingsError::BadValue {
            path: path.to_path_buf(),
            key: key.clone(),
            why,
        };
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == key.as_str() && !a.is_positional())
            .filter(|a| !NOT_SETTINGS.contains(&a.get_id().as_str()))
            .ok_or_else(|| SettingsError::UnknownKey {
                path: path.to_path_buf(),
                key: key.clone(),
                known: keys(cmd).join(", "),
            })?;
        if given.contains(key) {
            continue;
        }
        let these = file::tokens(arg, value).map_err(bad)?;
        // The flag's own parser, alone: the message names the key, not a
        // flag the user never typed.
        let alone = Command::new("settings")
            .no_binary_name(true)
            .arg(alone(arg));
        if let Err(e) = alone.try_get_matches_from(&these) {
            return Err(bad(clap_reason(&e)));
        }
        tokens.extend(these);
        from_file.insert(key.clone());
    }
    Ok((tokens, from_file))
}

/// `arg` on its own: its parser and its action, without its relations to
/// other arguments (which a command of one argument cannot resolve).
fn alone(arg: &clap::Arg) -> clap::Arg {
    arg.clone()
        .required(false)
        .env(None::<&str>)
        .requires(Resettable::Reset)
        .conflicts_with(Resettable::Reset)
        .overrides_with(Resettable::Reset)
        .required_unless_present(Resettable::Reset)
        .group(Resettable::Reset)
}

/// The settings' keys, as a file writes them.
pub(crate) fn keys(cmd: &Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| !a.is_positional())
        .map(|a| a.get_id().as_str())
        .filter(|id| !NOT_SETTINGS.contains(id))
        .map(str::to_string)
        .collect()
}

/// clap's message without its "error: " and its hint lines.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests;
