//! The schema a tenancy declaration implies: the table with its tenant column, the composite
//! `(tenant_id, ..)` indexes, the per-tenant uniques, and the `(tenant_id, <primary key>)` unique
//! that lets children reference a row tenant-consistently.

use std::fmt;

use sea_orm::sea_query::{
    Alias, ColumnDef, ForeignKey, ForeignKeyCreateStatement, Index, IndexCreateStatement,
    TableCreateStatement,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, IdenStatic, Iterable, PrimaryKeyToColumn,
    RelationTrait, Schema, Statement, TransactionSession, TransactionTrait,
};

use super::ident::{is_plain_ident, is_tenant_schema_name, quote_ident};
use super::rls::Rls;
use crate::Result;
use crate::entity::Tenancy;

/// The statements that create one entity's table and keys, in the order to run them.
#[derive(Debug)]
pub struct TableStatements {
    /// `CREATE TABLE IF NOT EXISTS ..` with every column of the model, the tenant column included.
    pub table: TableCreateStatement,
    /// `CREATE [UNIQUE] INDEX IF NOT EXISTS ..`: the tenant-leading keys.
    pub indexes: Vec<IndexCreateStatement>,
    /// The columns each of `indexes` carries beside its key (`include(..)`), in the same order:
    /// sea-query builds `INCLUDE` but does not read it back.
    include: Vec<Vec<&'static str>>,
}

/// How a tenant table's keys are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keys {
    /// SeaORM's primary key and foreign keys, with the tenant-leading keys beside them.
    Standard,
    /// The form a distributed database (Citus) shards by tenant: the primary key is
    /// `(tenant, <primary key>)`, and a tenant table's only foreign keys to tenant parents are the
    /// tenant-consistent ones.
    Distributed,
}

impl Keys {
    fn of(distributed: bool) -> Self {
        if distributed {
            Self::Distributed
        } else {
            Self::Standard
        }
    }
}

/// The relations of `E` that make a foreign key, each with its parent table's name.
fn foreign_keys<E: Tenancy>() -> impl Iterator<Item = (sea_orm::RelationDef, String)> {
    E::Relation::iter()
        .map(|relation| relation.def())
        .filter(|rel| !rel.is_owner && !rel.skip_fk)
        .map(|rel| {
            let parent = table_ref_name(&rel.to_tbl);
            (rel, parent)
        })
}

