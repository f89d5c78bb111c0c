//! Statements of a fixed shape, built by SeaORM once and bound again with each call's values.
//!
//! A get by id, a count of the tenant's rows and a delete by id always have the same SQL for a
//! given entity, backend and predicate (the tenant's, or none under a system scope); so do an
//! insert of the same columns and an update setting the same columns. Only the values change.
//! Building that SQL with sea-query is about a fifth of the client's work for a get by id, more
//! than everything this crate adds to it, so it is done once.
//!
//! Nothing is assumed about how SeaORM orders the values: a shape's statement is built with
//! SeaORM, as uncached calls do, until once SeaORM bound exactly the values this module binds, in
//! the same order; only then is its SQL kept. A shape that never passes the check, or an entity
//! whose table or schema name changes between calls, is built by SeaORM every time.
//!
//! The check is also what keeps one tenant's values out of another's statement: a value SeaORM
//! wrote into the SQL text instead of binding it (and that would be kept with the text) is missing
//! from the bound values, so the check fails and nothing is kept.

use std::any::{Any, TypeId};
use std::sync::{LazyLock, PoisonError, RwLock};

use foldhash::HashMap;
use sea_orm::{DbBackend, EntityName, EntityTrait, Select, Statement, Value, Values};

/// The operations whose statements are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shape {
    /// `SELECT .. WHERE <key> AND <tenant>`, or `.. WHERE <key> LIMIT 1` unscoped.
    Get,
    /// `SELECT COUNT(*) .. FROM (SELECT .. [WHERE <tenant>])`
    Count,
    /// `DELETE .. WHERE <key> [AND <tenant>]`
    DeleteById,
    /// `INSERT .. RETURNING ..` of the columns `given` (bits in declaration order)
    Insert { given: u64 },
    /// `UPDATE .. SET <changed> WHERE <key> [AND <tenant>] RETURNING ..`
    Update { changed: u64 },
}

#[derive(PartialEq, Eq, Hash)]
struct Key {
    entity: TypeId,
    shape: Shape,
    backend: u8,
    scoped: bool,
}

/// What the first call of a shape left: the names it was built with and, if the check passed,
/// its SQL.
struct Kept {
    schema: Option<String>,
    table: &'static str,
    sql: Option<Box<str>>,
}

static KEPT: LazyLock<RwLock<HashMap<Key, Kept>>> = LazyLock::new(Default::default);

/// The statement of `shape` for `E` on `backend`, bound to `values`: from the kept SQL, or
/// built by `build` (SeaORM) when there is none yet or the shape cannot be kept.
pub(crate) fn statement<E: EntityName>(
    shape: Shape,
    backend: DbBackend,
    scoped: bool,
    values: Vec<Value>,
    build: impl FnOnce() -> Statement,
) -> Statement {
    let Some(backend_id) = backend_id(backend) else {
        return build();
    };
    let entity = E::default();
    let (schema, table) = (entity.schema_name(), entity.table_name());
    let key = Key {
        entity: TypeId::of::<E>(),
        shape,
        backend: backend_id,
        scoped,
    };
    {
        let kept = KEPT.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = kept.get(&key) {
            return match &kept.sql {
                Some(sql) if kept.table == table && kept.schema.as_deref() == schema => Statement {
                    sql: String::from(&**sql),
                    values: Some(Values(values)),
                    db_backend: backend,
                },
                _ => build(),
            };
        }
    }
    let fresh = build();
    let same_values = match &fresh.values {
        Some(Values(bound)) => *bound == values,
        None => values.is_empty(),
    };
    // Values that do not compare equal to themselves (a NaN) fail the check too: try again on
    // the next call rather than never.
    if !same_values {
        return fresh;
    }
    let kept = Kept {
        schema: schema.map(str::to_owned),
        table,
        sql: Some(fresh.sql.clone().into_boxed_str()),
    };
    let mut all = KEPT.write().unwrap_or_else(PoisonError::into_inner);
    match all.get_mut(&key) {
        // Another call got here first with other names: the names change, keep nothing.
        Some(first) if first.table != kept.table || first.schema != kept.schema => first.sql = None,
        Some(_) => {}
        None => {
            all.insert(key, kept);
        }
    }
    fresh
}

/// SeaORM's select of every column of one entity, and the names it was built with.
struct KeptSelect<E: EntityTrait> {
    schema: Option<String>,
    table: &'static str,
    select: Select<E>,
}

static SELECTS: LazyLock<RwLock<HashMap<TypeId, Box<dyn Any + Send + Sync>>>> =
    LazyLock::new(Default::default);

