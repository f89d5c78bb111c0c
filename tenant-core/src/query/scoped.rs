//! [`Scoped`]: a SeaORM query whose tenant predicates are added when it runs, with SeaORM's
//! builder API and every way to run it.
//!
//! The predicate is added when the query runs, from the tenant in scope at that moment, so no
//! builder call the user makes can drop it. Joined tenant-scoped entities get their predicate in
//! the join's `ON` clause, which keeps `LEFT JOIN` semantics. How a read runs (its kept
//! statement, the pipeline, the paginator) is in `read`; how a write runs, in `write`.

use std::marker::PhantomData;

use sea_orm::sea_query::{Expr, IntoValueTuple, SelectStatement};
use sea_orm::{
    ActiveModelTrait, Cursor, DeleteMany, EntityTrait, FromQueryResult, IdenStatic, IntoIdentity,
    PaginatorTrait, PartialModelTrait, PrimaryKeyTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Related, RelationDef, Select, SelectModel, SelectTwo, SelectTwoMany,
    TryGetableMany, UpdateMany,
};

use super::read::Paginator;
#[cfg(feature = "pipeline")]
use super::read::piped;
use super::write::write_error;
use crate::context::Access;
use crate::entity::{Tenancy, TenantScoped, table_name};
use crate::exec::{self, TenantConnection, in_unit};
use crate::scope::{Pin, Plan, tenant_on};
use crate::{Error, Result};

/// A SeaORM query whose tenant predicates are added when it runs.
///
/// Made by the tenant-scoped `Entity::find()`, `Entity::find_by_id(..)`, `Model::find_related(..)`
/// and [`TenantRepo::find`](crate::TenantRepo::find). It has SeaORM's builder API
/// ([`QueryFilter`], [`QuerySelect`], [`QueryOrder`]) and runs only on a [`TenantConnection`].
#[must_use = "a query does nothing until it is run with `.all(&db)`, `.one(&db)`, .."]
#[derive(Clone, Debug)]
pub struct Scoped<Q> {
    pub(crate) query: Q,
    /// The tenant a joined entity's `ON` predicate was built for, when the base entity is global
    /// and so has no column to compare with.
    pub(crate) pinned: Pin,
    /// Set by a hand-written join (`QuerySelect::join` and its kin), which gives the joined
    /// table no tenant predicate; refused at execution, where errors can be returned.
    pub(crate) unscoped_join: bool,
}

impl<Q> Scoped<Q> {
    /// Wraps a SeaORM query. The predicates are added at execution.
    #[doc(hidden)]
    pub fn new(query: Q) -> Self {
        Self {
            query,
            pinned: Pin::Free,
            unscoped_join: false,
        }
    }

    /// The wrapped query, without the tenant predicate.
    pub(crate) fn into_inner(self) -> Q {
        self.query
    }

    /// Applies a builder call to the wrapped query.
    pub(crate) fn map<R>(self, f: impl FnOnce(Q) -> R) -> Scoped<R> {
        Scoped {
            query: f(self.query),
            pinned: self.pinned,
            unscoped_join: self.unscoped_join,
        }
    }

    /// A hand-written join: the query is refused from now on.
    fn unscoped_join(mut self, f: impl FnOnce(Q) -> Q) -> Self {
        self.query = f(self.query);
        self.unscoped_join = true;
        self
    }

    /// The query as built so far, without the tenant predicate (that one is only added when
    /// the query runs).
    pub fn as_query(&self) -> &Q {
        &self.query
    }
}

impl<Q: QueryFilter> QueryFilter for Scoped<Q> {
    type QueryStatement = Q::QueryStatement;

    fn query(&mut self) -> &mut Self::QueryStatement {
        self.query.query()
    }
}

/// The join methods are SeaORM's, but a query that uses them is refused at execution with
/// [`Error::UnscopedJoin`]: the joined table would get no tenant predicate. The scoped joins are
/// `left_join`, `inner_join`, `find_also_related` and `find_with_related`.
impl<Q: QuerySelect> QuerySelect for Scoped<Q> {
    type QueryStatement = Q::QueryStatement;