/// The statements for `E` on `backend` with its keys laid out as `keys` says; parents named in
/// `known` are referenced tenant-consistently (see [`TenantTables`]).
fn entity_statements<E: Tenancy>(
    backend: DbBackend,
    known: &[Table],
    keys: Keys,
) -> TableStatements {
    let entity = E::default();
    let table_name = entity.table_name();
    let distributed = keys == Keys::Distributed && E::tenant_column().is_some();
    let mut table = if distributed {
        distributed_table::<E>(backend, known)
    } else {
        Schema::new(backend).create_table_from_entity(entity)
    };
    table.if_not_exists();
    let mut indexes = Vec::new();
    let mut include = Vec::new();
    if let Some(tenant) = E::tenant_column() {
        // A child that belongs to a tenant-scoped parent references `(tenant, key)`, so that a
        // row can only point at a parent of its own tenant; SeaORM's plain key stays beside it.
        for (rel, parent_name) in foreign_keys::<E>() {
            let Some(parent_tenant) = known
                .iter()
                .find(|t| t.name == parent_name)
                .and_then(|t| t.tenant_column)
            else {
                continue;
            };
            let mut fk = ForeignKey::create();
            let mut name = format!("fk_{table_name}_{}", tenant.as_str());
            fk.from_tbl(entity)
                .from_col(tenant)
                .to_tbl(rel.to_tbl.clone());
            fk.to_col(Alias::new(parent_tenant));
            for (from, to) in rel.from_col.iter().zip(rel.to_col.iter()) {
                name.push('_');
                name.push_str(&from.to_string());
                fk.from_col(from.clone()).to_col(to.clone());
            }
            table.foreign_key(fk.name(name));
        }
        let spec = E::table_spec();
        let pk: Vec<E::Column> = E::PrimaryKey::iter()
            .map(PrimaryKeyToColumn::into_column)
            .collect();
        let mut keyed = |unique: bool, columns: &[E::Column], carried: &[E::Column]| {
            if unique && columns.iter().any(|c| c.as_str() == tenant.as_str()) {
                return;
            }
            let mut name = format!(
                "{}_{}_{}",
                if unique { "ux" } else { "ix" },
                table_name,
                tenant.as_str()
            );
            let mut index = Index::create();
            index.if_not_exists().table(entity).col(tenant);
            for c in columns {
                name.push('_');
                name.push_str(c.as_str());
                index.col(*c);
            }
            // Named apart from the plain index on the same key, so that declaring `include`
            // later creates the covering index instead of finding the old one there.
            if !carried.is_empty() {
                name.push_str("_include");
            }
            for c in carried {
                name.push('_');
                name.push_str(c.as_str());
                // SQLite has no `INCLUDE`; further key columns cover the same reads there.
                if backend == DbBackend::Sqlite {
                    index.col(*c);
                } else {
                    index.include(*c);
                }
            }
            if unique {
                index.unique();
            }
            indexes.push(index.name(name).to_owned());
            include.push(carried.iter().map(IdenStatic::as_str).collect());
        };
        // In the distributed form the primary key is that unique already.
        if !distributed {
            keyed(true, &pk, &[]);
        }
        for u in spec.uniques() {
            keyed(true, u, &[]);
        }
        for i in spec.indexes() {
            keyed(false, i.columns(), i.include());
        }
    }
    TableStatements {
        table,
        indexes,
        include,
    }
}

/// `E`'s table in the distributed form: SeaORM's columns, the primary key `(tenant, <primary
/// key>)`, and SeaORM's foreign keys to global parents only (the tenant-consistent ones to tenant
/// parents are added by the caller).
fn distributed_table<E: Tenancy>(backend: DbBackend, known: &[Table]) -> TableCreateStatement {
    let entity = E::default();
    let tenant = E::tenant_column().expect("a tenant table");
    let schema = Schema::new(backend);
    let pk: Vec<E::Column> = E::PrimaryKey::iter()
        .map(PrimaryKeyToColumn::into_column)
        .collect();
    let mut table = TableCreateStatement::new();
    table.table(entity.table_ref());
    for column in E::Column::iter() {
        // SeaORM marks a single-column key `PRIMARY KEY` on the column itself; the key here is
        // a table constraint, so the column is described again without it.
        let def = schema.get_column_def::<E>(column);
        if def.get_column_spec().primary_key {
            let orm = column.def();
            let mut plain = ColumnDef::new_with_type(column, orm.get_column_type().clone());
            plain.not_null();
            if <E::PrimaryKey as sea_orm::PrimaryKeyTrait>::auto_increment() {
                plain.auto_increment();
            }
            if let Some(default) = orm.get_column_default() {
                plain.default(default.clone());
            }
            table.col(&mut plain);
        } else {
            table.col(def);
        }
    }
    let mut key = Index::create();
    key.name(format!("pk_{}", entity.table_name())).col(tenant);
    for c in &pk {
        if c.as_str() != tenant.as_str() {
            key.col(*c);
        }
    }
    table.primary_key(key.primary());
    for (rel, parent) in foreign_keys::<E>() {
        let global_parent = known
            .iter()
            .any(|t| t.name == parent && t.tenant_column.is_none());
        if global_parent {
            table.foreign_key(&mut rel.into());
        }
    }
    table
}

/// Why `E` cannot be distributed among `known` (parents first), if it cannot.
fn distribution_refusal<E: Tenancy>(known: &[Table]) -> Option<String> {
    let name = E::default().table_name();
    for (_, parent) in foreign_keys::<E>() {
        let Some(found) = known.iter().find(|t| t.name == parent) else {
            return Some(format!(
                "`{name}` references `{parent}`, which is not in this `TenantTables`: add it (parents first), or mark the relation `skip_fk`"
            ));
        };
        if E::tenant_column().is_none() && found.tenant_column.is_some() {
            return Some(format!(
                "the global `{name}` references the tenant table `{parent}`: a reference table cannot reference a distributed one"
            ));
        }
    }
    None
}

