//! Writes to global tables (plans, currencies: `#[tenant(global)]` entities): typed, so that no
//! tenant-owned entity can be written this way; audited, each write with the reason given; and
//! run on the handle's own units, not through the escape hatch.

// The writes of a global entity have no tenant to scope: SeaORM's own are the right ones here.
#![expect(
    clippy::disallowed_methods,
    reason = "writes of `#[tenant(global)]` entities, which have no tenant to scope"
)]

use sea_orm::{ActiveModelBehavior, ActiveModelTrait, DeleteMany, IntoActiveModel, UpdateMany};

use super::write::ModelOf;
use crate::Result;
use crate::entity::{Global, table_name};
use crate::events::audit_event;
use crate::exec::{TenantDb, in_unit};
use crate::scope::Plan;

/// The typed speed bump in front of [`TenantDb::global_writes`].
///
/// Greppable (`rg AssertGlobal`), and it needs a reason written in the code.
#[derive(Debug)]
pub struct AssertGlobal {
    reason: &'static str,
}

impl AssertGlobal {
    /// Asserts that what follows writes tables every tenant shares, for `reason`.
    ///
    /// # Panics
    ///
    /// When `reason` is empty or only whitespace.
    pub fn new(reason: &'static str) -> Self {
        assert!(
            !reason.trim().is_empty(),
            "`AssertGlobal::new` needs a reason; say why this code writes a table every tenant shares"
        );
        Self { reason }
    }
}

/// Writes to `#[tenant(global)]` entities, from [`TenantDb::global_writes`]. Every write is
/// logged to the `tenant::audit` target with the reason given (at
/// [`audit_level`](crate::audit_level)).
///
/// The `tenant` crate's README ("Global tables") has a runnable example.
#[derive(Debug)]
pub struct GlobalWrites<'a> {
    db: &'a TenantDb,
    reason: &'static str,
}

impl TenantDb {
    /// Writes to the tables every tenant shares (`#[tenant(global)]` entities): the typed,
    /// audited way, where a tenant-owned entity does not compile. They run on this handle's
    /// units for no tenant (in RLS mode, bound to none), whatever scope they are called in.
    pub fn global_writes(&self, assert: &AssertGlobal) -> GlobalWrites<'_> {
        GlobalWrites {
            db: self,
            reason: assert.reason,
        }
    }
}

impl GlobalWrites<'_> {
    /// The plan of `operation` on global `E` (no tenant, no predicate), once logged.
    fn plan<E: Global>(&self, operation: &'static str) -> Result<Plan> {
        audit_event!(
            reason = self.reason,
            operation,
            entity = table_name::<E>(),
            "write to a global table"
        );
        Plan::of::<E, TenantDb>(self.db, operation)
    }

    /// Inserts `am` and returns the row as stored.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn insert<A>(&self, am: A) -> Result<ModelOf<A>>
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send,
        A::Entity: Global,
        ModelOf<A>: IntoActiveModel<A>,
    {
        let plan = self.plan::<A::Entity>("insert")?;
        in_unit!(plan, self.db, |exec| am.insert(exec))
    }

    /// Updates the row `am` names by its primary key and returns it as stored.
    ///
    /// # Errors
    ///
    /// The database's error (`DbErr::RecordNotUpdated` when no row has that key).
    pub async fn update<A>(&self, am: A) -> Result<ModelOf<A>>
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send,
        A::Entity: Global,
        ModelOf<A>: IntoActiveModel<A>,
    {
        let plan = self.plan::<A::Entity>("update")?;
        in_unit!(plan, self.db, |exec| am.update(exec))
    }

    /// Deletes the row `am` names by its primary key; returns how many rows went (0 or 1).
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn delete<A>(&self, am: A) -> Result<u64>
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send,
        A::Entity: Global,
    {
        let plan = self.plan::<A::Entity>("delete")?;
        in_unit!(plan, self.db, |exec| async {
            am.delete(exec).await.map(|done| done.rows_affected)
        })
    }

    /// Updates the rows of `E` that `build` selects, with the values it sets (`build` gets
    /// `E::update_many()`); returns how many rows changed.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn update_many<E: Global>(
        &self,
        build: impl FnOnce(UpdateMany<E>) -> UpdateMany<E>,
    ) -> Result<u64> {
        let plan = self.plan::<E>("update_many")?;
        let statement = build(E::update_many());
        in_unit!(plan, self.db, |exec| async {
            statement.exec(exec).await.map(|done| done.rows_affected)
        })
    }

    /// Deletes the rows of `E` that `build` selects (`build` gets `E::delete_many()`); returns
    /// how many went.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn delete_many<E: Global>(
        &self,
        build: impl FnOnce(DeleteMany<E>) -> DeleteMany<E>,
    ) -> Result<u64> {
        let plan = self.plan::<E>("delete_many")?;
        let statement = build(E::delete_many());
        in_unit!(plan, self.db, |exec| async {
            statement.exec(exec).await.map(|done| done.rows_affected)
        })
    }
}