    fn query(&mut self) -> &mut SelectStatement {
        QuerySelect::query(&mut self.query)
    }

    fn join(self, join: sea_orm::JoinType, rel: RelationDef) -> Self {
        self.unscoped_join(|q| q.join(join, rel))
    }

    fn join_rev(self, join: sea_orm::JoinType, rel: RelationDef) -> Self {
        self.unscoped_join(|q| q.join_rev(join, rel))
    }

    fn join_as<I: sea_orm::sea_query::IntoIden>(
        self,
        join: sea_orm::JoinType,
        rel: RelationDef,
        alias: I,
    ) -> Self {
        self.unscoped_join(|q| q.join_as(join, rel, alias))
    }

    fn join_as_rev<I: sea_orm::sea_query::IntoIden>(
        self,
        join: sea_orm::JoinType,
        rel: RelationDef,
        alias: I,
    ) -> Self {
        self.unscoped_join(|q| q.join_as_rev(join, rel, alias))
    }

    fn join_join(
        self,
        join: sea_orm::JoinType,
        rel: RelationDef,
        via: Option<RelationDef>,
    ) -> Self {
        self.unscoped_join(|q| q.join_join(join, rel, via))
    }

    fn join_join_rev(
        self,
        join: sea_orm::JoinType,
        rel: RelationDef,
        via: Option<RelationDef>,
    ) -> Self {
        self.unscoped_join(|q| q.join_join_rev(join, rel, via))
    }
}

impl<Q: QueryOrder> QueryOrder for Scoped<Q> {
    type QueryStatement = Q::QueryStatement;

    fn query(&mut self) -> &mut SelectStatement {
        QueryOrder::query(&mut self.query)
    }
}

impl<Q> Scoped<Q> {
    /// Refuses a query that cannot run as built: one with a hand-written join, or one whose
    /// joined-entity predicate was built for another tenant than `conn` acts for.
    pub(crate) fn check_pinned<C: TenantConnection + ?Sized>(&self, conn: &C) -> Result<()> {
        if self.unscoped_join {
            return Err(Error::UnscopedJoin {
                query: std::any::type_name::<Q>(),
            });
        }
        if self.pinned == Pin::Free {
            return Ok(());
        }
        match (self.pinned, exec::access(conn)?) {
            (Pin::Tenant(built), Access::Tenant(now)) if built == now => Ok(()),
            (_, Access::System(_)) | (Pin::Free, _) => Ok(()),
            (Pin::NoTenant, _) => Err(Error::NoTenant),
            (Pin::Tenant(built), Access::Tenant(now)) => Err(Error::ScopeMismatch {
                bound: Some(built),
                scope: Some(now),
            }),
        }
    }
}

pub(super) type KeyOf<E> = <<E as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType;

impl<E: Tenancy> Scoped<Select<E>> {
    pub(super) fn prepare<C: TenantConnection + ?Sized>(
        self,
        conn: &C,
        op: &'static str,
    ) -> Result<(Select<E>, Plan)> {
        self.check_pinned(conn)?;
        let plan = Plan::of::<E, C>(conn, op)?;
        Ok((plan.apply(self.query), plan))
    }

    /// All rows of the current tenant that match.
    pub async fn all<C: TenantConnection>(self, conn: &C) -> Result<Vec<E::Model>> {
        let (select, plan) = self.prepare(conn, "select")?;
        #[cfg(feature = "pipeline")]
        if let Some(models) = piped::models(conn, &plan, &select).await? {
            return Ok(models);
        }
        in_unit!(plan, conn, |exec| select.all(exec))
    }

    /// The first matching row of the current tenant.
    pub async fn one<C: TenantConnection>(self, conn: &C) -> Result<Option<E::Model>> {
        let (select, plan) = self.prepare(conn, "select")?;
        #[cfg(feature = "pipeline")]
        let select = {
            // SeaORM's `one` adds the same `LIMIT 1`.
            let select = select.limit(1);
            if let Some(models) = piped::models(conn, &plan, &select).await? {
                return Ok(models.into_iter().next());
            }
            select
        };
        in_unit!(plan, conn, |exec| select.one(exec))
    }

