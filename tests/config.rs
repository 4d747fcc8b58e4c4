//! Configuration, end to end: with nothing configured Relay runs on its
//! embedded default (SQLite and blobs under `./relay-data`, listening on
//! 127.0.0.1:8080); otherwise settings come in layers — defaults, then the
//! TOML file (`--config` or `RELAY_CONFIG`), then `RELAY_*` variables, then
//! flags — each overriding the one before. A bad file is refused by name, a
//! password is never printed, and the server stops cleanly and reports
//! honestly whether it is ready.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use support::Relay;

/// Runs `relay config show ARGS…` with `env` and returns the printed TOML.
fn show(relay: &Relay, args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let out = relay
        .command()
        .args(["config", "show"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("relay runs");
    assert!(
        out.status.success(),
        "relay config show {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    toml::from_str(&text).unwrap_or_else(|e| panic!("not TOML ({e}):\n{text}"))
}

/// One string setting of `relay config show`.
fn setting<'a>(shown: &'a toml::Table, key: &str) -> &'a str {
    shown
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no string {key} in {shown:?}"))
}

/// Writes a file in the installation's directory and returns its absolute path.
fn write(relay: &Relay, name: &str, text: &str) -> PathBuf {
    let path = relay.dir().join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// Runs a command that must exit on its own; a hang (say, a server that
/// started when it should have refused) is killed and fails the test.
fn run_bounded(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("relay runs");
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.expect("relay output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("relay did not exit within 30 s; it should have refused to run");
        }
    }
}

/// Asserts a refused run: non-zero exit, nothing on stdout, and stderr
/// containing every one of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout should be empty: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr should mention {needle:?}: {stderr}"
        );
    }
}

fn assert_default_show(relay: &Relay) {
    let shown = show(relay, &[], &[]);
    assert_eq!(setting(&shown, "listen"), "127.0.0.1:8080");
    assert_eq!(setting(&shown, "data_dir"), "relay-data");
    assert_eq!(setting(&shown, "database"), "sqlite://relay-data/relay.db");
    assert_eq!(setting(&shown, "blobs"), "relay-data/blobs");
}

const LAYERED_FILE: &str = "listen = \"127.0.0.1:7001\"\n\
                            data_dir = \"file-dir\"\n\
                            request_timeout = \"11s\"\n";

#[test]
fn with_nothing_configured_config_show_prints_the_embedded_default() {
    let relay = Relay::new();
    assert_default_show(&relay);
    let shown = show(&relay, &[], &[]);
    assert_eq!(setting(&shown, "request_timeout"), "30s");
    // Showing the configuration touches no store.
    assert!(!relay.data_dir().exists());
}

#[test]
fn a_config_file_overrides_the_defaults() {
    let relay = Relay::new();
    let file = write(&relay, "relay.toml", LAYERED_FILE);
    let shown = show(&relay, &["--config", file.to_str().expect("utf-8")], &[]);
    assert_eq!(setting(&shown, "listen"), "127.0.0.1:7001");
    assert_eq!(setting(&shown, "data_dir"), "file-dir");
    assert_eq!(setting(&shown, "database"), "sqlite://file-dir/relay.db");
    assert_eq!(setting(&shown, "blobs"), "file-dir/blobs");
    assert_eq!(setting(&shown, "request_timeout"), "11s");
}

#[test]
fn relay_config_names_the_file_and_the_config_flag_beats_it() {
    let relay = Relay::new();
    write(&relay, "relay.toml", LAYERED_FILE);
    write(&relay, "other.toml", "listen = \"127.0.0.1:7009\"\n");
    let shown = show(&relay, &[], &[("RELAY_CONFIG", "relay.toml")]);
    assert_eq!(setting(&shown, "listen"), "127.0.0.1:7001");
    assert_eq!(setting(&shown, "data_dir"), "file-dir");
    let shown = show(
        &relay,
        &["--config", "other.toml"],
        &[("RELAY_CONFIG", "relay.toml")],
    );
    assert_eq!(setting(&shown, "listen"), "127.0.0.1:7009");
    assert_eq!(setting(&shown, "data_dir"), "relay-data");
}

#[test]
fn environment_variables_override_the_file() {
    let relay = Relay::new();
    write(&relay, "relay.toml", LAYERED_FILE);
    let shown = show(
        &relay,
        &["--config", "relay.toml"],
        &[
            ("RELAY_LISTEN", "127.0.0.1:7002"),
            ("RELAY_DATA_DIR", "env-dir"),
        ],
    );
    assert_eq!(setting(&shown, "listen"), "127.0.0.1:7002");
    assert_eq!(setting(&shown, "data_dir"), "env-dir");
    assert_eq!(setting(&shown, "database"), "sqlite://env-dir/relay.db");
    assert_eq!(setting(&shown, "blobs"), "env-dir/blobs");
    // What the environment does not set still comes from the file.
    assert_eq!(setting(&shown, "request_timeout"), "11s");
}

