//! [`TenantRepo`]: the repository of one tenant-scoped entity.

use std::fmt;
use std::marker::PhantomData;

use sea_orm::sea_query::IntoCondition;
use sea_orm::{
    ActiveModelBehavior, EntityTrait, IntoActiveModel, PrimaryKeyTrait, QueryFilter, Related,
    Select, SelectTwo, SelectTwoMany,
};

use super::read::Paginator;
use super::scoped::Scoped;
use super::write;
use crate::Result;
use crate::entity::{Tenancy, TenantScoped};
use crate::exec::{TenantConnection, TenantDb, TenantTxn};

/// Reads and writes of `E`, limited to the tenant in scope.
///
/// Every read carries the tenant predicate, every insert is stamped with the tenant, and no
/// update or delete by id can touch another tenant's row: it is [`Error::NotFound`](crate::Error::NotFound)
/// with nothing written.
pub struct TenantRepo<E: TenantScoped, C: TenantConnection = TenantDb> {
    conn: C,
    entity: PhantomData<fn() -> E>,
}

impl<E: TenantScoped> TenantRepo<E, TenantDb> {
    /// A repository on `db` (a cheap clone of the pool handle).
    pub fn new(db: &TenantDb) -> Self {
        Self {
            conn: db.clone(),
            entity: PhantomData,
        }
    }
}

impl TenantDb {
    /// The repository of `E` on this handle: `TenantRepo::<E>::new(self)`.
    pub fn repo<E: TenantScoped>(&self) -> TenantRepo<E> {
        TenantRepo::new(self)
    }
}

impl TenantTxn {
    /// The repository of `E` inside this transaction.
    pub fn repo<E: TenantScoped>(&self) -> TenantRepo<E, &TenantTxn> {
        TenantRepo {
            conn: self,
            entity: PhantomData,
        }
    }
}

impl<E: TenantScoped, C: TenantConnection> fmt::Debug for TenantRepo<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantRepo")
            .field("entity", &E::default().table_name())
            .finish_non_exhaustive()
    }
}

type ModelOf<E> = <E as EntityTrait>::Model;
type ActiveOf<E> = <E as EntityTrait>::ActiveModel;
type KeyOf<E> = <<E as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType;

impl<E, C> TenantRepo<E, C>
where
    E: TenantScoped,
    C: TenantConnection,
    ActiveOf<E>: ActiveModelBehavior + Send,
    ModelOf<E>: IntoActiveModel<ActiveOf<E>>,
{
    /// The handle this repository runs on.
    pub fn connection(&self) -> &C {
        &self.conn
    }

    /// A scoped select with SeaORM's builder API; run it with `.all(repo.connection())` and the like.
    pub fn find(&self) -> Scoped<Select<E>> {
        crate::__private::find::<E>()
    }

    /// The row with this primary key in the current tenant.
    pub async fn find_by_id(&self, id: impl Into<KeyOf<E>>) -> Result<Option<ModelOf<E>>> {
        crate::query::read::get_by_id::<E, C>(&self.conn, id.into()).await
    }

    /// Every row of the current tenant.
    pub async fn all(&self) -> Result<Vec<ModelOf<E>>> {
        self.find().all(&self.conn).await
    }

    /// The number of rows of the current tenant.
    pub async fn count(&self) -> Result<u64> {
        crate::query::read::count_all::<E, C>(&self.conn).await
    }

    /// Whether any row of the current tenant matches `filter`.
    pub async fn exists(&self, filter: impl IntoCondition) -> Result<bool> {
        self.find().filter(filter).exists(&self.conn).await
    }

    /// Pages through the current tenant's rows of `query` (from [`find`](Self::find)).
    pub fn paginate(&self, query: Scoped<Select<E>>, page_size: u64) -> Paginator<'_, C, E> {
        query.paginate(&self.conn, page_size)
    }

    /// Inserts `am`, stamped with the current tenant. An `am` that names another tenant is
    /// refused with [`Error::CrossTenant`](crate::Error::CrossTenant).
    pub async fn insert(&self, am: ActiveOf<E>) -> Result<ModelOf<E>> {
        write::insert(&self.conn, am).await
    }

    /// Inserts every model, each stamped; all or none.
    pub async fn insert_many(
        &self,
        models: impl IntoIterator<Item = ActiveOf<E>>,
    ) -> Result<Vec<ModelOf<E>>> {
        write::insert_many(&self.conn, models).await
    }

    /// Updates the row with `am`'s primary key in the current tenant. The tenant column never
    /// changes.
    pub async fn update(&self, am: ActiveOf<E>) -> Result<ModelOf<E>> {
        write::update(&self.conn, am).await
    }

    /// Sets the `Set` columns of `am` on every row of the current tenant matching `filter`;
    /// returns how many changed.
    pub async fn update_many(&self, am: ActiveOf<E>, filter: impl IntoCondition) -> Result<u64> {
        crate::__private::update_many::<E>()
            .set(am)
            .filter(filter)
            .exec(&self.conn)
            .await
    }

    /// Deletes the row with this primary key in the current tenant.
    pub async fn delete_by_id(&self, id: impl Into<KeyOf<E>>) -> Result<()> {
        write::delete_by_id::<E, C, _>(&self.conn, id).await
    }

    /// Deletes every row of the current tenant matching `filter`; returns how many went.
    pub async fn delete_many(&self, filter: impl IntoCondition) -> Result<u64> {
        crate::__private::delete_many::<E>()
            .filter(filter)
            .exec(&self.conn)
            .await
    }

    /// Inserts `am`, or updates the current tenant's row with the same primary key. Another
    /// tenant's row with that key is left alone: [`Error::NotFound`](crate::Error::NotFound).
    pub async fn upsert(&self, am: ActiveOf<E>) -> Result<ModelOf<E>> {
        write::upsert(&self.conn, am).await
    }

    /// Like [`upsert`](Self::upsert), on the per-tenant unique `(tenant column, columns..)`.
    pub async fn upsert_on(
        &self,
        am: ActiveOf<E>,
        columns: impl IntoIterator<Item = E::Column>,
    ) -> Result<ModelOf<E>> {
        write::upsert_on(&self.conn, am, columns).await
    }

    /// The rows of `R` related to `model`, in the current tenant.
    pub async fn find_related<R>(&self, model: &ModelOf<E>, r: R) -> Result<Vec<R::Model>>
    where
        R: Tenancy,
        E: Related<R>,
    {
        crate::__private::find_related(model, r)
            .all(&self.conn)
            .await
    }

    /// Each row with its related `R` row of the same tenant (`LEFT JOIN`).
    pub fn find_also_related<R>(&self, r: R) -> Scoped<SelectTwo<E, R>>
    where
        R: Tenancy,
        E: Related<R>,
    {
        self.find().find_also_related(r)
    }

    /// Each row with its related `R` rows of the same tenant.
    pub fn find_with_related<R>(&self, r: R) -> Scoped<SelectTwoMany<E, R>>
    where
        R: Tenancy,
        E: Related<R>,
    {
        self.find().find_with_related(r)
    }

    /// For each of `models`, its related `R` rows of the current tenant (a loader: one query
    /// for all of them).
    pub async fn load_many<R>(&self, models: &[ModelOf<E>], r: R) -> Result<Vec<Vec<R::Model>>>
    where
        R: Tenancy,
        R::Model: Send + Sync,
        E: Related<R>,
        ModelOf<E>: Sync,
    {
        crate::query::read::load_many::<E, R, C>(&self.conn, models, r).await
    }
}