    /// How many rows of the current tenant match.
    pub async fn count<C: TenantConnection>(self, conn: &C) -> Result<u64> {
        let (select, plan) = self.prepare(conn, "count")?;
        #[cfg(feature = "pipeline")]
        if let Some(count) = piped::count(conn, &plan, &select).await? {
            return Ok(count);
        }
        in_unit!(plan, conn, |exec| select.count(exec))
    }

    /// Whether any row of the current tenant matches.
    pub async fn exists<C: TenantConnection>(self, conn: &C) -> Result<bool> {
        let (select, plan) = self.prepare(conn, "exists")?;
        let select = select.limit(1);
        #[cfg(feature = "pipeline")]
        if let Some(models) = piped::models(conn, &plan, &select).await? {
            return Ok(!models.is_empty());
        }
        let row = in_unit!(plan, conn, |exec| select.one(exec))?;
        Ok(row.is_some())
    }

    /// Pages through the current tenant's matching rows; the count and every page are scoped.
    ///
    /// # Panics
    ///
    /// When `page_size` is zero.
    pub fn paginate<C: TenantConnection>(self, conn: &C, page_size: u64) -> Paginator<'_, C, E> {
        assert!(page_size != 0, "`page_size` must not be zero");
        Paginator {
            query: self,
            conn,
            page_size,
        }
    }

    /// Cursor pagination by `columns` (SeaORM's `cursor_by`); the tenant predicate is added when
    /// the page is fetched.
    pub fn cursor_by<K: IntoIdentity>(self, columns: K) -> Scoped<CursorOf<E>> {
        self.map(|select| CursorOf {
            cursor: select.cursor_by(columns),
            reversed: false,
        })
    }

    /// Maps rows to another model, such as a `DerivePartialModel` or a `FromQueryResult`.
    pub fn into_model<M: FromQueryResult>(self) -> Scoped<IntoModel<E, M>> {
        self.map(|select| IntoModel {
            select,
            model: PhantomData,
        })
    }

    /// Selects exactly the columns of a partial model.
    pub fn into_partial_model<M: PartialModelTrait>(mut self) -> Scoped<IntoModel<E, M>> {
        self.query = self.query.select_only();
        self.query = M::select_cols(self.query);
        self.into_model()
    }

    /// Maps rows to tuples of the selected columns (`select_only().column(..)`).
    pub fn into_tuple<T: TryGetableMany>(self) -> Scoped<IntoTuple<E, T>> {
        self.map(|select| IntoTuple {
            select,
            tuple: PhantomData,
        })
    }

    /// `LEFT JOIN`s the related entity `R`; when `R` is tenant-scoped its predicate goes in the
    /// `ON` clause, so a row whose relation lives in another tenant comes back with `None`.
    pub fn find_also_related<R>(self, r: R) -> Scoped<SelectTwo<E, R>>
    where
        R: Tenancy,
        E: Related<R>,
    {
        self.left_join_scoped::<R>()
            .map(|select| select.select_also(r))
    }

    /// Each row with its related `R` rows of the same tenant (one-to-many or many-to-many).
    pub fn find_with_related<R>(self, r: R) -> Scoped<SelectTwoMany<E, R>>
    where
        R: Tenancy,
        E: Related<R>,
    {
        self.left_join_scoped::<R>()
            .map(|select| select.select_with(r))
    }

    /// `LEFT JOIN`s the related entity `R` (through the junction for many-to-many) with `R`'s
    /// tenant predicate in the `ON` clause: SeaORM's `left_join`, scoped.
    pub fn left_join<R>(self, _: R) -> Self
    where
        R: Tenancy,
        E: Related<R>,
    {
        self.join_scoped::<R>(sea_orm::JoinType::LeftJoin)
    }

    /// `INNER JOIN`s the related entity `R` (through the junction for many-to-many) with `R`'s
    /// tenant predicate in the `ON` clause: SeaORM's `inner_join`, scoped.
    pub fn inner_join<R>(self, _: R) -> Self
    where
        R: Tenancy,
        E: Related<R>,
    {
        self.join_scoped::<R>(sea_orm::JoinType::InnerJoin)
    }

    fn left_join_scoped<R>(self) -> Self
    where
        R: Tenancy,
        E: Related<R>,
    {
        self.join_scoped::<R>(sea_orm::JoinType::LeftJoin)
    }

    /// Joins `R` (through the junction for many-to-many) with `R`'s tenant predicate in the
    /// `ON` clause.
    fn join_scoped<R>(self, join: sea_orm::JoinType) -> Self
    where
        R: Tenancy,
        E: Related<R>,
    {
        let mut pinned = self.pinned;
        let unscoped_join = self.unscoped_join;
        let mut select = self.query;
        if let Some(via) = E::via() {
            select = QuerySelect::join(
                select,
                join,
                crate::scope::junction::via_in_tenant::<E>(via),
            );
        }
        let mut rel = E::to();
        if let Some(r_col) = R::tenant_column() {
            let (on, pin) = tenant_on::<E, R>(r_col, &rel);
            rel = rel.on_condition(on);
            if pin != Pin::Free {
                pinned = pin;
            }
        }
        Scoped {
            query: QuerySelect::join(select, join, rel),
            pinned,
            unscoped_join,
        }
    }
}

