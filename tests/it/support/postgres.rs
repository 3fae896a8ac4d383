//! A throwaway PostgreSQL server for the tests that need one: one server per test binary,
//! started on first use, one database per test.
//!
//! The server is initialised into a temporary directory, listens on 127.0.0.1 (and a socket in
//! that directory) on a port chosen at run time, and runs without fsync (functional tests;
//! benchmarks keep it on). It is stopped and its directory removed when this process ends,
//! however it ends (a failed assertion, a panic, a SIGKILL): a small watchdog process waits for
//! this process to exit, then stops the server. `initdb` refuses to run as root, so as root the
//! server's commands run as the `postgres` user. `scripts/test-deps` installs the server package
//! where it is missing.
//!
//! The server offers TLS (plain connections stay allowed), with a certificate for 127.0.0.1 and
//! localhost signed by a CA made for this run ([`Server::ca`]), so that drover's default
//! `sslmode=prefer` connections are encrypted, and `verify-full` can be tested.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Server {
    pub port: u16,
    dir: PathBuf,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The binary's server, started on first use.
pub fn server() -> &'static Server {
    SERVER.get_or_init(start)
}

/// A new, empty database on the binary's server: its URL (`postgres://drover@127.0.0.1:<port>/<db>`).
pub fn database(name: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let server = server();
    let db = format!("{name}_{}", SEQ.fetch_add(1, Ordering::Relaxed));
    let mut admin = postgres::Client::connect(&server.url("postgres"), postgres::NoTls)
        .expect("connect to the test server");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .expect("create a test database");
    server.url(&db)
}

/// The rows `sql` gives on the database at `url` (none when it fails: a table not made yet).
pub fn rows(url: &str, sql: &str) -> Vec<postgres::Row> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    client.query(sql, &[]).unwrap_or_default()
}

impl Server {
    pub fn url(&self, db: &str) -> String {
        format!("postgres://drover@127.0.0.1:{}/{db}", self.port)
    }

    /// The certificate (PEM) of the CA that signed the server's.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

/// The directory of `initdb` and `pg_ctl`: `pg_config --bindir`, Debian's versioned directory,
/// or `PATH`.
fn bin(name: &str) -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"));
    from_pg_config
        .into_iter()
        .chain(debian)
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args…`, as the `postgres` user when this process is root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

fn must(cmd: &mut Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("{what}: cannot run {cmd:?}: {e} (scripts/test-deps installs PostgreSQL)")
    });
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new CA in `dir`: its certificate `<name>.crt` and key `<name>.key`.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    must(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650"])
            .args(["-subj", &format!("/CN=drover test {name}")])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(dir.join(format!("{name}.key")))
            .arg("-out")
            .arg(dir.join(format!("{name}.crt"))),
        "make a test CA with openssl (scripts/test-deps installs it)",
    );
    dir.join(format!("{name}.crt"))
}

/// The server's certificate and key in `dir`, for 127.0.0.1 and localhost, signed by a new CA.
fn certificates(dir: &Path) {
    make_ca(dir, "ca");
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write server.ext");
    must(
        Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=localhost",
            ])
            .arg("-keyout")
            .arg(dir.join("server.key"))
            .arg("-out")
            .arg(dir.join("server.csr")),
        "make the server's key",
    );
    must(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "3650", "-CAcreateserial", "-in"])
            .arg(dir.join("server.csr"))
            .arg("-CA")
            .arg(dir.join("ca.crt"))
            .arg("-CAkey")
            .arg(dir.join("ca.key"))
            .arg("-extfile")
            .arg(dir.join("server.ext"))
            .arg("-out")
            .arg(dir.join("server.crt")),
        "sign the server's certificate",
    );
    // The server refuses a key others can read, or one it does not own.
    must(
        Command::new("chmod").arg("600").arg(dir.join("server.key")),
        "chmod the server's key",
    );
    if is_root() {
        must(
            Command::new("chown")
                .arg("postgres:")
                .arg(dir.join("server.key"))
                .arg(dir.join("server.crt")),
            "chown the server's key",
        );
    }
}

/// The file in a server's directory naming the test process it serves.
const OWNER: &str = "owner.pid";

/// The shell command that stops the server in `dir` and removes the directory.
fn stop_command(dir: &Path) -> String {
    format!(
        "{runuser}'{pg_ctl}' -D '{data}' -m immediate -w stop; rm -rf '{dir}'",
        runuser = if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        },
        pg_ctl = bin("pg_ctl").display(),
        data = dir.join("data").display(),
        dir = dir.display(),
    )
}

/// Stops the servers of earlier test runs whose process is gone and whose watchdog did not
/// stop them (it was killed too), and removes their directories.
fn stop_abandoned() {
    let temp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&temp) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("drover-pg-"));
        let Some(owner) = std::fs::read_to_string(dir.join(OWNER))
            .ok()
            .filter(|_| ours)
            .and_then(|p| p.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{owner}")).exists() {
            let _ = Command::new("sh")
                .args(["-c", &stop_command(&dir)])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn start() -> Server {
    stop_abandoned();
    let dir = tempfile::Builder::new()
        .prefix("drover-pg-")
        .tempdir()
        .expect("a temporary directory")
        .keep();
    certificates(&dir);
    if is_root() {
        must(
            Command::new("chown").arg("postgres:").arg(&dir),
            "chown the server directory",
        );
    }
    let data = dir.join("data");
    must(
        as_server_user(&bin("initdb")).arg("-D").arg(&data).args([
            "-U",
            "drover",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]),
        "initdb",
    );
    // Stop the server and remove its directory once this process has ended, however it ends:
    // a watchdog in a process group of its own, deaf to the signals a Ctrl-C or a CI runner
    // sends to the test's group (it died with them, and left the server running). Should it
    // be killed anyway, the next test run stops the server ([`stop_abandoned`]).
    std::fs::write(dir.join(OWNER), std::process::id().to_string()).expect("write the owner");
    let stop = format!(
        "trap '' INT HUP TERM QUIT; while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {}",
        stop_command(&dir),
        pid = std::process::id(),
    );
    #[expect(
        clippy::zombie_processes,
        reason = "the watchdog outlives this process on purpose: it stops the server after it"
    )]
    Command::new("sh")
        .args(["-c", &stop])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server's watchdog");
    // A port picked now may be taken before the server binds it: try a few.
    for _ in 0..5 {
        let port = free_port();
        let options = format!(
            "-k {d} -h 127.0.0.1 -p {port} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c ssl=on -c ssl_cert_file={d}/server.crt \
             -c ssl_key_file={d}/server.key",
            d = dir.display()
        );
        let started = as_server_user(&bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "30", "-o", &options, "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl");
        if started.success() {
            return Server { port, dir };
        }
    }
    panic!(
        "the test PostgreSQL server did not start: {}",
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    );
}
