//! Writes: every insert is stamped with the tenant in scope, every update and delete is limited
//! to it, and no write can move a row to another tenant.

use sea_orm::sea_query::{FromValueTuple as _, IntoValueTuple as _};
use sea_orm::sea_query::{OnConflict, Query, ReturningClause};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DbBackend,
    DbErr, EntityTrait, FromQueryResult, IdenStatic, IntoActiveModel, Iterable, PrimaryKeyToColumn,
    PrimaryKeyTrait, QueryTrait, Value,
};

use super::template::{self, Shape};
use crate::context::Access;
use crate::entity::{TenantScoped, table_name};
use crate::exec::TenantConnection;
#[cfg(feature = "postgres")]
use crate::exec::hooks::Lazy;
use crate::exec::in_unit;
use crate::scope::{Plan, hold_tenant, row_tenant, stamp};
use crate::{Error, Result};

pub(crate) type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;
pub(crate) type KeyOf<A> =
    <<<A as ActiveModelTrait>::Entity as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType;

/// A write's database error, with a refused reference to a parent (of another tenant, or
/// missing) reported as such.
pub(super) fn write_error<E: EntityTrait>(err: DbErr) -> Error {
    if matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
    ) {
        return Error::ParentNotFound {
            entity: table_name::<E>(),
            source: err,
        };
    }
    Error::Db(err)
}

fn not_found<E: EntityTrait>(err: DbErr) -> Error {
    match err {
        DbErr::RecordNotUpdated | DbErr::RecordNotInserted | DbErr::RecordNotFound(_) => {
            Error::NotFound {
                entity: table_name::<E>(),
            }
        }
        other => write_error::<E>(other),
    }
}

/// Inserts one row, stamped with the tenant in scope, and returns it as stored.
pub(crate) async fn insert<A, C>(conn: &C, am: A) -> Result<ModelOf<A>>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
    C: TenantConnection,
{
    let plan = Plan::of::<A::Entity, C>(conn, "insert")?;
    save_row(conn, plan, am, true).await
}

/// Stamps an insert with the tenant, or freezes it in an update ([`hold_tenant`]); a system
/// scope's insert must name a tenant of the shared tables ([`shared_row`]). `checked` is the
/// tenant the row named before its hooks ran, already checked before the unit of work was
/// opened: the catalog is read again only when a hook changed it (while the unit holds its
/// connection, so give the catalog a pool the units do not exhaust).
async fn hold<A, C>(
    conn: &C,
    am: &mut A,
    access: &Access,
    insert: bool,
    checked: Option<crate::TenantId>,
) -> Result<()>
where
    A: ActiveModelTrait,
    A::Entity: TenantScoped,
    C: TenantConnection,
{
    hold_tenant(am, access, insert)?;
    let tenant = row_tenant(am);
    if insert && tenant != checked {
        shared_row(conn, tenant, access).await?;
    }
    Ok(())
}

/// A system scope writes the shared tables: a row it inserts for a tenant whose rows the catalog
/// puts in a schema or database of its own is refused, never left where that tenant cannot see
/// it.
async fn shared_row<C>(conn: &C, tenant: Option<crate::TenantId>, access: &Access) -> Result<()>
where
    C: TenantConnection,
{
    match (access, tenant) {
        (Access::System(_), Some(tenant)) => crate::exec::shared_tenant(conn, tenant).await,
        _ => Ok(()),
    }
}

