//! A small multi-tenant service: projects and tasks per tenant, a global table of plans, a
//! background job that writes a per-tenant report to a cache. The tenant of every request is
//! the one its token proves; the tests call every endpoint as one tenant with another's ids.
//!
//! This file is the whole application; `main.rs` runs it, and the integration tests include
//! it to serve it on loopback.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "shared by the example binary and the test binaries, each using part of it"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, Set};
use tenant::catalog::{Catalog, NewTenant, TenantStatus};
use tenant::jobs::TenantJob;
use tenant::keys::CacheKey;
use tenant::web::{Jwt, RequestTenant, Resolver};
use tenant::{AssertGlobal, AssertUnscoped, Error, Result, TenantDb, TenantId, TenantTables};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

pub mod entities {
    //! The service's tables: `project` and `task` belong to a tenant, `plan` to everyone.

    pub mod project {
        use sea_orm::entity::prelude::*;

        /// A project, its name unique within its tenant.
        #[tenant::entity]
        #[derive(
            Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped, serde::Serialize,
        )]
        #[sea_orm(table_name = "project")]
        #[tenant(unique(name))]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub name: String,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {
            #[sea_orm(has_many = "super::task::Entity")]
            Task,
        }

        impl Related<super::task::Entity> for Entity {
            fn to() -> RelationDef {
                Relation::Task.def()
            }
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod task {
        use sea_orm::entity::prelude::*;

        /// A task of a project of the same tenant (the foreign key is `(tenant_id, project_id)`).
        #[tenant::entity]
        #[derive(
            Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped, serde::Serialize,
        )]
        #[sea_orm(table_name = "task")]
        #[tenant(index(project_id))]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub project_id: Uuid,
            pub title: String,
            pub done: bool,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {
            #[sea_orm(
                belongs_to = "super::project::Entity",
                from = "Column::ProjectId",
                to = "super::project::Column::Id"
            )]
            Project,
        }

        impl Related<super::project::Entity> for Entity {
            fn to() -> RelationDef {
                Relation::Project.def()
            }
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod plan {
        use sea_orm::entity::prelude::*;

        /// A price plan: the same for every tenant.
        #[derive(
            Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped, serde::Serialize,
        )]
        #[sea_orm(table_name = "plan")]
        #[tenant(global)]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: i32,
            pub name: String,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{plan, project, task};

/// Every route that takes the id of a tenant's row, as method and path (`{project}`, `{task}`):
/// the isolation test calls each of them as one tenant with another's ids. A new such route
/// belongs here.
pub const ID_ROUTES: &[(&str, &str)] = &[
    ("GET", "/projects/{project}"),
    ("PATCH", "/projects/{project}"),
    ("DELETE", "/projects/{project}"),
    ("GET", "/projects/{project}/tasks"),
    ("POST", "/projects/{project}/tasks"),
    ("POST", "/projects/{project}/report"),
    ("GET", "/projects/{project}/report"),
    ("GET", "/tasks/{task}"),
    ("PATCH", "/tasks/{task}"),
    ("DELETE", "/tasks/{task}"),
];

/// Where the service keeps its data.
#[derive(Clone, Debug)]
pub enum Database {
    /// A SQLite URL: the application layer's guarantees.
    Sqlite(String),
    /// PostgreSQL with Row-Level Security: the application role's URL (not the owner, not a
    /// superuser, no `BYPASSRLS`), and the owner's, which creates the tables and runs system
    /// work.
    Postgres {
        /// The application role.
        app_url: String,
        /// The tables' owner.
        owner_url: String,
    },
}

/// The service's state: the scoped handle, the catalog, the report cache and the job queue.
#[derive(Clone)]
pub struct App {
    pub db: TenantDb,
    pub catalog: Catalog,
    /// Reports by cache key (`t:<tenant>:report:<project>`): a stand-in for Redis.
    cache: Arc<Mutex<HashMap<String, String>>>,
    jobs: mpsc::UnboundedSender<String>,
    /// How many jobs were queued and how many finished.
    queued: Arc<watch::Sender<u64>>,
    finished: watch::Receiver<u64>,
}

/// The tables, in the order their foreign keys need.
fn tables() -> TenantTables {
    TenantTables::new()
        .table::<plan::Entity>()
        .table::<project::Entity>()
        .table::<task::Entity>()
}

