//! `drover serve`: a run's ledger over HTTP while the run goes and after it (docs/serve.md): a
//! status page, the JSON API behind it, Prometheus metrics and health endpoints. Read-only by
//! construction: every route is a GET that reads a [`snapshot::Snapshot`] of the ledger; none
//! writes, and the ledger's lock is never taken.
//!
//! - `snapshot`: reading the ledger, at most once a second for every client;
//! - `api`: the JSON answers (`drover-serve/1`);
//! - `metrics`: the Prometheus text format;
//! - `page.html`: the page, one file with no external resources.

mod api;
mod metrics;
pub mod snapshot;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use snapshot::Reader;

/// The environment variable holding the bearer token every endpoint then wants.
pub const TOKEN_ENV: &str = "DROVER_SERVE_TOKEN";

const PAGE: &str = include_str!("serve/page.html");

struct Served {
    reader: Arc<Reader>,
    token: Option<String>,
}

/// The routes, serving the ledger `reader` reads; with `token`, every request must carry it.
pub fn router(reader: Arc<Reader>, token: Option<String>) -> Router {
    let served = Arc::new(Served { reader, token });
    Router::new()
        .route("/", get(page))
        .route("/report", get(report))
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/sites", get(sites))
        .route("/api/v1/sites/{site}", get(site))
        .route("/api/v1/failures", get(failures))
        .route("/api/v1/customers", get(customers))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&served),
            authorized,
        ))
        .with_state(served)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Refuses a request without the token, when there is one; but the page itself, which holds no
/// data and asks for the token (a browser cannot send it to open a page).
async fn authorized(State(served): State<Arc<Served>>, request: Request, next: Next) -> Response {
    if let Some(token) = served
        .token
        .as_ref()
        .filter(|_| request.uri().path() != "/")
    {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                format!("this server wants Authorization: Bearer <the token in {TOKEN_ENV}>\n"),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// The snapshot, or the answer that says why there is none.
async fn current(served: &Served) -> Result<Arc<snapshot::Snapshot>, Response> {
    served.reader.current().await.map_err(|e| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the ledger: {e}\n"),
        )
            .into_response()
    })
}

fn json(value: &impl serde::Serialize) -> Response {
    axum::Json(value).into_response()
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

async fn report(State(served): State<Arc<Served>>) -> Response {
    let s = match current(&served).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Made once per snapshot, off the async threads: a large run's timeline takes a while.
    let made = Arc::clone(&s);
    let page = tokio::task::spawn_blocking(move || {
        made.made
            .report
            .get_or_init(|| {
                let plan = made.plan();
                let mut timeline = crate::report::Timeline::from_run(
                    plan,
                    &made.steps,
                    crate::report::LaneMode::auto(plan),
                );
                timeline.subtitle =
                    format!("run {} · {}", made.fixed.info.run_id, timeline.subtitle);
                crate::report::html(&timeline)
            })
            .clone()
    })
    .await;
    match page {
        Ok(page) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the timeline: {e}\n"),
        )
            .into_response(),
    }
}

/// A JSON answer made once per snapshot.
fn made_json(slot: &std::sync::OnceLock<String>, make: impl FnOnce() -> String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        slot.get_or_init(make).clone(),
    )
        .into_response()
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("answers serialize")
}

async fn summary(State(served): State<Arc<Served>>) -> Response {
    match current(&served).await {
        Ok(s) => made_json(&s.made.summary, || to_json(&api::summary(&s))),
        Err(r) => r,
    }
}

async fn sites(State(served): State<Arc<Served>>, Query(q): Query<api::SiteQuery>) -> Response {
    match current(&served).await {
        Ok(s) => {
            let by_site = s.made.steps_by_site.get_or_init(|| api::steps_by_site(&s));
            json(&api::sites(&s, by_site, &q))
        }
        Err(r) => r,
    }
}

async fn customers(
    State(served): State<Arc<Served>>,
    Query(q): Query<api::CustomerQuery>,
) -> Response {
    let s = match current(&served).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Made once per snapshot, off the async threads: it reads every site's contacts.
    let made = Arc::clone(&s);
    let _ = tokio::task::spawn_blocking(move || {
        made.customers();
    })
    .await;
    json(&api::customers(&s, &q))
}

async fn site(State(served): State<Arc<Served>>, Path(id): Path<String>) -> Response {
    let s = match current(&served).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(at) = s.plan().sites.iter().position(|x| x.id.as_str() == id) else {
        return (StatusCode::NOT_FOUND, "no such site in this run\n").into_response();
    };
    let by_site = s.made.steps_by_site.get_or_init(|| api::steps_by_site(&s));
    json(&api::site(&s, at, &by_site[at]))
}

async fn failures(State(served): State<Arc<Served>>) -> Response {
    match current(&served).await {
        Ok(s) => made_json(&s.made.failures, || {
            to_json(&api::failures(&s, served.reader.path()))
        }),
        Err(r) => r,
    }
}

async fn metrics(State(served): State<Arc<Served>>) -> Response {
    match current(&served).await {
        Ok(s) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.made.metrics.get_or_init(|| metrics::render(&s)).clone(),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn ready(State(served): State<Arc<Served>>) -> Response {
    match current(&served).await {
        Ok(_) => "ready\n".into_response(),
        Err(r) => r,
    }
}
