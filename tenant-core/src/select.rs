//! [`Scoped`]: SeaORM's select builders with the tenant predicate added at execution.
//!
//! The predicate is added when the query runs, from the tenant in scope at that moment, so no
//! builder call the user makes can drop it. Joined tenant-scoped entities get their predicate in
//! the join's `ON` clause, which keeps `LEFT JOIN` semantics.

use std::marker::PhantomData;

use sea_orm::sea_query::{Expr, ExprTrait, FromValueTuple, IntoValueTuple, SelectStatement};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, Cursor, DbBackend, EntityTrait, FromQueryResult,
    IdenStatic, IntoIdentity, PaginatorTrait, PartialModelTrait, PrimaryKeyTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Related, RelationDef, Select, SelectModel, SelectTwo,
    SelectTwoMany, TryGetableMany, Value,
};

use crate::context::{Access, audit_system};
use crate::db::{self, TenantConnection, Unit};
use crate::entity::{Tenancy, table_name};
use crate::template::{self, Shape};
use crate::{Error, Result, TenantId};

type KeyOf<E> = <<E as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType;

/// A SeaORM query whose tenant predicates are added when it runs.
///
/// Made by the tenant-scoped `Entity::find()`, `Entity::find_by_id(..)`, `Model::find_related(..)`
/// and [`TenantRepo::find`](crate::TenantRepo::find). It has SeaORM's builder API
/// ([`QueryFilter`], [`QuerySelect`], [`QueryOrder`]) and runs only on a [`TenantConnection`].
#[must_use = "a query does nothing until it is run with `.all(&db)`, `.one(&db)`, .."]
#[derive(Clone, Debug)]
pub struct Scoped<Q> {
    query: Q,
    /// The tenant a joined entity's `ON` predicate was built for, when the base entity is global
    /// and so has no column to compare with.
    pinned: Pin,
    /// Set by a hand-written join (`QuerySelect::join` and its kin), which gives the joined
    /// table no tenant predicate; refused at execution, where errors can be returned.
    unscoped_join: bool,
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

/// How one operation on `E` runs: the predicate that limits it to the tenant, and whom the
/// unit of work acts for.
pub(crate) struct Plan {
    predicate: Option<Expr>,
    access: Option<Access>,
}

impl Plan {
    /// The plan for `E` on `conn`: `E`'s tenant predicate for the tenant `conn` acts for, none
    /// for a global `E` or under a system scope (logged). Fails closed with no tenant.
    pub(crate) fn of<E: Tenancy, C: TenantConnection + ?Sized>(
        conn: &C,
        operation: &'static str,
    ) -> Result<Self> {
        if E::tenant_column().is_none() {
            return Ok(Self {
                predicate: None,
                access: None,
            });
        }
        Ok(Self::acting_for::<E>(db::access(conn)?, operation))
    }

    /// The plan for tenant-scoped `E` acting for `access`.
    pub(crate) fn acting_for<E: Tenancy>(access: Access, operation: &'static str) -> Self {
        let predicate = match (&access, E::tenant_column()) {
            (_, None) => None,
            (Access::Tenant(id), Some(column)) => Some(column.eq(id.to_value())),
            (Access::System(reason), Some(_)) => {
                audit_system(reason, operation, table_name::<E>());
                None
            }
        };
        Self {
            predicate,
            access: Some(access),
        }
    }

    /// Whom the operation acts for; `None` when only global tables are involved.
    pub(crate) fn access(&self) -> Option<&Access> {
        self.access.as_ref()
    }

    /// This plan's predicate, acting also for whoever `other` acts for (a joined entity).
    pub(crate) fn with(self, other: Plan) -> Self {
        Self {
            predicate: self.predicate,
            access: self.access.or(other.access),
        }
    }

    /// `query` with the tenant predicate added.
    pub(crate) fn apply<Q: QueryFilter>(&self, query: Q) -> Q {
        match &self.predicate {
            Some(p) => query.filter(p.clone()),
            None => query,
        }
    }

    /// The predicate, for statements that take it elsewhere (an upsert's `WHERE`).
    pub(crate) fn predicate(&self) -> Option<&Expr> {
        self.predicate.as_ref()
    }

