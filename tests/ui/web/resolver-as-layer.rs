// `Router::layer` covers only the routes added before it, so the resolver is not a layer.
use axum::{Router, routing::get};
use tenant::web::Resolver;

fn main() {
    let _ = Router::<()>::new()
        .layer(Resolver::new().header("x-tenant"))
        .route("/b", get(|| async { "b" }));
}
