//! [`Scoped`]: SeaORM's select builders with the tenant predicate added at execution.
//!
//! The predicate is added when the query runs, from the tenant in scope at that moment, so no
//! builder call the user makes can drop it. Joined tenant-scoped entities get their predicate in
//! the join's `ON` clause, which keeps `LEFT JOIN` semantics.

use std::marker::PhantomData;

use sea_orm::sea_query::{Expr, ExprTrait, SelectStatement};
use sea_orm::{
    ColumnTrait, Condition, FromQueryResult, IdenStatic, PaginatorTrait, PartialModelTrait,
    QueryFilter, QueryOrder, QuerySelect, Related, RelationDef, Select, SelectTwo, SelectTwoMany,
    TryGetableMany,
};

use crate::context::{Access, audit_system};
use crate::db::{self, TenantConnection};
use crate::entity::{Tenancy, table_name};
use crate::{Error, Result, TenantId};

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
    /// Set by a builder call that must not run, such as an update of the tenant column; the
    /// refusal is reported at execution, where errors can be returned.
    refused: bool,
}

impl<Q> Scoped<Q> {
    /// Wraps a SeaORM query. The predicates are added at execution.
    #[doc(hidden)]
    pub fn new(query: Q) -> Self {
        Self {
            query,
            pinned: Pin::Free,
            refused: false,
        }
    }

    /// The wrapped query, without the tenant predicate.
    pub(crate) fn into_inner(self) -> Q {
        self.query
    }

    /// Applies a builder call to the wrapped query, refusing the query from now on if `refuse`.
    pub(crate) fn map<R>(self, f: impl FnOnce(Q) -> R, refuse: bool) -> Scoped<R> {
        Scoped {
            query: f(self.query),
            pinned: self.pinned,
            refused: self.refused || refuse,
        }
    }