/// SeaORM's `E::find()`, built once and cloned: a clone is a fraction of building the column
/// list again. Built every time for an entity whose table or schema name changes.
pub(crate) fn find<E: EntityTrait>() -> Select<E> {
    let entity = E::default();
    let (schema, table) = (entity.schema_name(), entity.table_name());
    let same = |kept: &KeptSelect<E>| kept.table == table && kept.schema.as_deref() == schema;
    {
        let kept = SELECTS.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = kept.get(&TypeId::of::<E>()) {
            return match kept.downcast_ref::<KeptSelect<E>>() {
                Some(kept) if same(kept) => kept.select.clone(),
                _ => uncached_find::<E>(),
            };
        }
    }
    let select = uncached_find::<E>();
    let kept = KeptSelect {
        schema: schema.map(str::to_owned),
        table,
        select: select.clone(),
    };
    SELECTS
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(TypeId::of::<E>())
        .or_insert_with(|| Box::new(kept));
    select
}

#[expect(
    clippy::disallowed_methods,
    reason = "the select is wrapped in `Scoped` by every caller"
)]
fn uncached_find<E: EntityTrait>() -> Select<E> {
    E::find()
}

fn backend_id(backend: DbBackend) -> Option<u8> {
    match backend {
        DbBackend::Postgres => Some(0),
        DbBackend::Sqlite => Some(1),
        DbBackend::MySql => Some(2),
        #[allow(unreachable_patterns, reason = "`DbBackend` is non-exhaustive")]
        _ => None,
    }
}