#[test]
fn flags_override_the_environment_and_the_file() {
    let relay = Relay::new();
    write(&relay, "relay.toml", LAYERED_FILE);
    let shown = show(
        &relay,
        &[
            "--config",
            "relay.toml",
            "--listen",
            "127.0.0.1:7003",
            "--data-dir",
            "flag-dir",
            "--request-timeout",
            "13s",
        ],
        &[
            ("RELAY_LISTEN", "127.0.0.1:7002"),
            ("RELAY_DATA_DIR", "env-dir"),
            ("RELAY_REQUEST_TIMEOUT", "12s"),
        ],
    );
    assert_eq!(setting(&shown, "listen"), "127.0.0.1:7003");
    assert_eq!(setting(&shown, "data_dir"), "flag-dir");
    assert_eq!(setting(&shown, "database"), "sqlite://flag-dir/relay.db");
    assert_eq!(setting(&shown, "blobs"), "flag-dir/blobs");
    assert_eq!(setting(&shown, "request_timeout"), "13s");
}

/// A listen address no test machine owns: a server that used it would fail
/// to start, so starting proves the address came from a later layer.
const UNBINDABLE: &str = "192.0.2.1:9";

#[tokio::test]
async fn serve_uses_the_file_data_dir_and_the_environment_listen_address() {
    let relay = Relay::new();
    let file = write(
        &relay,
        "relay.toml",
        &format!("listen = \"{UNBINDABLE}\"\ndata_dir = \"from-file\"\n"),
    );
    let server = relay.start_with(
        &["serve", "--config", file.to_str().expect("utf-8")],
        &[("RELAY_LISTEN", "127.0.0.1:0")],
    );
    let port = server
        .base
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| {
            panic!(
                "not listening on the environment's address: {}",
                server.base
            )
        });
    assert_ne!(port, "0");
    let data = relay.dir().join("from-file");
    assert!(data.join("relay.db").is_file(), "no relay.db in {data:?}");
    assert!(data.join("blobs").is_dir(), "no blobs/ in {data:?}");
    assert!(!relay.data_dir().exists(), "the default data dir was used");
    let (status, body) = server.get("/healthz", "").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    server.stop();
}

#[tokio::test]
async fn serve_flags_beat_the_environment_which_beats_the_file() {
    let relay = Relay::new();
    let file = write(
        &relay,
        "relay.toml",
        &format!("listen = \"{UNBINDABLE}\"\ndata_dir = \"from-file\"\n"),
    );
    let server = relay.start_with(
        &[
            "serve",
            "--config",
            file.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("RELAY_LISTEN", UNBINDABLE), ("RELAY_DATA_DIR", "from-env")],
    );
    assert!(
        server.base.starts_with("http://127.0.0.1:"),
        "{}",
        server.base
    );
    let data = relay.dir().join("from-env");
    assert!(data.join("relay.db").is_file(), "no relay.db in {data:?}");
    assert!(data.join("blobs").is_dir(), "no blobs/ in {data:?}");
    assert!(!relay.dir().join("from-file").exists());
    let (status, _) = server.get("/healthz", "").await;
    assert_eq!(status, 200);
    server.stop();
}

/// The only test that uses a fixed port: the embedded default, 8080.
#[tokio::test]
async fn with_nothing_configured_serve_runs_on_the_embedded_default() {
    let relay = Relay::new();
    if let Err(error) = std::net::TcpListener::bind("127.0.0.1:8080") {
        eprintln!(
            "NOTE: 127.0.0.1:8080 is in use on this machine ({error}); \
             checking the resolved default configuration instead of serving on it"
        );
        assert_default_show(&relay);
        return;
    }
    let server = relay.start_with(&["serve"], &[]);
    assert_eq!(server.base, "http://127.0.0.1:8080");
    assert!(relay.database_path().is_file(), "no ./relay-data/relay.db");
    assert!(
        relay.data_dir().join("blobs").is_dir(),
        "no ./relay-data/blobs"
    );
    let (status, body) = server.get("/healthz", "").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = server.get("/readyz", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    server.stop();
}

fn config_show_and_serve(relay: &Relay, config: &Path) -> [Output; 2] {
    let config = config.to_str().expect("utf-8");
    let mut show = relay.command();
    show.args(["config", "show", "--config", config]);
    // Never the default port, should the file wrongly be accepted.
    let mut serve = relay.command();
    serve.args(["serve", "--config", config, "--listen", "127.0.0.1:0"]);
    [run_bounded(show), run_bounded(serve)]
}

#[test]
fn an_unknown_key_in_the_config_file_is_refused_naming_the_file() {
    let relay = Relay::new();
    let file = write(&relay, "typo.toml", "lisen = \"x\"\n");
    for out in config_show_and_serve(&relay, &file) {
        assert_refused(&out, &[file.to_str().expect("utf-8"), "lisen"]);
    }
    // The same through RELAY_CONFIG.
    let mut cmd = relay.command();
    cmd.args(["config", "show"])
        .env("RELAY_CONFIG", "typo.toml");
    assert_refused(&run_bounded(cmd), &["typo.toml", "lisen"]);
    assert!(!relay.data_dir().exists());
}

#[test]
fn a_missing_config_file_is_refused_naming_the_file() {
    let relay = Relay::new();
    let file = relay.dir().join("absent.toml");
    for out in config_show_and_serve(&relay, &file) {
        assert_refused(&out, &[file.to_str().expect("utf-8")]);
    }
    assert!(!relay.data_dir().exists());
}

#[test]
fn a_database_url_in_the_file_named_by_relay_database_file_is_used() {
    let relay = Relay::new();
    let db = relay.dir().join("elsewhere").join("catalog.db");
    let url = format!("sqlite://{}", db.display());
    write(&relay, "db-url", &format!("{url}\n"));
    let env = [("RELAY_DATABASE_FILE", "db-url")];

    let shown = show(&relay, &[], &env);
    assert_eq!(setting(&shown, "database"), url);

    let created = relay
        .command()
        .args(["admin", "office", "create", "--name", "Secret File Clinic"])
        .envs(env)
        .output()
        .expect("relay runs");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let office = String::from_utf8(created.stdout).expect("utf-8");
    assert!(db.is_file(), "the database named in the file was not used");
    assert!(
        !relay.database_path().exists(),
        "the default database was used"
    );
    let listed = relay
        .command()
        .args(["admin", "office", "list"])
        .envs(env)
        .output()
        .expect("relay runs");
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains(office.trim()));
}

