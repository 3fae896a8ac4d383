//! `drover serve` on the ledger of a real restore (the 300-site demo) while it runs and after:
//! the page in headless Chromium, the JSON API against `drover status`, `/metrics` checked by
//! promtool and scraped by a real Prometheus server (`scripts/test-deps` installs Debian's
//! chromium and prometheus).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;
use crate::support::browser::{browse, chromium};
use crate::support::drover;

/// A `drover serve` process, stopped when dropped.
pub(crate) struct Served {
    child: Child,
    pub(crate) addr: String,
    stderr: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// Starts `drover serve --state <state> --listen <listen>` and waits until it says where it
/// listens.
pub(crate) fn serve(state: &Path, listen: &str, env: &[(&str, &str)]) -> Served {
    // Not beside the ledger: a PostgreSQL ledger's --state is a URL.
    let stderr = std::env::temp_dir().join(format!("drover-serve-{}.err", rand_suffix()));
    let mut served = Served {
        child: Command::new(assert_cmd::cargo::cargo_bin("drover"))
            .args(["serve", "--listen", listen, "--state"])
            .arg(state)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap(),
        addr: String::new(),
        stderr,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let said = std::fs::read_to_string(&served.stderr).unwrap_or_default();
        if let Some(rest) = said.split(" on http://").nth(1) {
            served.addr = rest.split('/').next().unwrap().to_owned();
            return served;
        }
        assert!(Instant::now() < deadline, "serve did not start: {said}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// One HTTP/1.1 request to `addr`: the status and the body.
fn request(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        sock,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    sock.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

pub(crate) fn get(addr: &str, path: &str) -> Value {
    let (status, body) = request(addr, "GET", path, None);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn metrics(addr: &str) -> String {
    let (status, body) = request(addr, "GET", "/metrics", None);
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of one sample in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// The count a tile of the page shows (`data-count="<state>"`), as Chromium rendered it.
fn shown(dom: &str, state: &str) -> Option<u64> {
    let at = dom.find(&format!("data-count=\"{state}\""))?;
    let text = &dom[at..];
    let text = &text[text.find('>')? + 1..];
    text[..text.find('<')?].trim().parse().ok()
}

/// The page as Chromium renders it once its first answers are in.
fn render(chromium: &Path, profile: &Path, addr: &str) -> String {
    let url = format!("http://{addr}/");
    let dom = browse(
        chromium,
        profile,
        &["--virtual-time-budget=3000", "--dump-dom", &url],
    );
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page loaded: {dom}"
    );
    dom
}

/// During a 300-site demo restore the page shows restored sites rising; after it, the page, the
/// API and `/metrics` agree with `drover status` exactly, a restarted server says the same, and
/// a real Prometheus scraping it answers the restored count.
#[test]
fn a_live_restore_is_watched_in_a_browser_and_in_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let log = std::fs::File::create(dir.path().join("demo.log")).unwrap();
    let mut demo = Command::new(assert_cmd::cargo::cargo_bin("drover"))
        .args(["demo", "--sites", "300", "--dir"])
        .arg(&demo_dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let ledger = demo_dir.join("ledger.db");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ledger.exists() {
        assert!(Instant::now() < deadline, "the demo's run never started");
        assert!(demo.try_wait().unwrap().is_none(), "the demo ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let served = serve(&ledger, "127.0.0.1:0", &[]);

    // Chromium watches the run: the restored count it shows rises while the run goes.
    let chromium = chromium();
    let profile = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    while demo.try_wait().unwrap().is_none() {
        let dom = render(&chromium, profile.path(), &served.addr);
        seen.push(shown(&dom, "restored").expect("a restored count"));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        demo.wait().unwrap().success(),
        "the demo restored every site"
    );
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "never falls: {seen:?}"
    );
    assert!(
        seen.iter().any(|&n| n > 0 && n < 300) && seen.first() < seen.last(),
        "rising while the run went: {seen:?}"
    );

    // After the run: the page, the API and the metrics say what `drover status` says.
    let status = support::status_json(&ledger);
    let summary = get(&served.addr, "/api/v1/summary");
    for field in [
        "run_id",
        "plan_hash",
        "sites_total",
        "sites",
        "steps_total",
        "steps",
    ] {
        assert_eq!(summary[field], status[field], "{field}");
    }
    assert_eq!(summary["all_restored"], true);
    assert_eq!(summary["eta_s"], Value::Null);
    let page = get(&served.addr, "/api/v1/sites?limit=1000");
    let rows: Vec<(&str, &str)> = page["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["site"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    let expected: Vec<(&str, &str)> = status["site_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["site"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, expected);
    let one = get(&served.addr, "/api/v1/sites/site-0007");
    assert_eq!(one["state"], "restored");
    assert!(
        one["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "succeeded")
    );
    assert_eq!(
        request(&served.addr, "GET", "/api/v1/sites/site-9999", None).0,
        404
    );
    let dom = render(&chromium, profile.path(), &served.addr);
    for state in [
        "pending",
        "running",
        "restored",
        "failed",
        "blocked",
        "quarantined",
    ] {
        assert_eq!(
            shown(&dom, state),
            status["sites"][state].as_u64(),
            "the page's {state} count"
        );
    }

    // Per customer, the page and the API say what `status --by-customer` says; the page draws
    // the timeline in its frame.
    let by_customer = drover()
        .args(["status", "--by-customer", "--format", "json", "--state"])
        .arg(&ledger)
        .output()
        .unwrap();
    let by_customer: Value = serde_json::from_slice(&by_customer.stdout).unwrap();
    let expected = by_customer["customers"].as_array().unwrap();
    let served_customers = get(&served.addr, "/api/v1/customers?limit=1000");
    assert_eq!(
        served_customers["total"].as_u64(),
        Some(expected.len() as u64)
    );
    for (a, b) in served_customers["customers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(expected)
    {
        for field in ["customer", "contacts", "sites_total", "restored", "sites"] {
            assert_eq!(a[field], b[field], "{field} of {}", b["customer"]);
        }
    }
    let first = expected[0]["customer"].as_str().unwrap();
    let one = get(&served.addr, &format!("/api/v1/customers?customer={first}"));
    assert_eq!(one["total"], 1);
    assert_eq!(one["customers"][0]["customer"], first);
    let rows = dom.matches("<tr data-customer=").count();
    assert_eq!(
        rows,
        expected.len().min(50),
        "one row per customer, 50 a page"
    );
    assert!(
        dom.contains(&format!("data-customer=\"{first}\"")),
        "{first} is on the page"
    );
    let gantt = dom.find("id=\"gantt\"").expect("the timeline frame");
    let frame = &dom[dom[..gantt].rfind('<').unwrap()..];
    let frame = &frame[..frame.find('>').unwrap()];
    assert!(
        frame.contains("srcdoc=") && frame.contains("&lt;svg"),
        "the timeline is drawn in the page: {}",
        &frame[..frame.len().min(300)]
    );

    // A screenshot: the page renders, and its script logs nothing (no error, no warning).
    let png = profile.path().join("page.png");
    let shot = format!("--screenshot={}", png.display());
    let url = format!("http://{}/", served.addr);
    browse(
        &chromium,
        profile.path(),
        &[
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
            "--window-size=1400,900",
            &shot,
            &url,
        ],
    );
    let size = std::fs::metadata(&png).map_or(0, |m| m.len());
    assert!(
        size > 10_000,
        "the screenshot shows a drawn page ({size} bytes)"
    );
    let logged = std::fs::read_to_string(profile.path().join("stderr")).unwrap();
    let console: Vec<&str> = logged.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "the page's console: {console:?}");

    let text = metrics(&served.addr);
    for state in [
        "pending",
        "running",
        "restored",
        "failed",
        "blocked",
        "quarantined",
    ] {
        assert_eq!(
            sample(&text, &format!("drover_sites{{state=\"{state}\"}}")),
            status["sites"][state].as_f64().unwrap(),
            "{state}"
        );
    }
    let steps: f64 = text
        .lines()
        .filter(|l| l.starts_with("drover_steps{state=\"succeeded\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(steps >= status["steps"]["succeeded"].as_f64().unwrap());
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test-deps installs Debian's prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Restarted, it says exactly the same: nothing is kept in the process.
    let addr = served.addr.clone();
    drop(served);
    let again = serve(&ledger, &addr, &[]);
    assert_eq!(metrics(&again.addr), text);

    // A real Prometheus scrapes it and answers the restored count.
    scraped_by_prometheus(dir.path(), &again.addr, 300.0);

    // Guarded: with a token every endpoint wants it; any address but loopback is warned of;
    // nothing writes.
    let guarded = serve(&ledger, "0.0.0.0:0", &[("DROVER_SERVE_TOKEN", "s3cret")]);
    let said = std::fs::read_to_string(&guarded.stderr).unwrap();
    assert!(said.contains("warning: listening on 0.0.0.0:"), "{said}");
    let port = guarded.addr.rsplit(':').next().unwrap();
    let local = format!("127.0.0.1:{port}");
    for path in [
        "/metrics",
        "/api/v1/summary",
        "/api/v1/sites",
        "/report",
        "/healthz",
    ] {
        assert_eq!(request(&local, "GET", path, None).0, 401, "{path}");
        assert_eq!(
            request(&local, "GET", path, Some("s3cret")).0,
            200,
            "{path}"
        );
    }
    // The page itself holds no data (a browser cannot send the token to open it): it asks for
    // the token and sends it with every request for data.
    let (status, page) = request(&local, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(!page.contains("site-0001"));
    assert_eq!(request(&local, "GET", "/readyz", Some("s3cret")).0, 200);
    assert_eq!(
        request(&local, "POST", "/api/v1/summary", Some("s3cret")).0,
        405
    );
}

/// Starts Prometheus scraping `target` every second and waits (at most a minute) until its
/// query API answers `drover_sites{state="restored"}` with `restored`.
fn scraped_by_prometheus(dir: &Path, target: &str, restored: f64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = support::write(
        dir,
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: drover\n    \
             static_configs:\n      - targets: ['{target}']\n"
        ),
    );
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus (scripts/test-deps installs Debian's prometheus)");
    let addr = format!("127.0.0.1:{port}");
    let query = "/api/v1/query?query=drover_sites%7Bstate%3D%22restored%22%7D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let answer = std::net::TcpStream::connect(&addr)
            .ok()
            .map(|_| request(&addr, "GET", query, None))
            .filter(|(status, _)| *status == 200)
            .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .and_then(|doc| {
                doc["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_owned)
            });
        if let Some(answer) = answer {
            break answer;
        }
        if Instant::now() > deadline {
            let _ = prometheus.kill();
            panic!(
                "Prometheus never scraped drover: {}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(answer.parse::<f64>().unwrap(), restored);
}