impl<Q: QueryFilter> Scoped<Q> {
    /// The base entity `E`'s plan, acting also for the joined `R` (whose predicate is already
    /// in the `ON` clause).
    fn prepare_two<E: Tenancy, R: Tenancy, C: TenantConnection + ?Sized>(
        self,
        conn: &C,
    ) -> Result<(Q, Plan)> {
        self.check_pinned(conn)?;
        let base = Plan::of::<E, C>(conn, "select")?;
        // One operation, counted once: by the base entity's plan, or the joined one's when the
        // base is global.
        let joined = if base.access().is_some() {
            Plan::of_joined::<R, C>(conn, "select")?
        } else {
            Plan::of::<R, C>(conn, "select")?
        };
        let plan = base.with(joined);
        Ok((plan.apply(self.query), plan))
    }
}

impl<E: Tenancy, R: Tenancy> Scoped<SelectTwo<E, R>> {
    /// All rows of the current tenant, each with its related row when that row is in the same
    /// tenant.
    pub async fn all<C: TenantConnection>(
        self,
        conn: &C,
    ) -> Result<Vec<(E::Model, Option<R::Model>)>> {
        let (select, plan) = self.prepare_two::<E, R, C>(conn)?;
        #[cfg(feature = "pipeline")]
        if let Some(pairs) = piped::pairs::<E, R, C, _>(conn, &plan, &select).await? {
            return Ok(pairs);
        }
        in_unit!(plan, conn, |exec| select.all(exec))
    }

    /// The first row, as [`all`](Self::all).
    pub async fn one<C: TenantConnection>(
        self,
        conn: &C,
    ) -> Result<Option<(E::Model, Option<R::Model>)>> {
        let (select, plan) = self.prepare_two::<E, R, C>(conn)?;
        #[cfg(feature = "pipeline")]
        let select = {
            // SeaORM's `one` adds the same `LIMIT 1`.
            let select = select.limit(1);
            if let Some(pairs) = piped::pairs::<E, R, C, _>(conn, &plan, &select).await? {
                return Ok(pairs.into_iter().next());
            }
            select
        };
        in_unit!(plan, conn, |exec| select.one(exec))
    }
}

impl<E: Tenancy, R: Tenancy> Scoped<SelectTwoMany<E, R>> {
    /// All rows of the current tenant, each with its related rows of the same tenant.
    pub async fn all<C: TenantConnection>(
        self,
        conn: &C,
    ) -> Result<Vec<(E::Model, Vec<R::Model>)>> {
        let (select, plan) = self.prepare_two::<E, R, C>(conn)?;
        #[cfg(feature = "pipeline")]
        if let Some(pairs) = piped::pairs::<E, R, C, _>(conn, &plan, &select).await? {
            return Ok(piped::grouped::<E, _>(pairs));
        }
        in_unit!(plan, conn, |exec| select.all(exec))
    }
}

