//! Web requests resolved to their tenant, over real HTTP: an axum service served on loopback,
//! called by a real client. Every source of a tenant, every refusal and its status, and the
//! handler's scope (a tenant's request reaches only its rows; another tenant's id is a 404).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query};
use axum::routing::get;
use sea_orm::ActiveValue::Set;
use tenant::catalog::{Catalog, NewTenant, TenantStatus};
use tenant::web::{Jwt, RequestTenant, Resolver, jsonwebtoken};
use tenant::{AssertUnscoped, Error, TenantDb, TenantId, TenantRepo};
use uuid::Uuid;

use crate::common::entities::post;
use crate::common::http::Client;

/// Request headers, as name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

const SECRET: &[u8] = b"a test signing secret of 32 bytes or more";

/// A database with a catalog of five tenants in every status, and one post each for acme and
/// globex.
struct Fixture {
    db: TenantDb,
    catalog: Catalog,
    acme: TenantId,
    globex: TenantId,
    suspended: TenantId,
    offboarded: TenantId,
    provisioning: TenantId,
    acme_post: Uuid,
    globex_post: Uuid,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("tenant-web-")
        .tempdir()
        .unwrap();
    let url = format!("sqlite://{}/web.db?mode=rwc", dir.path().display());
    let db = TenantDb::connect(&url).await.unwrap();
    let conn = db.unscoped(&AssertUnscoped::new("create the test's tables"));
    tenant::create_schema(conn, &[tenant::table::<post::Entity>()])
        .await
        .unwrap();
    let catalog = Catalog::new(conn.clone());
    catalog.create_table().await.unwrap();
    let id = || TenantId::from(Uuid::new_v4());
    let (acme, globex, suspended, offboarded, provisioning) = (id(), id(), id(), id(), id());
    for (tenant, slug, status) in [
        (acme, "acme", TenantStatus::Active),
        (globex, "globex", TenantStatus::Active),
        (suspended, "initech", TenantStatus::Suspended),
        (offboarded, "hooli", TenantStatus::Offboarded),
        (provisioning, "piedpiper", TenantStatus::Provisioning),
    ] {
        let mut entry = NewTenant::shared(tenant, slug).status(status);
        if tenant == acme {
            entry = entry.domain("app.acme.test");
        }
        catalog.register(entry).await.unwrap();
    }
    let db = db.with_catalog(catalog.clone());
    let (acme_post, globex_post) = (Uuid::new_v4(), Uuid::new_v4());
    for (tenant, id) in [(acme, acme_post), (globex, globex_post)] {
        tenant::scope(
            tenant,
            db.repo::<post::Entity>().insert(new_post(id, "hello")),
        )
        .await
        .unwrap();
    }
    Fixture {
        db,
        catalog,
        acme,
        globex,
        suspended,
        offboarded,
        provisioning,
        acme_post,
        globex_post,
        _dir: dir,
    }
}

fn new_post(id: Uuid, slug: &str) -> post::ActiveModel {
    post::ActiveModel {
        id: Set(id),
        slug: Set(slug.into()),
        title: Set(slug.into()),
        views: Set(0),
        ..Default::default()
    }
}

