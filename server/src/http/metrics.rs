//! `/metrics`: the daemon's metrics in the OpenMetrics text format.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{HttpContext, require_read};

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`, with the read role when tokens are on.
pub fn routes(ctx: HttpContext) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route_layer(axum::middleware::from_fn_with_state(ctx.clone(), require_read))
        .with_state(ctx)
}

async fn scrape(State(ctx): State<HttpContext>) -> Response {
    let text = ctx.metrics.render(&ctx.registry(), ctx.metrics_max_protectors);
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}