    pub(crate) fn is_refused(&self) -> bool {
        self.refused
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

impl<Q: QuerySelect> QuerySelect for Scoped<Q> {
    type QueryStatement = Q::QueryStatement;

    fn query(&mut self) -> &mut SelectStatement {
        QuerySelect::query(&mut self.query)
    }
}

impl<Q: QueryOrder> QueryOrder for Scoped<Q> {
    type QueryStatement = Q::QueryStatement;

    fn query(&mut self) -> &mut SelectStatement {
        QueryOrder::query(&mut self.query)
    }
}

/// The predicate that limits `E` to the tenant `conn` acts for, or `None` when `E` is global or
/// a system scope is in force (logged). Fails closed with no tenant.
pub(crate) fn predicate<E: Tenancy, C: TenantConnection + ?Sized>(
    conn: &C,
    operation: &'static str,
) -> Result<Option<Expr>> {
    let Some(column) = E::tenant_column() else {
        return Ok(None);
    };
    match db::access(conn)? {
        Access::Tenant(id) => Ok(Some(column.eq(id.to_value()))),
        Access::System(reason) => {
            audit_system(reason, operation, table_name::<E>());
            Ok(None)
        }
    }
}

impl<Q> Scoped<Q> {
    fn check_pinned<C: TenantConnection + ?Sized>(&self, conn: &C) -> Result<()> {
        if self.pinned == Pin::Free {
            return Ok(());
        }
        match (self.pinned, db::access(conn)?) {
            (Pin::Tenant(built), Access::Tenant(now)) if built == now => Ok(()),
            (_, Access::System(_)) | (Pin::Free, _) => Ok(()),
            (Pin::NoTenant, _) => Err(Error::NoTenant),
            (Pin::Tenant(built), Access::Tenant(now)) => Err(Error::ScopeMismatch {
                bound: built.to_string(),
                scope: now.to_string(),
            }),
        }
    }
}

fn scoped_select<E: Tenancy, C: TenantConnection + ?Sized>(
    select: Select<E>,
    conn: &C,
    operation: &'static str,
) -> Result<Select<E>> {
    Ok(match predicate::<E, C>(conn, operation)? {
        Some(p) => select.filter(p),
        None => select,
    })
}

impl<E: Tenancy> Scoped<Select<E>> {
    fn prepare<C: TenantConnection + ?Sized>(
        self,
        conn: &C,
        op: &'static str,
    ) -> Result<Select<E>> {
        self.check_pinned(conn)?;
        scoped_select(self.query, conn, op)
    }

    /// All rows of the current tenant that match.
    pub async fn all<C: TenantConnection>(self, conn: &C) -> Result<Vec<E::Model>> {
        let select = self.prepare(conn, "select")?;
        Ok(select.all(&db::exec(conn)).await?)
    }

    /// The first matching row of the current tenant.
    pub async fn one<C: TenantConnection>(self, conn: &C) -> Result<Option<E::Model>> {
        let select = self.prepare(conn, "select")?;
        Ok(select.one(&db::exec(conn)).await?)
    }

    /// How many rows of the current tenant match.
    pub async fn count<C: TenantConnection>(self, conn: &C) -> Result<u64> {
        let select = self.prepare(conn, "count")?;
        Ok(select.count(&db::exec(conn)).await?)
    }

    /// Whether any row of the current tenant matches.
    pub async fn exists<C: TenantConnection>(self, conn: &C) -> Result<bool> {
        let select = self.prepare(conn, "exists")?;
        Ok(select.limit(1).one(&db::exec(conn)).await?.is_some())
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

    /// Maps rows to another model, such as a `DerivePartialModel` or a `FromQueryResult`.
    pub fn into_model<M: FromQueryResult>(self) -> Scoped<IntoModel<E, M>> {
        self.map(
            |select| IntoModel {
                select,
                model: PhantomData,
            },
            false,
        )
    }

    /// Selects exactly the columns of a partial model.
    pub fn into_partial_model<M: PartialModelTrait>(mut self) -> Scoped<IntoModel<E, M>> {
        self.query = self.query.select_only();
        self.query = M::select_cols(self.query);
        self.into_model()
    }

    /// Maps rows to tuples of the selected columns (`select_only().column(..)`).
    pub fn into_tuple<T: TryGetableMany>(self) -> Scoped<IntoTuple<E, T>> {
        self.map(
            |select| IntoTuple {
                select,
                tuple: PhantomData,
            },
            false,
        )
    }

    /// `LEFT JOIN`s the related entity `R`; when `R` is tenant-scoped its predicate goes in the
    /// `ON` clause, so a row whose relation lives in another tenant comes back with `None`.
    pub fn find_also_related<R>(self, r: R) -> Scoped<SelectTwo<E, R>>
    where
        R: Tenancy,
        E: Related<R>,
    {
        self.left_join_scoped::<R>()
            .map(|select| select.select_also(r), false)
    }

    /// Each row with its related `R` rows of the same tenant (one-to-many or many-to-many).
    pub fn find_with_related<R>(self, r: R) -> Scoped<SelectTwoMany<E, R>>
    where
        R: Tenancy,
        E: Related<R>,
    {
        self.left_join_scoped::<R>()
            .map(|select| select.select_with(r), false)
    }

    /// `LEFT JOIN`s `R` (through the junction for many-to-many) with `R`'s tenant predicate in
    /// the `ON` clause.
    fn left_join_scoped<R>(self) -> Self
    where
        R: Tenancy,
        E: Related<R>,
    {
        let mut pinned = self.pinned;
        let refused = self.refused;
        let mut select = self.query;
        if let Some(via) = E::via() {
            select = QuerySelect::join(select, sea_orm::JoinType::LeftJoin, via);
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
            query: QuerySelect::join(select, sea_orm::JoinType::LeftJoin, rel),
            pinned,
            refused,
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
        (Target::Column(e_col.into_expr_qualified()), Pin::Free)
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

trait QualifiedExpr {
    fn into_expr_qualified(self) -> Expr;
}

impl<C: ColumnTrait> QualifiedExpr for C {
    fn into_expr_qualified(self) -> Expr {
        Expr::col((self.entity_name(), self))
    }
}

impl<E: Tenancy, R: Tenancy> Scoped<SelectTwo<E, R>> {
    fn prepare<C: TenantConnection + ?Sized>(self, conn: &C) -> Result<SelectTwo<E, R>> {
        self.check_pinned(conn)?;
        // `R`'s predicate is already in the `ON` clause; only the base entity is filtered here.
        predicate::<R, C>(conn, "select")?;
        Ok(match predicate::<E, C>(conn, "select")? {
            Some(p) => self.query.filter(p),
            None => self.query,
        })
    }

    /// All rows of the current tenant, each with its related row when that row is in the same
    /// tenant.
    pub async fn all<C: TenantConnection>(
        self,
        conn: &C,
    ) -> Result<Vec<(E::Model, Option<R::Model>)>> {
        let select = self.prepare(conn)?;
        Ok(select.all(&db::exec(conn)).await?)
    }

    /// The first row, as [`all`](Self::all).
    pub async fn one<C: TenantConnection>(
        self,
        conn: &C,
    ) -> Result<Option<(E::Model, Option<R::Model>)>> {
        let select = self.prepare(conn)?;
        Ok(select.one(&db::exec(conn)).await?)
    }
}

impl<E: Tenancy, R: Tenancy> Scoped<SelectTwoMany<E, R>> {
    /// All rows of the current tenant, each with its related rows of the same tenant.
    pub async fn all<C: TenantConnection>(
        self,
        conn: &C,
    ) -> Result<Vec<(E::Model, Vec<R::Model>)>> {
        self.check_pinned(conn)?;
        predicate::<R, C>(conn, "select")?;
        let select = match predicate::<E, C>(conn, "select")? {
            Some(p) => self.query.filter(p),
            None => self.query,
        };
        Ok(select.all(&db::exec(conn)).await?)
    }
}

/// A scoped select mapped to another model; see [`Scoped::into_model`].
#[derive(Debug, Clone)]
pub struct IntoModel<E: sea_orm::EntityTrait, M> {
    select: Select<E>,
    model: PhantomData<fn() -> M>,
}

impl<E: Tenancy, M: FromQueryResult> Scoped<IntoModel<E, M>> {
    fn prepare<C: TenantConnection + ?Sized>(self, conn: &C) -> Result<Select<E>> {
        self.check_pinned(conn)?;
        scoped_select(self.query.select, conn, "select")
    }

    /// All rows of the current tenant, as `M`.
    pub async fn all<C: TenantConnection>(self, conn: &C) -> Result<Vec<M>> {
        let select = self.prepare(conn)?;
        Ok(select.into_model::<M>().all(&db::exec(conn)).await?)
    }

    /// The first row of the current tenant, as `M`.
    pub async fn one<C: TenantConnection>(self, conn: &C) -> Result<Option<M>> {
        let select = self.prepare(conn)?;
        Ok(select.into_model::<M>().one(&db::exec(conn)).await?)
    }
}

/// A scoped select mapped to tuples; see [`Scoped::into_tuple`].
#[derive(Debug, Clone)]
pub struct IntoTuple<E: sea_orm::EntityTrait, T> {
    select: Select<E>,
    tuple: PhantomData<fn() -> T>,
}

impl<E: Tenancy, T: TryGetableMany> Scoped<IntoTuple<E, T>> {
    fn prepare<C: TenantConnection + ?Sized>(self, conn: &C) -> Result<Select<E>> {
        self.check_pinned(conn)?;
        scoped_select(self.query.select, conn, "select")
    }

    /// All rows of the current tenant, as tuples.
    pub async fn all<C: TenantConnection>(self, conn: &C) -> Result<Vec<T>> {
        let select = self.prepare(conn)?;
        Ok(select.into_tuple::<T>().all(&db::exec(conn)).await?)
    }

    /// The first row of the current tenant, as a tuple.
    pub async fn one<C: TenantConnection>(self, conn: &C) -> Result<Option<T>> {
        let select = self.prepare(conn)?;
        Ok(select.into_tuple::<T>().one(&db::exec(conn)).await?)
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
    fn prepared(&self) -> Result<Select<E>> {
        self.query.clone().prepare(self.conn, "paginate")
    }

    /// The rows of page `page` (zero-based).
    pub async fn fetch_page(&self, page: u64) -> Result<Vec<E::Model>> {
        let select = self.prepared()?;
        let exec = db::exec(self.conn);
        Ok(select
            .paginate(&exec, self.page_size)
            .fetch_page(page)
            .await?)
    }

    /// The number of matching rows of the current tenant.
    pub async fn num_items(&self) -> Result<u64> {
        let select = self.prepared()?;
        let exec = db::exec(self.conn);
        Ok(select.paginate(&exec, self.page_size).num_items().await?)
    }

    /// The number of pages.
    pub async fn num_pages(&self) -> Result<u64> {
        let select = self.prepared()?;
        let exec = db::exec(self.conn);
        Ok(select.paginate(&exec, self.page_size).num_pages().await?)
    }
}

/// For each of `models`, its related `R` rows of the tenant `conn` acts for, in one query
/// (SeaORM's loader with `R`'s tenant predicate).
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
    let select = scoped_select(crate::__private::find::<R>().into_inner(), conn, "load")?;
    Ok(models.load_many(select, &db::exec(conn)).await?)
}
