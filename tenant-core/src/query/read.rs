//! Reads: a [`Scoped`] select run with the tenant predicate added at execution, on sqlx or the
//! pipeline. Joined tenant-scoped entities get their predicate in the join's `ON` clause, which
//! keeps `LEFT JOIN` semantics.

use sea_orm::sea_query::{Expr, FromValueTuple, IntoValueTuple, SelectStatement};
use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, PaginatorTrait, QuerySelect,
    QueryTrait, Related, Select, Value,
};

use super::scoped::{KeyOf, Scoped};
use super::template::{self, Shape};
use crate::Result;
use crate::entity::Tenancy;
use crate::exec::TenantConnection;
use crate::exec::in_unit;
use crate::scope::Plan;

/// Pages through a scoped select: [`Scoped::paginate`]. Every call re-reads the tenant in scope.
#[derive(Debug)]
pub struct Paginator<'db, C, E: sea_orm::EntityTrait> {
    pub(super) query: Scoped<Select<E>>,
    pub(super) conn: &'db C,
    pub(super) page_size: u64,
}

impl<C: TenantConnection, E: Tenancy> Paginator<'_, C, E> {
    fn prepared(&self) -> Result<(Select<E>, Plan)> {
        self.query.clone().prepare(self.conn, "paginate")
    }

    /// The rows of page `page` (zero-based).
    pub async fn fetch_page(&self, page: u64) -> Result<Vec<E::Model>> {
        let (select, plan) = self.prepared()?;
        #[cfg(feature = "pipeline")]
        {
            // SeaORM's paginator pages with the same `LIMIT`/`OFFSET`.
            let page_select = select
                .clone()
                .limit(self.page_size)
                .offset(self.page_size * page);
            if let Some(models) = piped::models(self.conn, &plan, &page_select).await? {
                return Ok(models);
            }
        }
        in_unit!(plan, self.conn, |exec| select
            .paginate(exec, self.page_size)
            .fetch_page(page))
    }

    /// The number of matching rows of the current tenant.
    pub async fn num_items(&self) -> Result<u64> {
        let (select, plan) = self.prepared()?;
        #[cfg(feature = "pipeline")]
        {
            let counted = select.clone().limit(None).offset(None);
            if let Some(count) = piped::count(self.conn, &plan, &counted).await? {
                return Ok(count);
            }
        }
        in_unit!(plan, self.conn, |exec| select
            .paginate(exec, self.page_size)
            .num_items())
    }

    /// The number of pages.
    pub async fn num_pages(&self) -> Result<u64> {
        let (select, plan) = self.prepared()?;
        in_unit!(plan, self.conn, |exec| select
            .paginate(exec, self.page_size)
            .num_pages())
    }
}

/// For each of `models`, its related `R` rows of the tenant `conn` acts for, in one query
/// (SeaORM's loader with `R`'s tenant predicate).
#[expect(
    clippy::disallowed_methods,
    reason = "SeaORM's builder for a scoped read; the tenant predicate is added here"
)]
pub(crate) async fn load_many<E, R, C>(
    conn: &C,
    models: &[E::Model],
    _r: R,
) -> Result<Vec<Vec<R::Model>>>
where
    E: Tenancy + Related<R>,
    R: Tenancy,
    R::Model: Send + Sync,
    E::Model: Sync,
    C: TenantConnection,
{
    use sea_orm::LoaderTrait;
    let plan = Plan::of::<R, C>(conn, "load")?;
    let mut select = plan.apply(crate::__private::find::<R>().into_inner());
    // Many-to-many: SeaORM joins the junction to `R`; it joins on the tenant column too.
    if let Some(cond) = E::via().and_then(|via| crate::scope::junction::loader_condition::<R>(&via))
    {
        select = sea_orm::QueryFilter::filter(select, cond);
    }
    in_unit!(plan, conn, |exec| models.load_many(select, exec))
}

