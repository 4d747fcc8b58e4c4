//! A throwaway PostgreSQL cluster that a test may stop and start: the
//! machine's own server is shared and cannot be taken away from other
//! tests, so an outage test makes its own with the installed server's
//! `initdb` and `pg_ctl`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A throwaway PostgreSQL cluster of the installed server's programs, on a
/// free port in a temporary directory, which a test may stop and start.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    /// Makes and starts the cluster, or `None` (a loud skip) when the
    /// server's programs are not installed.
    ///
    /// # Panics
    /// When they are missing and `RELAY_REQUIRE_SERVICES=1`.
    pub fn start(test: &str) -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            if std::env::var("RELAY_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: no initdb/pg_ctl found but RELAY_REQUIRE_SERVICES=1");
            }
            eprintln!(
                "\n*** SKIPPED {test}: no PostgreSQL server programs (initdb, pg_ctl); \
                 install Debian's postgresql. ***\n"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        if is_root() {
            // PostgreSQL refuses to run as root.
            run(Command::new("chown").arg("postgres").arg(dir.path()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = Self { dir, bin, port };
        run(cluster
            .program("initdb")
            .arg("-D")
            .arg(cluster.data())
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]));
        cluster.start_again();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn program(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    /// Starts the server (again) on the same port, waiting until it answers.
    pub fn start_again(&self) {
        let options = format!(
            "-h 127.0.0.1 -p {} -k {}",
            self.port,
            self.dir.path().display()
        );
        run(self
            .program("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "60", "-l"])
            .arg(self.dir.path().join("postgres.log"))
            .args(["-o", &options, "start"]));
    }

    /// Stops the server the hard way: no checkpoint, so what comes back
    /// after is what the write-ahead log made durable.
    pub fn stop_immediately(&self) {
        run(self.program("pg_ctl").arg("-D").arg(self.data()).args([
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .program("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// The installed PostgreSQL server's program directory: `pg_config
/// --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
fn postgres_bin() -> Option<PathBuf> {
    let has_programs = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| has_programs(d)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_programs(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("the program runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
