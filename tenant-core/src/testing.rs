//! Test helpers for your own entities and services (feature `testing`): two tenants, and checks
//! that run every repository operation as one tenant on the other's row.
//!
//! ```ignore
//! use tenant::testing::{TwoTenants, assert_isolated};
//!
//! #[tokio::test]
//! async fn posts_are_isolated() {
//!     let db = my_service::test_db().await; // your tables, on SQLite or PostgreSQL
//!     let tenants = TwoTenants::new();
//!     assert_isolated::<post::Entity, _, _>(&db, &tenants, || async {
//!         post::ActiveModel {
//!             id: Set(Uuid::new_v4()),
//!             slug: Set(Uuid::new_v4().to_string()), // unique per tenant: a fresh value
//!             ..Default::default()
//!         }
//!     })
//!     .await; // panics naming each operation that reached the other tenant's row
//!
//!     // A child: its parent first, in the same tenant (the closure runs in its scope).
//!     assert_isolated::<comment::Entity, _, _>(&db, &tenants, || async {
//!         let post = db.repo::<post::Entity>().insert(new_post()).await.unwrap();
//!         comment::ActiveModel { id: Set(Uuid::new_v4()), post_id: Set(post.id), ..Default::default() }
//!     })
//!     .await;
//! }
//! ```

use std::fmt::Write as _;
use std::future::Future;

use sea_orm::sea_query::{FromValueTuple, IntoCondition};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, Condition, EntityTrait, IntoActiveModel,
    Iterable, ModelTrait, PrimaryKeyToColumn, PrimaryKeyTrait,
};

use crate::catalog::{Catalog, NewTenant, TenantStatus};
use crate::{Error, Result, TenantDb, TenantId, TenantRepo, TenantScoped};

/// Two tenants, `a` and `b`, with fresh ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwoTenants {
    /// The tenant that acts.
    pub a: TenantId,
    /// The tenant whose rows it must not reach.
    pub b: TenantId,
}

impl Default for TwoTenants {
    fn default() -> Self {
        Self::new()
    }
}

impl TwoTenants {
    /// Two tenants with random ids.
    pub fn new() -> Self {
        Self {
            a: TenantId::from(uuid::Uuid::new_v4()),
            b: TenantId::from(uuid::Uuid::new_v4()),
        }
    }

    /// Registers both in `catalog`, active on the shared tables, with slugs `test-a-<id>` and
    /// `test-b-<id>`.
    pub async fn register(&self, catalog: &Catalog) -> Result<()> {
        for (tenant, letter) in [(self.a, 'a'), (self.b, 'b')] {
            let short = &tenant.to_string()[..8];
            catalog
                .register(
                    NewTenant::shared(tenant, format!("test-{letter}-{short}"))
                        .status(TenantStatus::Active),
                )
                .await?;
        }
        Ok(())
    }

    /// Runs `fut` as tenant `a`.
    pub async fn as_a<F: Future>(&self, fut: F) -> F::Output {
        crate::scope(self.a, fut).await
    }

    /// Runs `fut` as tenant `b`.
    pub async fn as_b<F: Future>(&self, fut: F) -> F::Output {
        crate::scope(self.b, fut).await
    }
}

type KeyOf<E> = <<E as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType;