impl App {
    /// Creates the tables and the catalog if missing, seeds the plans, and starts the job
    /// worker.
    pub async fn start(database: Database) -> Result<Self> {
        let (db, catalog) = match database {
            Database::Sqlite(url) => {
                let db = TenantDb::connect(&url).await?;
                let raw = db.unscoped(&AssertUnscoped::new("migrations: create the tables"));
                tables().create(raw).await?;
                let catalog = Catalog::new(raw.clone());
                catalog.create_table().await?;
                (db.with_catalog(catalog.clone()), catalog)
            }
            #[cfg(feature = "postgres")]
            Database::Postgres { app_url, owner_url } => {
                let schema = tables().rls(tenant::Rls::default());
                let owner = TenantDb::connect(&owner_url).await?;
                let owner = owner
                    .unscoped(&AssertUnscoped::new("migrations: create the tables"))
                    .clone();
                schema.create(&owner).await?;
                let catalog = Catalog::new(owner.clone());
                catalog.create_table().await?;
                let app_role = app_role(&app_url).await?;
                grant(&owner, &app_role).await?;
                let db = TenantDb::builder(app_url)
                    .rls(tenant::Rls::default())
                    .audit(&schema) // refuses to start if the live database does not isolate
                    .system_url(owner_url)
                    .connect()
                    .await?;
                (db.with_catalog(catalog.clone()), catalog)
            }
            #[cfg(not(feature = "postgres"))]
            Database::Postgres { .. } => {
                return Err(Error::InvalidSetting {
                    setting: "database",
                    reason: "PostgreSQL needs the `postgres` feature",
                });
            }
        };
        // Global rows are written through the audited door, never the escape hatch.
        let plans = db.global_writes(&AssertGlobal::new("seed the price plans"));
        let existing = plan::Entity::find().all(&db).await?;
        for (id, name) in [(1, "free"), (2, "team")] {
            if !existing.iter().any(|p| p.id == id) {
                plans
                    .insert(plan::ActiveModel {
                        id: Set(id),
                        name: Set(name.to_owned()),
                    })
                    .await?;
            }
        }
        let (jobs, queue) = mpsc::unbounded_channel();
        let (finished_tx, finished) = watch::channel(0);
        let app = Self {
            db,
            catalog,
            cache: Arc::default(),
            jobs,
            queued: Arc::new(watch::Sender::new(0)),
            finished,
        };
        tokio::spawn(app.clone().work(queue, finished_tx));
        Ok(app)
    }

    /// Registers an active tenant on the shared tables (or finds it by slug).
    pub async fn tenant(&self, slug: &str) -> Result<TenantId> {
        if let Some(entry) = self.catalog.find_slug(slug).await? {
            return Ok(entry.id);
        }
        let id = TenantId::from(Uuid::new_v4());
        self.catalog
            .register(NewTenant::shared(id, slug).status(TenantStatus::Active))
            .await?;
        Ok(id)
    }

    /// The service's routes: `/health` for anyone, everything else for the tenant a bearer
    /// token signed with `jwt_secret` proves (an `x-tenant` header, if sent, must name the same
    /// tenant).
    pub fn router(&self, jwt_secret: &[u8]) -> Result<Router> {
        let api = Router::new()
            .route("/me", get(me))
            .route("/plans", get(plans))
            .route("/projects", get(list_projects).post(create_project))
            .route(
                "/projects/{id}",
                get(get_project)
                    .patch(rename_project)
                    .delete(delete_project),
            )
            .route("/projects/{id}/tasks", get(list_tasks).post(create_task))
            .route("/projects/{id}/report", post(queue_report).get(get_report))
            .route(
                "/tasks/{id}",
                get(get_task).patch(update_task).delete(delete_task),
            )
            .with_state(self.clone());
        let tenants = Resolver::new()
            .authenticate(Jwt::hs256(jwt_secret)?)
            .header("x-tenant")
            .catalog(self.catalog.clone())
            .wrap(api)?;
        Ok(Router::new()
            .route("/health", get(|| async { "ok" }))
            .fallback_service(tenants))
    }

    /// Waits until every job queued so far has finished.
    pub async fn jobs_settled(&self) {
        let queued = *self.queued.borrow();
        let mut finished = self.finished.clone();
        finished
            .wait_for(|done| *done >= queued)
            .await
            .expect("the job worker runs as long as the app");
    }