/// An insert (`insert`) or an update by key, with the model's `before_save` and `after_save`
/// hooks around it.
async fn save_row<A, C>(conn: &C, plan: Plan, am: A, insert: bool) -> Result<ModelOf<A>>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
    C: TenantConnection,
{
    let access = plan.access().cloned().ok_or(Error::NoTenant)?;
    // Before any connection is held: the catalog may share the pool a system unit runs on.
    let checked = row_tenant(&am);
    if insert {
        shared_row(conn, checked, &access).await?;
    }
    #[cfg(feature = "pipeline")]
    if let Some(route) = crate::exec::route(conn, plan.access(), plan.span()).await?
        && let Some(decoder) = <A::Entity as crate::Tenancy>::__pg_decoder()
    {
        // Boxed: keeps the pipelined path's state out of every write's future. Each mode's
        // path in a box of its own size: app-level mode's holds SeaORM's statement future
        // (hooks may run the statement through SeaORM), and RLS mode's need not.
        let row = piped::Row {
            access: &access,
            insert,
            checked,
        };
        return if route.binds() {
            Box::pin(piped::save_bound(conn, &plan, &route, decoder, am, row)).await
        } else {
            Box::pin(piped::save_unbound(conn, &plan, &route, decoder, am, row)).await
        };
    }
    let plan = &plan;
    // Boxed, as `in_unit!` is.
    Box::pin(async move {
        let unit = plan.unit(conn).await?;
        let deferred = after_commit(&unit);
        let result = {
            let exec = &unit.exec();
            async {
                let mut am = am.before_save(exec, insert).await?;
                hold(conn, &mut am, &access, insert, checked).await?;
                let model = save_statement(exec, plan, am, insert).await?;
                if deferred {
                    return Ok(model);
                }
                Ok::<_, Error>(A::after_save(model, exec, insert).await?)
            }
            .await
        };
        let model = unit.finish(result).await?;
        #[cfg(feature = "postgres")]
        if deferred {
            return after_save_committed::<A, C>(conn, plan, model, insert).await;
        }
        Ok(model)
    })
    .await
}

/// Whether the write in `unit` commits before its `after_save` (`after_delete`) hook runs: in
/// RLS mode outside a `TenantTxn`, as SeaORM's writes on a pool do. The hook then gets a unit
/// of its own, bound to the same tenant, if it uses the database; its error is returned, and
/// the write stands. In a `TenantTxn` the hook runs in it, and app-level statements outside one
/// commit as they run.
fn after_commit(unit: &crate::exec::Unit<'_>) -> bool {
    #[cfg(feature = "postgres")]
    return unit.commits();
    #[cfg(not(feature = "postgres"))]
    {
        let _ = unit;
        false
    }
}

/// `after_save` of a write that has committed, on a unit of its own if it uses the database.
#[cfg(feature = "postgres")]
async fn after_save_committed<A, C>(
    conn: &C,
    plan: &Plan,
    model: ModelOf<A>,
    insert: bool,
) -> Result<ModelOf<A>>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    C: TenantConnection,
{
    let lazy = Lazy::new(conn, plan.access());
    let result = A::after_save(model, &lazy, insert)
        .await
        .map_err(Error::from);
    lazy.finish(result).await
}

/// `after_delete` of a delete that has committed, on a unit of its own if it uses the database.
#[cfg(feature = "postgres")]
async fn after_delete_committed<A, C>(conn: &C, plan: &Plan, am: A) -> Result<()>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    C: TenantConnection,
{
    let lazy = Lazy::new(conn, plan.access());
    let result = am.after_delete(&lazy).await.map(drop).map_err(Error::from);
    lazy.finish(result).await
}

/// Runs the insert or update of `am` (tenant held) on `exec` and returns the row as stored.
#[expect(
    clippy::disallowed_methods,
    reason = "SeaORM's builder for a scoped write; the tenant stamp and predicate are added here"
)]
async fn save_statement<A, X>(exec: &X, plan: &Plan, am: A, insert: bool) -> Result<ModelOf<A>>
where
    A: ActiveModelTrait + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
    X: ConnectionTrait,
{
    // With `RETURNING`, SeaORM's `exec_with_returning` and `UpdateOne::exec` are one statement
    // returning every column: that statement, kept (see `template`).
    let backend = exec.get_database_backend();
    let kept = if !exec.support_returning() {
        None
    } else if insert {
        insert_sql(&am, backend)
    } else {
        update_sql(plan, &am, backend)
    };
    if let Some(stmt) = kept {
        let row = exec.query_one_raw(stmt).await;
        return match row.map_err(|e| saved_error::<A>(e, insert))? {
            Some(row) => ModelOf::<A>::from_query_result(&row, "").map_err(Error::Db),
            None => Err(saved_error::<A>(saved_nothing(insert), insert)),
        };
    }
    if insert {
        return A::Entity::insert(am)
            .exec_with_returning(exec)
            .await
            .map_err(write_error::<A::Entity>);
    }
    let key = am.get_primary_key_value();
    let query = plan.apply(A::Entity::update(am).validate()?);
    if query.as_query().get_values().is_empty() {
        // Nothing to set: SeaORM would read the row back by its key alone, which finds another
        // tenant's row too. Read it back with the tenant predicate instead.
        let key = key.ok_or(DbErr::UpdateGetPrimaryKey)?;
        #[expect(clippy::disallowed_methods, reason = "the plan adds the predicate")]
        let find = A::Entity::find_by_id(KeyOf::<A>::from_value_tuple(key));
        return plan
            .apply(find)
            .one(exec)
            .await?
            .ok_or_else(|| Error::NotFound {
                entity: table_name::<A::Entity>(),
            });
    }
    query.exec(exec).await.map_err(not_found::<A::Entity>)
}