fn table_ref_name(table: &sea_orm::sea_query::TableRef) -> String {
    use sea_orm::sea_query::TableRef;
    match table {
        TableRef::Table(name, _) => name.1.to_string(),
        other => format!("{other:?}"),
    }
}

/// The statements for `E` alone on `backend`: the table, its tenant column, and the
/// tenant-leading keys. For references to tenant-scoped parents, use [`TenantTables`].
pub fn table_statements<E: Tenancy>(backend: DbBackend) -> TableStatements {
    entity_statements::<E>(backend, &[], Keys::Standard)
}

/// What one table of a [`TenantTables`] must look like in the live database: the objects its
/// statements create, read back from those very statements (see [`TenantTables::expected`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpectedTable {
    /// The table name.
    pub name: &'static str,
    /// The tenant column, `None` for a global table (which has nothing else to expect).
    pub tenant_column: Option<&'static str>,
    /// The tenant-leading indexes, in the order they are created: the `(tenant, primary key)`
    /// unique first, then the per-tenant uniques, then the composite indexes.
    pub indexes: Vec<ExpectedIndex>,
    /// The tenant-consistent foreign keys `(tenant, parent key)` to tenant-scoped parents.
    pub foreign_keys: Vec<ExpectedForeignKey>,
    /// The Row-Level Security policy, when the schema has [`rls`](TenantTables::rls) and the
    /// table is tenant-scoped.
    pub policy: Option<ExpectedPolicy>,
}

/// A tenant-leading index or per-tenant unique of an [`ExpectedTable`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpectedIndex {
    /// The index name, `ix_<table>_<tenant>_<columns>` or `ux_<table>_<tenant>_<columns>`.
    pub name: String,
    /// The key columns in order, the tenant column first.
    pub columns: Vec<String>,
    /// Whether it is a per-tenant unique.
    pub unique: bool,
    /// The columns it carries beside its key (`INCLUDE`), in declaration order; an index whose
    /// key is [`columns`](Self::columns) and that carries at least these is equivalent.
    pub include: Vec<String>,
}

/// A tenant-consistent foreign key of an [`ExpectedTable`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpectedForeignKey {
    /// The constraint name, `fk_<table>_<tenant>_<columns>`.
    pub name: String,
    /// The referencing columns in order, the tenant column first.
    pub columns: Vec<String>,
    /// The parent table.
    pub parent: String,
    /// The referenced columns of the parent, in the same order.
    pub parent_columns: Vec<String>,
}

/// The Row-Level Security policy of an [`ExpectedTable`], as written in its `CREATE POLICY`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpectedPolicy {
    /// The policy name, [`Rls::POLICY`].
    pub name: &'static str,
    /// The `USING` expression, without the surrounding parentheses.
    pub using: String,
    /// The `WITH CHECK` expression, without the surrounding parentheses.
    pub with_check: String,
}

