//! Planner unit tests on small inline workflows.

use std::time::Duration;

use super::*;
use crate::source::Source;

const WF: &str = r#"
[workflow]
name = "t"
[pools.db]
capacity = 2
[products.a]
[products.b]
after = ["a"]
[gate]
step = "load"
waits_for = "check"
[steps.get]
scope = "shared"
unit = "shard"
kind = "fetch"
estimate = "10s"
scale = { attribute = "gb", per = "1s" }
[steps.load]
scope = "product"
kind = "restore-tenant"
after = ["get"]
uses = { db = 1 }
estimate = "20s"
scale = { attribute = "gb", per = "10s" }
[steps.check]
scope = "product"
kind = "validate"
after = ["load"]
estimate = "5s"
[steps.up]
scope = "site"
kind = "reactivate"
after = ["check"]
estimate = "1s"
"#;

fn plan_for(sites: &str) -> Plan {
    let wf = Workflow::parse(&Source::new("wf.toml", WF), crate::steps::KNOWN_KINDS).unwrap();
    let text = format!(
        "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"a\", \"b\"]\n{sites}"
    );
    let req = Request::parse(&Source::new("req.toml", text), |_| unreachable!()).unwrap();
    plan(&wf, &req, &PlanOptions::default()).unwrap()
}

fn step<'p>(plan: &'p Plan, id: &str) -> &'p Step {
    plan.steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

const TWO_SITES: &str = r#"
[[sites]]
id = "site-1"
attrs = { gb = 2, "a.shard" = "a-1", "b.shard" = "b-1" }
[[sites]]
id = "site-2"
attrs = { gb = 1, "a.shard" = "a-1", "b.shard" = "b-2" }
"#;

#[test]
fn shared_estimate_sums_its_sites_and_others_scale_per_site() {
    let p = plan_for(TWO_SITES);
    // a-1 is shared by both sites: 10s + (2 + 1) × 1s.
    assert_eq!(step(&p, "shard/a-1/get").estimate, Duration::from_secs(13));
    assert_eq!(step(&p, "shard/b-2/get").estimate, Duration::from_secs(11));
    assert_eq!(step(&p, "site-1/a/load").estimate, Duration::from_secs(40));
}

#[test]
fn upward_rank_is_the_longest_path_to_a_sink() {
    let p = plan_for(TWO_SITES);
    // site-1: check a (5) -> load b (40) -> check b (5) -> up (1)
    assert_eq!(step(&p, "site-1/up").rank, Duration::from_secs(1));
    assert_eq!(step(&p, "site-1/b/load").rank, Duration::from_secs(46));
    assert_eq!(step(&p, "site-1/a/check").rank, Duration::from_secs(51));
    // get a-1 (13) -> load a site-1 (40) -> 51
    assert_eq!(
        step(&p, "shard/a-1/get").rank,
        Duration::from_secs(13 + 40 + 51)
    );
    let first = &p.steps[p.critical_path[0] as usize];
    assert_eq!(first.id, "shard/a-1/get");
    assert_eq!(
        p.steps[*p.critical_path.last().unwrap() as usize].id,
        "site-1/up"
    );
    assert_eq!(p.critical_path_length(), Duration::from_secs(104));
}

#[test]
fn lower_bound_takes_the_busiest_pool_when_it_dominates() {
    let site = |i: u32| {
        format!(
            "[[sites]]\nid = \"site-{i}\"\n\
             attrs = {{ gb = 10, \"a.shard\" = \"a-1\", \"b.shard\" = \"b-1\" }}\n"
        )
    };
    let many: String = (1..=40).map(site).collect();
    let p = plan_for(&many);
    let db = &p.pools[0];
    // 80 loads of 20s + 100s on 2 slots.
    assert_eq!(db.demand, Duration::from_secs(80 * 120));
    // No load starts before its shard's snapshot is fetched (10s + 400 GB × 1s), and after the
    // last one at least its check (5s) and the site's reactivation (1s) follow.
    assert_eq!(db.edges, Duration::from_secs(410 + 6));
    assert_eq!(db.bound(), Duration::from_secs(80 * 60 + 416));
    assert_eq!(p.lower_bound, db.bound());
    assert!(p.lower_bound > p.critical_path_length());
}

