//! A PostgreSQL server for local runs and tests: the one in `DATABASE_URL` when set, otherwise a
//! throwaway cluster started from the system's PostgreSQL binaries in a temp dir, on a free
//! loopback port, with trust auth, removed again when the [`PgServer`] is dropped.

use std::{
    net::TcpListener,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use sqlx::{ConnectOptions, Connection, postgres::PgConnectOptions};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin. \
         Install them with `sudo apt-get install -y postgresql` (Debian/Ubuntu), or set DATABASE_URL to a \
         running server"
    )]
    BinariesMissing,
    #[error(
        "DATABASE_URL is set but the server does not answer ({url}): {source}. Start it, or unset \
             DATABASE_URL to get a throwaway local server"
    )]
    Unreachable { url: String, source: sqlx::Error },
    #[error("{step} failed: {detail}")]
    Command { step: &'static str, detail: String },
    #[error("I/O error while preparing a local PostgreSQL: {0}")]
    Io(#[from] std::io::Error),
}

/// A PostgreSQL server to connect to. A throwaway one is stopped and deleted on drop.
#[derive(Debug)]
pub struct PgServer {
    /// URL of the server's `postgres` database (maintenance DB; create your own from it).
    url: String,
    local: Option<LocalCluster>,
}

#[derive(Debug)]
struct LocalCluster {
    bin: PathBuf,
    data: PathBuf,
    run_as: Option<(u32, u32)>,
    // Dropped after the server is stopped (field order), which deletes the directory.
    _dir: tempfile::TempDir,
}

impl PgServer {
    /// Uses `database_url` when given (and fails clearly when it does not answer); otherwise
    /// starts a throwaway cluster.
    pub async fn ensure(database_url: Option<&str>) -> Result<Self, PgError> {
        match database_url {
            Some(url) => {
                check_reachable(url).await?;
                Ok(Self {
                    url: url.to_owned(),
                    local: None,
                })
            }
            None => {
                let server = tokio::task::spawn_blocking(start_local)
                    .await
                    .map_err(|e| PgError::Command {
                        step: "start",
                        detail: e.to_string(),
                    })??;
                check_reachable(&server.url).await?;
                Ok(server)
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// True for a cluster this process started (and will delete).
    pub fn is_throwaway(&self) -> bool {
        self.local.is_some()
    }

    /// URL of another database on the same server.
    pub fn url_for_database(&self, db: &str) -> String {
        with_database(&self.url, db)
    }

    /// Stops a throwaway server without deleting it (tests use this to simulate an outage).
    pub fn stop(&self) -> Result<(), PgError> {
        match &self.local {
            Some(c) => c.pg_ctl(&["stop", "-m", "fast", "-w"], "pg_ctl stop"),
            None => Err(PgError::Command {
                step: "stop",
                detail: "only a throwaway server can be stopped".into(),
            }),
        }
    }

    /// Starts a throwaway server again after [`PgServer::stop`].
    pub fn start(&self) -> Result<(), PgError> {
        match &self.local {
            Some(c) => c.start(),
            None => Err(PgError::Command {
                step: "start",
                detail: "only a throwaway server can be started".into(),
            }),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(c) = &self.local {
            // Immediate: the cluster is about to be deleted, there is nothing to flush.
            let _ = c.pg_ctl(&["stop", "-m", "immediate", "-w"], "pg_ctl stop");
        }
    }
}

/// Replaces the database name (the path) of a `postgres://` URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

async fn check_reachable(url: &str) -> Result<(), PgError> {
    let unreachable = |source| PgError::Unreachable {
        url: crate::config::redact_url(url),
        source,
    };
    let opts: PgConnectOptions = url.parse().map_err(unreachable)?;
    let mut last = None;
    // A server that was just started may need a moment before it accepts connections.
    for _ in 0..20 {
        match tokio::time::timeout(Duration::from_secs(3), opts.connect()).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(sqlx::Error::PoolTimedOut),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(unreachable(last.unwrap_or(sqlx::Error::PoolTimedOut)))
}

/// Finds the directory holding `initdb` and `pg_ctl`: PATH first, then the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian installs server binaries off PATH).
pub fn find_binaries() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// PostgreSQL refuses to run as root; when we are root, run it as the `postgres` (or `nobody`)
/// system user instead.
fn unprivileged_user() -> Option<(u32, u32)> {
    let euid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok()?;
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
    };
    find("postgres").or_else(|| find("nobody"))
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_local() -> Result<PgServer, PgError> {
    let bin = find_binaries().ok_or(PgError::BinariesMissing)?;
    let dir = tempfile::Builder::new().prefix("meridian-pg-").tempdir()?;
    let run_as = unprivileged_user();
    let data = dir.path().join("data");
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
    }
    let cluster = LocalCluster {
        bin,
        data,
        run_as,
        _dir: dir,
    };
    cluster.run(
        "initdb",
        &[
            "-D",
            path_str(&cluster.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        "initdb",
    )?;
    cluster.start()?;
    let port = cluster.port()?;
    Ok(PgServer {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        local: Some(cluster),
    })
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

impl LocalCluster {
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(self.data.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, program: &str, args: &[&str], step: &'static str) -> Result<(), PgError> {
        let out = self.command(program).args(args).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(PgError::Command {
                step,
                detail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            })
        }
    }

    fn pg_ctl(&self, args: &[&str], step: &'static str) -> Result<(), PgError> {
        let mut full = vec!["-D", path_str(&self.data)];
        full.extend_from_slice(args);
        self.run("pg_ctl", &full, step)
    }

    fn port_file(&self) -> PathBuf {
        self.data.parent().unwrap_or(Path::new("/")).join("port")
    }

    fn port(&self) -> Result<u16, PgError> {
        let raw = std::fs::read_to_string(self.port_file())?;
        raw.trim().parse().map_err(|_| PgError::Command {
            step: "port",
            detail: format!("bad port file content {raw:?}"),
        })
    }

    /// Starts the server, on the port it used before if it ran already (so URLs stay valid
    /// across a stop/start), otherwise on a free one.
    fn start(&self) -> Result<(), PgError> {
        let port = match self.port() {
            Ok(p) => p,
            Err(_) => {
                let p = free_port()?;
                std::fs::write(self.port_file(), p.to_string())?;
                p
            }
        };
        let socket_dir = self.data.parent().unwrap_or(Path::new("/tmp"));
        let log = socket_dir.join("server.log");
        // Durability settings are off: this cluster is deleted on exit, and tests want speed.
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400 -c shared_buffers=128MB",
            socket_dir.display()
        );
        let log_arg = path_str(&log).to_owned();
        self.pg_ctl(
            &["-l", &log_arg, "-o", &opts, "-w", "-t", "60", "start"],
            "pg_ctl start",
        )
        .map_err(|e| match e {
            PgError::Command { step, detail } => PgError::Command {
                step,
                detail: format!(
                    "{detail}\nserver log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "t1"),
            "postgres://u@h:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "t1"),
            "postgres://u@h:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "t2"),
            "postgres://u@h/t2?sslmode=disable"
        );
    }
}
