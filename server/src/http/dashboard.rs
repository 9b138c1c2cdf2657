//! The live dashboard at `/` (issue 15, item 3): to be built on [`HttpContext`].

use axum::Router;

use super::HttpContext;

/// The dashboard's routes (none yet).
pub fn routes(ctx: HttpContext) -> Router {
    let _ = ctx;
    Router::new()
}
