//! Issue #15: one coordinator (`drover run --workers`) and separate `drover worker` processes
//! share a reference-platform restore through a PostgreSQL ledger on the suite's throwaway
//! server; workers die and are fenced, and the run finishes with every site restored once.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drover::platform::Platform;

fn drover_bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("drover")
}

/// `drover <args>` in `dir` (so every worker stages in the same place), its stderr in
/// `dir/<name>.err`.
fn spawn_in(dir: &Path, args: &[&str], name: &str) -> Child {
    Command::new(drover_bin())
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap())
        .spawn()
        .unwrap()
}

/// `drover worker` on `state`, in `dir`, with 6 slots, a 2 s lease and a staging area of its
/// own, `<name>.staging` (as on a machine of its own: a step reading a fetch that ran elsewhere
/// fetches it again).
fn worker(dir: &Path, state: &str, name: &str) -> Child {
    let staging = format!("{name}.staging");
    spawn_in(
        dir,
        &[
            "worker",
            "--slots",
            "6",
            "--lease",
            "2s",
            "--staging",
            &staging,
            "--state",
            state,
        ],
        name,
    )
}

/// Stops a worker as Ctrl-C does and returns how many fetches it ran again (its exit line).
fn refetches_of(mut worker: Child, dir: &Path, name: &str) -> usize {
    signal("-INT", worker.id());
    exit_of(&mut worker, 60);
    let said = std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap();
    let line = said
        .lines()
        .find(|l| l.contains("fetches run again"))
        .unwrap_or_else(|| panic!("{name}'s exit line: {said}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "fetches").unwrap();
    words[at - 1].parse().unwrap()
}

/// Waits until the coordinator has created ledger `w` in the database at `url`.
fn ledger_created(url: &str) {
    wait_for("the ledger", 120, || {
        !query(url, "SELECT 1 FROM drover_runs WHERE ledger = 'w'").is_empty()
    });
}

/// Waits for `child` to exit (at most `secs`) and returns how it ended.
fn exit_of(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

use support::postgres::rows as query;

fn wait_for(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `drover run --workers` of the demo platform's request in `d` with the shipped workflow,
/// holding the run for `lease`, its stderr in `d/<name>.err`; returns once the ledger exists.
fn coordinate_demo(d: &Path, url: &str, state: &str, lease: &str, name: &str) -> Child {
    let workflow = support::shipped_workflow();
    let coordinator = spawn_in(
        d,
        &[
            "run",
            "--yes",
            "--max-sites",
            "1000",
            "--workers",
            "--lease",
            lease,
            "-w",
            workflow.to_str().unwrap(),
            "-r",
            "request.toml",
            "--state",
            state,
        ],
        name,
    );
    ledger_created(url);
    coordinator
}

/// Every one of the `sites` demo sites in `d` is restored as it was, reactivated once and its
/// customer notified once (`context` begins each failure's message).
fn restored_once(d: &Path, sites: usize, context: &str) {
    let out = support::drover()
        .args(["demo", "verify", "--format", "json", "--dir"])
        .arg(d)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["all_equal"], true, "{context}{v}");
    assert_eq!(v["one_reactivation_each"], true, "{context}{v}");
    let platform = Platform::open(d.join("platform")).unwrap();
    let mut per_site: BTreeMap<String, usize> = BTreeMap::new();
    for m in platform.outbox().unwrap() {
        *per_site.entry(m.site).or_default() += 1;
    }
    assert_eq!(per_site.len(), sites, "{context}{per_site:?}");
    assert!(per_site.values().all(|&n| n == 1), "{context}{per_site:?}");
}

/// Sends `sig` (`-STOP`, `-CONT`, `-INT`) to process `pid`.
fn signal(sig: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A workflow of one `sleep` step of `duration` per site and a request of `sites` sites, in
/// `d`: the run the small tests coordinate.
fn sleep_run(d: &Path, duration: &str, sites: usize) -> (String, String) {
    let wf = support::write(
        d,
        "wf.toml",
        format!(
            "[workflow]\nname = \"slow\"\n[products.p]\n[steps.slow]\nscope = \"product\"\n\
             kind = \"sleep\"\nparams = {{ duration = \"{duration}\" }}\nestimate = \"{duration}\"\n"
        ),
    );
    let mut req =
        String::from("[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n");
    for i in 0..sites {
        req.push_str(&format!("[[sites]]\nid = \"site-{i:02}\"\n"));
    }
    let req = support::write(d, "req.toml", req);
    (
        wf.to_str().unwrap().to_owned(),
        req.to_str().unwrap().to_owned(),
    )
}

/// A 300-site restore by one coordinator and three worker processes, each with a staging area
/// of its own, one of them SIGKILLed in the middle of its steps and its staging lost with it:
/// those steps run again elsewhere after its lease, what it had fetched is fetched again where
/// it is read, every site is restored and verified, and each was reactivated and notified
/// exactly once.
#[test]
fn three_workers_restore_300_sites_and_a_killed_worker_s_steps_are_rescued() {
    let url = support::postgres::database("workers");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::demo(d, "init", 300, &[]);
    support::demo(d, "incident", 300, &[]);
    let state = format!("{url}?ledger=w");
    let mut coordinator = coordinate_demo(d, &url, &state, "15s", "coordinator");
    let mut workers: Vec<Child> = (0..3)
        .map(|i| worker(d, &state, &format!("w{i}")))
        .collect();
    let victim = format!("%:{}", workers[0].id());

    // Killed while it holds steps, once it has finished some.
    let held = |state: &str| -> usize {
        query(
            &url,
            &format!(
                "SELECT step FROM drover_work WHERE worker LIKE '{victim}' AND state = '{state}'"
            ),
        )
        .len()
    };
    wait_for("the first worker at work", 300, || {
        held("done") >= 20 && held("running") >= 1
    });
    workers[0].kill().unwrap(); // SIGKILL
    workers[0].wait().unwrap();
    // Its machine is gone, and what it fetched with it.
    std::fs::remove_dir_all(d.join("w0.staging")).unwrap();
    let orphans: Vec<String> = query(
        &url,
        &format!("SELECT step FROM drover_work WHERE worker LIKE '{victim}' AND state = 'running'"),
    )
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert!(!orphans.is_empty(), "the worker died holding steps");

    let status = exit_of(&mut coordinator, 600);
    let said = std::fs::read_to_string(d.join("coordinator.err")).unwrap();
    assert!(status.success(), "the coordinator: {said}");
    let refetched: usize = workers
        .drain(..)
        .enumerate()
        .skip(1)
        .map(|(i, w)| refetches_of(w, d, &format!("w{i}")))
        .sum();
    assert!(
        refetched > 0,
        "readers fetched again what was not on their machine"
    );
    // Many sites read one shard's snapshot: a worker fetches each lost fetch again once, not
    // once per reader (and not several times at once into the same files).
    let lost = query(
        &url,
        &format!(
            "SELECT step FROM drover_work WHERE worker LIKE '{victim}' AND state = 'done' \
             AND kind = 'fetch'"
        ),
    )
    .len();
    assert!(
        refetched <= 2 * lost,
        "{refetched} fetches run again by two workers for {lost} fetches lost"
    );

    // Every orphan was finished by another worker.
    for step in &orphans {
        let row = &query(
            &url,
            &format!("SELECT worker, state, attempt FROM drover_work WHERE step = '{step}'"),
        )[0];
        let (by, state, attempt): (String, String, i32) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(state, "done", "{step}");
        assert!(
            !by.ends_with(&victim[1..]),
            "{step} was finished by another worker"
        );
        assert!(attempt >= 2, "{step} ran again under a new attempt");
    }
    let by_worker = query(
        &url,
        "SELECT worker, count(*) FROM drover_work WHERE state = 'done' GROUP BY worker",
    );
    assert_eq!(by_worker.len(), 3, "all three workers did steps");

    restored_once(d, 300, "");
}

/// The steps recorded succeeded in ledger `w`, with the attempt their work ran under.
fn succeeded_work(url: &str) -> BTreeMap<String, i32> {
    query(
        url,
        "SELECT s.id, w.attempt FROM drover_steps s JOIN drover_work w \
         ON w.ledger = s.ledger AND w.step = s.id \
         WHERE s.ledger = 'w' AND s.state = 'succeeded'",
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// SIGKILL of the coordinator: a standby (`resume --workers --standby`) takes the run over at
/// once (the holder was on this machine), the workers go on, and the run finishes; no step
/// recorded succeeded ran again, and each site was reactivated and notified once.
#[test]
fn a_standby_takes_over_from_a_killed_coordinator_and_nothing_finished_runs_again() {
    let url = support::postgres::database("takeover");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::demo(d, "init", 60, &[]);
    support::demo(d, "incident", 60, &[]);
    let state = format!("{url}?ledger=w");
    let mut coordinator = coordinate_demo(d, &url, &state, "15s", "coordinator");
    let mut standby = spawn_in(
        d,
        &["resume", "--workers", "--standby", "--state", &state],
        "standby",
    );
    let mut workers: Vec<Child> = (0..2)
        .map(|i| worker(d, &state, &format!("w{i}")))
        .collect();
    let notified = || {
        query(
            &url,
            "SELECT 1 FROM drover_steps WHERE ledger = 'w' AND id LIKE '%/notify' \
             AND state = 'succeeded'",
        )
        .len()
    };
    wait_for("a third of the sites", 300, || notified() >= 20);
    coordinator.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    coordinator.wait().unwrap();
    let at_kill = succeeded_work(&url);
    wait_for("the standby to take over", 30, || {
        std::fs::read_to_string(d.join("standby.err"))
            .unwrap_or_default()
            .contains("taking over")
    });
    let takeover = killed.elapsed();
    assert!(takeover < Duration::from_secs(5), "took {takeover:?}");
    let status = exit_of(&mut standby, 600);
    let said = std::fs::read_to_string(d.join("standby.err")).unwrap();
    assert!(status.success(), "the standby: {said}");
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }

    let after = succeeded_work(&url);
    for (step, attempt) in &at_kill {
        assert_eq!(
            after.get(step),
            Some(attempt),
            "{step} ran again after the takeover"
        );
    }
    restored_once(d, 60, "");
    eprintln!("coordinator takeover after SIGKILL: {takeover:?}");
}

/// A worker paused (SIGSTOP) past its lease: its steps run again on another worker; resumed
/// (SIGCONT), its late results change nothing, and it says they were fenced.
#[test]
fn a_paused_worker_s_late_results_are_fenced() {
    let url = support::postgres::database("fenced");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wf = support::write(
        d,
        "wf.toml",
        r#"
[workflow]
name = "slow"
[products.p]
[steps.slow]
scope = "product"
kind = "sleep"
params = { duration = "3s" }
estimate = "3s"
retry = { attempts = 3, initial_backoff = "100ms", max_backoff = "1s" }
"#,
    );
    let req = support::write(
        d,
        "req.toml",
        "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"p\"]\n\
         [[sites]]\nid = \"site-1\"\n[[sites]]\nid = \"site-2\"\n",
    );
    let state = format!("{url}?ledger=w");
    let (wf, req) = (wf.to_str().unwrap(), req.to_str().unwrap());
    let mut coordinator = spawn_in(
        d,
        &[
            "run",
            "--yes",
            "--workers",
            "-w",
            wf,
            "-r",
            req,
            "--state",
            &state,
        ],
        "coordinator",
    );
    ledger_created(&url);
    let mut paused = spawn_in(
        d,
        &["worker", "--slots", "4", "--lease", "1s", "--state", &state],
        "paused",
    );
    let mine = format!("%:{}", paused.id());
    wait_for("both steps on the first worker", 60, || {
        query(
            &url,
            &format!("SELECT 1 FROM drover_work WHERE worker LIKE '{mine}' AND state = 'running'"),
        )
        .len()
            == 2
    });
    signal("-STOP", paused.id());
    let mut other = worker(d, &state, "other");
    let status = exit_of(&mut coordinator, 60);
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(d.join("coordinator.err")).unwrap()
    );
    let rows = query(&url, "SELECT step, worker, state, attempt FROM drover_work");
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let (step, by, state): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        assert_eq!(state, "done", "{step}");
        assert!(
            !by.ends_with(&mine[1..]),
            "{step} was finished by the other worker"
        );
        assert!(r.get::<_, i32>(3) >= 2, "{step} ran under a new attempt");
    }
    let before: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();

    // Woken up: its two late results are refused, and change nothing.
    signal("-CONT", paused.id());
    wait_for("the paused worker to notice", 30, || {
        std::fs::read_to_string(d.join("paused.err"))
            .unwrap_or_default()
            .matches("fenced")
            .count()
            >= 2
    });
    signal("-INT", paused.id());
    paused.wait().unwrap();
    let said = std::fs::read_to_string(d.join("paused.err")).unwrap();
    assert!(said.contains("2 results fenced"), "{said}");
    let after: Vec<(String, String, String)> =
        query(&url, "SELECT step, worker, state, attempt FROM drover_work")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
    assert_eq!(before, after, "the late results changed nothing");
    let status = support::drover()
        .args(["status", "--format", "json", "--state", &state])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["all_restored"], true, "{doc}");
    // The audit trail says which worker ran each attempt, and how it ended.
    let audit = support::drover()
        .args(["audit", "--format", "json", "--state", &state])
        .output()
        .unwrap();
    let audit: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    let outcomes = |worker: &str| -> Vec<String> {
        let mut o: Vec<String> = audit["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["worker"].as_str().unwrap().ends_with(worker))
            .map(|a| a["outcome"].as_str().unwrap_or("unfinished").to_owned())
            .collect();
        o.sort();
        o
    };
    assert_eq!(outcomes(&mine[1..]), ["fenced", "fenced"], "{audit}");
    assert_eq!(
        outcomes(&format!(":{}", other.id())),
        ["done", "done"],
        "{audit}"
    );
    other.kill().unwrap();
    other.wait().unwrap();
}

/// `drover stop`, from another process: the coordinator drains (exit 130, steps in flight
/// finish, nothing new starts) and `resume --workers` finishes the run. A ledger file's run is
/// stopped where it runs: refused, saying so.
#[test]
fn drover_stop_drains_a_coordinated_run_from_anywhere() {
    let url = support::postgres::database("stop");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (wf, req) = sleep_run(d, "500ms", 20);
    let state = format!("{url}?ledger=w");
    let coordinator = Command::new(drover_bin())
        .args(["run", "--yes", "--workers", "-w"])
        .arg(&wf)
        .arg("-r")
        .arg(&req)
        .args(["--state", &state])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ledger_created(&url);
    let mut one = spawn_in(d, &["worker", "--slots", "2", "--state", &state], "one");
    wait_for("a first step done", 60, || {
        !query(&url, "SELECT 1 FROM drover_work WHERE state = 'done'").is_empty()
    });
    let out = support::drover()
        .args(["stop", "--state", &state])
        .output()
        .unwrap();
    let said = support::exited(&out, 0);
    assert!(said.contains("drain"), "{said}");
    let out = coordinator.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{said}");
    assert!(said.contains("stop asked"), "{said}");
    let doc = serde_json::from_slice::<serde_json::Value>(
        &support::drover()
            .args(["status", "--format", "json", "--state", &state])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let restored = doc["sites"]["restored"].as_u64().unwrap();
    assert!(restored > 0 && restored < 20, "{doc}");
    assert_eq!(
        doc["steps"]["running"], 0,
        "steps in flight finished: {doc}"
    );

    let out = support::drover()
        .args(["resume", "--workers", "--state", &state])
        .current_dir(d)
        .output()
        .unwrap();
    support::exited(&out, 0);
    one.kill().unwrap();
    one.wait().unwrap();

    // A file's run is stopped where it runs.
    let file = d.join("file.db");
    support::exited(&support::run(&wf, &req, &file).output().unwrap(), 0);
    let out = support::drover()
        .args(["stop", "--state"])
        .arg(&file)
        .output()
        .unwrap();
    let said = support::exited(&out, 2);
    assert!(said.contains("stopped where it runs"), "{said}");
}

/// The process ID of ledger `w`'s holder (its coordinator), if one holds it.
fn holder_pid(url: &str) -> Option<u32> {
    query(url, "SELECT holder FROM drover_holders WHERE ledger = 'w'")
        .first()
        .map(|r| {
            let holder: serde_json::Value = serde_json::from_str(r.get::<_, &str>(0)).unwrap();
            holder["pid"].as_u64().unwrap() as u32
        })
}

/// 20 SIGKILLs at random moments during one restore, of workers and of the coordinator: a new
/// worker replaces each dead one and a standby takes over from each dead coordinator. The run
/// finishes; no step the ledger recorded succeeded ran again, no work was reported done twice,
/// and no site was reactivated or notified twice.
#[test]
fn twenty_random_sigkills_of_workers_and_coordinators_repeat_nothing() {
    use rand::{RngExt, SeedableRng};
    let url = support::postgres::database("chaos");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::demo(d, "init", 80, &[]);
    support::demo(d, "incident", 80, &[]);
    let state = format!("{url}?ledger=w");
    let coordinator = coordinate_demo(d, &url, &state, "10s", "c0");
    let standby = |n: usize| {
        let child = spawn_in(
            d,
            &[
                "resume",
                "--workers",
                "--standby",
                "--lease",
                "10s",
                "--state",
                &state,
            ],
            &format!("c{n}"),
        );
        (child, format!("c{n}"))
    };
    let mut coordinators = vec![(coordinator, "c0".to_owned()), standby(1)];
    let mut workers: Vec<Child> = (0..3)
        .map(|i| worker(d, &state, &format!("w{i}")))
        .collect();
    let (mut started_c, mut started_w) = (2, 3);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("chaos seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // Every step seen recorded succeeded, with the attempt its work ran under.
    let mut seen: BTreeMap<String, i32> = BTreeMap::new();
    let mut coordinator_kills = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..900)));
        for (step, attempt) in succeeded_work(&url) {
            seen.entry(step).or_insert(attempt);
        }
        let holder =
            holder_pid(&url).and_then(|pid| coordinators.iter().position(|c| c.0.id() == pid));
        match holder {
            Some(i) if rng.random_bool(0.3) => {
                let (mut dead, _) = coordinators.swap_remove(i);
                dead.kill().unwrap(); // SIGKILL
                dead.wait().unwrap();
                coordinators.push(standby(started_c));
                started_c += 1;
                coordinator_kills += 1;
            }
            _ => {
                let i = rng.random_range(0..workers.len());
                workers[i].kill().unwrap(); // SIGKILL
                workers[i].wait().unwrap();
                workers[i] = worker(d, &state, &format!("w{started_w}"));
                started_w += 1;
            }
        }
        let running = coordinators
            .iter_mut()
            .any(|c| c.0.try_wait().unwrap().is_none());
        assert!(running, "the run ended before the 20 kills");
    }
    assert!(
        coordinator_kills > 0,
        "seed {seed}: no coordinator was killed"
    );
    let notified = query(
        &url,
        "SELECT 1 FROM drover_steps WHERE ledger = 'w' AND id LIKE '%/notify' \
         AND state = 'succeeded'",
    )
    .len();
    assert!(notified < 80, "the run was still going at the 20th kill");
    for (c, name) in &mut coordinators {
        let status = exit_of(c, 600);
        let said = std::fs::read_to_string(d.join(format!("{name}.err"))).unwrap();
        assert!(
            status.success(),
            "seed {seed}: coordinator {name} failed: {said}"
        );
    }
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }

    let after = succeeded_work(&url);
    for (step, attempt) in &seen {
        assert_eq!(
            after.get(step),
            Some(attempt),
            "seed {seed}: {step} ran again after it was recorded succeeded"
        );
    }
    let twice = query(
        &url,
        "SELECT step FROM drover_attempts WHERE ledger = 'w' AND outcome = 'done' \
         GROUP BY step HAVING count(*) > 1",
    );
    assert!(twice.is_empty(), "seed {seed}: work reported done twice");
    restored_once(d, 80, &format!("seed {seed}: "));
}