/// `E`'s row with primary key `id` in the tenant in scope: `TenantRepo::find_by_id`, with its
/// statement kept (see [`template`]).
#[expect(
    clippy::disallowed_methods,
    reason = "SeaORM's builder for a scoped read; the tenant predicate is added here"
)]
pub(crate) async fn get_by_id<E: Tenancy, C: TenantConnection>(
    conn: &C,
    id: KeyOf<E>,
) -> Result<Option<E::Model>> {
    let plan = Plan::of::<E, C>(conn, "select")?;
    let key = id.into_value_tuple();
    let statement = |backend| get_statement::<E>(&plan, &key, backend);
    #[cfg(feature = "pipeline")]
    if let Some(models) =
        piped::rows::<E, C>(conn, &plan, || statement(DbBackend::Postgres)).await?
    {
        return Ok(models.into_iter().next());
    }
    in_unit!(plan, conn, |exec| async {
        let stmt = statement(exec.get_database_backend());
        match exec.query_one_raw(stmt).await? {
            Some(row) => E::Model::from_query_result(&row, "").map(Some),
            None => Ok(None),
        }
    })
}

/// How many rows of `E` the tenant in scope has: `TenantRepo::count`, with its statement kept.
#[expect(
    clippy::disallowed_methods,
    reason = "SeaORM's builder for a scoped read; the tenant predicate is added here"
)]
pub(crate) async fn count_all<E: Tenancy, C: TenantConnection>(conn: &C) -> Result<u64> {
    let plan = Plan::of::<E, C>(conn, "count")?;
    let statement = |backend| count_statement::<E>(&plan, backend);
    #[cfg(feature = "pipeline")]
    if let Some(route) = crate::exec::route(conn, plan.access(), plan.span()).await?
        && let Some(count) = route.count(&statement(DbBackend::Postgres)).await?
    {
        return Ok(count);
    }
    in_unit!(plan, conn, |exec| async {
        let stmt = statement(exec.get_database_backend());
        Ok::<_, sea_orm::DbErr>(match exec.query_one_raw(stmt).await? {
            Some(row) => count_of(&row)?,
            None => 0,
        })
    })
}

/// `SELECT .. WHERE <key> AND <tenant>` for `key` under `plan`, as SeaORM's
/// `find_by_id(key).filter(..)` builds it, or with SeaORM's `LIMIT 1` (its `one`) when no tenant
/// predicate applies; kept once built.
///
/// The key and the tenant match one row at most (the primary key is unique, and in the
/// distributed form `(tenant, key)` is), so the scoped statement leaves out the `Limit` node
/// PostgreSQL would otherwise set up on every execution. Without the predicate (a system
/// scope, a global entity) the distributed form may hold the key once per tenant: `LIMIT 1`
/// stays.
pub(crate) fn get_statement<E: Tenancy>(
    plan: &Plan,
    key: &sea_orm::sea_query::ValueTuple,
    backend: DbBackend,
) -> sea_orm::Statement {
    let scoped = plan.is_scoped();
    // Sized once: the key, and the tenant or the limit.
    let mut values: Vec<Value> = Vec::with_capacity(key.arity() + 1);
    values.extend(key.clone());
    match plan.tenant_value() {
        Some(tenant) if scoped => values.push(tenant),
        // SeaORM's `one` adds `LIMIT 1`, a bound value.
        _ => values.push(Value::from(1_u64)),
    }
    template::statement::<E>(Shape::Get, backend, scoped, values, || {
        let key = KeyOf::<E>::from_value_tuple(key.clone());
        #[expect(clippy::disallowed_methods, reason = "the plan adds the predicate")]
        let select = plan.apply(<E as EntityTrait>::find_by_id(key));
        if scoped { select } else { select.limit(1) }.build(backend)
    })
}

/// The count of `E`'s rows under `plan`, as SeaORM's `find().filter(..).count(..)` builds it;
/// kept once built.
pub(crate) fn count_statement<E: Tenancy>(plan: &Plan, backend: DbBackend) -> sea_orm::Statement {
    let values = plan.tenant_value().into_iter().collect();
    let scoped = plan.is_scoped();
    template::statement::<E>(Shape::Count, backend, scoped, values, || {
        #[expect(clippy::disallowed_methods, reason = "the plan adds the predicate")]
        let select = <E as EntityTrait>::find();
        backend.build(&counted(plan.apply(select).as_query()))
    })
}

/// SeaORM's count of the rows `select` matches (`PaginatorTrait::count`): the select without
/// its order, counted in a subquery (its limit and offset apply).
fn counted(select: &SelectStatement) -> SelectStatement {
    SelectStatement::new()
        .expr(Expr::cust("COUNT(*) AS num_items"))
        .from_subquery(select.clone().clear_order_by().to_owned(), "sub_query")
        .to_owned()
}