impl ExpectedTable {
    fn of(t: &Table, tables: &[Table], rls: Option<&Rls>, distributed: bool) -> Self {
        let s = (t.statements)(DbBackend::Postgres, tables, Keys::of(distributed));
        let indexes = s
            .indexes
            .iter()
            .zip(&s.include)
            .map(|(i, include)| ExpectedIndex {
                name: i.get_index_spec().get_name().unwrap_or_default().to_owned(),
                columns: i.get_index_spec().get_column_names(),
                unique: i.is_unique_key(),
                include: include.iter().map(|&c| c.to_owned()).collect(),
            })
            .collect();
        // SeaORM's own single-column foreign keys stay beside ours; only the ones that lead with
        // the tenant column are the tenant-consistent ones.
        let foreign_keys = s
            .table
            .get_foreign_key_create_stmts()
            .iter()
            .map(ForeignKeyCreateStatement::get_foreign_key)
            .filter(|f| {
                t.tenant_column
                    .is_some_and(|c| f.get_columns().first().is_some_and(|first| first == c))
            })
            .map(|f| ExpectedForeignKey {
                name: f.get_name().unwrap_or_default().to_owned(),
                columns: f.get_columns(),
                parent: f.get_ref_table().map(table_ref_name).unwrap_or_default(),
                parent_columns: f.get_ref_columns(),
            })
            .collect();
        let policy = rls.and_then(|rls| {
            (t.policies)(rls)
                .iter()
                .find_map(|sql| ExpectedPolicy::parse(t.name, sql))
        });
        Self {
            name: t.name,
            tenant_column: t.tenant_column,
            indexes,
            foreign_keys,
            policy,
        }
    }
}

impl ExpectedPolicy {
    /// Reads `USING (..) WITH CHECK (..)` back from the `CREATE POLICY` statement of
    /// [`Rls::policy_statements`], so that the audit compares against exactly what was created.
    fn parse(table: &str, sql: &str) -> Option<Self> {
        let head = format!(
            "CREATE POLICY {} ON {} USING (",
            Rls::POLICY,
            quote_ident(table)
        );
        let (using, rest) = split_parenthesised(sql.strip_prefix(&head)?)?;
        let (with_check, rest) = split_parenthesised(rest.strip_prefix(" WITH CHECK (")?)?;
        rest.is_empty().then(|| Self {
            name: Rls::POLICY,
            using: using.to_owned(),
            with_check: with_check.to_owned(),
        })
    }
}

/// Splits `s`, which follows an opening parenthesis, at the matching closing one: the inside
/// and what follows it. Parentheses inside quoted literals and identifiers do not count.
fn split_parenthesised(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            // A doubled quote inside a quoted run closes and reopens it: same result.
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') if depth == 0 => return Some((&s[..i], &s[i + 1..])),
            (None, ')') => depth -= 1,
            // Inside quotes, or any other character.
            _ => {}
        }
    }
    None
}

/// One entity's schema, type-erased so that a list of them can be created together.
#[derive(Clone, Copy)]
pub struct Table {
    name: &'static str,
    tenant_column: Option<&'static str>,
    statements: fn(DbBackend, &[Table], Keys) -> TableStatements,
    refusal: fn(&[Table]) -> Option<String>,
    policies: fn(&Rls) -> Vec<String>,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.name)
            .field("tenant_column", &self.tenant_column)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// The table name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The tenant column, `None` for a global table.
    pub fn tenant_column(&self) -> Option<&'static str> {
        self.tenant_column
    }
}

/// `E`'s schema, for [`TenantTables`] and [`create_schema`].
pub fn table<E: Tenancy>() -> Table {
    Table {
        name: E::default().table_name(),
        tenant_column: E::tenant_column().map(|c| c.as_str()),
        statements: entity_statements::<E>,
        refusal: distribution_refusal::<E>,
        policies: Rls::policy_statements::<E>,
    }
}

/// The schema of a set of entities, parents first: tables with their tenant column, the
/// tenant-leading keys, tenant-consistent foreign keys to tenant-scoped parents in the set, and
/// (with [`rls`](Self::rls), on PostgreSQL) the Row-Level Security policies.
///
/// Usable from a `sea-orm-migration` migration, one entity at a time or all at once:
///
/// ```ignore
/// let schema = TenantTables::new().table::<post::Entity>().table::<comment::Entity>().rls(Rls::default());
/// let db = manager.get_connection();
/// for stmt in schema.statements_for("comment", db.get_database_backend()) {
///     db.execute_raw(stmt).await?;
/// }
/// ```
#[derive(Debug, Default)]
pub struct TenantTables {
    tables: Vec<Table>,
    rls: Option<Rls>,
    distributed: bool,
}

impl TenantTables {
    /// An empty schema.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `E`; add parents before their children.
    #[must_use]
    pub fn table<E: Tenancy>(mut self) -> Self {
        self.tables.push(table::<E>());
        self
    }