/// A coordinator paused (SIGSTOP) past its hold: a standby takes the run over once the hold
/// lapsed by the database's clock, and finishes it. Resumed (SIGCONT), the old coordinator finds
/// itself deposed, stops (exit 4, saying so) and changes nothing.
#[test]
fn a_paused_coordinator_is_deposed_and_changes_nothing() {
    let url = support::postgres::database("deposed");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (wf, req) = sleep_run(d, "300ms", 30);
    let (wf, req) = (wf.as_str(), req.as_str());
    let state = format!("{url}?ledger=w");
    let mut old = spawn_in(
        d,
        &[
            "run",
            "--yes",
            "--workers",
            "--lease",
            "3s",
            "-w",
            wf,
            "-r",
            req,
            "--state",
            &state,
        ],
        "old",
    );
    ledger_created(&url);
    let mut standby = spawn_in(
        d,
        &[
            "resume",
            "--workers",
            "--standby",
            "--lease",
            "3s",
            "--state",
            &state,
        ],
        "standby",
    );
    let mut one = spawn_in(d, &["worker", "--slots", "2", "--state", &state], "one");
    wait_for("a first step done", 60, || {
        !query(&url, "SELECT 1 FROM drover_work WHERE state = 'done'").is_empty()
    });
    signal("-STOP", old.id());
    let paused = Instant::now();
    let status = exit_of(&mut standby, 120);
    let said = std::fs::read_to_string(d.join("standby.err")).unwrap();
    assert!(status.success(), "the standby: {said}");
    assert!(said.contains("taking over"), "{said}");
    assert!(
        paused.elapsed() >= Duration::from_secs(3),
        "the standby waited for the hold to lapse"
    );
    let before = query(
        &url,
        "SELECT string_agg(step || attempt || state, ',' ORDER BY step) FROM drover_work",
    )[0]
    .get::<_, String>(0);
    let events_before = query(&url, "SELECT count(*) FROM drover_events")[0].get::<_, i64>(0);

    signal("-CONT", old.id());
    let status = exit_of(&mut old, 30);
    let said = std::fs::read_to_string(d.join("old.err")).unwrap();
    assert_eq!(status.code(), Some(4), "{said}");
    assert!(said.contains("no longer holds"), "{said}");
    let after = query(
        &url,
        "SELECT string_agg(step || attempt || state, ',' ORDER BY step) FROM drover_work",
    )[0]
    .get::<_, String>(0);
    assert_eq!(before, after, "the deposed coordinator queued nothing");
    let events_after = query(&url, "SELECT count(*) FROM drover_events")[0].get::<_, i64>(0);
    assert_eq!(events_before, events_after, "and recorded nothing");
    let doc: serde_json::Value = serde_json::from_slice(
        &support::drover()
            .args(["status", "--format", "json", "--state", &state])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(doc["all_restored"], true, "{doc}");
    one.kill().unwrap();
    one.wait().unwrap();
}
