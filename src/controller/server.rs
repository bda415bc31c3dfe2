//! `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics_auth::MetricsAuth;
use crate::metrics::Metrics;

/// What `/readyz` answers. A replica is ready as a standby as soon as it
/// waits for the Lease (so a rollout can proceed), and as the leader once
/// its controllers have listed Regions and apps; the body says which.
#[derive(Default)]
pub struct Readiness(AtomicU8);

const STANDBY: u8 = 1;
const LEADER: u8 = 2;

impl Readiness {
    pub fn standby(&self) {
        self.0.store(STANDBY, Ordering::Relaxed);
    }

    pub fn leader(&self) {
        self.0.store(LEADER, Ordering::Relaxed);
    }

    fn answer(&self) -> (StatusCode, &'static str) {
        match self.0.load(Ordering::Relaxed) {
            STANDBY => (StatusCode::OK, "ok: standby"),
            LEADER => (StatusCode::OK, "ok: leader"),
            // Not waiting for the Lease yet, nor serving as the leader.
            _ => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        }
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    ready: Arc<Readiness>,
    auth: Option<Arc<MetricsAuth>>,
}

/// Serves until the process stops. With `auth`, `/metrics` answers only
/// those the hub allows `get` on it; `/healthz` and `/readyz` stay open
/// (the kubelet probes them).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<Readiness>,
    auth: Option<MetricsAuth>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Shared {
            metrics,
            ready,
            auth: auth.map(Arc::new),
        });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn metrics_text(State(shared): State<Shared>, headers: HeaderMap) -> impl IntoResponse {
    if let Some(auth) = &shared.auth {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err((status, why)) = auth.check(authorization).await {
            return (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                why,
            );
        }
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    shared.ready.answer()
}