/// What SeaORM reports when a save's `RETURNING` gives no row: an insert without its row, an
/// update of a row the tenant does not have.
fn saved_nothing(insert: bool) -> DbErr {
    if insert {
        DbErr::RecordNotFound("Failed to find inserted item".to_owned())
    } else {
        DbErr::RecordNotUpdated
    }
}

/// A save's error, as the insert or the update reports it.
fn saved_error<A: ActiveModelTrait>(err: DbErr, insert: bool) -> Error {
    if insert {
        write_error::<A::Entity>(err)
    } else {
        not_found::<A::Entity>(err)
    }
}

/// `RETURNING` every column, as SeaORM's `exec_with_returning` writes it.
fn returning<E: EntityTrait>(backend: DbBackend) -> ReturningClause {
    Query::returning().exprs(E::Column::iter().map(|c| c.select_as(c.into_returning_expr(backend))))
}

/// The columns of `E` as bits, in declaration order; `None` past 64 columns.
fn column_bits<E: EntityTrait>(mut has: impl FnMut(E::Column) -> bool) -> Option<u64> {
    let mut bits = 0_u64;
    for (i, column) in E::Column::iter().enumerate() {
        if has(column) {
            bits |= 1_u64.checked_shl(u32::try_from(i).ok()?)?;
        }
    }
    Some(bits)
}

/// SeaORM's `Insert::one(am)` with `RETURNING` every column, kept per set of given columns;
/// `None` for an entity of more than 64 columns.
#[expect(
    clippy::disallowed_methods,
    reason = "SeaORM's builder for a scoped write; the tenant stamp and predicate are added here"
)]
pub(crate) fn insert_sql<A>(am: &A, backend: DbBackend) -> Option<sea_orm::Statement>
where
    A: ActiveModelTrait,
    A::Entity: TenantScoped,
{
    let mut values = Vec::new();
    let given = column_bits::<A::Entity>(|column| match am.get(column) {
        ActiveValue::Set(v) | ActiveValue::Unchanged(v) => {
            values.push(v);
            true
        }
        ActiveValue::NotSet => false,
    })?;
    let shape = Shape::Insert { given };
    Some(template::statement::<A::Entity>(
        shape,
        backend,
        true,
        values,
        || {
            let mut query = A::Entity::insert(am.clone()).into_query();
            query.returning(returning::<A::Entity>(backend));
            backend.build(&query)
        },
    ))
}

/// SeaORM's `Update::one(am)` with the plan's predicate and `RETURNING` every column, kept per
/// set of changed columns; `None` when SeaORM's own path must run: a key column unset (SeaORM's
/// error), nothing to set (a scoped read instead), more than 64 columns.
#[expect(
    clippy::disallowed_methods,
    reason = "SeaORM's builder for a scoped write; the tenant stamp and predicate are added here"
)]
pub(crate) fn update_sql<A>(plan: &Plan, am: &A, backend: DbBackend) -> Option<sea_orm::Statement>
where
    A: ActiveModelTrait,
    A::Entity: TenantScoped,
{
    let mut values = Vec::new();
    let is_key = |column| <A::Entity as EntityTrait>::PrimaryKey::from_column(column).is_some();
    let changed = column_bits::<A::Entity>(|column| match am.get(column) {
        ActiveValue::Set(v) if !is_key(column) => {
            values.push(v);
            true
        }
        _ => false,
    })?;
    if changed == 0 {
        return None;
    }
    for key in <A::Entity as EntityTrait>::PrimaryKey::iter() {
        match am.get(key.into_column()) {
            ActiveValue::Set(v) | ActiveValue::Unchanged(v) => values.push(v),
            ActiveValue::NotSet => return None,
        }
    }
    values.extend(plan.tenant_value());
    let shape = Shape::Update { changed };
    let scoped = plan.is_scoped();
    Some(template::statement::<A::Entity>(
        shape,
        backend,
        scoped,
        values,
        || {
            let update = A::Entity::update(am.clone()).validate();
            let mut query = plan
                .apply(update.expect("every key column is set"))
                .into_query();
            query.returning(returning::<A::Entity>(backend));
            backend.build(&query)
        },
    ))
}

