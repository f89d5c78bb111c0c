//! What `Entity::insert(..)`, `insert_many(..)`, `update(..)` and `delete_by_id(..)` return for
//! a tenant-scoped entity: builders run with `.exec(&db)`.

use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, EntityTrait, IntoActiveModel, PrimaryKeyTrait,
};

use super::write::{ModelOf, delete_by_id, insert, insert_many, update};
use crate::Result;
use crate::entity::TenantScoped;
use crate::exec::TenantConnection;

/// `Entity::insert(am)` on a tenant-scoped entity: run it with [`exec`](Self::exec).
#[must_use = "an insert does nothing until `.exec(&db)`"]
#[derive(Debug)]
pub struct Insert<A> {
    am: A,
}

impl<A> Insert<A>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
{
    #[doc(hidden)]
    pub fn new(am: A) -> Self {
        Self { am }
    }

    /// Inserts the row, stamped with the tenant in scope, and returns it as stored.
    pub async fn exec<C: TenantConnection>(self, conn: &C) -> Result<ModelOf<A>> {
        insert(conn, self.am).await
    }
}

/// `Entity::insert_many(models)` on a tenant-scoped entity.
#[must_use = "an insert does nothing until `.exec(&db)`"]
#[derive(Debug)]
pub struct InsertMany<A> {
    models: Vec<A>,
}

impl<A> InsertMany<A>
where
    A: ActiveModelTrait + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
{
    #[doc(hidden)]
    pub fn new(models: impl IntoIterator<Item = A>) -> Self {
        Self {
            models: models.into_iter().collect(),
        }
    }

    /// Inserts every row, each stamped; returns them as stored.
    pub async fn exec<C: TenantConnection>(self, conn: &C) -> Result<Vec<ModelOf<A>>> {
        insert_many(conn, self.models).await
    }
}

/// `Entity::update(am)` on a tenant-scoped entity.
#[must_use = "an update does nothing until `.exec(&db)`"]
#[derive(Debug)]
pub struct Update<A> {
    am: A,
}

impl<A> Update<A>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
{
    #[doc(hidden)]
    pub fn new(am: A) -> Self {
        Self { am }
    }

    /// Updates the row within the tenant in scope; [`Error::NotFound`](crate::Error::NotFound) for any other tenant's.
    pub async fn exec<C: TenantConnection>(self, conn: &C) -> Result<ModelOf<A>> {
        update(conn, self.am).await
    }
}

/// `Entity::delete_by_id(id)` on a tenant-scoped entity.
#[must_use = "a delete does nothing until `.exec(&db)`"]
pub struct DeleteById<E: EntityTrait> {
    id: <E::PrimaryKey as PrimaryKeyTrait>::ValueType,
}

impl<E: EntityTrait> std::fmt::Debug for DeleteById<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeleteById").finish_non_exhaustive()
    }
}

impl<E: TenantScoped> DeleteById<E> {
    #[doc(hidden)]
    pub fn new(id: impl Into<<E::PrimaryKey as PrimaryKeyTrait>::ValueType>) -> Self {
        Self { id: id.into() }
    }

    /// Deletes the row in the tenant in scope; [`Error::NotFound`](crate::Error::NotFound) for any other tenant's.
    pub async fn exec<C: TenantConnection>(self, conn: &C) -> Result<()> {
        delete_by_id::<E, C, _>(conn, self.id).await
    }
}