    /// The job worker: each message is a serialized `TenantJob`, run in a fresh scope of its
    /// tenant. A message without a tenant does not deserialize, so it never runs.
    async fn work(self, mut queue: mpsc::UnboundedReceiver<String>, finished: watch::Sender<u64>) {
        while let Some(message) = queue.recv().await {
            match serde_json::from_str::<TenantJob<Report>>(&message) {
                Ok(job) => {
                    if let Err(error) = job.run(|report| self.report(report)).await {
                        tracing::error!(%error, "report job failed");
                    }
                }
                Err(error) => tracing::error!(%error, "refused a job message"),
            }
            finished.send_modify(|done| *done += 1);
        }
    }

    /// The report job: counts a project's tasks, in the job's tenant, into the cache.
    async fn report(&self, report: Report) -> Result<()> {
        let tasks = task::Entity::find()
            .filter(task::Column::ProjectId.eq(report.project))
            .all(&self.db)
            .await?;
        let done = tasks.iter().filter(|t| t.done).count();
        let key = CacheKey::scoped("report")?.part(report.project).build();
        let value = serde_json::json!({ "tasks": tasks.len(), "done": done }).to_string();
        self.cache_mut().insert(key.into_string(), value);
        Ok(())
    }

    fn cache_mut(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The report job's payload.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Report {
    project: Uuid,
}

#[cfg(feature = "postgres")]
#[expect(
    clippy::disallowed_methods,
    reason = "a catalog query of the session, on the escape hatch"
)]
async fn app_role(app_url: &str) -> Result<String> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = TenantDb::connect(app_url).await?;
    let conn = db.unscoped(&AssertUnscoped::new("read the application role's name"));
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT current_user::text AS role",
        ))
        .await?
        .ok_or(Error::InvalidSetting {
            setting: "database",
            reason: "no current user",
        })?;
    Ok(row.try_get("", "role")?)
}

/// Grants the application role what it may do on each table: the rows RLS lets it see, no DDL.
#[cfg(feature = "postgres")]
#[expect(
    clippy::disallowed_methods,
    reason = "migrations: grants on the owner's connection"
)]
async fn grant(owner: &sea_orm::DatabaseConnection, role: &str) -> Result<()> {
    use sea_orm::ConnectionTrait;
    let mut all = tenant::Rls::grant_statements::<project::Entity>(role)?;
    all.extend(tenant::Rls::grant_statements::<task::Entity>(role)?);
    all.extend(tenant::Rls::grant_statements::<plan::Entity>(role)?);
    for statement in all {
        owner.execute_unprepared(&statement).await?;
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Named {
    name: String,
}

#[derive(serde::Deserialize)]
struct NewTask {
    title: String,
}

#[derive(serde::Deserialize)]
struct TaskChange {
    title: Option<String>,
    done: Option<bool>,
}

fn not_found(entity: &'static str) -> Error {
    Error::NotFound { entity }
}

async fn me(tenant: RequestTenant) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "id": tenant.id(),
        "slug": tenant.record().map(|r| r.slug.clone()),
    }))
}

async fn plans(State(app): State<App>) -> Result<Json<Vec<plan::Model>>> {
    Ok(Json(
        plan::Entity::find()
            .order_by_asc(plan::Column::Id)
            .all(&app.db)
            .await?,
    ))
}

async fn list_projects(State(app): State<App>) -> Result<Json<Vec<project::Model>>> {
    Ok(Json(
        project::Entity::find()
            .order_by_asc(project::Column::Name)
            .all(&app.db)
            .await?,
    ))
}

async fn create_project(
    State(app): State<App>,
    Json(new): Json<Named>,
) -> Result<(StatusCode, Json<project::Model>)> {
    let row = app
        .db
        .repo::<project::Entity>()
        .insert(project::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(new.name),
            ..Default::default()
        })
        .await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// The tenant's project `id`: another tenant's is not found, like one that does not exist.
async fn project_of(app: &App, id: Uuid) -> Result<project::Model> {
    app.db
        .repo::<project::Entity>()
        .find_by_id(id)
        .await?
        .ok_or_else(|| not_found("project"))
}

async fn get_project(State(app): State<App>, Path(id): Path<Uuid>) -> Result<Json<project::Model>> {
    Ok(Json(project_of(&app, id).await?))
}