/// Inserts many rows, each stamped, and returns them as stored. Refuses all of them when any
/// names another tenant.
#[expect(
    clippy::disallowed_methods,
    reason = "SeaORM's builder for a scoped write; the tenant stamp and predicate are added here"
)]
pub(crate) async fn insert_many<A, C, I>(conn: &C, models: I) -> Result<Vec<ModelOf<A>>>
where
    A: ActiveModelTrait + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
    C: TenantConnection,
    I: IntoIterator<Item = A>,
{
    let plan = Plan::of::<A::Entity, C>(conn, "insert_many")?;
    let access = plan.access().cloned().ok_or(Error::NoTenant)?;
    let mut rows = Vec::new();
    for mut am in models {
        stamp(&mut am, &access)?;
        shared_row(conn, row_tenant(&am), &access).await?;
        rows.push(am);
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // One statement returning every row: on the pipeline with the binding and the `COMMIT` in
    // RLS mode; a refusal runs again on sqlx, for SeaORM's error.
    #[cfg(feature = "pipeline")]
    {
        let insert = A::Entity::insert_many(rows.clone());
        if let Some(models) =
            piped_returning::<A::Entity, C>(conn, &plan, insert.as_query()).await?
        {
            return Ok(models);
        }
    }
    in_unit!(plan, conn, |exec| async move {
        A::Entity::insert_many(rows)
            .exec_with_returning(exec)
            .await
            .map_err(write_error::<A::Entity>)
    })
}

/// The rows the insert `query` (without its `RETURNING`) stores, returned as `E`'s models, run on
/// the pipelined executor: in RLS mode with the binding and the `COMMIT` in one round trip.
/// `None`: no pipeline, a statement that does not fit it, or one PostgreSQL refused (it took no
/// effect); the caller runs it on sqlx, which reports SeaORM's error.
#[cfg(feature = "pipeline")]
async fn piped_returning<E: crate::Tenancy, C: TenantConnection + ?Sized>(
    conn: &C,
    plan: &Plan,
    query: &sea_orm::sea_query::InsertStatement,
) -> Result<Option<Vec<E::Model>>> {
    let Some(route) = crate::exec::route(conn, plan.access(), plan.span()).await? else {
        return Ok(None);
    };
    let Some(decoder) = E::__pg_decoder() else {
        crate::pipeline::declined("a field of the model has no tokio-postgres decoding");
        return Ok(None);
    };
    let mut query = query.clone();
    query.returning(returning::<E>(DbBackend::Postgres));
    let stmt = DbBackend::Postgres.build(&query);
    let columns = super::read::piped::columns::<E>(decoder);
    Box::pin(route.write_models(&stmt, decoder, columns)).await
}

/// Updates one row by primary key within the tenant in scope. Another tenant's row is
/// [`Error::NotFound`] with nothing written.
pub(crate) async fn update<A, C>(conn: &C, am: A) -> Result<ModelOf<A>>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
    C: TenantConnection,
{
    let plan = Plan::of::<A::Entity, C>(conn, "update")?;
    save_row(conn, plan, am, false).await
}

/// Inserts when the primary key is unset, updates otherwise.
pub(crate) async fn save<A, C>(conn: &C, am: A) -> Result<A>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
    C: TenantConnection,
{
    let is_insert =
        <A::Entity as EntityTrait>::PrimaryKey::iter().any(|key| am.is_not_set(key.into_column()));
    let model = if is_insert {
        insert(conn, am).await?
    } else {
        update(conn, am).await?
    };
    Ok(model.into_active_model())
}

/// Deletes one row by its primary key within the tenant in scope; [`Error::NotFound`] otherwise.
pub(crate) async fn delete<A, C>(conn: &C, am: A) -> Result<()>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    A::Entity: TenantScoped,
    C: TenantConnection,
{
    let plan = Plan::of::<A::Entity, C>(conn, "delete")?;
    #[cfg(feature = "pipeline")]
    if let Some(route) = crate::exec::route(conn, plan.access(), plan.span()).await? {
        return Box::pin(piped::delete(conn, &plan, &route, am)).await;
    }
    let plan = &plan;
    // Boxed, as `in_unit!` is.
    Box::pin(async move {
        let unit = plan.unit(conn).await?;
        let deferred = after_commit(&unit);
        let result = {
            let exec = &unit.exec();
            async {
                let am = am.before_delete(exec).await?;
                delete_statement(exec, plan, &am).await?;
                if deferred {
                    return Ok(Some(am));
                }
                am.after_delete(exec).await?;
                Ok::<_, Error>(None)
            }
            .await
        };
        // `Some`: the delete committed, and its `after_delete` is still to run.
        let committed = unit.finish(result).await?;
        #[cfg(feature = "postgres")]
        if let Some(am) = committed {
            return after_delete_committed(conn, plan, am).await;
        }
        #[cfg(not(feature = "postgres"))]
        debug_assert!(committed.is_none(), "only RLS units commit before the hook");
        Ok(())
    })
    .await
}

/// Runs the delete of `am`'s row on `exec`.
#[expect(
    clippy::disallowed_methods,
    reason = "SeaORM's builder for a scoped write; the tenant stamp and predicate are added here"
)]
async fn delete_statement<A, X>(exec: &X, plan: &Plan, am: &A) -> Result<()>
where
    A: ActiveModelTrait + Send,
    A::Entity: TenantScoped,
    X: ConnectionTrait,
{
    let query = plan.apply(A::Entity::delete(am.clone()).validate()?);
    deleted::<A::Entity>(query.exec(exec).await?.rows_affected)
}

