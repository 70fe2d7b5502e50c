//! The node's settings, through the real binary: a config file, `TRILOG_`
//! variables and flags in that order of precedence; bad values refused
//! before anything starts, naming the key; host names where an address
//! goes; hosts that cannot run a node refused with what to change.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn node() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trilog-node"));
    // The test runner's own TRILOG_ variables must not leak in.
    for (k, _) in std::env::vars() {
        if k.starts_with("TRILOG_") {
            c.env_remove(k);
        }
    }
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn file_then_environment_then_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "node.toml",
        "node_id = 7\ndata_dir = \"/var/lib/trilog/7\"\nport = 7500\nzone = \"file\"\ncores = [0]\nlease_ms = 1000\n",
    );
    let out = node()
        .arg("--config")
        .arg(&config)
        .args(["--lease-ms", "2000", "--print-config"])
        .env("TRILOG_ZONE", "env")
        .env("TRILOG_PORT", "7600")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    for line in [
        "node_id = 7  # file",
        "data_dir = \"/var/lib/trilog/7\"  # file",
        "port = 7600  # environment",
        "zone = \"env\"  # environment",
        "lease_ms = 2000  # flag",
        "cores = [0]  # file",
        "shards = 1  # default",
    ] {
        assert!(shown.lines().any(|l| l == line), "no {line:?} in\n{shown}");
    }
    // Nothing was started: --print-config only prints and checks.
    assert!(!Path::new("/var/lib/trilog/7").exists());
}

#[test]
fn bad_settings_are_refused_naming_the_key_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let cases = [
        ("nodeid = 1\n", "unknown key `nodeid`"),
        ("node_id = 1\nlease_ms = \"soon\"\n", "key `lease_ms`"),
        ("node_id = 1\nport = 99999\n", "key `port`"),
        ("node_id = 1\nreplace = \"yes\"\n", "key `replace`"),
        (
            "node_id = 1\nlease_ms = 5\n",
            "lease_ms (--lease-ms) must be between",
        ),
        ("node_id = 0\n", "node_id (--node-id) must not be 0"),
        ("node_id = 1\nhost = \"0.0.0.0\"\n", "give advertise_host"),
        (
            "node_id = 1\nhost = \"no-such-host.invalid\"\n",
            "host \"no-such-host.invalid\"",
        ),
        ("node_id = 1\nmeta = \"a:b:c\"\n", "key `meta`"),
        ("node_id = [\n", "not TOML"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let config = write(dir.path(), &format!("bad-{i}.toml"), text);
        let out = node()
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{text:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{text:?}: {}",
            stderr(&out)
        );
        assert!(!data.exists(), "{text:?} created the data directory");
    }
}

#[test]
fn a_node_started_from_its_file_alone_serves_under_host_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = write(
        dir.path(),
        "node.toml",
        &format!(
            "node_id = 1\ndata_dir = \"{}\"\nhost = \"localhost\"\nport = 0\n\
             serve_meta = \"localhost:{meta_port}\"\nzone = \"z1\"\n",
            dir.path().join("data").display()
        ),
    );
    let mut child = node()
        .env("TRILOG_CONFIG", &config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    assert!(line.starts_with("trilog-node ready"), "{line:?}");
    // The node registered itself with the store it serves, found by name.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let meta = trilog_meta::EmbeddedMeta::new(
        format!("localhost:{meta_port}")
            .parse::<trilog_meta::HostPort>()
            .expect("host:port"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let registered = loop {
        let nodes = rt
            .block_on(trilog_meta::MetaStore::list_nodes(&meta, false))
            .unwrap_or_default();
        if let Some(n) = nodes.into_iter().find(|n| n.info.node_id == 1) {
            break n;
        }
        assert!(Instant::now() < deadline, "node 1 never registered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(registered.info.zone, "z1");
    // localhost resolved to a loopback address, registered as such.
    assert!(
        registered.info.host.starts_with("127.") || registered.info.host == "::1",
        "{}",
        registered.info.host
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_data_directory_in_memory_is_refused() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return; // no tmpfs here to try
    }
    let dir = tempfile::tempdir_in(shm).expect("tempdir in /dev/shm");
    let out = node()
        .args(["--node-id", "1", "--port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("tmpfs"), "{}", stderr(&out));
    assert!(!dir.path().join("data").join("shard-0").exists());
}

#[test]
fn too_little_locked_memory_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = node();
    cmd.args(["--node-id", "1", "--port", "0", "--data-dir"])
        .arg(dir.path().join("data"));
    // SAFETY: between fork and exec only setrlimit runs, which is
    // async-signal-safe; lowering a soft limit needs no privilege.
    unsafe {
        cmd.pre_exec(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = 64 * 1024;
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("locked-memory limit") && err.contains("64 KiB"),
        "{err}"
    );
    assert!(err.contains("LimitMEMLOCK"), "{err}");
}