    /// Adds already erased tables, in order.
    #[must_use]
    pub fn tables(mut self, tables: impl IntoIterator<Item = Table>) -> Self {
        self.tables.extend(tables);
        self
    }

    /// Also puts every tenant table under Row-Level Security (PostgreSQL only; ignored on
    /// other backends, which keep the app-level guarantees).
    #[must_use]
    pub fn rls(mut self, rls: Rls) -> Self {
        self.rls = Some(rls);
        self
    }

    /// The distributed form, for Citus: every tenant table's primary key becomes
    /// `(tenant, <primary key>)` (the `(tenant, <primary key>)` unique it replaces is not created
    /// again), SeaORM's single-column foreign keys to tenant parents give way to the
    /// tenant-consistent ones, and on PostgreSQL each table is distributed by its tenant column
    /// (`create_distributed_table`, colocated with the first tenant table) or, for a global
    /// entity, made a reference table (`create_reference_table`), in the set's order, before its
    /// policies, where the `citus` extension is installed. Re-runnable: a table already
    /// distributed is left alone.
    ///
    /// What this changes for a model: a row's key is unique per tenant (two tenants may hold the
    /// same id), and a handle over such tables must say so
    /// ([`TenantDb::with_distributed_keys`](crate::TenantDb::with_distributed_keys)) so that
    /// upserts find the row by `(tenant, key)`. The form is valid on plain PostgreSQL (where the
    /// distribution statements do nothing) and on SQLite (where they are left out).
    #[must_use]
    pub fn distributed(mut self) -> Self {
        self.distributed = true;
        self
    }

    /// Whether this is the [`distributed`](Self::distributed) form.
    pub fn is_distributed(&self) -> bool {
        self.distributed
    }