#[test]
fn site_order_in_the_request_does_not_change_the_hash() {
    let halves: Vec<&str> = TWO_SITES.split("[[sites]]").collect();
    let swapped = format!("[[sites]]{}[[sites]]{}", halves[2], halves[1]);
    assert_eq!(plan_for(TWO_SITES).hash, plan_for(&swapped).hash);
    let changed = TWO_SITES.replace("gb = 1,", "gb = 5,");
    assert_ne!(plan_for(TWO_SITES).hash, plan_for(&changed).hash);
}

#[test]
fn gate_makes_dependent_products_wait_for_validation() {
    let p = plan_for(TWO_SITES);
    let load_b = step(&p, "site-2/b/load");
    let deps: Vec<&str> = load_b
        .deps
        .iter()
        .map(|&d| p.steps[d as usize].id.as_str())
        .collect();
    assert_eq!(deps.len(), 2, "{deps:?}");
    assert!(
        deps.contains(&"site-2/a/check") && deps.contains(&"shard/b-2/get"),
        "{deps:?}"
    );
    let load_a = step(&p, "site-2/a/load");
    assert_eq!(load_a.deps.len(), 1, "a has no product dependencies");
}

const PATHS: &str = r#"
[workflow]
name = "paths"
[products.a]
[steps.get]
scope = "shared"
unit = "shard"
kind = "fetch"
estimate = "10s"
when = { attribute = "state", is_not = ["soft-deleted"], default = "deleted" }
[steps.load]
scope = "product"
kind = "restore-tenant"
after = ["get"]
estimate = "20s"
when = { attribute = "state", is_not = ["soft-deleted"], default = "deleted" }
[steps.undelete]
scope = "site"
kind = "noop"
estimate = "1s"
when = { attribute = "state", is = ["soft-deleted"] , default = "deleted" }
[steps.check]
scope = "product"
kind = "validate"
after = ["load", "undelete"]
estimate = "5s"
"#;

#[test]
fn when_conditions_choose_each_sites_path() {
    let wf = Workflow::parse(&Source::new("wf.toml", PATHS), crate::steps::KNOWN_KINDS).unwrap();
    let text = "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"a\"]\n\
        [[sites]]\nid = \"site-1\"\nattrs = { shard = \"a-1\", state = \"deleted\" }\n\
        [[sites]]\nid = \"site-2\"\nattrs = { shard = \"a-1\", state = \"soft-deleted\" }\n\
        [[sites]]\nid = \"site-3\"\nattrs = { shard = \"a-2\", state = \"soft-deleted\" }\n\
        [[sites]]\nid = \"site-4\"\nattrs = { shard = \"a-3\" }\n";
    let req = Request::parse(&Source::new("req.toml", text), |_| unreachable!()).unwrap();
    let p = plan(&wf, &req, &PlanOptions::default()).unwrap();
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    // Permanently deleted (and by default, site-4): from backups.
    assert!(ids.contains(&"site-1/a/load") && ids.contains(&"site-4/a/load"));
    assert!(!ids.contains(&"site-1/undelete"));
    // Soft-deleted: undeleted in place, no fetch, no load.
    assert!(ids.contains(&"site-2/undelete") && !ids.contains(&"site-2/a/load"));
    assert!(
        ids.contains(&"shard/a-1/get"),
        "site-1 still needs shard a-1"
    );
    assert!(
        !ids.contains(&"shard/a-2/get"),
        "nobody on shard a-2 needs its backup"
    );
    let check = |site: &str| {
        let s = step(&p, &format!("{site}/a/check"));
        s.deps
            .iter()
            .map(|&d| p.steps[d as usize].id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(check("site-1"), ["site-1/a/load"]);
    assert_eq!(check("site-2"), ["site-2/undelete"]);
}

#[test]
fn a_condition_on_a_missing_attribute_without_default_is_reported() {
    let wf_text = PATHS.replace(", default = \"deleted\" }", " }");
    let wf = Workflow::parse(&Source::new("wf.toml", wf_text), crate::steps::KNOWN_KINDS).unwrap();
    let text = "[request]\npoint_in_time = \"2022-04-05T07:38:00Z\"\nproducts = [\"a\"]\n\
                [[sites]]\nid = \"site-1\"\nattrs = { shard = \"a-1\" }\n";
    let req = Request::parse(&Source::new("req.toml", text), |_| unreachable!()).unwrap();
    let problems = plan(&wf, &req, &PlanOptions::default()).unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("site attribute 'state' is not set for site site-1")),
        "{text:?}"
    );
}
