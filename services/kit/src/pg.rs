//! A PostgreSQL server for local runs and tests: the one in `DATABASE_URL` when set, otherwise a
//! throwaway cluster started from the system's PostgreSQL binaries in a temp dir, on a free
//! loopback port, removed again when the [`PgServer`] is dropped.
//!
//! The throwaway cluster is private to the user who started it: every connection, TCP or Unix
//! socket, needs a random password (SCRAM-SHA-256) that only its URL carries, and the socket
//! lives in the cluster's own 0700 directory. It also never outlives its parent process, even one
//! killed with SIGKILL: a watchdog process (`sh`) blocks reading a pipe whose write end only the
//! parent holds; the kernel closes that end when the parent dies, however it dies, and the
//! watchdog then stops the server and deletes the directory. `PR_SET_PDEATHSIG` cannot do this:
//! `pg_ctl` daemonizes the postmaster (so it is not our child), the signal follows the death of
//! the spawning *thread* rather than the process, and setting it in the child needs `pre_exec`,
//! which is `unsafe`.

use std::{
    fmt,
    net::TcpListener,
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
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

/// A PostgreSQL server to connect to. A throwaway one is stopped and deleted on drop, or by its
/// watchdog when this process dies first.
pub struct PgServer {
    /// URL of the server's `postgres` database (maintenance DB; create your own from it). A
    /// throwaway server's URL carries its password.
    url: String,
    local: Option<LocalCluster>,
}

// The URL may carry the password: never print it.
impl fmt::Debug for PgServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgServer")
            .field("url", &crate::config::redact_url(&self.url))
            .field("throwaway", &self.local.is_some())
            .finish()
    }
}