/// A delete by key that touched no row: the tenant has no such row.
fn deleted<E: EntityTrait>(rows: u64) -> Result<()> {
    if rows == 0 {
        return Err(Error::NotFound {
            entity: table_name::<E>(),
        });
    }
    Ok(())
}

/// Deletes the row with primary key `id` in the tenant in scope; [`Error::NotFound`] otherwise.
#[expect(
    clippy::disallowed_methods,
    reason = "SeaORM's builder for a scoped write; the tenant stamp and predicate are added here"
)]
pub(crate) async fn delete_by_id<E, C, K>(conn: &C, id: K) -> Result<()>
where
    E: TenantScoped,
    C: TenantConnection,
    K: Into<<E::PrimaryKey as PrimaryKeyTrait>::ValueType>,
{
    let plan = Plan::of::<E, C>(conn, "delete")?;
    let key = id.into().into_value_tuple();
    // Kept once built (see `template`): the key's values, then the tenant's.
    let statement = |backend| delete_by_id_statement::<E>(&plan, &key, backend);
    #[cfg(feature = "pipeline")]
    if let Some(route) = crate::exec::route(conn, plan.access(), plan.span()).await? {
        // No hooks: the delete and, in RLS mode, its transaction go out in one round trip.
        let sql = statement(DbBackend::Postgres);
        if let Some(rows) = Box::pin(route.write_count(&sql)).await? {
            return deleted::<E>(rows);
        }
    }
    let rows = in_unit!(plan, conn, |exec| async {
        let stmt = statement(exec.get_database_backend());
        exec.execute_raw(stmt)
            .await
            .map(|done| done.rows_affected())
    })?;
    deleted::<E>(rows)
}

/// `DELETE .. WHERE <key> [AND <tenant>]` for `key` under `plan`, as SeaORM's
/// `delete_by_id(key).filter(..)` builds it; kept once built.
pub(crate) fn delete_by_id_statement<E: TenantScoped>(
    plan: &Plan,
    key: &sea_orm::sea_query::ValueTuple,
    backend: DbBackend,
) -> sea_orm::Statement {
    let mut values: Vec<Value> = key.clone().into_iter().collect();
    values.extend(plan.tenant_value());
    let scoped = plan.is_scoped();
    template::statement::<E>(Shape::DeleteById, backend, scoped, values, || {
        let key = <E::PrimaryKey as PrimaryKeyTrait>::ValueType::from_value_tuple(key.clone());
        #[expect(clippy::disallowed_methods, reason = "the plan adds the predicate")]
        let query = plan.apply(E::delete_by_id(key));
        backend.build(query.as_query())
    })
}

