//! `/metrics`: the daemon's metrics in the OpenMetrics text format.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{HttpContext, require_read};
use crate::metrics::Format;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic Prometheus text format.
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`, with the read role when tokens are on.
pub fn routes(ctx: HttpContext) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route_layer(axum::middleware::from_fn_with_state(ctx.clone(), require_read))
        .with_state(ctx)
}

/// OpenMetrics when the scraper accepts it (Prometheus does), else the classic format.
async fn scrape(State(ctx): State<HttpContext>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (format, content_type) = if openmetrics {
        (Format::OpenMetrics, OPENMETRICS)
    } else {
        (Format::Classic, CLASSIC)
    };
    // Reading every entry of a large registry is CPU work: off the async workers.
    let text = tokio::task::spawn_blocking(move || {
        ctx.metrics
            .render(&ctx.cluster, ctx.metrics_max_protectors, format)
    })
    .await;
    match text {
        Ok(text) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the scrape failed: {e}\n"),
        )
            .into_response(),
    }
}