    /// Refuses, in the [`distributed`](Self::distributed) form, what a distributed database
    /// cannot create: a global table referencing a tenant table, a reference to a table not in
    /// the set, RLS policies with a subquery (Citus refuses them: use
    /// [`PolicyForm::Plain`](crate::PolicyForm::Plain)).
    ///
    /// # Errors
    ///
    /// [`Error::NotDistributable`](crate::Error::NotDistributable), naming the table and why.
    pub fn check(&self) -> Result<()> {
        if !self.distributed {
            return Ok(());
        }
        for (i, t) in self.tables.iter().enumerate() {
            if let Some(reason) = (t.refusal)(&self.tables[..i]) {
                return Err(crate::Error::NotDistributable {
                    table: t.name,
                    reason,
                });
            }
            if t.tenant_column.is_some()
                && self
                    .rls
                    .as_ref()
                    .is_some_and(|r| r.policy_form() == super::PolicyForm::Subquery)
            {
                return Err(crate::Error::NotDistributable {
                    table: t.name,
                    reason: "its policy would hold a subquery, which Citus refuses; build the `Rls` with `.with_policy_form(PolicyForm::Plain)`".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The tables, in order.
    pub fn table_list(&self) -> &[Table] {
        &self.tables
    }

    /// The RLS settings the policies are generated for.
    pub fn rls_settings(&self) -> Option<&Rls> {
        self.rls.as_ref()
    }

    /// Every statement for the table `name`, in the order to run them.
    ///
    /// # Panics
    ///
    /// When `name` is not a table of this schema: a migration naming a table that was never
    /// added is a programming error; in the [`distributed`](Self::distributed) form, when
    /// [`check`](Self::check) refuses the set.
    pub fn statements_for(&self, name: &str, backend: DbBackend) -> Vec<Statement> {
        let t = self
            .tables
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("`{name}` is not a table of this `TenantTables`"));
        if let Err(e) = self.check() {
            panic!("{e}");
        }
        self.statements_of(t, backend)
    }

    fn statements_of(&self, t: &Table, backend: DbBackend) -> Vec<Statement> {
        let s = (t.statements)(backend, &self.tables, Keys::of(self.distributed));
        let mut out = vec![backend.build(&s.table)];
        out.extend(s.indexes.iter().map(|i| backend.build(i)));
        if self.distributed && backend == DbBackend::Postgres {
            out.push(Statement::from_string(backend, self.distribution(t)));
        }
        if let (Some(rls), DbBackend::Postgres) = (&self.rls, backend) {
            out.extend(
                (t.policies)(rls)
                    .into_iter()
                    .map(|sql| Statement::from_string(backend, sql)),
            );
        }
        out
    }

    /// The statement that distributes `t` (a tenant table, by its tenant column, colocated with
    /// the set's first tenant table) or makes it a reference table (a global one), where Citus is
    /// installed and `t` is not distributed yet.
    fn distribution(&self, t: &Table) -> String {
        let literal = |name: &str| format!("'{}'", quote_ident(name).replace('\'', "''"));
        let table = literal(t.name);
        let call = match t.tenant_column {
            Some(column) => {
                let first = self
                    .tables
                    .iter()
                    .find(|t| t.tenant_column.is_some())
                    .map_or(t.name, |t| t.name);
                format!(
                    "create_distributed_table({table}, '{column}', colocate_with => {})",
                    if first == t.name {
                        "'default'".to_owned()
                    } else {
                        literal(first)
                    }
                )
            }
            None => format!("create_reference_table({table})"),
        };
        // Nested, so that `pg_dist_partition` and the Citus functions are only planned where
        // Citus is installed: on plain PostgreSQL the block does nothing.
        format!(
            "DO $tenant$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN \
             IF NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = {table}::regclass) THEN \
             PERFORM {call}; END IF; END IF; END $tenant$"
        )
    }

    /// Every statement of every table, parents first.
    ///
    /// # Panics
    ///
    /// In the [`distributed`](Self::distributed) form, when [`check`](Self::check) refuses the
    /// set: a declaration that cannot be distributed is a programming error, reported here
    /// rather than half-way through a migration.
    pub fn statements(&self, backend: DbBackend) -> Vec<Statement> {
        if let Err(e) = self.check() {
            panic!("{e}");
        }
        self.tables
            .iter()
            .flat_map(|t| self.statements_of(t, backend))
            .collect()
    }

    /// What every table must look like in the live database: its tenant-leading indexes and
    /// uniques, tenant-consistent foreign keys and (with [`rls`](Self::rls)) its policy, with
    /// names and columns. Read back from the same statements [`statements`](Self::statements)
    /// returns, so the two cannot drift; `tenant::audit` (feature `postgres`) compares it with
    /// the live catalog.
    pub fn expected(&self) -> Vec<ExpectedTable> {
        self.tables
            .iter()
            .map(|t| ExpectedTable::of(t, &self.tables, self.rls.as_ref(), self.distributed))
            .collect()
    }

    /// Runs [`statements`](Self::statements) on `conn` (the owner's connection, not the
    /// application role's). Re-runnable: tables and keys are created if missing, policies
    /// replaced.
    #[expect(
        clippy::disallowed_methods,
        reason = "DDL this crate generates from the declaration"
    )]
    pub async fn create<C: ConnectionTrait>(&self, conn: &C) -> Result<()> {
        self.check()?;
        for stmt in self.statements(conn.get_database_backend()) {
            conn.execute_raw(stmt).await?;
        }
        Ok(())
    }
}

impl TenantTables {
    /// The statements that give a schema-tier tenant its own copy of the tenant tables in
    /// `schema`, in the order to run them, in one transaction (PostgreSQL):
    /// `CREATE SCHEMA IF NOT EXISTS`, `SET LOCAL search_path = <schema>, <shared schemas>`, then
    /// every tenant table's statements. Global tables are not copied: they stay in the shared
    /// schemas (the [`Rls`]'s search path, or `public`), where the copies' foreign keys find
    /// them.
    ///
    /// The copies keep their tenant column, keys and (with [`rls`](Self::rls)) policies: the
    /// schema isolates the tenant, and the app-level predicate and the policies still hold inside
    /// it. Re-runnable, as [`statements`](Self::statements) is.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`](crate::Error::InvalidName) when `schema` is not a lowercase
    /// identifier of its own (not `public`, `information_schema` or `pg_*`).
    pub fn statements_in(&self, schema: &str) -> Result<Vec<Statement>> {
        let quoted = own_schema(schema)?;
        let shared = self.rls.as_ref().map_or("public", |rls| rls.search_path());
        let raw = |sql: String| Statement::from_string(DbBackend::Postgres, sql);
        let mut out = vec![
            raw(format!("CREATE SCHEMA IF NOT EXISTS {quoted}")),
            raw(format!("SET LOCAL search_path = {quoted}, {shared}")),
        ];
        out.extend(
            self.tables
                .iter()
                .filter(|t| t.tenant_column.is_some())
                .flat_map(|t| self.statements_of(t, DbBackend::Postgres)),
        );
        Ok(out)
    }

    /// Runs [`statements_in`](Self::statements_in) on `conn` (the owner's connection) in one
    /// transaction: a schema-tier tenant's tables in `schema`, all or none.
    ///
    /// # Errors
    ///
    /// [`Error::NeedsPostgres`](crate::Error::NeedsPostgres) when `conn` is not PostgreSQL;
    /// [`Error::InvalidName`](crate::Error::InvalidName) for `schema` as in
    /// [`statements_in`](Self::statements_in); the database's error.
    #[expect(
        clippy::disallowed_methods,
        reason = "DDL this crate generates from the declaration"
    )]
    pub async fn create_in<C: ConnectionTrait + TransactionTrait>(
        &self,
        conn: &C,
        schema: &str,
    ) -> Result<()> {
        if conn.get_database_backend() != DbBackend::Postgres {
            return Err(crate::Error::NeedsPostgres {
                feature: "schema-per-tenant",
                backend: conn.get_database_backend(),
            });
        }
        let statements = self.statements_in(schema)?;
        let txn = conn.begin().await?;
        for stmt in statements {
            txn.execute_raw(stmt).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// The privileges the application role `role` needs in a schema-tier tenant's `schema`:
    /// `USAGE` on the schema, `SELECT, INSERT, UPDATE, DELETE` on its tables (and use of its
    /// sequences), nothing for `PUBLIC`. Run them after [`create_in`](Self::create_in), as the
    /// owner.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`](crate::Error::InvalidName) when `schema` is not a tenant schema
    /// name or `role` not a lowercase identifier.
    pub fn grants_in(schema: &str, role: &str) -> Result<Vec<String>> {
        let schema = own_schema(schema)?;
        if !is_plain_ident(role) {
            return Err(crate::Error::InvalidName {
                what: "role name",
                name: role.to_owned(),
                expected: "a lowercase identifier",
            });
        }
        let role = quote_ident(role);
        Ok(vec![
            format!("REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM PUBLIC"),
            format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"
            ),
            format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"),
        ])
    }
}

/// `schema` quoted, once checked as a name a tenant's own schema may have.
fn own_schema(schema: &str) -> Result<String> {
    if !is_tenant_schema_name(schema) {
        return Err(crate::Error::InvalidName {
            what: "tenant schema",
            name: schema.to_owned(),
            expected: "a lowercase identifier of its own (not `public`, `information_schema` or `pg_*`)",
        });
    }
    Ok(quote_ident(schema))
}

/// The former name of [`TenantTables`], from before schema-per-tenant: the tables a tenancy
/// declaration implies, wherever they are created.
#[deprecated(
    since = "0.1.0",
    note = "renamed `TenantTables`; a tenant's own schema is the schema tier"
)]
pub type TenantSchema = TenantTables;

