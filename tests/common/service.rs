//! The example service (`examples/service`), served on loopback and called as an attacker
//! would: every endpoint that takes an id, as one tenant with the other's ids (404, and nothing
//! changed), with a forged tenant header beside a valid token (403), and with no token (401).

use std::collections::BTreeMap;

use serde_json::Value;

use super::http::Client;

#[path = "../../examples/service/app.rs"]
pub mod app;

const SECRET: &[u8] = b"the isolation test's secret, 32 bytes or more";

/// A client that speaks for one tenant with its token.
struct As<'a> {
    client: &'a Client,
    bearer: String,
}

impl As<'_> {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> (u16, String) {
        let url = format!("{}{path}", self.client.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .http
            .request(method, url)
            .header("authorization", &self.bearer);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        self.client.call(request).await
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, text) = self.call(method, path, body, &[]).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// A body that the route accepts, so that a refusal is about the id, not the body.
fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("PATCH", "/projects/{project}") => Some(serde_json::json!({ "name": "taken over" })),
        ("POST", "/projects/{project}/tasks") => Some(serde_json::json!({ "title": "planted" })),
        ("PATCH", "/tasks/{task}") => {
            Some(serde_json::json!({ "done": true, "title": "taken over" }))
        }
        _ => None,
    }
}

/// What each tenant's client sees of its own data: every GET route with its ids.
async fn snapshot(who: &As<'_>, rows: &Rows) -> BTreeMap<String, (u16, String)> {
    let mut seen = BTreeMap::new();
    let gets = app::ID_ROUTES.iter().filter(|(m, _)| *m == "GET");
    for path in std::iter::once("/projects".to_owned()).chain(gets.map(|(_, r)| rows.fill(r))) {
        seen.insert(path.clone(), who.call("GET", &path, None, &[]).await);
    }
    seen
}

/// A project and a task of one tenant.
struct Rows {
    project: String,
    task: String,
}

impl Rows {
    /// `route` with these rows' ids.
    fn fill(&self, route: &str) -> String {
        route
            .replace("{project}", &self.project)
            .replace("{task}", &self.task)
    }
}

/// A project named `launch` with a task, and its report queued.
async fn seed(who: &As<'_>) -> Rows {
    let project = who
        .json(
            "POST",
            "/projects",
            Some(serde_json::json!({ "name": "launch" })),
        )
        .await;
    let project = project["id"].as_str().unwrap().to_owned();
    let tasks = format!("/projects/{project}/tasks");
    let task = who
        .json("POST", &tasks, Some(serde_json::json!({ "title": "ship" })))
        .await;
    let task = task["id"].as_str().unwrap().to_owned();
    let report = format!("/projects/{project}/report");
    assert_eq!(who.call("POST", &report, None, &[]).await.0, 202);
    Rows { project, task }
}

/// Every route that takes an id, as `who` with `theirs` and with ids that exist nowhere: not
/// found, never forbidden (which would say they exist).
async fn other_ids_are_not_found(who: &As<'_>, theirs: &Rows) {
    let nowhere = uuid::Uuid::new_v4().to_string();
    let nowhere = Rows {
        project: nowhere.clone(),
        task: nowhere,
    };
    for (method, route) in app::ID_ROUTES {
        for rows in [theirs, &nowhere] {
            let path = rows.fill(route);
            assert_eq!(
                who.call(method, &path, body_for(method, route), &[]).await,
                (404, "Not Found".into()),
                "{method} {path}"
            );
        }
    }
}

/// A valid token with a forged tenant header: 403 on every route, on `who`'s own ids, whatever
/// the header names (another tenant by id or slug, or no tenant at all).
async fn forged_claims_are_forbidden(who: &As<'_>, mine: &Rows, claims: &[&str]) {
    for forged in claims {
        for (method, route) in app::ID_ROUTES {
            let path = mine.fill(route);
            let extra = [("x-tenant", *forged)];
            assert_eq!(
                who.call(method, &path, body_for(method, route), &extra)
                    .await,
                (
                    403,
                    "the request names another tenant than its credentials".into()
                ),
                "{method} {path} claiming {forged}"
            );
        }
    }
}

/// No token: 401 on every route, whatever header is sent.
async fn no_token_is_unauthorized(client: &Client, theirs: &Rows) {
    let anonymous = As {
        client,
        bearer: String::new(),
    };
    for (method, route) in app::ID_ROUTES {
        let path = theirs.fill(route);
        let extra = [("x-tenant", "globex")];
        let (status, _) = anonymous
            .call(method, &path, body_for(method, route), &extra)
            .await;
        assert_eq!(status, 401, "{method} {path} without a token");
    }
}

pub async fn the_service_answers_every_endpoint_for_its_own_tenant_only(database: app::Database) {
    let app = app::App::start(database).await.unwrap();
    let client = Client::new(app.router(SECRET).unwrap()).await;
    let acme = app.tenant("acme").await.unwrap();
    let globex = app.tenant("globex").await.unwrap();
    let a = As {
        client: &client,
        bearer: format!("Bearer {}", app::token(SECRET, acme)),
    };
    let b = As {
        client: &client,
        bearer: format!("Bearer {}", app::token(SECRET, globex)),
    };
    // The same project name in both tenants.
    let (mine, theirs) = (seed(&a).await, seed(&b).await);
    app.jobs_settled().await;
    let report = format!("/projects/{}/report", mine.project);
    assert_eq!(
        a.json("GET", &report, None).await,
        serde_json::json!({ "tasks": 1, "done": 0 })
    );
    assert_eq!(a.json("GET", "/me", None).await["slug"], "acme");
    assert_eq!(
        a.json("GET", "/plans", None)
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A name is unique within a tenant only.
    let again = Some(serde_json::json!({ "name": "launch" }));
    assert_eq!(
        a.call("POST", "/projects", again, &[]).await,
        (409, "Conflict".into())
    );

    let before = (snapshot(&a, &mine).await, snapshot(&b, &theirs).await);
    other_ids_are_not_found(&a, &theirs).await;
    let globex_id = globex.to_string();
    let nobody = uuid::Uuid::new_v4().to_string();
    forged_claims_are_forbidden(&a, &mine, &[&globex_id, "globex", &nobody]).await;
    no_token_is_unauthorized(&client, &theirs).await;
    let health = format!("{}/health", client.base);
    assert_eq!(
        client
            .http
            .get(health)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // Nothing any of that tried changed what either tenant sees (jobs included).
    app.jobs_settled().await;
    let after = (snapshot(&a, &mine).await, snapshot(&b, &theirs).await);
    assert_eq!(before, after);
    assert!(
        after.1.values().all(|(status, _)| *status == 200),
        "{after:?}"
    );

    // Acme's own id routes all work, the deletes last.
    for (method, route) in app::ID_ROUTES.iter().filter(|(m, _)| *m != "DELETE") {
        let path = mine.fill(route);
        let (status, text) = a.call(method, &path, body_for(method, route), &[]).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
    }
    let project = format!("/projects/{}", mine.project);
    assert_eq!(a.call("DELETE", &project, None, &[]).await.0, 204);
    let task = |rows: &Rows| format!("/tasks/{}", rows.task);
    assert_eq!(a.call("GET", &task(&mine), None, &[]).await.0, 404);
    assert_eq!(b.call("GET", &task(&theirs), None, &[]).await.0, 200);
}