/// Inserts the row, or updates the row of the current tenant that has the same primary key.
///
/// A conflict with another tenant's row never touches it: the update carries the tenant
/// predicate, and the result is [`Error::NotFound`].
pub(crate) async fn upsert<A, C>(conn: &C, am: A) -> Result<ModelOf<A>>
where
    A: ActiveModelTrait + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
    C: TenantConnection,
{
    let tenant = <A::Entity as TenantScoped>::TENANT_COLUMN;
    // Tables in the distributed form key rows by `(tenant, key)`: the conflict target must be
    // that key (the tenant column leads it, as in the table's primary key).
    let mut keys: Vec<_> = if crate::exec::distributed_keys(conn) {
        vec![tenant]
    } else {
        Vec::new()
    };
    keys.extend(
        <A::Entity as EntityTrait>::PrimaryKey::iter()
            .map(PrimaryKeyToColumn::into_column)
            .filter(|c| c.as_str() != tenant.as_str()),
    );
    upsert_on_columns(conn, am, keys).await
}

/// Like [`upsert`], with the conflict target `(tenant column, columns..)`: a per-tenant unique.
pub(crate) async fn upsert_on<A, C, I>(conn: &C, am: A, columns: I) -> Result<ModelOf<A>>
where
    A: ActiveModelTrait + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
    C: TenantConnection,
    I: IntoIterator<Item = <A::Entity as EntityTrait>::Column>,
{
    let mut target = vec![<A::Entity as TenantScoped>::TENANT_COLUMN];
    target.extend(columns);
    upsert_on_columns(conn, am, target).await
}

#[expect(
    clippy::disallowed_methods,
    reason = "SeaORM's builder for a scoped write; the tenant stamp and predicate are added here"
)]
async fn upsert_on_columns<A, C>(
    conn: &C,
    mut am: A,
    target: Vec<<A::Entity as EntityTrait>::Column>,
) -> Result<ModelOf<A>>
where
    A: ActiveModelTrait + Send,
    A::Entity: TenantScoped,
    ModelOf<A>: IntoActiveModel<A>,
    C: TenantConnection,
{
    let plan = Plan::of::<A::Entity, C>(conn, "upsert")?;
    let access = plan.access().cloned().ok_or(Error::NoTenant)?;
    stamp(&mut am, &access)?;
    shared_row(conn, row_tenant(&am), &access).await?;
    let tenant_column = <A::Entity as TenantScoped>::TENANT_COLUMN;
    // Keys are never updated: the row keeps its identity, and children keep their parent.
    let is_key = |c: &<A::Entity as EntityTrait>::Column| {
        c.as_str() == tenant_column.as_str()
            || target.iter().any(|t| t.as_str() == c.as_str())
            || <A::Entity as EntityTrait>::PrimaryKey::from_column(*c).is_some()
    };
    // The tenant column is always in the update list: with the predicate below it rewrites the
    // same value, and it keeps the list non-empty when only keys are set.
    let mut update: Vec<_> = vec![tenant_column];
    update.extend(
        <A::Entity as EntityTrait>::Column::iter()
            .filter(|c| matches!(am.get(*c), ActiveValue::Set(_)) && !is_key(c)),
    );
    let mut on_conflict = OnConflict::columns(target);
    on_conflict.update_columns(update);
    if let Some(p) = plan.predicate() {
        on_conflict.action_and_where(p);
    }
    let insert = A::Entity::insert(am).on_conflict(on_conflict);
    // On the pipeline as a one-row insert is: no row back is another tenant's key.
    #[cfg(feature = "pipeline")]
    if let Some(rows) = piped_returning::<A::Entity, C>(conn, &plan, insert.as_query()).await? {
        return rows.into_iter().next().ok_or_else(|| Error::NotFound {
            entity: table_name::<A::Entity>(),
        });
    }
    in_unit!(plan, conn, |exec| async move {
        insert
            .exec_with_returning(exec)
            .await
            .map_err(not_found::<A::Entity>)
    })
}