    /// The value the predicate compares the tenant column with, if there is a predicate.
    pub(crate) fn tenant_value(&self) -> Option<sea_orm::Value> {
        match (&self.predicate, &self.access) {
            (Some(_), Some(Access::Tenant(id))) => Some(id.to_value()),
            _ => None,
        }
    }

    /// Opens the unit of work this plan's statements run in.
    pub(crate) async fn unit<'c, C: TenantConnection + ?Sized>(
        &self,
        conn: &'c C,
    ) -> Result<Unit<'c>> {
        db::unit(conn, self.access.as_ref()).await
    }
}

impl<Q> Scoped<Q> {
    /// Refuses a query that cannot run as built: one with a hand-written join, or one whose
    /// joined-entity predicate was built for another tenant than `conn` acts for.
    fn check_pinned<C: TenantConnection + ?Sized>(&self, conn: &C) -> Result<()> {
        if self.unscoped_join {
            return Err(Error::UnscopedJoin {
                query: std::any::type_name::<Q>(),
            });
        }
        if self.pinned == Pin::Free {
            return Ok(());
        }
        match (self.pinned, db::access(conn)?) {
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

/// Runs `$call` on the executor of `$plan`'s unit of work and finishes the unit with its result.
///
/// Boxed: the unit and SeaORM's statement future are kilobytes, and an operation's future is
/// moved whole into each future that wraps it (`tenant::scope`, the task, the caller's own);
/// one allocation costs less than those copies.
macro_rules! in_unit {
    ($plan:expr, $conn:expr, |$exec:ident| $call:expr) => {
        Box::pin(async {
            let unit = $plan.unit($conn).await?;
            let result = {
                let $exec = &unit.exec();
                $call.await.map_err(Error::from)
            };
            unit.finish(result).await
        })
        .await
    };
}
pub(crate) use in_unit;

impl<E: Tenancy> Scoped<Select<E>> {
    fn prepare<C: TenantConnection + ?Sized>(
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
            select = QuerySelect::join(select, join, via);
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

/// The `ON` predicate for joined tenant-scoped `R`: equal to the base entity's tenant column,
/// or (base entity global) to the tenant in scope now, pinned and re-checked at execution.
fn tenant_on<E: Tenancy, R: Tenancy>(
    r_col: R::Column,
    rel: &RelationDef,
) -> (
    impl Fn(sea_orm::sea_query::DynIden, sea_orm::sea_query::DynIden) -> Condition
    + Send
    + Sync
    + 'static,
    Pin,
) {
    let previous = rel.on_condition.clone();
    let r_name = sea_orm::sea_query::Alias::new(r_col.as_str());
    let (base, pin) = if let Some(e_col) = E::tenant_column() {
        (
            Target::Column(Expr::col((e_col.entity_name(), e_col))),
            Pin::Free,
        )
    } else {
        let now = crate::context::current().ok();
        (
            Target::Value(now.map_or(sea_orm::Value::Uuid(None), TenantId::to_value)),
            now.map_or(Pin::NoTenant, Pin::Tenant),
        )
    };
    let on = move |from: sea_orm::sea_query::DynIden, to: sea_orm::sea_query::DynIden| {
        let r_tenant = Expr::col((to.clone(), r_name.clone()));
        let this = match &base {
            Target::Column(e) => r_tenant.eq(e.clone()),
            Target::Value(v) => r_tenant.eq(v.clone()),
        };
        let mut cond = Condition::all().add(this);
        if let Some(prev) = &previous {
            cond = cond.add(prev(from, to));
        }
        cond
    };
    (on, pin)
}

/// What the joined-entity predicate of a query was built against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pin {
    /// The base entity's own tenant column: valid in any scope.
    Free,
    /// A value: the tenant in scope when the query was built, re-checked at execution.
    Tenant(TenantId),
    /// Built outside any tenant scope: refused at execution.
    NoTenant,
}

enum Target {
    Column(Expr),
    Value(sea_orm::Value),
}

impl<Q: QueryFilter> Scoped<Q> {
    /// The base entity `E`'s plan, acting also for the joined `R` (whose predicate is already
    /// in the `ON` clause).
    fn prepare_two<E: Tenancy, R: Tenancy, C: TenantConnection + ?Sized>(
        self,
        conn: &C,
    ) -> Result<(Q, Plan)> {
        self.check_pinned(conn)?;
        let plan = Plan::of::<E, C>(conn, "select")?.with(Plan::of::<R, C>(conn, "select")?);
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
        in_unit!(plan, conn, |exec| select.all(exec))
    }

    /// The first row, as [`all`](Self::all).
    pub async fn one<C: TenantConnection>(
        self,
        conn: &C,
    ) -> Result<Option<(E::Model, Option<R::Model>)>> {
        let (select, plan) = self.prepare_two::<E, R, C>(conn)?;
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
        in_unit!(plan, conn, |exec| select.all(exec))
    }
}

/// A scoped cursor; see [`Scoped::cursor_by`].
#[derive(Debug)]
pub struct CursorOf<E: sea_orm::EntityTrait> {
    cursor: Cursor<SelectModel<E::Model>>,
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
        self
    }

    /// The last `n` rows.
    pub fn last(mut self, n: u64) -> Self {
        self.query.cursor.last(n);
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
        if let Some(p) = &plan.predicate {
            QuerySelect::query(&mut self.query.cursor).cond_where(p.clone());
        }
        let mut cursor = self.query.cursor;
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

/// Pages through a scoped select: [`Scoped::paginate`]. Every call re-reads the tenant in scope.
#[derive(Debug)]
pub struct Paginator<'db, C, E: sea_orm::EntityTrait> {
    query: Scoped<Select<E>>,
    conn: &'db C,
    page_size: u64,
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
    let select = plan.apply(crate::__private::find::<R>().into_inner());
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
    if let Some(route) = db::route(conn, plan.access())
        && let Some(count) = Box::pin(route.count(&statement(DbBackend::Postgres))).await?
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

/// `SELECT .. WHERE <key> [AND <tenant>] LIMIT 1` for `key` under `plan`, as SeaORM's
/// `find_by_id(key).filter(..).one(..)` builds it; kept once built.
pub(crate) fn get_statement<E: Tenancy>(
    plan: &Plan,
    key: &sea_orm::sea_query::ValueTuple,
    backend: DbBackend,
) -> sea_orm::Statement {
    let mut values: Vec<Value> = key.clone().into_iter().collect();
    values.extend(plan.tenant_value());
    // SeaORM's `one` adds `LIMIT 1`, a bound value.
    values.push(Value::from(1_u64));
    let scoped = plan.predicate.is_some();
    template::statement::<E>(Shape::Get, backend, scoped, values, || {
        let key = KeyOf::<E>::from_value_tuple(key.clone());
        #[expect(clippy::disallowed_methods, reason = "the plan adds the predicate")]
        let select = <E as EntityTrait>::find_by_id(key);
        plan.apply(select).limit(1).build(backend)
    })
}

/// The count of `E`'s rows under `plan`, as SeaORM's `find().filter(..).count(..)` builds it;
/// kept once built.
pub(crate) fn count_statement<E: Tenancy>(plan: &Plan, backend: DbBackend) -> sea_orm::Statement {
    let values = plan.tenant_value().into_iter().collect();
    let scoped = plan.predicate.is_some();
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
mod piped {
    use sea_orm::{DbBackend, EntityTrait, IdenStatic, Iterable, QueryTrait, Select, Statement};

    use super::Plan;
    use crate::db::{self, TenantConnection};
    use crate::{Result, Tenancy};

    /// The models `select` returns.
    pub(super) async fn models<E: Tenancy, C: TenantConnection + ?Sized>(
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
        let Some(route) = db::route(conn, plan.access()) else {
            return Ok(None);
        };
        let Some(decoder) = E::__pg_decoder() else {
            return Ok(None);
        };
        let stmt = stmt();
        let columns: Vec<&str> = <E as EntityTrait>::Column::iter()
            .map(|c| c.as_str())
            .collect();
        // Boxed: keeps the pipelined path's state out of every read's future.
        Box::pin(route.models(&stmt, &decoder, &columns)).await
    }

    /// How many rows `select` matches, counted as SeaORM's `count` does.
    pub(super) async fn count<E: Tenancy, C: TenantConnection + ?Sized>(
        conn: &C,
        plan: &Plan,
        select: &Select<E>,
    ) -> Result<Option<u64>> {
        let Some(route) = db::route(conn, plan.access()) else {
            return Ok(None);
        };
        let stmt = DbBackend::Postgres.build(&super::counted(select.as_query()));
        Box::pin(route.count(&stmt)).await
    }
}
