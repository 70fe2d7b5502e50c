use std::path::PathBuf;

use clap::{Arg, ArgAction, Command};

use crate::{parse, with_env, SettingsError, Source};

/// A command like the node's: required settings, defaults, a switch and a
/// list. Each test gives its own environment prefix: tests run in
/// parallel and the environment is the process's.
fn cmd(prefix: &str) -> Command {
    let cmd = Command::new("bin")
        .arg(
            Arg::new("config")
                .long("config")
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(
            Arg::new("print_config")
                .long("print-config")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("node_id")
                .long("node-id")
                .required(true)
                .value_parser(clap::value_parser!(u64)),
        )
        .arg(
            Arg::new("port")
                .long("port")
                .default_value("7400")
                .value_parser(clap::value_parser!(u16)),
        )
        .arg(Arg::new("zone").long("zone").default_value(""))
        .arg(
            Arg::new("replace")
                .long("replace")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("cores")
                .long("cores")
                .value_delimiter(',')
                .value_parser(clap::value_parser!(usize)),
        );
    with_env(cmd, prefix)
}

fn file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, text).expect("write");
    let path = path.to_string_lossy().into_owned();
    (dir, path)
}

#[test]
fn flags_win_over_environment_over_file_over_defaults() {
    let (_dir, path) =
        file("node_id = 3\nport = 7500\nzone = \"file\"\nreplace = true\ncores = [0, 1]\n");
    std::env::set_var("TSA_ZONE", "env");
    std::env::set_var("TSA_PORT", "7600");
    let s = parse(cmd("TSA_"), ["bin", "--config", &path, "--port", "7700"]).expect("settings");
    assert_eq!(s.matches.get_one::<u64>("node_id"), Some(&3));
    assert_eq!(s.source("node_id"), Source::File);
    assert_eq!(s.matches.get_one::<u16>("port"), Some(&7700));
    assert_eq!(s.source("port"), Source::Flag);
    assert_eq!(
        s.matches.get_one::<String>("zone").map(String::as_str),
        Some("env")
    );
    assert_eq!(s.source("zone"), Source::Env);
    assert!(s.matches.get_flag("replace"));
    let cores: Vec<usize> = s
        .matches
        .get_many("cores")
        .expect("cores")
        .copied()
        .collect();
    assert_eq!(cores, [0, 1]);
    std::env::remove_var("TSA_ZONE");
    std::env::remove_var("TSA_PORT");
}

#[test]
fn without_a_file_flags_and_defaults_as_clap_has_them() {
    let s = parse(cmd("TSB_"), ["bin", "--node-id", "9"]).expect("settings");
    assert_eq!(s.matches.get_one::<u64>("node_id"), Some(&9));
    assert_eq!(s.source("port"), Source::Default);
    assert_eq!(s.source("cores"), Source::Unset);
    let missing = parse(cmd("TSB_"), ["bin"]).expect_err("node_id is required");
    assert!(matches!(missing, SettingsError::Clap(_)));
    assert_eq!(missing.exit_code(), 2);
}

#[test]
fn the_config_file_may_come_from_the_environment() {
    let (_dir, path) = file("node_id = 4\n");
    std::env::set_var("TSC_CONFIG", &path);
    let s = parse(cmd("TSC_"), ["bin"]).expect("settings");
    std::env::remove_var("TSC_CONFIG");
    assert_eq!(s.matches.get_one::<u64>("node_id"), Some(&4));
}

#[test]
fn bad_keys_and_values_name_the_key() {
    let refused = |text: &str| {
        let (_dir, path) = file(text);
        let e = parse(cmd("TSD_"), ["bin", "--config", &path]).expect_err(text);
        e.to_string()
    };
    let e = refused("node_id = 1\nnode-id = 2\n");
    assert!(
        e.contains("unknown key `node-id`") && e.contains("node_id"),
        "{e}"
    );
    let e = refused("node_id = 1\nport = 70000\n");
    assert!(e.contains("key `port`") && e.contains("70000"), "{e}");
    let e = refused("node_id = \"one\"\n");
    assert!(e.contains("key `node_id`"), "{e}");
    let e = refused("node_id = 1\nreplace = \"yes\"\n");
    assert!(
        e.contains("key `replace`") && e.contains("true or false"),
        "{e}"
    );
    let e = refused("node_id = 1\nzone = [\"a\"]\n");
    assert!(e.contains("key `zone`") && e.contains("array"), "{e}");
    let e = refused("node_id = 1\nprint_config = true\n");
    assert!(e.contains("unknown key `print_config`"), "{e}");
    let e = refused("node_id = 1\nport = \n");
    assert!(e.contains("not TOML"), "{e}");
}

#[test]
fn a_bad_value_the_flag_overrides_is_never_read() {
    // The flag wins: the file's value is not used, so it is not judged.
    let (_dir, path) = file("node_id = 1\nport = \"x\"\n");
    let s = parse(cmd("TSE_"), ["bin", "--config", &path, "--port", "1"]).expect("settings");
    assert_eq!(s.matches.get_one::<u16>("port"), Some(&1));
}

#[test]
fn shown_settings_read_back_as_the_same_settings() {
    let (_dir, path) = file("node_id = 5\nzone = \"z 1\"\ncores = [1]\nreplace = true\n");
    let first = parse(cmd("TSF_"), ["bin", "--config", &path, "--port", "7001"]).expect("settings");
    let shown = first.show(&cmd("TSF_"));
    assert!(shown.contains("node_id = 5  # file"), "{shown}");
    assert!(shown.contains("port = 7001  # flag"), "{shown}");
    assert!(shown.contains("zone = \"z 1\"  # file"), "{shown}");
    let (_dir2, again) = file(&shown);
    let second = parse(cmd("TSF_"), ["bin", "--config", &again]).expect("reads back");
    for id in ["node_id", "port", "zone", "cores", "replace"] {
        let raw = |s: &crate::Settings| {
            s.matches
                .get_raw(id)
                .map(|v| v.map(|x| x.to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(raw(&first), raw(&second), "{id}");
    }
}
