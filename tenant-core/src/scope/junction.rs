//! The tenant column of a table that a relation names by its table alone: the junction of a
//! many-to-many relation (`Related::via`). Every entity declared with `#[derive(TenantScoped)]`
//! registers its table and tenant column here, so that a join through a junction carries the
//! tenant column too: the junction's rows then come from the base row's tenant only, and Citus,
//! which joins distributed tables only on their distribution column, can run the join.

use std::sync::OnceLock;

use sea_orm::sea_query::{Expr, ExprTrait, TableName, TableRef};
use sea_orm::{Condition, IdenStatic, RelationDef};

use crate::entity::{Tenancy, TenantScoped};

/// One tenant-scoped entity's table and tenant column. Written by the derive; not a public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct TenantTable {
    table: fn() -> (TableRef, &'static str),
}

impl TenantTable {
    /// The entry of entity `E`.
    pub const fn of<E: TenantScoped>(_: &E) -> Self {
        Self {
            table: table_of::<E>,
        }
    }
}

fn table_of<E: TenantScoped>() -> (TableRef, &'static str) {
    (E::default().table_ref(), E::TENANT_COLUMN.as_str())
}

inventory::collect!(TenantTable);

/// The tenant column of `table`, when the tenant-scoped entities that declare it agree on one.
pub(crate) fn tenant_column_of(table: &TableRef) -> Option<&'static str> {
    static TABLES: OnceLock<Vec<(TableName, &'static str)>> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        inventory::iter::<TenantTable>
            .into_iter()
            .filter_map(|entry| match (entry.table)() {
                (TableRef::Table(name, _), column) => Some((name, column)),
                _ => None,
            })
            .collect()
    });
    let TableRef::Table(name, _) = table else {
        return None;
    };
    let mut columns = tables.iter().filter(|(t, _)| t == name).map(|(_, c)| *c);
    let first = columns.next()?;
    // Two declarations of one table with different tenant columns: trust neither.
    columns.all(|c| c == first).then_some(first)
}

/// `via` (from `E` to the junction of a many-to-many relation) with the junction's tenant
/// column equal to `E`'s in its `ON` condition; unchanged when either is not tenant-scoped.
pub(crate) fn via_in_tenant<E: Tenancy>(via: RelationDef) -> RelationDef {
    let (Some(junction), Some(e)) = (tenant_column_of(&via.to_tbl), E::tenant_column()) else {
        return via;
    };
    with_condition(via, move |e_tbl, junction_tbl| {
        Expr::col((junction_tbl, junction)).equals((e_tbl, e.as_str()))
    })
}

/// `to` (from the junction `via` leads to, to `R`) with the junction's tenant column equal to
/// `R`'s in its `ON` condition; unchanged when either is not tenant-scoped.
pub(crate) fn to_in_tenant<R: Tenancy>(to: RelationDef, via: &RelationDef) -> RelationDef {
    let (Some(junction), Some(r)) = (tenant_column_of(&via.to_tbl), R::tenant_column()) else {
        return to;
    };
    with_condition(to, move |junction_tbl, r_tbl| {
        Expr::col((junction_tbl, junction)).equals((r_tbl, r.as_str()))
    })
}

/// `rel` with `extra(from table, to table)` added to its `ON` condition.
fn with_condition(
    rel: RelationDef,
    extra: impl Fn(sea_orm::sea_query::DynIden, sea_orm::sea_query::DynIden) -> sea_orm::sea_query::Expr
    + Send
    + Sync
    + 'static,
) -> RelationDef {
    let previous = rel.on_condition.clone();
    rel.on_condition(move |from, to| {
        let mut cond = Condition::all().add(extra(from.clone(), to.clone()));
        if let Some(prev) = &previous {
            cond = cond.add(prev(from, to));
        }
        cond
    })
}

/// For a select of `R` that SeaORM's loader joins (an inner join) to the junction `via` leads
/// to: the condition that the junction's tenant column equals `R`'s, or `None` when either is not
/// tenant-scoped.
pub(crate) fn loader_condition<R: Tenancy>(via: &RelationDef) -> Option<Condition> {
    let junction = tenant_column_of(&via.to_tbl)?;
    let r = R::tenant_column()?;
    let TableRef::Table(TableName(_, junction_tbl), alias) = &via.to_tbl else {
        return None;
    };
    let junction_tbl = alias.clone().unwrap_or_else(|| junction_tbl.clone());
    Some(
        Condition::all().add(
            Expr::col((junction_tbl, junction)).equals((R::default().table_name(), r.as_str())),
        ),
    )
}