/// Whether `E`'s statement of `shape` is kept (tests).
#[cfg(test)]
fn is_kept<E: EntityName>(shape: Shape, backend: DbBackend, scoped: bool) -> bool {
    let key = Key {
        entity: TypeId::of::<E>(),
        shape,
        backend: backend_id(backend).expect("a known backend"),
        scoped,
    };
    let kept = KEPT.read().unwrap_or_else(PoisonError::into_inner);
    kept.get(&key).is_some_and(|kept| kept.sql.is_some())
}

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::{IntoValueTuple, Query, ReturningClause};
    use sea_orm::{ColumnTrait, EntityTrait, Iterable, QueryFilter, QuerySelect, QueryTrait};
    use uuid::Uuid;

    use super::*;
    use crate::context::Access;
    use crate::query::read::{count_statement, get_statement};
    use crate::query::write::{delete_by_id_statement, insert_sql, update_sql};
    use crate::scope::Plan;
    use crate::{TenantId, TenantScoped};

    #[allow(
        unreachable_pub,
        missing_docs,
        reason = "SeaORM's entity layout: `pub` items in a private test module"
    )]
    mod pair {
        use sea_orm::entity::prelude::*;

        /// A composite key, so that the key's values are more than one.
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "pair")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub left: i32,
            #[sea_orm(primary_key, auto_increment = false)]
            pub right: String,
            pub tenant_id: Uuid,
            pub note: String,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}

        impl crate::Tenancy for Entity {
            fn tenant_column() -> Option<Column> {
                Some(Column::TenantId)
            }

            fn table_spec() -> crate::TableSpec<Self> {
                crate::TableSpec::new()
            }
        }

        impl crate::TenantScoped for Entity {
            const TENANT_COLUMN: Column = Column::TenantId;
        }
    }

    #[allow(
        unreachable_pub,
        missing_docs,
        reason = "SeaORM's entity layout: `pub` items in a private test module"
    )]
    mod moving {
        //! An entity whose schema is chosen at run time, as some schema-per-tenant setups do.
        use std::sync::atomic::{AtomicBool, Ordering};

        use sea_orm::entity::prelude::*;

        pub static SECOND_SCHEMA: AtomicBool = AtomicBool::new(false);

        #[derive(Copy, Clone, Default, Debug, DeriveEntity)]
        pub struct Entity;

        impl EntityName for Entity {
            fn schema_name(&self) -> Option<&str> {
                Some(if SECOND_SCHEMA.load(Ordering::SeqCst) {
                    "second"
                } else {
                    "first"
                })
            }

            fn table_name(&self) -> &'static str {
                "moving"
            }
        }

        #[derive(Clone, Debug, PartialEq, Eq, DeriveModel, DeriveActiveModel)]
        pub struct Model {
            pub id: Uuid,
            pub tenant_id: Uuid,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveColumn)]
        pub enum Column {
            Id,
            TenantId,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DerivePrimaryKey)]
        pub enum PrimaryKey {
            Id,
        }

        impl PrimaryKeyTrait for PrimaryKey {
            type ValueType = Uuid;

            fn auto_increment() -> bool {
                false
            }
        }

        impl ColumnTrait for Column {
            type EntityName = Entity;

            fn def(&self) -> ColumnDef {
                ColumnType::Uuid.def()
            }
        }

        #[derive(Copy, Clone, Debug, EnumIter)]
        pub enum Relation {}

        impl RelationTrait for Relation {
            fn def(&self) -> RelationDef {
                unreachable!("no relations")
            }
        }

        impl ActiveModelBehavior for ActiveModel {}

        impl crate::Tenancy for Entity {
            fn tenant_column() -> Option<Column> {
                Some(Column::TenantId)
            }

            fn table_spec() -> crate::TableSpec<Self> {
                crate::TableSpec::new()
            }
        }
    }

    fn plans() -> [Plan; 3] {
        let tenant = |n| Access::Tenant(TenantId::from(Uuid::from_u128(n)));
        [
            Plan::acting_for::<pair::Entity>(tenant(1), "test"),
            Plan::acting_for::<pair::Entity>(tenant(2), "test"),
            Plan::acting_for::<pair::Entity>(Access::System("template test"), "test"),
        ]
    }

    /// What SeaORM builds for the tenant-scoped entity `E`, with the plan's predicate written
    /// out by hand.
    fn filtered<Q: QueryFilter>(plan: &Plan, query: Q) -> Q {
        match plan.tenant_value() {
            Some(tenant) => query.filter(<pair::Entity as TenantScoped>::TENANT_COLUMN.eq(tenant)),
            None => query,
        }
    }

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "SeaORM's own statements, to compare with"
    )]
    fn kept_statements_are_the_ones_seaorm_builds() {
        let keys: Vec<(i32, String)> = (1..=3).map(|n| (n, format!("right-{n}"))).collect();
        for backend in [DbBackend::Postgres, DbBackend::Sqlite, DbBackend::MySql] {
            for plan in &plans() {
                for (l, r) in &keys {
                    let key = (*l, r.clone()).into_value_tuple();
                    let get = filtered(plan, pair::Entity::find_by_id((*l, r.clone())));
                    // Scoped, the key and the tenant name one row: no `LIMIT`.
                    let get = if plan.is_scoped() { get } else { get.limit(1) };
                    assert_eq!(
                        get_statement::<pair::Entity>(plan, &key, backend),
                        get.build(backend),
                    );
                    let delete = filtered(plan, pair::Entity::delete_by_id((*l, r.clone())));
                    assert_eq!(
                        delete_by_id_statement::<pair::Entity>(plan, &key, backend),
                        backend.build(delete.as_query()),
                    );
                }
                let sql = count_statement::<pair::Entity>(plan, backend).sql;
                let tenant = if plan.tenant_value().is_some() {
                    match backend {
                        DbBackend::Postgres => r#" WHERE "pair"."tenant_id" = $1"#,
                        DbBackend::MySql => " WHERE `pair`.`tenant_id` = ?",
                        _ => r#" WHERE "pair"."tenant_id" = ?"#,
                    }
                } else {
                    ""
                };
                let (q, table) = match backend {
                    DbBackend::MySql => ('`', "`pair`"),
                    _ => ('"', r#""pair""#),
                };
                assert_eq!(
                    sql,
                    format!(
                        "SELECT COUNT(*) AS num_items FROM (SELECT {cols} FROM {table}{tenant}) AS {q}sub_query{q}",
                        cols = ["left", "right", "tenant_id", "note"]
                            .map(|c| format!("{table}.{q}{c}{q}"))
                            .join(", "),
                    )
                );
            }
            for shape in [Shape::Get, Shape::Count, Shape::DeleteById] {
                for scoped in [true, false] {
                    assert!(
                        is_kept::<pair::Entity>(shape, backend, scoped),
                        "{shape:?} on {backend:?}, scoped: {scoped}"
                    );
                }
            }
        }
    }

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "SeaORM's own statements, to compare with"
    )]
    fn the_kept_find_is_seaorms() {
        for _ in 0..3 {
            assert_eq!(
                find::<pair::Entity>().build(DbBackend::Postgres),
                pair::Entity::find().build(DbBackend::Postgres)
            );
        }
        let kept = SELECTS.read().unwrap_or_else(PoisonError::into_inner);
        assert!(kept.contains_key(&TypeId::of::<pair::Entity>()));
    }

    /// The `RETURNING` of SeaORM's `exec_with_returning` and `UpdateOne::exec`.
    fn returning_all(backend: DbBackend) -> ReturningClause {
        Query::returning()
            .exprs(pair::Column::iter().map(|c| c.select_as(c.into_returning_expr(backend))))
    }

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "SeaORM builds the statement that is kept; scoping happens at its call sites"
    )]
    fn kept_inserts_and_updates_are_the_ones_seaorm_builds() {
        use sea_orm::ActiveValue::{NotSet, Set, Unchanged};

        let tenant = |n| Uuid::from_u128(n);
        // Three rows of each column set, so that the later ones come from the kept SQL.
        let models = |n: u128| {
            let row = move |i: u128| {
                let left = i32::try_from(n * 10 + i).expect("small");
                (left, format!("r{n}{i}"), tenant(n % 2), format!("note {i}"))
            };
            (0..3).map(move |i| {
                let (left, right, tenant_id, note) = row(i);
                match n {
                    0 => pair::ActiveModel {
                        left: Set(left),
                        right: Set(right),
                        tenant_id: Set(tenant_id),
                        note: Set(note),
                    },
                    1 => pair::ActiveModel {
                        left: Unchanged(left),
                        right: Set(right),
                        tenant_id: Set(tenant_id),
                        note: NotSet,
                    },
                    _ => pair::ActiveModel {
                        left: Set(left),
                        right: Unchanged(right),
                        tenant_id: NotSet,
                        note: Set(note),
                    },
                }
            })
        };
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            for n in 0..3 {
                for am in models(n) {
                    let mut want = pair::Entity::insert(am.clone()).into_query();
                    let want = backend.build(want.returning(returning_all(backend)));
                    assert_eq!(insert_sql(&am, backend), Some(want));
                    for plan in &plans() {
                        let want = pair::Entity::update(am.clone()).validate().map(|u| {
                            let mut query = filtered(plan, u).into_query();
                            backend.build(query.returning(returning_all(backend)))
                        });
                        assert_eq!(update_sql(plan, &am, backend), want.ok());
                    }
                }
            }
            // `note` (bit 3) and `tenant_id` (bit 2) are the columns outside the key.
            for (shape, scoped) in [
                (Shape::Insert { given: 0b1111 }, true),
                (Shape::Insert { given: 0b0111 }, true),
                (Shape::Insert { given: 0b1011 }, true),
                (Shape::Update { changed: 0b1100 }, true),
                (Shape::Update { changed: 0b0100 }, false),
                (Shape::Update { changed: 0b1000 }, true),
            ] {
                assert!(
                    is_kept::<pair::Entity>(shape, backend, scoped),
                    "{shape:?} on {backend:?}, scoped: {scoped}"
                );
            }
        }
        // What only SeaORM's path can answer: nothing to set, a key column unset.
        let plan = &plans()[0];
        let nothing = pair::ActiveModel {
            left: Unchanged(1),
            right: Unchanged("r".to_owned()),
            ..Default::default()
        };
        assert_eq!(update_sql(plan, &nothing, DbBackend::Postgres), None);
        let keyless = pair::ActiveModel {
            note: Set("n".to_owned()),
            ..Default::default()
        };
        assert_eq!(update_sql(plan, &keyless, DbBackend::Postgres), None);
    }

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "SeaORM's own statements, to compare with"
    )]
    fn an_entity_whose_schema_changes_is_built_every_time() {
        use std::sync::atomic::Ordering;

        let plan = Plan::acting_for::<moving::Entity>(
            Access::Tenant(TenantId::from(Uuid::from_u128(7))),
            "test",
        );
        let key = Uuid::from_u128(8).into_value_tuple();
        let stmt = |second: bool| {
            moving::SECOND_SCHEMA.store(second, Ordering::SeqCst);
            get_statement::<moving::Entity>(&plan, &key, DbBackend::Postgres).sql
        };
        let first = stmt(false);
        assert!(first.contains(r#""first"."moving""#), "{first}");
        assert!(is_kept::<moving::Entity>(
            Shape::Get,
            DbBackend::Postgres,
            true
        ));
        let second = stmt(true);
        assert!(second.contains(r#""second"."moving""#), "{second}");
        assert_eq!(stmt(false), first);
        // And SeaORM agrees.
        moving::SECOND_SCHEMA.store(true, Ordering::SeqCst);
        let want = plan
            .apply(moving::Entity::find_by_id(Uuid::from_u128(8)))
            .build(DbBackend::Postgres);
        assert_eq!(stmt(true), want.sql);
        // The kept `find()` follows the schema too.
        for second in [false, true, false] {
            moving::SECOND_SCHEMA.store(second, Ordering::SeqCst);
            let want = moving::Entity::find().build(DbBackend::Postgres);
            assert_eq!(find::<moving::Entity>().build(DbBackend::Postgres), want);
        }
    }
}
