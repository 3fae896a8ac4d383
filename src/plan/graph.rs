//! Graph checks with petgraph: cycles among products and step templates, and among expanded
//! instances when they have no topological order (`rank::topological_order`), each reported
//! with its path.

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::Plan;
use crate::diag::{Location, Problem, ProblemKind};
use crate::workflow::Workflow;

/// Cycles in product ordering and in step templates' `after` lists.
pub(super) fn check_workflow(wf: &Workflow) -> Vec<Problem> {
    let mut problems = Vec::new();
    let products = edges_graph(
        wf.products.len(),
        wf.products
            .iter()
            .enumerate()
            .flat_map(|(p, prod)| prod.after.iter().map(move |&q| (q, p))),
    );
    for cycle in cycles(&products) {
        let path = cycle
            .iter()
            .map(|&n| format!("product {}", wf.products[n].name))
            .collect();
        let first = &wf.products[cycle[0]];
        let at = Location {
            file: wf.file.clone(),
            line: Some(first.line),
            column: None,
        };
        problems.push(Problem::new(
            at,
            format!("products.{}.after", first.name),
            ProblemKind::Cycle { path },
        ));
    }
    let templates = edges_graph(
        wf.templates.len(),
        wf.templates
            .iter()
            .enumerate()
            .flat_map(|(t, tpl)| tpl.after.iter().map(move |&a| (a, t))),
    );
    for cycle in cycles(&templates) {
        let first = &wf.templates[cycle[0]];
        let path = cycle
            .iter()
            .map(|&n| format!("step {}", wf.templates[n].name))
            .collect();
        let at = Location {
            file: wf.file.clone(),
            line: Some(first.line),
            column: None,
        };
        problems.push(Problem::new(
            at,
            format!("steps.{}.after", first.name),
            ProblemKind::Cycle { path },
        ));
    }
    problems
}

/// The cycles among expanded steps (at most five), for a plan that has no topological order.
pub(super) fn cycles_among_steps(plan: &Plan) -> Vec<Problem> {
    let edges = plan
        .steps
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.deps.iter().map(move |&d| (d as usize, i)));
    let graph = edges_graph(plan.steps.len(), edges);
    cycles(&graph)
        .into_iter()
        .take(5)
        .map(|cycle| {
            let path = cycle.iter().map(|&n| plan.steps[n].id.clone()).collect();
            Problem::new(
                Location::file("plan"),
                "expanded steps",
                ProblemKind::Cycle { path },
            )
        })
        .collect()
}

fn edges_graph(n: usize, edges: impl Iterator<Item = (usize, usize)>) -> DiGraph<(), ()> {
    let mut g = DiGraph::with_capacity(n, n * 2);
    for _ in 0..n {
        g.add_node(());
    }
    for (a, b) in edges {
        g.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
    }
    g
}

/// One cycle per strongly connected component that has one, as a closed path
/// (the first node repeated at the end).
fn cycles(g: &DiGraph<(), ()>) -> Vec<Vec<usize>> {
    let mut found = Vec::new();
    for scc in tarjan_scc(g) {
        let start = scc[0];
        let self_loop = g.contains_edge(start, start);
        if scc.len() == 1 && !self_loop {
            continue;
        }
        if self_loop {
            found.push(vec![start.index(), start.index()]);
            continue;
        }
        found.push(rotate_to_smallest(path_back(g, start, &scc)));
    }
    found.sort();
    found
}

/// The same closed path, starting at its smallest node, so messages are stable.
fn rotate_to_smallest(mut path: Vec<usize>) -> Vec<usize> {
    path.pop();
    let min = path
        .iter()
        .enumerate()
        .min_by_key(|(_, n)| **n)
        .map_or(0, |(i, _)| i);
    path.rotate_left(min);
    path.push(path[0]);
    path
}

/// Breadth-first search from `start` back to itself inside one component.
fn path_back(g: &DiGraph<(), ()>, start: NodeIndex, scc: &[NodeIndex]) -> Vec<usize> {
    let inside: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
    let mut parent = std::collections::HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for next in g.neighbors(n) {
            if next == start {
                let mut path = vec![start.index()];
                let mut cur = n;
                while cur != start {
                    path.push(cur.index());
                    cur = parent[&cur];
                }
                path.push(start.index());
                let inner = path.len() - 1;
                path[1..inner].reverse();
                return path;
            }
            if inside.contains(&next) && !parent.contains_key(&next) {
                parent.insert(next, n);
                queue.push_back(next);
            }
        }
    }
    vec![start.index(), start.index()]
}