/// The count of a row of [`counted`], read as SeaORM reads it.
fn count_of(row: &sea_orm::QueryResult) -> std::result::Result<u64, sea_orm::DbErr> {
    // SeaORM's own conversion (`as u64`); a count is never negative.
    Ok(row.try_get::<i64>("", "num_items")?.cast_unsigned())
}

/// Reads on the pipelined executor, when the connection has one and the statement fits it;
/// `None` otherwise, before anything has run, and the caller takes the sqlx path.
#[cfg(feature = "pipeline")]
pub(super) mod piped {
    use std::sync::OnceLock;

    use sea_orm::{
        ConnectionTrait, Cursor, DbBackend, DbErr, EntityTrait, ExecResult, FromQueryResult,
        IdenStatic, Iterable, QueryResult, QueryTrait, Select, SelectModel, Statement,
    };

    use super::Plan;
    use crate::exec::{self, TenantConnection};
    use crate::pipeline::{Decoder, Route};
    use crate::{Result, Tenancy};

    /// The models `select` returns.
    pub(in crate::query) async fn models<E: Tenancy, C: TenantConnection + ?Sized>(
        conn: &C,
        plan: &Plan,
        select: &Select<E>,
    ) -> Result<Option<Vec<E::Model>>> {
        rows::<E, C>(conn, plan, || select.build(DbBackend::Postgres)).await
    }

    /// The models of `E` the statement `stmt` (built only if the read goes this way) returns.
    pub(super) async fn rows<E: Tenancy, C: TenantConnection + ?Sized>(
        conn: &C,
        plan: &Plan,
        stmt: impl FnOnce() -> Statement,
    ) -> Result<Option<Vec<E::Model>>> {
        let Some(route) = exec::route(conn, plan.access(), plan.span()).await? else {
            return Ok(None);
        };
        on_route::<E>(&route, stmt).await
    }

    /// [`rows`] on a route already found.
    pub(in crate::query) async fn on_route<E: Tenancy>(
        route: &Route<'_>,
        stmt: impl FnOnce() -> Statement,
    ) -> Result<Option<Vec<E::Model>>> {
        let Some(decoder) = E::__pg_decoder() else {
            crate::pipeline::declined("a field of the model has no tokio-postgres decoding");
            return Ok(None);
        };
        let stmt = stmt();
        // Not boxed: the pipelined read's state is over 1 KiB, which malloc serves on its slow
        // path; inline, it is allocated with the caller's task instead of on every read.
        route.models(&stmt, decoder, columns::<E>(decoder)).await
    }

    /// The names of `E`'s columns, in `Column` order, kept with its decoder.
    pub(in crate::query) fn columns<E: EntityTrait>(
        decoder: &Decoder<E::Model>,
    ) -> &[&'static str] {
        decoder.names(column_list::<E>)
    }