/// Writes on the pipelined executor. The statements are SeaORM's, built for PostgreSQL; the
/// hooks keep their semantics:
///
/// - App-level mode: the hooks run on the pool as they do on sqlx (no transaction around
///   them), and only the write's own statement moves to the pipeline.
/// - RLS mode: the hooks before the write get an executor that opens the write's tenant-bound
///   unit on first use; when they use it, the write goes on in that unit on sqlx, as without
///   the pipeline. Otherwise `BEGIN; SET LOCAL ..`, the statement and `COMMIT` go out together.
///   Either way the hook after the write runs once it has committed ([`after_commit`]).
///
/// A statement PostgreSQL refuses took no effect: the write runs again on sqlx (from after
/// `before_save`), which reports the refusal as SeaORM's error (`DbErr::sql_err`), as without
/// the pipeline.
#[cfg(feature = "pipeline")]
mod piped {
    use sea_orm::{
        ActiveModelBehavior, ActiveModelTrait, DbBackend, EntityTrait, IntoActiveModel, QueryTrait,
        Statement,
    };

    use super::{
        ModelOf, after_delete_committed, after_save_committed, delete_statement, deleted, hold,
        insert_sql, save_statement, saved_error, saved_nothing, update_sql,
    };
    use crate::context::Access;
    use crate::entity::TenantScoped;
    use crate::exec::TenantConnection;
    use crate::exec::hooks::Lazy;
    use crate::exec::in_unit;
    use crate::pipeline::{Decoder, Route};
    use crate::scope::Plan;
    use crate::{Error, Result};

    /// The insert or update of `am` (tenant held) returning every column; `None` where
    /// `save_statement` must answer: an update with nothing to set (a scoped read), a key column
    /// unset (SeaORM's error), an entity of more than 64 columns.
    fn save_sql<A>(plan: &Plan, am: &A, insert: bool) -> Option<Statement>
    where
        A: ActiveModelTrait,
        A::Entity: TenantScoped,
    {
        if insert {
            insert_sql(am, DbBackend::Postgres)
        } else {
            update_sql(plan, am, DbBackend::Postgres)
        }
    }

