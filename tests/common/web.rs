//! Web requests on every handle: a service wrapped by the tenant resolver serves each request in
//! its tenant, whatever the mode (app level, RLS, the pipeline) or tier (shared, schema,
//! database); another tenant's id is a 404 and changes nothing.

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use tenant::{Error, TenantId};
use uuid::Uuid;

use super::Env;
use super::entities::post;
use super::http::Client;

pub async fn http_requests_run_in_their_tenant_and_another_tenants_id_is_not_found(env: &Env) {
    let s = env.seed().await;
    let (list, one, delete) = (env.db.clone(), env.db.clone(), env.db.clone());
    let api = Router::new()
        .route(
            "/posts",
            get(move || async move {
                let mut ids: Vec<String> = post::Entity::find()
                    .all(&list)
                    .await?
                    .into_iter()
                    .map(|p| p.id.to_string())
                    .collect();
                ids.sort();
                Ok::<_, Error>(ids.join(","))
            }),
        )
        .route(
            "/posts/{id}",
            get(move |Path(id): Path<Uuid>| async move {
                match one.repo::<post::Entity>().find_by_id(id).await? {
                    Some(post) => Ok(post.id.to_string()),
                    None => Err(Error::NotFound { entity: "post" }),
                }
            })
            .delete(move |Path(id): Path<Uuid>| async move {
                delete.repo::<post::Entity>().delete_by_id(id).await
            }),
        )
        .route("/whoami", get(|t: TenantId| async move { t.to_string() }));
    let mut resolver = tenant::web::Resolver::new().header("x-tenant");
    if let Some(catalog) = env.db.catalog() {
        resolver = resolver.catalog(catalog.clone());
    }
    let client = Client::new(resolver.wrap(api).unwrap()).await;
    let listing = |ids: [Uuid; 2]| {
        let mut ids = ids.map(|id| id.to_string());
        ids.sort();
        ids.join(",")
    };
    // One kept-alive connection (and, on a small pool, the same database connections), the
    // tenant alternating request by request.
    for round in 0..6 {
        let (me, mine, theirs) = if round % 2 == 0 {
            (env.acme, s.acme, s.globex)
        } else {
            (env.globex, s.globex, s.acme)
        };
        let claim = [("x-tenant", me.to_string())];
        let claim: Vec<(&str, &str)> = claim.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(client.get("/whoami", &claim).await, (200, me.to_string()));
        assert_eq!(client.get("/posts", &claim).await, (200, listing(mine)));
        let path = format!("/posts/{}", mine[0]);
        assert_eq!(client.get(&path, &claim).await, (200, mine[0].to_string()));
        for id in theirs {
            let path = format!("/posts/{id}");
            assert_eq!(client.get(&path, &claim).await, (404, "Not Found".into()));
            assert_eq!(
                client.delete(&path, &claim).await,
                (404, "Not Found".into())
            );
        }
    }
    for id in s.acme.into_iter().chain(s.globex) {
        env.raw_post(id).await; // still there
    }
    assert_eq!(client.get("/posts", &[]).await.0, 400);
}
