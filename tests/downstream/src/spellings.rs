//! Unscoped spellings that compile: the derive's scoped methods shadow the ordinary ones, but
//! not these. Each line marked `// flagged` must be reported by the clippy gate of the README
//! (`clippy.toml` `disallowed-methods`); `.ci/run` compares the two. Compiled only with
//! `--cfg tenant_spellings`, never run.

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, DbErr, EntityTrait,
    LoaderTrait, ModelTrait, Statement,
};

use crate::{comment, note};

/// The trait's own methods on a raw connection.
///
/// # Errors
///
/// Whatever SeaORM returns.
pub async fn on_a_raw_connection(
    conn: &DatabaseConnection,
    am: note::ActiveModel,
    model: note::Model,
    stmt: Statement,
) -> Result<(), DbErr> {
    let id = model.id;
    <note::Entity as EntityTrait>::find().all(conn).await?; // flagged
    <note::Entity as EntityTrait>::find_by_id(id) // flagged
        .one(conn)
        .await?;
    <note::Entity as EntityTrait>::insert(am.clone()) // flagged
        .exec(conn)
        .await?;
    <note::Entity as EntityTrait>::insert_many([am.clone()]) // flagged
        .exec(conn)
        .await?;
    <note::Entity as EntityTrait>::update(am.clone()) // flagged
        .exec(conn)
        .await?;
    <note::Entity as EntityTrait>::update_many() // flagged
        .exec(conn)
        .await?;
    <note::Entity as EntityTrait>::delete(am.clone()) // flagged
        .exec(conn)
        .await?;
    <note::Entity as EntityTrait>::delete_many() // flagged
        .exec(conn)
        .await?;
    <note::Entity as EntityTrait>::delete_by_id(id) // flagged
        .exec(conn)
        .await?;
    ActiveModelTrait::insert(am.clone(), conn).await?; // flagged
    ActiveModelTrait::update(am.clone(), conn).await?; // flagged
    ActiveModelTrait::save(am.clone(), conn).await?; // flagged
    ActiveModelTrait::delete(am, conn).await?; // flagged
    ModelTrait::find_related(&model, comment::Entity) // flagged
        .all(conn)
        .await?;
    vec![model.clone()].load_many(comment::Entity, conn).await?; // flagged
    ModelTrait::delete(model, conn).await?; // flagged
    conn.execute_unprepared("DELETE FROM note").await?; // flagged
    conn.execute_raw(stmt.clone()).await?; // flagged
    conn.query_one_raw(stmt.clone()).await?; // flagged
    conn.query_all_raw(stmt).await?; // flagged
    Database::connect("sqlite::memory:").await?; // flagged
    Ok(())
}

/// Generic code over SeaORM's traits, where no shadowing method is in reach.
///
/// # Errors
///
/// Whatever SeaORM returns.
pub async fn generic<E: EntityTrait, C: ConnectionTrait>(conn: &C) -> Result<usize, DbErr> {
    let all = E::find().all(conn).await?; // flagged
    E::delete_many().exec(conn).await?; // flagged
    Ok(all.len())
}