/// A scoped cursor; see [`Scoped::cursor_by`].
#[derive(Debug)]
pub struct CursorOf<E: sea_orm::EntityTrait> {
    cursor: Cursor<SelectModel<E::Model>>,
    /// Whether the page is the last `n` rows, which SeaORM reads in reverse and turns round.
    reversed: bool,
}

impl<E: Tenancy> Scoped<CursorOf<E>> {
    /// Rows after `values` of the cursor columns.
    pub fn after<V: IntoValueTuple>(mut self, values: V) -> Self {
        self.query.cursor.after(values);
        self
    }

    /// Rows before `values` of the cursor columns.
    pub fn before<V: IntoValueTuple>(mut self, values: V) -> Self {
        self.query.cursor.before(values);
        self
    }

    /// The first `n` rows.
    pub fn first(mut self, n: u64) -> Self {
        self.query.cursor.first(n);
        self.query.reversed = false;
        self
    }

    /// The last `n` rows.
    pub fn last(mut self, n: u64) -> Self {
        self.query.cursor.last(n);
        self.query.reversed = true;
        self
    }

    /// Descending order of the cursor columns.
    pub fn desc(mut self) -> Self {
        self.query.cursor.desc();
        self
    }

    /// The page: rows of the current tenant only.
    pub async fn all<C: TenantConnection>(mut self, conn: &C) -> Result<Vec<E::Model>> {
        self.check_pinned(conn)?;
        let plan = Plan::of::<E, C>(conn, "cursor")?;
        if let Some(p) = plan.predicate() {
            QuerySelect::query(&mut self.query.cursor).cond_where(p);
        }
        let CursorOf {
            mut cursor,
            reversed,
        } = self.query;
        #[cfg(feature = "pipeline")]
        if let Some(route) = exec::route(conn, plan.access(), plan.span()).await? {
            let stmt = piped::cursor_statement(&mut cursor).await?;
            let mut models = match piped::on_route::<E>(&route, || stmt.clone()).await? {
                Some(models) => models,
                None => in_unit!(plan, conn, |exec| piped::decoded::<E>(exec, stmt))?,
            };
            if reversed {
                models.reverse();
            }
            return Ok(models);
        }
        #[cfg(not(feature = "pipeline"))]
        let _ = reversed;
        in_unit!(plan, conn, |exec| cursor.all(exec))
    }
}

/// A scoped select mapped to another model; see [`Scoped::into_model`].
#[derive(Debug, Clone)]
pub struct IntoModel<E: sea_orm::EntityTrait, M> {
    select: Select<E>,
    model: PhantomData<fn() -> M>,
}

impl<E: Tenancy, M: FromQueryResult> Scoped<IntoModel<E, M>> {
    fn prepare<C: TenantConnection + ?Sized>(self, conn: &C) -> Result<(Select<E>, Plan)> {
        self.map(|q| q.select).prepare(conn, "select")
    }

    /// All rows of the current tenant, as `M`.
    pub async fn all<C: TenantConnection>(self, conn: &C) -> Result<Vec<M>> {
        let (select, plan) = self.prepare(conn)?;
        in_unit!(plan, conn, |exec| select.into_model::<M>().all(exec))
    }

    /// The first row of the current tenant, as `M`.
    pub async fn one<C: TenantConnection>(self, conn: &C) -> Result<Option<M>> {
        let (select, plan) = self.prepare(conn)?;
        in_unit!(plan, conn, |exec| select.into_model::<M>().one(exec))
    }
}

/// A scoped select mapped to tuples; see [`Scoped::into_tuple`].
#[derive(Debug, Clone)]
pub struct IntoTuple<E: sea_orm::EntityTrait, T> {
    select: Select<E>,
    tuple: PhantomData<fn() -> T>,
}

impl<E: Tenancy, T: TryGetableMany> Scoped<IntoTuple<E, T>> {
    fn prepare<C: TenantConnection + ?Sized>(self, conn: &C) -> Result<(Select<E>, Plan)> {
        self.map(|q| q.select).prepare(conn, "select")
    }