async fn rename_project(
    State(app): State<App>,
    Path(id): Path<Uuid>,
    Json(new): Json<Named>,
) -> Result<Json<project::Model>> {
    let row = app
        .db
        .repo::<project::Entity>()
        .update(project::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(id),
            name: Set(new.name),
            ..Default::default()
        })
        .await?;
    Ok(Json(row))
}

async fn delete_project(State(app): State<App>, Path(id): Path<Uuid>) -> Result<StatusCode> {
    // The tasks and the project go together, or neither does.
    let txn = app.db.begin().await?;
    project_of_in(&txn, id).await?;
    txn.repo::<task::Entity>()
        .delete_many(task::Column::ProjectId.eq(id))
        .await?;
    txn.repo::<project::Entity>().delete_by_id(id).await?;
    txn.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn project_of_in(txn: &tenant::TenantTxn, id: Uuid) -> Result<project::Model> {
    txn.repo::<project::Entity>()
        .find_by_id(id)
        .await?
        .ok_or_else(|| not_found("project"))
}

async fn list_tasks(
    State(app): State<App>,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<task::Model>>> {
    project_of(&app, id).await?;
    Ok(Json(
        task::Entity::find()
            .filter(task::Column::ProjectId.eq(id))
            .order_by_asc(task::Column::Title)
            .all(&app.db)
            .await?,
    ))
}

async fn create_task(
    State(app): State<App>,
    Path(id): Path<Uuid>,
    Json(new): Json<NewTask>,
) -> Result<(StatusCode, Json<task::Model>)> {
    // Even without this check, the composite foreign key refuses another tenant's project
    // (`Error::ParentNotFound`, also a 404).
    project_of(&app, id).await?;
    let row = app
        .db
        .repo::<task::Entity>()
        .insert(task::ActiveModel {
            id: Set(Uuid::new_v4()),
            project_id: Set(id),
            title: Set(new.title),
            done: Set(false),
            ..Default::default()
        })
        .await?;
    Ok((StatusCode::CREATED, Json(row)))
}

async fn get_task(State(app): State<App>, Path(id): Path<Uuid>) -> Result<Json<task::Model>> {
    let row = app.db.repo::<task::Entity>().find_by_id(id).await?;
    Ok(Json(row.ok_or_else(|| not_found("task"))?))
}

async fn update_task(
    State(app): State<App>,
    Path(id): Path<Uuid>,
    Json(change): Json<TaskChange>,
) -> Result<Json<task::Model>> {
    let mut am = task::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(id),
        ..Default::default()
    };
    if let Some(title) = change.title {
        am.title = Set(title);
    }
    if let Some(done) = change.done {
        am.done = Set(done);
    }
    Ok(Json(app.db.repo::<task::Entity>().update(am).await?))
}

async fn delete_task(State(app): State<App>, Path(id): Path<Uuid>) -> Result<StatusCode> {
    app.db.repo::<task::Entity>().delete_by_id(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn queue_report(State(app): State<App>, Path(id): Path<Uuid>) -> Result<StatusCode> {
    project_of(&app, id).await?;
    // The job carries the request's tenant; the worker runs it in that tenant's scope.
    let job =
        serde_json::to_string(&TenantJob::new(Report { project: id })?).expect("a job serializes");
    app.queued.send_modify(|n| *n += 1);
    app.jobs
        .send(job)
        .expect("the job worker runs as long as the app");
    Ok(StatusCode::ACCEPTED)
}

async fn get_report(State(app): State<App>, Path(id): Path<Uuid>) -> Result<String> {
    // The key carries the tenant in scope: another tenant's report is never this key.
    let key = CacheKey::scoped("report")?.part(id).build();
    app.cache_mut()
        .get(key.as_str())
        .cloned()
        .ok_or_else(|| not_found("report"))
}

/// A bearer token for `tenant`, valid for an hour, signed with `secret`: what your identity
/// provider would issue.
pub fn token(secret: &[u8], tenant: TenantId) -> String {
    use tenant::web::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        + Duration::from_hours(1);
    let claims = serde_json::json!({ "tenant_id": tenant, "exp": exp.as_secs() });
    let key = EncodingKey::from_secret(secret).expect("a non-empty secret");
    encode(&Header::new(Algorithm::HS256), &claims, &key).expect("a token encodes")
}
