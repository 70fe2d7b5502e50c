//! The deployment files as an operator uses them: `deploy/install.sh`
//! lays out the binary, the unit and the example config under a staging
//! root; the example config is a valid configuration of the real binary;
//! a second install keeps the operator's edits; the unit passes
//! `systemd-analyze verify` (where systemd is installed) with no unknown
//! or invalid directive.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn install(root: &Path, bin_dir: &Path) {
    let out = Command::new(deploy_dir().join("install.sh"))
        .arg("--root")
        .arg(root)
        .arg("--bin-dir")
        .arg(bin_dir)
        .output()
        .expect("run install.sh");
    assert!(
        out.status.success(),
        "install.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn install_lays_out_a_host_and_keeps_the_operators_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin_dir = dir.path().join("dist");
    std::fs::create_dir_all(&bin_dir).expect("mkdir");
    std::fs::copy(
        env!("CARGO_BIN_EXE_trilog-node"),
        bin_dir.join("trilog-node"),
    )
    .expect("copy");
    let root = dir.path().join("root");
    install(&root, &bin_dir);

    let node = root.join("usr/local/bin/trilog-node");
    let mode = std::fs::metadata(&node)
        .expect("installed")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/trilog-node.service"))
        .expect("the unit");
    for line in [
        "ExecStart=/usr/local/bin/trilog-node --config /etc/trilog/node.toml",
        "LimitMEMLOCK=infinity",
        "User=trilog",
        "KillSignal=SIGTERM",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l == line), "no {line:?} in the unit");
    }
    // The example config is what the binary accepts.
    let config = root.join("etc/trilog/node.toml");
    let out = Command::new(&node)
        .arg("--config")
        .arg(&config)
        .arg("--print-config")
        .output()
        .expect("print-config");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("tls_cert = \"/etc/trilog/tls/node.pem\"  # file"),
        "{shown}"
    );
    assert!(shown.contains("zone = \"a\"  # file"), "{shown}");

    // An operator's edit survives the next install (an upgrade).
    std::fs::write(&config, "node_id = 42\ndata_dir = \"/srv/trilog\"\n").expect("edit");
    install(&root, &bin_dir);
    let kept = std::fs::read_to_string(&config).expect("config");
    assert!(kept.starts_with("node_id = 42"), "{kept}");
}

#[test]
fn the_unit_verifies() {
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("deploy: skipped: no systemd-analyze here");
        return;
    };
    // The unit as installed, but starting the binary under test (verify
    // checks that ExecStart's program exists).
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/trilog-node.service"))
        .expect("the unit")
        .replace(
            "/usr/local/bin/trilog-node",
            env!("CARGO_BIN_EXE_trilog-node"),
        );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("trilog-node.service");
    std::fs::write(&path, unit).expect("write");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("Unknown") && !err.contains("nvalid") && !err.contains("ignoring"),
        "{err}"
    );
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}