/// The routes every test serves: who the request is for, and posts by id.
fn api(db: &TenantDb) -> Router {
    #[derive(serde::Deserialize)]
    struct NewPost {
        slug: String,
    }
    let (list, get_one, delete_one, create) = (db.clone(), db.clone(), db.clone(), db.clone());
    Router::new()
        .route(
            "/whoami",
            get(|tenant: TenantId| async move { tenant.to_string() }),
        )
        .route(
            "/t/{tenant}/whoami",
            get(|tenant: TenantId| async move { tenant.to_string() }),
        )
        .route(
            "/me",
            get(|tenant: RequestTenant| async move {
                format!(
                    "{} {}",
                    tenant.record().map_or("-", |r| r.slug.as_str()),
                    tenant.authenticated()
                )
            }),
        )
        .route(
            "/posts",
            get(move || async move {
                let posts = post::Entity::find().all(&list).await?;
                Ok::<_, Error>(posts.len().to_string())
            })
            .post(move |Query(new): Query<NewPost>| async move {
                let repo = create.repo::<post::Entity>();
                let row = repo.insert(new_post(Uuid::new_v4(), &new.slug)).await?;
                Ok::<_, Error>(row.id.to_string())
            }),
        )
        .route(
            "/posts/{id}",
            get(move |Path(id): Path<Uuid>| async move {
                match TenantRepo::<post::Entity>::new(&get_one)
                    .find_by_id(id)
                    .await?
                {
                    Some(post) => Ok(post.slug),
                    None => Err(Error::NotFound { entity: "post" }),
                }
            })
            .delete(move |Path(id): Path<Uuid>| async move {
                delete_one.repo::<post::Entity>().delete_by_id(id).await
            }),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_claim_resolves_by_id_or_slug_and_the_handler_runs_in_that_tenant() {
    let f = fixture().await;
    let client = with_catalog(&f, Resolver::new().header("x-tenant")).await;
    let (acme, globex) = (f.acme.to_string(), f.globex.to_string());

    // One kept-alive connection, the tenant alternating: each request is its own tenant's.
    for round in 0..4 {
        let (tenant, claim) = match round % 4 {
            0 => (&acme, acme.as_str()),
            1 => (&globex, "globex"),
            2 => (&acme, "acme"),
            _ => (&globex, globex.as_str()),
        };
        assert_eq!(
            client.get("/whoami", &[("x-tenant", claim)]).await,
            (200, tenant.clone())
        );
        assert_eq!(
            client.get("/posts", &[("x-tenant", claim)]).await,
            (200, "1".into())
        );
    }
    assert_eq!(
        client.get("/me", &[("x-tenant", "acme")]).await,
        (200, "acme false".into())
    );

    // Another tenant's id is a 404, exactly like an id that exists nowhere, and nothing changes.
    let mine = format!("/posts/{}", f.acme_post);
    let theirs = format!("/posts/{}", f.globex_post);
    let nowhere = format!("/posts/{}", Uuid::new_v4());
    assert_eq!(
        client.get(&mine, &[("x-tenant", "acme")]).await,
        (200, "hello".into())
    );
    for path in [&theirs, &nowhere] {
        assert_eq!(
            client.get(path, &[("x-tenant", "acme")]).await,
            (404, "Not Found".into())
        );
        assert_eq!(
            client.delete(path, &[("x-tenant", "acme")]).await,
            (404, "Not Found".into())
        );
    }
    assert_eq!(
        client.get(&theirs, &[("x-tenant", "globex")]).await,
        (200, "hello".into())
    );

    // A duplicate of the tenant's own unique slug is a conflict, not a 500; the same slug in
    // another tenant is fine.
    for (slug, tenant, status) in [
        ("hello", "acme", 409),
        ("new", "acme", 200),
        ("new", "globex", 200),
    ] {
        let path = format!("/posts?slug={slug}");
        let (got, _) = client.post(&path, &[("x-tenant", tenant)]).await;
        assert_eq!(got, status, "{slug} as {tenant}");
    }
    assert_eq!(
        client.get("/posts", &[("x-tenant", "acme")]).await,
        (200, "2".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_status_and_a_reason_that_names_no_tenant() {
    let f = fixture().await;
    let client = with_catalog(&f, Resolver::new().header("x-tenant")).await;
    let (suspended, offboarded, provisioning) = (
        f.suspended.to_string(),
        f.offboarded.to_string(),
        f.provisioning.to_string(),
    );
    let unknown = Uuid::new_v4().to_string();
    let cases: [(Headers<'_>, u16, &str); 12] = [
        (&[], 400, "the request names no tenant"),
        (
            &[("x-tenant", "")],
            400,
            "the request's tenant is malformed",
        ),
        (
            &[("x-tenant", "Acme!")],
            400,
            "the request's tenant is malformed",
        ),
        // No tenant can have it: the catalog's own slug rule.
        (
            &[("x-tenant", "-acme")],
            400,
            "the request's tenant is malformed",
        ),
        (
            &[("x-tenant", "acme"), ("x-tenant", "acme")],
            400,
            "the request's tenant is malformed",
        ),
        (&[("x-tenant", "nobody")], 404, "no such tenant"),
        (&[("x-tenant", &unknown)], 404, "no such tenant"),
        (&[("x-tenant", &offboarded)], 404, "no such tenant"),
        (&[("x-tenant", "hooli")], 404, "no such tenant"),
        (&[("x-tenant", &suspended)], 403, "the tenant is suspended"),
        (&[("x-tenant", "initech")], 403, "the tenant is suspended"),
        (
            &[("x-tenant", &provisioning)],
            503,
            "the tenant is unavailable; try again later",
        ),
    ];
    for (headers, status, body) in cases {
        assert_eq!(
            client.get("/posts", headers).await,
            (status, body.to_owned()),
            "{headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subdomain_or_a_custom_domain_names_the_tenant_and_lookalike_hosts_do_not() {
    let f = fixture().await;
    let client = with_catalog(
        &f,
        Resolver::new().subdomain("example.test").custom_domain(),
    )
    .await;
    let acme = f.acme.to_string();
    for host in [
        "acme.example.test",
        "ACME.Example.Test",
        "acme.example.test:8443",
        "acme.example.test.",
        "app.acme.test",
        "App.Acme.Test:443",
    ] {
        assert_eq!(
            client.get("/whoami", &[("host", host)]).await,
            (200, acme.clone()),
            "{host}"
        );
    }
    assert_eq!(
        client
            .get("/whoami", &[("host", "globex.example.test")])
            .await,
        (200, f.globex.to_string())
    );
    for (host, status) in [
        ("example.test", 400),
        ("evilexample.test", 400),
        ("acme.example.test.evil.test", 400),
        ("app.acme.test.evil.test", 400),
        ("x.acme.example.test", 400),
        ("nobody.example.test", 404),
        ("initech.example.test", 403),
    ] {
        assert_eq!(
            client.get("/whoami", &[("host", host)]).await.0,
            status,
            "{host}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_that_disagree_are_refused() {
    let f = fixture().await;
    let client = with_catalog(&f, Resolver::new().header("x-tenant").custom_domain()).await;
    let host = ("host", "app.acme.test");
    assert_eq!(
        client.get("/whoami", &[host, ("x-tenant", "acme")]).await.0,
        200
    );
    assert_eq!(
        client.get("/whoami", &[host, ("x-tenant", "globex")]).await,
        (400, "the request names more than one tenant".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_segment_names_the_tenant_without_a_catalog_by_id_only() {
    let f = fixture().await;
    // No catalog: ids only, and the handle's own catalog still admits them.
    let service = Resolver::new().path_segment(1).wrap(api(&f.db)).unwrap();
    let client = Client::new(service).await;
    for tenant in [f.acme, f.globex] {
        assert_eq!(
            client.get(&format!("/t/{tenant}/whoami"), &[]).await,
            (200, tenant.to_string())
        );
    }
    assert_eq!(
        client.get("/t/acme/whoami", &[]).await,
        (400, "the request's tenant is malformed".into())
    );
    assert_eq!(client.get("/whoami", &[]).await.0, 400);
    // Not refused by the resolver (it has no catalog); the handle's catalog refuses it.
    let path = format!("/t/{}/posts", f.suspended);
    let service = Resolver::new()
        .path_segment(1)
        .wrap(Router::new().nest("/t/{tenant}", api(&f.db)))
        .unwrap();
    let nested = Client::new(service).await;
    assert_eq!(nested.get(&path, &[]).await, (403, "Forbidden".into()));
    assert_eq!(
        nested.get(&format!("/t/{}/posts", f.acme), &[]).await,
        (200, "1".into())
    );
}

/// `api` behind `resolver` with the fixture's catalog, served; a client for it.
async fn with_catalog(f: &Fixture, resolver: Resolver) -> Client {
    let service = resolver
        .catalog(f.catalog.clone())
        .wrap(api(&f.db))
        .unwrap();
    Client::new(service).await
}

/// A signed token with the claim `tenant_id` = `tenant` (and whatever `extra` adds).
fn token(secret: &[u8], tenant: &str, exp_from_now: i64, extra: &[(&str, &str)]) -> String {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let mut claims =
        serde_json::json!({ "sub": "user-1", "tenant_id": tenant, "exp": now + exp_from_now });
    for (k, v) in extra {
        claims[*k] = serde_json::Value::from(*v);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_token_is_the_tenant_and_a_forged_claim_of_another_is_403() {
    let f = fixture().await;
    let client = with_catalog(
        &f,
        Resolver::new()
            .authenticate(Jwt::hs256(SECRET).unwrap())
            .header("x-tenant"),
    )
    .await;
    let (acme, globex) = (f.acme.to_string(), f.globex.to_string());
    let bearer = format!("Bearer {}", token(SECRET, &acme, 600, &[]));
    let auth = ("authorization", bearer.as_str());

    assert_eq!(client.get("/whoami", &[auth]).await, (200, acme.clone()));
    assert_eq!(client.get("/me", &[auth]).await, (200, "acme true".into()));
    assert_eq!(
        client.get("/whoami", &[auth, ("x-tenant", "acme")]).await.0,
        200
    );
    assert_eq!(
        client.get("/whoami", &[auth, ("x-tenant", &acme)]).await.0,
        200
    );
    // A claim of any other tenant is 403 with the same answer, whether that tenant exists or not.
    let refused = (
        403,
        "the request names another tenant than its credentials".to_owned(),
    );
    let nobody = Uuid::new_v4().to_string();
    for other in [globex.as_str(), "globex", nobody.as_str(), "nobody"] {
        assert_eq!(
            client.get("/whoami", &[auth, ("x-tenant", other)]).await,
            refused,
            "{other}"
        );
        assert_eq!(
            client
                .get(
                    &format!("/posts/{}", f.globex_post),
                    &[auth, ("x-tenant", other)]
                )
                .await,
            refused
        );
    }

    // Credentials missing, forged, expired or of the wrong shape: 401, with a Bearer challenge.
    let missing = client
        .http
        .get(format!("{}/whoami", client.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let invalid = (401, "invalid credentials".to_owned());
    let forged = format!(
        "Bearer {}",
        token(b"another secret, also 32 bytes long!", &acme, 600, &[])
    );
    let expired = format!("Bearer {}", token(SECRET, &acme, -3600, &[]));
    let slug = format!("Bearer {}", token(SECRET, "acme", 600, &[]));
    let mut unsigned = token(SECRET, &globex, 600, &[]);
    // `alg: none` with the signature stripped.
    let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    unsigned = format!("Bearer {header}.{}.", unsigned.split('.').nth(1).unwrap());
    let basic = "Basic YWxhZGRpbjpvcGVuc2VzYW1l".to_owned();
    for value in [&forged, &expired, &slug, &unsigned, &basic] {
        assert_eq!(
            client.get("/whoami", &[("authorization", value)]).await,
            invalid,
            "{value}"
        );
    }
    assert_eq!(client.get("/whoami", &[auth, auth]).await, invalid);

    // The token's tenant is checked against the catalog like any other.
    let suspended = format!(
        "Bearer {}",
        token(SECRET, &f.suspended.to_string(), 600, &[])
    );
    assert_eq!(
        client
            .get("/whoami", &[("authorization", &suspended)])
            .await
            .0,
        403
    );
    let unknown = format!("Bearer {}", token(SECRET, &nobody, 600, &[]));
    assert_eq!(
        client
            .get("/whoami", &[("authorization", &unknown)])
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_outside_the_resolver_gets_no_tenant_and_says_so() {
    let f = fixture().await;
    let list = f.db.clone();
    let tenants = Resolver::new()
        .header("x-tenant")
        .catalog(f.catalog.clone())
        .wrap(api(&f.db))
        .unwrap();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/public/whoami",
            get(|tenant: TenantId| async move { tenant.to_string() }),
        )
        .route(
            "/public/me",
            get(|tenant: RequestTenant| async move { tenant.id().to_string() }),
        )
        .route(
            "/public/posts",
            get(move || async move {
                post::Entity::find()
                    .all(&list)
                    .await
                    .map(|p| p.len().to_string())
            }),
        )
        .nest_service("/api", tenants);
    let client = Client::new(app).await;
    let acme = [("x-tenant", "acme")];
    assert_eq!(client.get("/health", &[]).await, (200, "ok".into()));
    assert_eq!(
        client.get("/api/whoami", &acme).await,
        (200, f.acme.to_string())
    );
    // Even with a claim: nothing resolves it outside the wrapped service. The extractors say
    // so; a scoped query there fails closed (`Error::NoTenant`, a 500).
    for path in ["/public/whoami", "/public/me"] {
        assert_eq!(
            client.get(path, &acme).await,
            (500, "internal error".into()),
            "{path}"
        );
    }
    assert_eq!(
        client.get("/public/posts", &acme).await,
        (500, "Internal Server Error".into())
    );
}

#[test]
fn a_resolver_that_cannot_resolve_is_refused_at_start_up() {
    let refused = |r: tenant::Result<tenant::web::TenantService<Router>>| match r {
        Err(Error::InvalidSetting { reason, .. }) => reason,
        other => panic!("{other:?}"),
    };
    assert!(refused(Resolver::new().wrap(Router::new())).contains("no source of a tenant"));
    assert!(refused(Resolver::new().custom_domain().wrap(Router::new())).contains("catalog"));
    assert!(
        refused(Resolver::new().subdomain("example.com").wrap(Router::new())).contains("catalog")
    );
    assert!(matches!(
        Jwt::hs256(b"short"),
        Err(Error::InvalidSetting {
            setting: "HS256 secret",
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subdomain_base_that_is_no_host_name_is_refused_at_start_up() {
    let f = fixture().await;
    for base in ["bad base", "Example.com/", "a..b"] {
        let wrapped = Resolver::new()
            .subdomain("example.com")
            .subdomain(base)
            .catalog(f.catalog.clone())
            .wrap(Router::<()>::new());
        assert!(
            matches!(
                wrapped,
                Err(Error::InvalidSetting {
                    setting: "tenant resolver subdomain base",
                    ..
                })
            ),
            "{base}: {wrapped:?}"
        );
    }
}