/// Command-line arguments and environment for one run.
type Args<'a> = &'a [&'a str];
type Env<'a> = &'a [(&'a str, &'a str)];

#[test]
fn config_show_never_prints_a_database_password() {
    let relay = Relay::new();
    let url = "postgres://relay:s3cret@db/relay";
    write(&relay, "db-url", url);
    write(&relay, "db.toml", &format!("database = \"{url}\"\n"));
    write(&relay, "db-file.toml", "database_file = \"db-url\"\n");
    let cases: [(Args, Env); 5] = [
        (&[], &[("RELAY_DATABASE_FILE", "db-url")]),
        (&[], &[("RELAY_DATABASE", url)]),
        (&["--database", url], &[]),
        (&["--config", "db.toml"], &[]),
        (&["--config", "db-file.toml"], &[]),
    ];
    for (args, env) in cases {
        let out = relay
            .command()
            .args(["config", "show"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("relay runs");
        assert!(out.status.success(), "{args:?} {env:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stdout.contains("s3cret") && !stderr.contains("s3cret"),
            "password printed for {args:?} {env:?}:\n{stdout}{stderr}"
        );
        let shown: toml::Table = toml::from_str(&stdout).expect("TOML");
        assert_eq!(
            setting(&shown, "database"),
            "postgres://relay:***@db/relay",
            "{args:?} {env:?}"
        );
    }
    // Nor does the help, which shows other variables' values.
    let out = relay
        .command()
        .args(["serve", "--help"])
        .env("RELAY_DATABASE", url)
        .output()
        .expect("relay runs");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret"));
}

#[test]
fn serve_help_documents_every_option_and_its_variable() {
    let relay = Relay::new();
    let help = relay.ok(&["serve", "--help"]);
    for needle in [
        "--listen",
        "--data-dir",
        "--database",
        "--blobs",
        "--config",
        "--request-timeout",
        "RELAY_LISTEN",
        "RELAY_DATA_DIR",
        "RELAY_DATABASE",
        "RELAY_BLOBS",
        "RELAY_CONFIG",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle}:\n{help}"
        );
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly_leaving_the_database_in_wal_mode() {
    let relay = Relay::new();
    let server = relay.start();
    let (status, _) = server.get("/healthz", "").await;
    assert_eq!(status, 200);
    server.stop();
    let mut db = relay.database().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut db)
        .await
        .expect("journal mode");
    assert_eq!(mode.to_lowercase(), "wal");
}

/// Gives a directory back its permissions however the test ends.
struct RestorePermissions(PathBuf);

impl Drop for RestorePermissions {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[tokio::test]
async fn readyz_reports_unavailable_while_the_blob_store_is_not_writable() {
    let relay = Relay::new();
    let server = relay.start();
    let (status, body) = server.get("/readyz", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"status": "ready", "database": "ok", "blobs": "ok"})
    );

    let tmp = relay.data_dir().join("blobs").join("tmp");
    assert!(tmp.is_dir(), "no blobs/tmp");
    let guard = RestorePermissions(tmp.clone());
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let canary = tmp.join("canary");
    if std::fs::write(&canary, b"x").is_ok() {
        let _ = std::fs::remove_file(&canary);
        eprintln!(
            "NOTE: running with privileges that ignore directory permissions \
             (root?); skipping the not-writable readiness assertion"
        );
    } else {
        let (status, body) = server.get("/readyz", "").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["database"], "ok");
        assert_ne!(body["blobs"], "ok");
        assert!(body["blobs"].is_string(), "{body}");
    }

    drop(guard);
    let (status, body) = server.get("/readyz", "").await;
    assert_eq!(status, 200, "ready again once writable: {body}");
    assert_eq!(body["status"], "ready");
    server.stop();
}