    /// All rows of the current tenant, as tuples.
    pub async fn all<C: TenantConnection>(self, conn: &C) -> Result<Vec<T>> {
        let (select, plan) = self.prepare(conn)?;
        in_unit!(plan, conn, |exec| select.into_tuple::<T>().all(exec))
    }

    /// The first row of the current tenant, as a tuple.
    pub async fn one<C: TenantConnection>(self, conn: &C) -> Result<Option<T>> {
        let (select, plan) = self.prepare(conn)?;
        in_unit!(plan, conn, |exec| select.into_tuple::<T>().one(exec))
    }
}

impl<E: TenantScoped> Scoped<UpdateMany<E>> {
    /// Sets `column` to `expr` on every matching row of the current tenant.
    ///
    /// The tenant column cannot be set: [`exec`](Self::exec) then fails with
    /// [`Error::TenantChange`].
    pub fn col_expr<T: sea_orm::sea_query::IntoIden>(self, column: T, expr: Expr) -> Self {
        self.map(|q| q.col_expr(column, expr))
    }

    /// Sets the `Set` columns of `am` on every matching row of the current tenant.
    ///
    /// The tenant column cannot be set: [`exec`](Self::exec) then fails with
    /// [`Error::TenantChange`].
    pub fn set<A: ActiveModelTrait<Entity = E>>(self, am: A) -> Self {
        self.map(|q| q.set(am))
    }

    /// Updates every matching row of the current tenant; returns how many rows changed.
    ///
    /// # Errors
    ///
    /// [`Error::TenantChange`] when the statement's `SET` list names the tenant column, however
    /// it got there (`col_expr`, `set`, or the statement from `QueryFilter::query()`).
    pub async fn exec<C: TenantConnection>(self, conn: &C) -> Result<u64> {
        // The statement itself is checked, not the builder calls: `query()` reaches it directly.
        let tenant_column = <E as TenantScoped>::TENANT_COLUMN.as_str();
        if QueryTrait::as_query(self.as_query())
            .get_values()
            .iter()
            .any(|(column, _)| column.to_string() == tenant_column)
        {
            return Err(Error::TenantChange {
                entity: table_name::<E>(),
            });
        }
        let plan = Plan::of::<E, C>(conn, "update_many")?;
        let query = plan.apply(self.into_inner());
        // Nothing to set is SeaORM's no-op (no statement): left to it.
        #[cfg(feature = "pipeline")]
        if !QueryTrait::as_query(&query).get_values().is_empty()
            && let Some(rows) = piped_write_count(conn, &plan, &query).await?
        {
            return Ok(rows);
        }
        let result = in_unit!(plan, conn, |exec| async move {
            query.exec(exec).await.map_err(write_error::<E>)
        })?;
        Ok(result.rows_affected)
    }
}

impl<E: TenantScoped> Scoped<DeleteMany<E>> {
    /// Deletes every matching row of the current tenant; returns how many rows went.
    pub async fn exec<C: TenantConnection>(self, conn: &C) -> Result<u64> {
        let plan = Plan::of::<E, C>(conn, "delete_many")?;
        let query = plan.apply(self.into_inner());
        #[cfg(feature = "pipeline")]
        if let Some(rows) = piped_write_count(conn, &plan, &query).await? {
            return Ok(rows);
        }
        Ok(in_unit!(plan, conn, |exec| query.exec(exec))?.rows_affected)
    }
}

/// The rows `query` (an `UPDATE` or `DELETE` under `plan`) touched, run on the pipelined
/// executor when the connection has one: in RLS mode with the binding and the `COMMIT`, one
/// round trip. `None`: no pipeline, or the statement does not fit it, or PostgreSQL refused it
/// (it took no effect), and the caller runs it on sqlx, which reports SeaORM's error.
#[cfg(feature = "pipeline")]
async fn piped_write_count<C: TenantConnection + ?Sized>(
    conn: &C,
    plan: &Plan,
    query: &impl QueryTrait,
) -> Result<Option<u64>> {
    let Some(route) = crate::exec::route(conn, plan.access(), plan.span()).await? else {
        return Ok(None);
    };
    let stmt = query.build(sea_orm::DbBackend::Postgres);
    Box::pin(route.write_count(&stmt)).await
}
