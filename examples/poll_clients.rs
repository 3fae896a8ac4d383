//! The load for `scripts/bench-serve`: CLIENTS clients polling `drover serve` as status pages and
//! scrapers do, until the file STOP exists; then the answers' latency.
//!
//! ```text
//! cargo run --release --example poll_clients -- 127.0.0.1:8080 100 /tmp/stop [sites]
//! ```
//!
//! Each client keeps one connection alive, asks once a second at its own moment in the second
//! (pages are not opened in step), and takes in turn the summary, a page of 100 sites,
//! `/metrics` and the failures. Written in Rust rather than Python so that the load generator,
//! which shares the machine's two cores with the restore it measures, costs as little as it can.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: poll_clients <addr> <clients> <stop file> [sites]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let clients: usize = args[2].parse().expect("a number of clients");
    let stop = PathBuf::from(&args[3]);
    let sites: usize = args
        .get(4)
        .map_or(300, |s| s.parse().expect("a number of sites"));
    let paths = [
        "/api/v1/summary".to_owned(),
        "/api/v1/sites?offset={}&limit=100".to_owned(),
        "/metrics".to_owned(),
        "/api/v1/failures".to_owned(),
    ];
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0usize));
    let mut tasks = Vec::new();
    for n in 0..clients {
        let (addr, stop, paths) = (addr.clone(), stop.clone(), paths.clone());
        let (latencies, errors) = (Arc::clone(&latencies), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            // One connection per client, kept alive, as a browser or Prometheus keeps it.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            // Spread over the second by client number: not in step with each other.
            tokio::time::sleep(Duration::from_millis((n * 1000 / clients.max(1)) as u64)).await;
            let mut i = n;
            while !stop.exists() {
                let path = paths[i % paths.len()].replace("{}", &((i * 100) % sites).to_string());
                i += 1;
                let start = Instant::now();
                let ok = match client.get(format!("http://{addr}{path}")).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let took = start.elapsed();
                if ok {
                    latencies.lock().unwrap().push(took);
                } else {
                    *errors.lock().unwrap() += 1;
                }
                tokio::time::sleep(Duration::from_secs(1).saturating_sub(took)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    if l.is_empty() {
        println!("  no answers, errors {}", errors.lock().unwrap());
        return;
    }
    let q = |p: f64| l[((p * l.len() as f64) as usize).min(l.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "  answers {}, errors {}, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        l.len(),
        errors.lock().unwrap(),
        q(0.5),
        q(0.99),
        l[l.len() - 1].as_secs_f64() * 1000.0
    );
}