/// Creates the tables (in the order given: parents first) and their tenant-leading keys and
/// tenant-consistent foreign keys, if they do not exist yet: `TenantTables` without RLS. For
/// quick starts and tests; production schemas belong in migrations.
///
/// It takes the raw connection, before it is wrapped in a [`TenantDb`](crate::TenantDb): DDL is
/// not tenant-scoped.
pub async fn create_schema<C: ConnectionTrait>(conn: &C, tables: &[Table]) -> Result<()> {
    TenantTables::new()
        .tables(tables.iter().copied())
        .create(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PolicyForm;

    #[allow(
        unreachable_pub,
        missing_docs,
        reason = "SeaORM's entity layout: `pub` items in a private test module"
    )]
    mod item {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "item")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub tenant_id: Uuid,
            pub sku: String,
            pub title: String,
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
                    .unique(&[Column::Sku])
                    .index(&[Column::Title])
                    .index_including(&[Column::Title], &[Column::Sku, Column::Id])
            }
        }
    }

    #[test]
    fn expected_objects_are_read_back_from_the_statements() {
        for form in [PolicyForm::Subquery, PolicyForm::Plain] {
            let rls = Rls::default().with_policy_form(form);
            let schema = TenantTables::new().table::<item::Entity>().rls(rls.clone());
            let [item] = &schema.expected()[..] else {
                panic!("one table expected")
            };
            let names: Vec<(&str, bool, Vec<String>)> = item
                .indexes
                .iter()
                .map(|i| (i.name.as_str(), i.unique, i.columns.clone()))
                .collect();
            let cols = |c: &[&str]| c.iter().map(|&c| c.to_owned()).collect::<Vec<_>>();
            assert_eq!(
                names,
                [
                    ("ux_item_tenant_id_id", true, cols(&["tenant_id", "id"])),
                    ("ux_item_tenant_id_sku", true, cols(&["tenant_id", "sku"])),
                    (
                        "ix_item_tenant_id_title",
                        false,
                        cols(&["tenant_id", "title"])
                    ),
                    (
                        "ix_item_tenant_id_title_include_sku_id",
                        false,
                        cols(&["tenant_id", "title"])
                    ),
                ]
            );
            let include: Vec<&[String]> = item.indexes.iter().map(|i| &i.include[..]).collect();
            assert_eq!(include, [&[][..], &[], &[], &cols(&["sku", "id"])]);
            let check = format!("\"tenant_id\" = {}", rls.current_tenant_sql());
            let policy = item.policy.as_ref().expect("the policy is parsed back");
            assert_eq!(policy.name, Rls::POLICY);
            assert_eq!(policy.using, check);
            assert_eq!(policy.with_check, check);
        }
        let plain = TenantTables::new().table::<item::Entity>();
        assert_eq!(plain.expected()[0].policy, None);
    }

    /// A covering index is `INCLUDE` on PostgreSQL; SQLite, which has none, gets the carried
    /// columns as further key columns (what covers the same reads there).
    #[test]
    fn included_columns_are_include_on_postgres_and_key_columns_on_sqlite() {
        let sql = |backend| {
            let s = table_statements::<item::Entity>(backend);
            let last = s.indexes.last().expect("the covering index");
            backend.build(last).to_string()
        };
        assert_eq!(
            sql(DbBackend::Postgres),
            "CREATE INDEX IF NOT EXISTS \"ix_item_tenant_id_title_include_sku_id\" ON \"item\" \
             (\"tenant_id\", \"title\") INCLUDE (\"sku\", \"id\")"
        );
        assert_eq!(
            sql(DbBackend::Sqlite),
            "CREATE INDEX IF NOT EXISTS \"ix_item_tenant_id_title_include_sku_id\" ON \"item\" \
             (\"tenant_id\", \"title\", \"sku\", \"id\")"
        );
    }

    #[test]
    fn parentheses_in_quotes_do_not_end_an_expression() {
        assert_eq!(
            split_parenthesised("a = f(')', \"(\") OR (b)) WITH CHECK (x)"),
            Some(("a = f(')', \"(\") OR (b)", " WITH CHECK (x)"))
        );
        assert_eq!(
            split_parenthesised("a = 'it''s (' ) tail"),
            Some(("a = 'it''s (' ", " tail"))
        );
        assert_eq!(split_parenthesised("(unclosed"), None);
    }
}
