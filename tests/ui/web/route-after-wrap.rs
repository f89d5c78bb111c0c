// A route added after the resolver would run with no tenant: the wrapped service is no longer a
// `Router`, so no route can be added to it.
use axum::{Router, routing::get};
use tenant::web::Resolver;

fn main() {
    let api = Router::new().route("/a", get(|| async { "a" }));
    let wrapped = Resolver::new().header("x-tenant").wrap(api).unwrap();
    let _ = wrapped.route("/b", get(|| async { "b" }));
}