    /// The row a save returned; none is what SeaORM reports for an insert without its row, and
    /// an update of a row the tenant does not have.
    fn saved<A>(rows: Vec<ModelOf<A>>, insert: bool) -> Result<ModelOf<A>>
    where
        A: ActiveModelTrait,
    {
        rows.into_iter()
            .next()
            .ok_or_else(|| saved_error::<A>(saved_nothing(insert), insert))
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "SeaORM's builder for a scoped write; the tenant stamp and predicate are added here"
    )]
    fn delete_sql<A>(plan: &Plan, am: &A) -> Result<Statement>
    where
        A: ActiveModelTrait,
        A::Entity: TenantScoped,
    {
        let query = plan.apply(A::Entity::delete(am.clone()).validate()?);
        Ok(DbBackend::Postgres.build(query.as_query()))
    }

    /// What a save writes besides the model: whom for, whether it inserts, and the tenant the
    /// row already carried (checked by the caller).
    #[derive(Clone, Copy)]
    pub(super) struct Row<'a> {
        pub(super) access: &'a Access,
        pub(super) insert: bool,
        pub(super) checked: Option<crate::TenantId>,
    }

    /// An insert or an update by key in app-level mode, with its hooks (see the module's docs).
    pub(super) async fn save_unbound<A, C>(
        conn: &C,
        plan: &Plan,
        route: &Route<'_>,
        decoder: &Decoder<ModelOf<A>>,
        am: A,
        row: Row<'_>,
    ) -> Result<ModelOf<A>>
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send,
        A::Entity: TenantScoped,
        ModelOf<A>: IntoActiveModel<A>,
        C: TenantConnection,
    {
        let Row {
            access,
            insert,
            checked,
        } = row;
        let columns = crate::query::read::piped::columns::<A::Entity>(decoder);
        // The hooks get a unit only if they use the database: a pooled connection is not
        // taken for nothing.
        let lazy = Lazy::new(conn, plan.access());
        let result = async {
            let mut am = am.before_save(&lazy, insert).await?;
            hold(conn, &mut am, access, insert, checked).await?;
            let written = match save_sql(plan, &am, insert) {
                Some(sql) => route.write_models(&sql, decoder, columns).await?,
                None => None,
            };
            let model = match written {
                Some(rows) => saved::<A>(rows, insert)?,
                None => save_statement(&lazy, plan, am, insert).await?,
            };
            Ok(A::after_save(model, &lazy, insert).await?)
        }
        .await;
        lazy.finish(result).await
    }

    /// An insert or an update by key in RLS mode, with its hooks (see the module's docs).
    pub(super) async fn save_bound<A, C>(
        conn: &C,
        plan: &Plan,
        route: &Route<'_>,
        decoder: &Decoder<ModelOf<A>>,
        am: A,
        row: Row<'_>,
    ) -> Result<ModelOf<A>>
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send,
        A::Entity: TenantScoped,
        ModelOf<A>: IntoActiveModel<A>,
        C: TenantConnection,
    {
        let Row {
            access,
            insert,
            checked,
        } = row;
        let columns = crate::query::read::piped::columns::<A::Entity>(decoder);
        let lazy = Lazy::new(conn, plan.access());
        let hooked = am.before_save(&lazy, insert).await;
        if let Some(unit) = lazy.into_unit() {
            // `before_save` used the database: the write goes on in its unit, on sqlx. Boxed:
            // SeaORM's statement future would be most of this one's size.
            let model = Box::pin(save_in_unit(conn, plan, unit, hooked, row)).await?;
            return after_save_committed::<A, C>(conn, plan, model, insert).await;
        }
        let mut am = hooked?;
        hold(conn, &mut am, access, insert, checked).await?;
        let written = match save_sql(plan, &am, insert) {
            Some(sql) => route.write_models(&sql, decoder, columns).await?,
            None => None,
        };
        let model = match written {
            // The binding, the statement and `COMMIT` left together.
            Some(rows) => saved::<A>(rows, insert)?,
            // On sqlx, from after `before_save`: the statement did not fit the pipeline, or
            // PostgreSQL refused it (and SeaORM reports why).
            None => in_unit!(plan, conn, |exec| save_statement(exec, plan, am, insert))?,
        };
        after_save_committed::<A, C>(conn, plan, model, insert).await
    }

    /// The rest of a save whose `before_save` opened `unit`: the statement in it, committed.
    async fn save_in_unit<A, C>(
        conn: &C,
        plan: &Plan,
        unit: crate::exec::Unit<'_>,
        hooked: std::result::Result<A, sea_orm::DbErr>,
        row: Row<'_>,
    ) -> Result<ModelOf<A>>
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send,
        A::Entity: TenantScoped,
        ModelOf<A>: IntoActiveModel<A>,
        C: TenantConnection,
    {
        let result = {
            let exec = &unit.exec();
            async {
                let mut am = hooked?;
                hold(conn, &mut am, row.access, row.insert, row.checked).await?;
                save_statement(exec, plan, am, row.insert).await
            }
            .await
        };
        unit.finish(result).await
    }

    /// A delete by the model's key, with its hooks (see the module's docs).
    pub(super) async fn delete<A, C>(conn: &C, plan: &Plan, route: &Route<'_>, am: A) -> Result<()>
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send,
        A::Entity: TenantScoped,
        C: TenantConnection,
    {
        if !route.binds() {
            // As for a save: a unit only for hooks that use the database.
            let lazy = Lazy::new(conn, plan.access());
            let result = async {
                let am = am.before_delete(&lazy).await?;
                match route.write_count(&delete_sql(plan, &am)?).await? {
                    Some(rows) => deleted::<A::Entity>(rows)?,
                    None => delete_statement(&lazy, plan, &am).await?,
                }
                am.after_delete(&lazy).await?;
                Ok(())
            }
            .await;
            return lazy.finish(result).await;
        }

        let lazy = Lazy::new(conn, plan.access());
        let hooked = am.before_delete(&lazy).await;
        if let Some(unit) = lazy.into_unit() {
            // `before_delete` used the database: the delete goes on in its unit, on sqlx.
            let result = {
                let exec = &unit.exec();
                async {
                    let am = hooked?;
                    delete_statement(exec, plan, &am).await?;
                    Ok::<_, Error>(am)
                }
                .await
            };
            let am = unit.finish(result).await?;
            return after_delete_committed(conn, plan, am).await;
        }
        let am = hooked?;
        match route.write_count(&delete_sql(plan, &am)?).await? {
            Some(rows) => deleted::<A::Entity>(rows)?,
            // On sqlx, as for a save.
            None => in_unit!(plan, conn, |exec| delete_statement(exec, plan, &am))?,
        }
        after_delete_committed(conn, plan, am).await
    }
}