struct LocalCluster {
    bin: PathBuf,
    data: PathBuf,
    run_as: Option<(u32, u32)>,
    /// Stops the server and deletes `_dir` once `watchdog_pipe` closes (see the module docs).
    watchdog: Child,
    watchdog_pipe: Option<ChildStdin>,
    // Dropped last (field order): deletes the directory if the watchdog could not.
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

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // The same path as a crash of this process: close the pipe, and the watchdog stops the
        // server and deletes the directory. Waiting for it keeps drop synchronous (and reaps it).
        drop(self.watchdog_pipe.take());
        let _ = self.watchdog.wait();
        if self.data.join("postmaster.pid").exists() {
            // Immediate: the cluster is about to be deleted, there is nothing to flush.
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"], "pg_ctl stop");
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

/// The watchdog: `cat` returns at end of file on stdin, which comes when the parent's end of the
/// pipe closes (drop, exit, or death by any signal). Arguments: `pg_ctl`, the data directory, the
/// directory to delete.
const WATCHDOG: &str = r#"cat >/dev/null
if [ -f "$2/postmaster.pid" ]; then "$1" -D "$2" stop -m immediate -w >/dev/null 2>&1; fi
rm -rf "$3""#;

/// A password of 256 random bits from the kernel's CSPRNG, hex-encoded (URL-safe as is).
fn random_password() -> Result<String, PgError> {
    let bytes = crate::secret::random32().map_err(std::io::Error::other)?;
    Ok(crate::secret::hex(&bytes))
}

fn start_local() -> Result<PgServer, PgError> {
    let bin = find_binaries().ok_or(PgError::BinariesMissing)?;
    let dir = tempfile::Builder::new().prefix("meridian-pg-").tempdir()?;
    // The socket lives here: only its owner may reach it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    let run_as = unprivileged_user();
    let data = dir.path().join("data");
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
    }
    // Before anything else runs: from here on, the directory goes when this process goes.
    let mut watchdog = Command::new("sh");
    watchdog
        .args(["-c", WATCHDOG, "meridian-pg-watchdog"])
        .arg(bin.join("pg_ctl"))
        .arg(&data)
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A group of its own: a Ctrl-C meant for this process must not kill the watchdog first.
        .process_group(0);
    if let Some((uid, gid)) = run_as {
        watchdog.uid(uid).gid(gid);
    }
    let mut watchdog = watchdog.spawn()?;
    let watchdog_pipe = watchdog.stdin.take();
    let cluster = LocalCluster {
        bin,
        data,
        run_as,
        watchdog,
        watchdog_pipe,
        _dir: dir,
    };
    let password = random_password()?;
    let pwfile = cluster.dir().join("pwfile");
    std::fs::write(&pwfile, &password)?;
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
    }
    let initdb = cluster.run(
        "initdb",
        &[
            "-D",
            path_str(&cluster.data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            &format!("--pwfile={}", path_str(&pwfile)),
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        "initdb",
    );
    std::fs::remove_file(&pwfile)?;
    initdb?;
    cluster.start()?;
    let port = cluster.port()?;
    Ok(PgServer {
        url: format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres"),
        local: Some(cluster),
    })
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

impl LocalCluster {
    /// The cluster's private directory: data, socket, port file, log.
    fn dir(&self) -> &Path {
        self.data.parent().unwrap_or(Path::new("/"))
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
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
        // authentication_timeout: a client frozen mid-handshake (a test whose runtime is blocked
        // dropping its database while a pool connects) holds a backend that cannot answer the
        // barrier every DROP DATABASE waits for, stalling all drops for the 60 s default. A
        // local SCRAM handshake takes milliseconds.
        let opts = format!(
            "-p {port} -k {} -c unix_socket_permissions=0700 -c listen_addresses=127.0.0.1 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 \
             -c shared_buffers=128MB -c authentication_timeout=2s",
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
    use std::io::BufRead;

    /// Set for the child process of `a_throwaway_server_dies_with_its_parent_even_on_sigkill`.
    const CHILD: &str = "MERIDIAN_PG_TEST_CHILD";

    fn postmaster_pid(c: &LocalCluster) -> u32 {
        let pidfile = std::fs::read_to_string(c.data.join("postmaster.pid")).expect("pid file");
        pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("pid on the first line")
    }

    /// Running, as opposed to gone or a zombie nobody reaped (PID 1 of a container may not).
    fn running(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            // The state follows the parenthesised command name, which may itself hold spaces.
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
        })
    }

    fn accepts(port: u16) -> bool {
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(1),
        )
        .is_ok()
    }

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

    #[tokio::test]
    async fn a_throwaway_server_wants_its_password_keeps_its_socket_private_and_goes_on_drop() {
        let server = PgServer::ensure(None)
            .await
            .expect("throwaway PostgreSQL (install postgresql)");
        let password = server
            .url()
            .strip_prefix("postgres://postgres:")
            .and_then(|rest| rest.split_once('@'))
            .map(|(password, _)| password)
            .expect("the URL carries a password");
        assert!(password.len() >= 32, "{} characters", password.len());
        assert!(
            !format!("{server:?}").contains(password),
            "Debug must not print the password: {server:?}"
        );
        let local = server.local.as_ref().expect("throwaway");
        let opts: PgConnectOptions = server.url().parse().expect("url");
        let port = opts.get_port();
        let conn = opts
            .connect()
            .await
            .expect("the URL's password is accepted");
        let _ = conn.close().await;

        let over_tcp = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("postgres");
        for (how, opts) in [
            ("tcp, no password", over_tcp.clone()),
            ("tcp, wrong password", over_tcp.password("postgres")),
            (
                "socket, no password",
                PgConnectOptions::new()
                    .socket(local.dir())
                    .port(port)
                    .username("postgres"),
            ),
        ] {
            let err = opts.connect().await.expect_err(how);
            assert!(
                err.to_string().to_lowercase().contains("password"),
                "{how}: {err}"
            );
        }
        let mode = std::fs::metadata(local.dir()).expect("dir").mode() & 0o777;
        assert_eq!(mode, 0o700, "socket directory mode {mode:o}");
        assert!(
            !local.dir().join("pwfile").exists(),
            "the password file is removed after initdb"
        );

        let (pid, dir) = (postmaster_pid(local), local.dir().to_owned());
        assert!(running(pid));
        drop(server);
        assert!(!running(pid), "postmaster {pid} still running after drop");
        assert!(!dir.exists(), "{} still there after drop", dir.display());
    }

    /// The child half of the test below, run in a process of its own: holds a throwaway server
    /// and reports where it is until it is killed.
    #[tokio::test]
    #[ignore = "run by a_throwaway_server_dies_with_its_parent_even_on_sigkill"]
    async fn child_holding_a_throwaway_server() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let server = PgServer::ensure(None).await.expect("throwaway PostgreSQL");
        let local = server.local.as_ref().expect("throwaway");
        let port: PgConnectOptions = server.url().parse().expect("url");
        println!(
            "THROWAWAY {} {} {}",
            postmaster_pid(local),
            port.get_port(),
            local.dir().display()
        );
        std::future::pending::<()>().await;
    }

    #[test]
    fn a_throwaway_server_dies_with_its_parent_even_on_sigkill() {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "pg::tests::child_holding_a_throwaway_server",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("stdout");
        let line = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("THROWAWAY "))
            .expect("the child reports its server");
        let fields: Vec<&str> = line.split(' ').collect();
        let pid: u32 = fields[1].parse().expect("pid");
        let port: u16 = fields[2].parse().expect("port");
        let dir = PathBuf::from(fields[3]);
        assert!(running(pid) && accepts(port), "the child's server is up");

        child.kill().expect("SIGKILL the child");
        let _ = child.wait();
        let killed = std::time::Instant::now();
        while (running(pid) || dir.exists()) && killed.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !running(pid),
            "postmaster {pid} survived its parent's SIGKILL"
        );
        assert!(!accepts(port), "port {port} still accepts connections");
        assert!(!dir.exists(), "{} was not deleted", dir.display());
        eprintln!(
            "postmaster gone and directory deleted {:?} after SIGKILL of its parent",
            killed.elapsed()
        );
    }
}