/// Checks that tenant `a` reaches none of tenant `b`'s rows of `E` through any repository
/// operation, and that nothing runs with no tenant; panics naming every operation that did.
///
/// `new_row` makes an insertable row of `E` (a fresh primary key unless the database makes it,
/// fresh values for unique columns, no tenant); it runs in the scope of the tenant the row is
/// for, so that it can insert the row's parents there first. One row is inserted for each tenant; as `a`, on
/// `b`'s row: `find_by_id`, `all`, `count`, `exists`, `update`, `update_many`, `delete_by_id`,
/// `delete_many`, an insert naming `b` and `upsert`; with no tenant, a read and an insert; then
/// `b`'s row must be as it was.
/// The two rows stay, for further checks (such as [`assert_rls_refuses`], feature `postgres`).
///
/// # Panics
///
/// On every operation that reached `b`'s row or ran without a tenant, and when the setup itself
/// fails (an insert of `new_row`'s rows).
pub async fn assert_isolated<E, F, Fut>(db: &TenantDb, tenants: &TwoTenants, new_row: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = E::ActiveModel>,
    E: TenantScoped,
    E::ActiveModel: ActiveModelBehavior + Send,
    E::Model: IntoActiveModel<E::ActiveModel>,
{
    let table = E::default().table_name();
    let repo = TenantRepo::<E>::new(db);
    let theirs = tenants
        .as_b(async { repo.insert(new_row().await).await })
        .await
        .unwrap_or_else(|e| panic!("`{table}`: inserting tenant b's row: {e}"));
    let spare = tenants
        .as_a(async {
            repo.insert(new_row().await).await?;
            Ok::<_, Error>(new_row().await)
        })
        .await
        .unwrap_or_else(|e| panic!("`{table}`: inserting tenant a's row: {e}"));
    let key = || KeyOf::<E>::from_value_tuple(theirs.get_primary_key_value());
    let is_theirs = key_condition::<E>(&theirs);
    // `b`'s row as a change: every column set but the tenant's.
    let change = || {
        let mut am = theirs.clone().into_active_model().reset_all();
        am.not_set(E::TENANT_COLUMN);
        am
    };
    let mut breaches = Vec::new();
    let mut breach =
        |operation: &str, outcome: String| breaches.push(format!("{operation}: {outcome}"));

    tenants
        .as_a(async {
            match repo.find_by_id(key()).await {
                Ok(None) => {}
                other => breach("find_by_id", format!("{other:?}")),
            }
            match repo.all().await {
                Ok(rows)
                    if rows
                        .iter()
                        .all(|r| r.get(E::TENANT_COLUMN) == tenants.a.to_value()) =>
                {
                    match repo.count().await {
                        Ok(n) if n == rows.len() as u64 => {}
                        other => breach("count", format!("{other:?}, {} rows read", rows.len())),
                    }
                }
                other => breach("all", format!("{other:?}")),
            }
            match repo.exists(is_theirs.clone()).await {
                Ok(false) => {}
                other => breach("exists", format!("{other:?}")),
            }
            match repo.update(change()).await {
                Err(Error::NotFound { .. }) => {}
                other => breach("update", format!("{other:?}")),
            }
            match repo.update_many(change(), is_theirs.clone()).await {
                Ok(0) => {}
                other => breach("update_many", format!("{other:?}")),
            }
            match repo.delete_by_id(key()).await {
                Err(Error::NotFound { .. }) => {}
                other => breach("delete_by_id", format!("{other:?}")),
            }
            match repo.delete_many(is_theirs.clone()).await {
                Ok(0) => {}
                other => breach("delete_many", format!("{other:?}")),
            }
            let mut naming_b = new_row().await;
            naming_b.set(E::TENANT_COLUMN, tenants.b.to_value());
            match repo.insert(naming_b).await {
                Err(Error::CrossTenant { .. }) => {}
                other => breach("insert naming tenant b", format!("{other:?}")),
            }
            // Last: where `b`'s rows live apart (a schema or database of its own), `b`'s key
            // is free in `a`'s tables and the upsert inserts `a`'s own row; on shared tables
            // it is `NotFound`; a parent of `b`'s that `a` does not have is `ParentNotFound`.
            // Either way `b`'s row must be untouched (checked below).
            match repo.upsert(change()).await {
                Err(Error::NotFound { .. } | Error::ParentNotFound { .. }) => {}
                Ok(row) if row.get(E::TENANT_COLUMN) == tenants.a.to_value() => {}
                other => breach("upsert", format!("{other:?}")),
            }
        })
        .await;
    match repo.all().await {
        Err(Error::NoTenant) => {}
        other => breach("all, with no tenant in scope", format!("{other:?}")),
    }
    match repo.insert(spare).await {
        Err(Error::NoTenant) => {}
        other => breach("insert, with no tenant in scope", format!("{other:?}")),
    }
    match tenants.as_b(repo.find_by_id(key())).await {
        Ok(Some(row)) if E::Column::iter().all(|c| row.get(c) == theirs.get(c)) => {}
        other => breach(
            "tenant b's row afterwards",
            format!("{other:?}, was {theirs:?}"),
        ),
    }
    if !breaches.is_empty() {
        let mut message = format!("tenant a reached tenant b's `{table}` rows:");
        for b in &breaches {
            let _ = write!(message, "\n  - {b}");
        }
        panic!("{message}");
    }
}

/// `model`'s primary key as a condition.
fn key_condition<E: EntityTrait>(model: &E::Model) -> Condition {
    E::PrimaryKey::iter().fold(Condition::all(), |c, pk| {
        let column = pk.into_column();
        c.add(column.eq(model.get(column)).into_condition())
    })
}

#[cfg(feature = "postgres")]
pub use rls::{assert_audit_clean, assert_rls_refuses};

#[cfg(feature = "postgres")]
mod rls {
    use sea_orm::{
        ConnectionTrait, DatabaseConnection, DbBackend, DbErr, RuntimeErr, Statement,
        TransactionTrait,
    };

    use super::TwoTenants;
    use crate::{Rls, TenantScoped};

    /// Checks, with raw SQL on `app` (a connection as the application role, which must hold
    /// both tenants' rows of `E`, as [`assert_isolated`](super::assert_isolated) leaves them),
    /// what Row-Level Security alone refuses: with no tenant bound, no rows; bound to `a`, none
    /// of `b`'s rows read, updated, deleted, or moved to `b`; a malformed binding reads
    /// nothing. Panics naming each query that got through. Every statement runs in a
    /// transaction that is rolled back.
    ///
    /// # Panics
    ///
    /// On every query that reached `b`'s rows or saw rows unbound, and when `app` cannot run
    /// a transaction.
    #[expect(
        clippy::disallowed_methods,
        reason = "raw SQL on the application role, past the app layer: what RLS alone refuses"
    )]
    pub async fn assert_rls_refuses<E: TenantScoped>(
        app: &DatabaseConnection,
        rls: &Rls,
        tenants: &TwoTenants,
    ) {
        let table = format!("\"{}\"", E::default().table_name());
        let column = format!("\"{}\"", sea_orm::IdenStatic::as_str(&E::TENANT_COLUMN));
        let (a, b) = (tenants.a.to_string(), tenants.b.to_string());
        let bind = |tenant: &str| {
            format!(
                "SELECT set_config('{}', '{}', true)",
                rls.setting(),
                tenant.replace('\'', "''")
            )
        };
        let count = |filter: &str| format!("SELECT count(*) AS n FROM {table} {filter}");
        let checks: Vec<(&str, Option<String>, String)> = vec![
            ("read with no tenant bound", None, count("")),
            (
                "read of b's rows bound to a",
                Some(bind(&a)),
                count(&format!("WHERE {column} = '{b}'")),
            ),
            (
                "read bound to a malformed tenant",
                Some(bind("not-a-tenant")),
                count(""),
            ),
            ("read bound to an empty tenant", Some(bind("")), count("")),
            (
                "update of b's rows bound to a",
                Some(bind(&a)),
                format!(
                    "WITH done AS (UPDATE {table} SET {column} = {column} WHERE {column} = '{b}' RETURNING 1) SELECT count(*) AS n FROM done"
                ),
            ),
            (
                "delete of b's rows bound to a",
                Some(bind(&a)),
                format!(
                    "WITH done AS (DELETE FROM {table} WHERE {column} = '{b}' RETURNING 1) SELECT count(*) AS n FROM done"
                ),
            ),
            (
                "a's rows moved to b, bound to a",
                Some(bind(&a)),
                format!(
                    "WITH done AS (UPDATE {table} SET {column} = '{b}' RETURNING 1) SELECT count(*) AS n FROM done"
                ),
            ),
        ];
        let mut breaches = Vec::new();
        for (what, binding, sql) in checks {
            let txn = app
                .begin()
                .await
                .unwrap_or_else(|e| panic!("`{table}`: BEGIN on the application role: {e}"));
            let outcome = async {
                if let Some(binding) = binding {
                    txn.execute_unprepared(&binding).await?;
                }
                let row = txn
                    .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
                    .await?;
                row.map_or(Ok(0), |r| r.try_get::<i64>("", "n"))
            }
            .await;
            let _ = txn.rollback().await;
            match outcome {
                Ok(0) => {}
                Ok(n) => breaches.push(format!("{what}: {n} rows")),
                // Refused by the database: a policy's WITH CHECK (42501), a binding that is no
                // UUID (22P02). Any other error means the check itself did not run.
                Err(e) => match sqlstate(&e).as_deref() {
                    Some("42501" | "22P02") => {}
                    // Citus refuses to change a row's distribution column at all.
                    Some("0A000") if e.to_string().contains("modifying the partition value") => {}
                    // A key or foreign key refused it: the statement reached the rows.
                    Some(code) if code.starts_with("23") => {
                        breaches.push(format!(
                            "{what}: reached the rows, refused only by a constraint ({e})"
                        ));
                    }
                    _ => panic!("`{table}`: {what}: the check could not run: {e}"),
                },
            }
        }
        assert!(
            breaches.is_empty(),
            "Row-Level Security let through on {table}:\n  - {}",
            breaches.join("\n  - ")
        );
    }

    /// Runs the start-up audit ([`audit`](crate::audit)) as a test: `app` is a connection as the
    /// application role, `schema` your declarations with the RLS settings you deploy.
    ///
    /// # Panics
    ///
    /// With the report, on any finding (a role that bypasses RLS, a table without its policy,
    /// key or foreign key), or when the audit cannot run.
    pub async fn assert_audit_clean(app: &DatabaseConnection, schema: &crate::TenantTables) {
        let report = crate::audit(app, schema)
            .await
            .unwrap_or_else(|e| panic!("the audit could not run: {e}"));
        assert!(report.is_clean(), "the audit found problems:\n{report}");
    }

    /// The SQLSTATE of a database's refusal.
    fn sqlstate(error: &DbErr) -> Option<String> {
        match error {
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e
                .as_database_error()
                .and_then(sea_orm::sqlx::error::DatabaseError::code)
                .map(std::borrow::Cow::into_owned),
            _ => None,
        }
    }
}