    /// The names of `E`'s columns, in `Column` order.
    fn column_list<E: EntityTrait>() -> Vec<&'static str> {
        <E as EntityTrait>::Column::iter()
            .map(|c| c.as_str())
            .collect()
    }

    /// The pairs `select` (SeaORM's `SelectTwo` or `SelectTwoMany`, which build the same
    /// statement) returns: each row of `E` with its row of `R`, if any.
    pub(in crate::query) async fn pairs<E, R, C, Q>(
        conn: &C,
        plan: &Plan,
        select: &Q,
    ) -> Result<Option<Vec<(E::Model, Option<R::Model>)>>>
    where
        E: Tenancy,
        R: Tenancy,
        C: TenantConnection + ?Sized,
        Q: QueryTrait,
    {
        let Some(route) = exec::route(conn, plan.access(), plan.span()).await? else {
            return Ok(None);
        };
        let (Some(a), Some(b)) = (E::__pg_decoder(), R::__pg_decoder()) else {
            crate::pipeline::declined("a field of a model has no tokio-postgres decoding");
            return Ok(None);
        };
        let stmt = select.build(DbBackend::Postgres);
        // SeaORM names the columns of a `SelectTwo` `A_<column>` and `B_<column>`.
        let a_names = a.paired_names(false, column_list::<E>);
        let b_names = b.paired_names(true, column_list::<R>);
        route.pairs(&stmt, (a, a_names), (b, b_names)).await
    }

    /// SeaORM's grouping of `find_with_related` rows: each `E` row once, where it first
    /// appears, with its `R` rows in the order they came (none where the left join found none).
    pub(in crate::query) fn grouped<E: EntityTrait, R>(
        rows: Vec<(E::Model, Option<R>)>,
    ) -> Vec<(E::Model, Vec<R>)> {
        use sea_orm::{ModelTrait, PrimaryKeyToColumn};
        let key = |model: &E::Model| -> Vec<sea_orm::Value> {
            <E::PrimaryKey as Iterable>::iter()
                .map(|k| model.get(k.into_column()))
                .collect()
        };
        let mut at = std::collections::HashMap::with_capacity(rows.len());
        let mut out: Vec<(E::Model, Vec<R>)> = Vec::new();
        for (left, right) in rows {
            let i = *at.entry(key(&left)).or_insert_with(|| {
                out.push((left, Vec::new()));
                out.len() - 1
            });
            out[i].1.extend(right);
        }
        out
    }

    /// The statement SeaORM's `Cursor::all` sends for `cursor` on PostgreSQL, built by SeaORM.
    /// A cursor adds its order, limit and bounds only as it runs, so it runs here against a
    /// connection that keeps the statement and returns no row; `cursor` is left as run.
    pub(in crate::query) async fn cursor_statement<M: FromQueryResult>(
        cursor: &mut Cursor<SelectModel<M>>,
    ) -> Result<Statement> {
        let recorder = Recorder(OnceLock::new());
        cursor.all(&recorder).await?;
        let kept = recorder.0.into_inner();
        Ok(kept.ok_or_else(|| DbErr::Custom("SeaORM's cursor sent no statement".into()))?)
    }

    /// The models of `E` that `stmt` returns, on `exec`, decoded as SeaORM decodes them.
    pub(in crate::query) async fn decoded<E: EntityTrait>(
        exec: &impl ConnectionTrait,
        stmt: Statement,
    ) -> std::result::Result<Vec<E::Model>, DbErr> {
        #[expect(clippy::disallowed_methods, reason = "the unit's own executor")]
        let rows = exec.query_all_raw(stmt).await?;
        rows.iter()
            .map(|row| <E::Model as FromQueryResult>::from_query_result(row, ""))
            .collect()
    }

    /// A connection that runs nothing and keeps the first query it is given.
    struct Recorder(OnceLock<Statement>);

    impl Recorder {
        fn keep(&self, stmt: Statement) {
            // SeaORM's cursor sends one query; a second would be ignored, never run.
            let _ = self.0.set(stmt);
        }
    }

    #[async_trait::async_trait]
    impl ConnectionTrait for Recorder {
        fn get_database_backend(&self) -> DbBackend {
            DbBackend::Postgres
        }

        async fn execute_raw(&self, _: Statement) -> std::result::Result<ExecResult, DbErr> {
            Err(DbErr::Custom("a statement recorder runs nothing".into()))
        }

        async fn execute_unprepared(&self, _: &str) -> std::result::Result<ExecResult, DbErr> {
            Err(DbErr::Custom("a statement recorder runs nothing".into()))
        }

        async fn query_one_raw(
            &self,
            stmt: Statement,
        ) -> std::result::Result<Option<QueryResult>, DbErr> {
            self.keep(stmt);
            Ok(None)
        }

        async fn query_all_raw(
            &self,
            stmt: Statement,
        ) -> std::result::Result<Vec<QueryResult>, DbErr> {
            self.keep(stmt);
            Ok(Vec::new())
        }
    }

    /// How many rows `select` matches, counted as SeaORM's `count` does.
    pub(in crate::query) async fn count<E: Tenancy, C: TenantConnection + ?Sized>(
        conn: &C,
        plan: &Plan,
        select: &Select<E>,
    ) -> Result<Option<u64>> {
        let Some(route) = exec::route(conn, plan.access(), plan.span()).await? else {
            return Ok(None);
        };
        let stmt = DbBackend::Postgres.build(&super::counted(select.as_query()));
        route.count(&stmt).await
    }
}
