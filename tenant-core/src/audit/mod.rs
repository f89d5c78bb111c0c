//! The start-up audit: does the live PostgreSQL database isolate tenants the way the
//! [`TenantTables`](crate::TenantTables) declares? What it checks and how is documented on
//! `audit` itself, the public item.

use std::fmt;

#[cfg(feature = "postgres")]
use crate::{Error, Result, TenantTables};

/// What kind of problem a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FindingKind {
    /// The application role is a superuser: it bypasses every policy, even `FORCE`d ones.
    Superuser,
    /// The application role has `BYPASSRLS`: it skips every policy.
    BypassRls,
    /// The application role is a member of a superuser or `BYPASSRLS` role: `SET ROLE` escapes
    /// every policy.
    PrivilegedMembership,
    /// The application role owns a tenant table that is not `FORCE ROW LEVEL SECURITY` (or can
    /// `SET ROLE` to its owner): owners skip the table's policies.
    OwnerNotForced,
    /// The application role owns a tenant table, or can `SET ROLE` to its owner, even though the
    /// table is `FORCE`d: an owner can switch `FORCE`, row-level security or the policy off.
    TableOwner,
    /// The tenant setting has a default for the application role's sessions (`ALTER ROLE .. SET`,
    /// `ALTER DATABASE .. SET`, the server's configuration): every session that binds no tenant
    /// is bound to that one.
    TenantSettingDefault,
    /// A tenant table of the schema does not exist (or is not on the `search_path`).
    TableMissing,
    /// A tenant table does not have row-level security enabled: its policies are ignored.
    RlsDisabled,
    /// A tenant table has no policy named [`Rls::POLICY`](crate::Rls::POLICY).
    PolicyMissing,
    /// The policy differs from the declared one, or another permissive policy widens it.
    PolicyMismatch,
    /// A declared composite `(tenant, ..)` index is missing or has other columns.
    IndexMissing,
    /// A declared per-tenant unique `(tenant, ..)` is missing, has other columns or is not unique.
    UniqueMissing,
    /// A declared tenant-consistent foreign key `(tenant, parent key)` is missing or differs.
    ForeignKeyMissing,
    /// Citus is installed and the application role's sessions do not propagate `SET LOCAL` to
    /// the workers (`citus.propagate_set_commands` is not `local`): the tenant binding never
    /// reaches the shards, so every bound statement on a distributed table sees no rows.
    CitusBindingNotPropagated,
    /// A unique index or exclusion constraint on a tenant table leaves out the tenant column (or,
    /// in an exclusion constraint, does not compare it with `=`): it is global across tenants, so
    /// its violations reveal other tenants' values.
    GlobalUnique,
}

/// One problem the audit found, with the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// What kind of problem it is.
    pub kind: FindingKind,
    /// The table concerned, `None` for a finding about the role.
    pub table: Option<String>,
    /// The schema-tier tenant schema the table is in ([`audit_in`]); `None` for the tables on
    /// the search path and the role.
    pub schema: Option<String>,
    /// The catalog's reference of the database-tier tenant database it is about
    /// ([`TenantDb::audit_tenants`](crate::TenantDb::audit_tenants)); `None` for the database
    /// audited directly.
    pub database: Option<String>,
    /// What is wrong and why it matters.
    pub message: String,
    /// What to do about it, usually the SQL to run as the tables' owner or an administrator.
    pub fix: String,
}

impl Finding {
    #[cfg_attr(
        not(feature = "postgres"),
        expect(dead_code, reason = "findings are made by the PostgreSQL audit")
    )]
    fn new(kind: FindingKind, table: Option<&str>, message: String, fix: String) -> Self {
        Self {
            kind,
            table: table.map(str::to_owned),
            schema: None,
            database: None,
            message,
            fix,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(database) = &self.database {
            write!(f, "in database `{database}`: ")?;
        }
        match &self.schema {
            Some(schema) => write!(
                f,
                "in schema `{schema}`: {}; fix (with `SET search_path = {}`): {}",
                self.message,
                crate::ddl::quote_ident(schema),
                self.fix
            ),
            None => write!(f, "{}; fix: {}", self.message, self.fix),
        }
    }
}

/// The result of `tenant::audit`: every finding, in a stable order (the role first, then the
/// tables in schema order).
///
/// # Examples
///
/// ```
/// # fn check(report: tenant_core::Report) -> tenant_core::Result<()> {
/// // `report` is `tenant::audit(&conn, &schema).await?`. In a test or at start-up, fail with
/// // every finding listed:
/// report.into_result()?;
/// # Ok(()) }
/// # check(tenant_core::Report::default()).unwrap();
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    findings: Vec<Finding>,
}

impl Report {
    /// `other`'s findings after these.
    #[cfg(feature = "postgres")]
    pub(crate) fn extend(&mut self, other: Report) {
        self.findings.extend(other.findings);
    }

    /// The same findings, each about the tenant database the catalog calls `reference`.
    #[cfg(feature = "postgres")]
    pub(crate) fn in_database(mut self, reference: &str) -> Self {
        for f in &mut self.findings {
            f.database = Some(reference.to_owned());
        }
        self
    }

    /// The findings.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The findings, by value.
    pub fn into_findings(self) -> Vec<Finding> {
        self.findings
    }

    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// `Ok(())` when clean, else [`Error::Audit`](crate::Error::Audit) with this report.
    pub fn into_result(self) -> crate::Result<()> {
        if self.is_clean() {
            Ok(())
        } else {
            Err(crate::Error::Audit(self))
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.findings.len() {
            0 => return f.write_str("no findings"),
            1 => f.write_str("1 finding:")?,
            n => write!(f, "{n} findings:")?,
        }
        for finding in &self.findings {
            write!(f, "\n- {finding}")?;
        }
        Ok(())
    }
}

/// Audits the live database behind `conn` against `schema`: can the application role bypass
/// Row-Level Security, and is every tenant table under the declared policy with its declared keys?
///
/// RLS fails open in quiet ways: a superuser or `BYPASSRLS` role skips every policy, a table
/// owner skips them unless the table is `FORCE`d, a policy someone "fixed" by hand may allow
/// everything, and a missing composite key lets a child point at another tenant's parent. None of
/// it shows up as an error. The audit reads the catalog and reports each such problem as a
/// [`Finding`] with the statement that fixes it;
/// [`TenantDb::with_rls_checked`](crate::TenantDb::with_rls_checked) refuses to start on any.
///
/// Run it on the **application role's** connection (the one given to
/// [`TenantDb::with_rls`](crate::TenantDb::with_rls)): the role checks are about
/// `current_user`. Every finding is also logged at `WARN` to the `tenant::audit` tracing target.
/// Without [`rls`](crate::TenantTables::rls) on the schema, only the keys are checked.
///
/// # What is checked
///
/// On the role (only when the schema has [`rls`](crate::TenantTables::rls)): superuser,
/// `BYPASSRLS`, and membership (direct or through other roles) in a role that is either, since
/// `SET ROLE` would escape the policies; and a value of the tenant setting outside any
/// transaction (`ALTER ROLE .. SET`, `ALTER DATABASE .. SET`, the server's configuration), which
/// would bind every session that binds no tenant.
///
/// On every tenant table (global tables are skipped):
/// - with RLS declared: row-level security enabled; not owned by the application role, directly,
///   through an inherited membership or through one it can `SET ROLE` with (`NOINHERIT`): an
///   owner skips the policies of a table that is not `FORCE`d, and can switch `FORCE` off on one
///   that is; the policy
///   [`Rls::POLICY`](crate::Rls::POLICY) present, permissive, for all commands and all roles,
///   with the declared `USING` and `WITH CHECK`; no other permissive policy that applies to the
///   role (permissive policies are OR-ed);
/// - always: every declared tenant-leading index, per-tenant unique and tenant-consistent foreign
///   key exists with the declared columns, under any name (a primary key serves as a unique)
///   ([`TenantTables::expected`](crate::TenantTables::expected)); no unique index other than the
///   primary key leaves out the tenant column, expression indexes included; and no exclusion
///   constraint leaves it out of its `=` comparisons (a global unique is an existence oracle
///   across tenants: RLS does not filter unique violations).
///
/// # How policies are compared
///
/// The catalog holds a policy as a parsed tree, and `pg_get_expr` prints it in PostgreSQL's own
/// normal form (`(tenant_id = ( SELECT (NULLIF(current_setting('app.tenant_id'::text, true),
/// ''::text))::uuid AS "nullif"))`), which is not the text we wrote. So the declared expressions
/// are put through the same parser and printer: in a transaction that is always rolled back, the
/// audit creates a temporary table `LIKE` the tenant table, puts the declared policy on it, and
/// reads it back with `pg_get_expr`. The live `USING` and `WITH CHECK` must equal those strings
/// exactly. Nothing persists, and the application role only needs the `TEMPORARY` privilege that
/// PostgreSQL grants to `PUBLIC` by default.
///
/// Where that is refused (no `TEMPORARY` privilege, a read-only transaction), both sides are
/// compared as normalised text instead: lowercased, without whitespace, parentheses, double
/// quotes, `::text` casts and the `AS "nullif"` alias PostgreSQL adds. That still tells the
/// declared policy from `USING (true)`, from the other [`PolicyForm`](crate::PolicyForm), from
/// another setting or column, and from any added `OR`, but it could miss a difference that only
/// lies in a `::text` cast or in grouping.
///
/// # Errors
///
/// [`Error::NeedsPostgres`] when `conn` is not PostgreSQL, or the database's error.
///
/// # Examples
///
/// ```no_run
/// # async fn run(tables: Vec<tenant_core::Table>) -> Result<(), Box<dyn std::error::Error>> {
/// let conn = sea_orm::Database::connect("postgres://app@localhost/app").await?;
/// let schema = tenant_core::TenantTables::new()
///    .tables(tables)
///    .rls(tenant_core::Rls::default());
/// let report = tenant_core::audit(&conn, &schema).await?;
/// assert!(report.is_clean(), "{report}");
/// # Ok(()) }
/// ```
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub async fn audit(conn: &sea_orm::DatabaseConnection, schema: &TenantTables) -> Result<Report> {
    if conn.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Err(Error::NeedsPostgres {
            feature: "the audit",
            backend: conn.get_database_backend(),
        });
    }
    let mut findings = Vec::new();
    if let Some(rls) = schema.rls_settings() {
        pg::role(conn, rls, &mut findings).await?;
    }
    for table in schema.expected() {
        if table.tenant_column.is_some() {
            pg::table(conn, &table, &mut findings).await?;
        }
    }
    for f in &findings {
        tracing::warn!(
            target: "tenant::audit",
            kind = ?f.kind,
            table = f.table.as_deref(),
            fix = %f.fix,
            "{}",
            f.message
        );
    }
    Ok(Report { findings })
}

/// Audits a schema-tier tenant's own `schema` against `tables`: every check
/// [`audit`] makes on the tenant tables, made on the copies in that schema (created by
/// [`TenantTables::create_in`](crate::TenantTables::create_in)). A table missing from the schema
/// is a finding even when the shared schemas have one of that name: the schema's tenant would
/// read and write there instead. The role checks are [`audit`]'s, once for every schema.
///
/// Runs in a transaction that is rolled back, with `search_path` set to the schema alone. Each
/// finding names the schema ([`Finding::schema`]).
///
/// # Errors
///
/// [`Error::NeedsPostgres`] when `conn` is not PostgreSQL; [`Error::InvalidName`] when `schema`
/// is not a tenant schema name; or the database's error.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[expect(
    clippy::disallowed_methods,
    reason = "pins the audit's own transaction to the schema it audits"
)]
pub async fn audit_in(
    conn: &sea_orm::DatabaseConnection,
    tables: &TenantTables,
    schema: &str,
) -> Result<Report> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if conn.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Err(Error::NeedsPostgres {
            feature: "the audit",
            backend: conn.get_database_backend(),
        });
    }
    if !crate::ddl::is_tenant_schema_name(schema) {
        return Err(Error::InvalidName {
            what: "tenant schema",
            name: schema.to_owned(),
            expected: "a lowercase identifier of its own (not `public`, `information_schema` or `pg_*`)",
        });
    }
    let txn = conn.begin().await?;
    txn.execute_unprepared(&format!(
        "SET LOCAL search_path = {}, pg_temp",
        crate::ddl::quote_ident(schema)
    ))
    .await?;
    let mut findings = Vec::new();
    let checked = async {
        for table in tables.expected() {
            if table.tenant_column.is_some() {
                pg::table(&txn, &table, &mut findings).await?;
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    txn.rollback().await?;
    checked?;
    for f in &mut findings {
        f.schema = Some(schema.to_owned());
        tracing::warn!(
            target: "tenant::audit",
            kind = ?f.kind,
            schema,
            table = f.table.as_deref(),
            fix = %f.fix,
            "{}",
            f.message
        );
    }
    Ok(Report { findings })
}

/// The catalog queries. Every name written into SQL is quoted with `quote_ident` or comes
/// quoted from PostgreSQL (`format('%I')`); values are bound.
#[cfg(feature = "postgres")]
mod pg {
    use std::collections::BTreeMap;

    use sea_orm::{
        ConnectionTrait, DbBackend, QueryResult, Statement, TransactionSession, TransactionTrait,
        Value,
    };

    /// A connection the checks run on: a pool, or the transaction of a schema's audit.
    pub(super) trait Conn: ConnectionTrait + TransactionTrait + Sync {}
    impl<C: ConnectionTrait + TransactionTrait + Sync> Conn for C {}

    use super::{Finding, FindingKind as Kind};
    use crate::Result;
    use crate::ddl::{ExpectedIndex, ExpectedPolicy, ExpectedTable};
    use crate::ddl::{Rls, quote_ident};

    #[expect(
        clippy::disallowed_methods,
        reason = "catalog queries this crate writes, with bound values"
    )]
    async fn rows<C: ConnectionTrait>(
        conn: &C,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Vec<QueryResult>> {
        let stmt = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
        Ok(conn.query_all_raw(stmt).await?)
    }

    fn list(columns: &[impl AsRef<str>]) -> String {
        columns
            .iter()
            .map(|c| quote_ident(c.as_ref()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn ticked(columns: &[String]) -> String {
        columns
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Live key columns: `None` is an expression.
    fn ticked_live(columns: &[Option<String>]) -> String {
        columns
            .iter()
            .map(|c| {
                c.as_ref()
                    .map_or("<expression>".to_owned(), |c| format!("`{c}`"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `current_user`'s own rights, the privileged roles it can `SET ROLE` to, and a default of
    /// the tenant setting for its sessions.
    pub(super) async fn role<C: Conn>(conn: &C, rls: &Rls, out: &mut Vec<Finding>) -> Result<()> {
        const ROLE: &str = "SELECT current_user::text, r.rolsuper, r.rolbypassrls \
                            FROM pg_roles r WHERE r.rolname = current_user";
        // `pg_has_role(.., 'MEMBER')` follows membership through intermediate roles.
        const MEMBERSHIP: &str = "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls \
             FROM pg_roles r \
             WHERE (r.rolsuper OR r.rolbypassrls) AND r.rolname <> current_user \
               AND pg_has_role(current_user, r.oid, 'MEMBER') \
             ORDER BY r.rolname";
        setting_default(conn, rls, out).await?;
        citus_propagation(conn, out).await?;
        let Some(row) = rows(conn, ROLE, Vec::new()).await?.into_iter().next() else {
            return Ok(());
        };
        let user: String = row.try_get_by_index(0)?;
        let superuser: bool = row.try_get_by_index(1)?;
        let bypass: bool = row.try_get_by_index(2)?;
        let q = quote_ident(&user);
        let instead = "or connect as a login role that is neither, with only `SELECT, INSERT, UPDATE, DELETE` on the tables";
        if superuser {
            out.push(Finding::new(
                Kind::Superuser,
                None,
                format!(
                    "role `{user}` is a superuser, and superusers bypass every row-level security policy, even on `FORCE`d tables"
                ),
                format!("`ALTER ROLE {q} NOSUPERUSER`, {instead}"),
            ));
            // A superuser is a member of every role: the membership check says nothing more.
            return Ok(());
        }
        if bypass {
            out.push(Finding::new(
                Kind::BypassRls,
                None,
                format!("role `{user}` has `BYPASSRLS` and skips every row-level security policy"),
                format!("`ALTER ROLE {q} NOBYPASSRLS`, {instead}"),
            ));
        }
        for row in rows(conn, MEMBERSHIP, Vec::new()).await? {
            let role: String = row.try_get_by_index(0)?;
            let is_super: bool = row.try_get_by_index(1)?;
            let right = if is_super {
                "is a superuser"
            } else {
                "has `BYPASSRLS`"
            };
            out.push(Finding::new(
                Kind::PrivilegedMembership,
                None,
                format!(
                    "role `{user}` is a member of `{role}`, which {right}: `SET ROLE {}` skips every row-level security policy",
                    quote_ident(&role)
                ),
                format!(
                    "`REVOKE {} FROM {q}` (or from the role that grants it to `{user}`)",
                    quote_ident(&role)
                ),
            ));
        }
        Ok(())
    }

    /// On Citus, whether this role's `SET LOCAL` reaches the workers: only with
    /// `citus.propagate_set_commands = 'local'` does the binding bind the shards' statements.
    async fn citus_propagation<C: Conn>(conn: &C, out: &mut Vec<Finding>) -> Result<()> {
        const CITUS: &str = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus'), \
                   coalesce(current_setting('citus.propagate_set_commands', true), ''), \
                   current_user::text";
        let Some(row) = rows(conn, CITUS, Vec::new()).await?.into_iter().next() else {
            return Ok(());
        };
        let citus: bool = row.try_get_by_index(0)?;
        let value: String = row.try_get_by_index(1)?;
        let user: String = row.try_get_by_index(2)?;
        if citus && value != "local" {
            out.push(Finding::new(
                Kind::CitusBindingNotPropagated,
                None,
                format!(
                    "Citus is installed and `citus.propagate_set_commands` is `{value}` for role `{user}`: the tenant binding (`SET LOCAL`) never reaches the workers, so every bound statement on a distributed table sees no rows"
                ),
                format!(
                    "`ALTER ROLE {} SET citus.propagate_set_commands = 'local'`, then reconnect",
                    quote_ident(&user)
                ),
            ));
        }
        Ok(())
    }

    /// A value of the tenant setting outside any transaction, where it must read empty. Where it
    /// comes from: `pg_db_role_setting` (`ALTER ROLE`/`ALTER DATABASE .. SET`; `pg_settings`
    /// does not list custom settings), else the server's configuration, the connection's options
    /// or a session-level `SET` left on the pooled connection, which binds every later borrower
    /// just the same.
    async fn setting_default<C: Conn>(conn: &C, rls: &Rls, out: &mut Vec<Finding>) -> Result<()> {
        const SETTING: &str = "SELECT coalesce(current_setting($1, true), ''), \
                   (SELECT CASE WHEN s.setrole <> 0 AND s.setdatabase <> 0 THEN 'database user' \
                                WHEN s.setrole <> 0 THEN 'user' ELSE 'database' END \
                    FROM pg_db_role_setting s \
                    WHERE s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = current_user)) \
                      AND s.setdatabase IN \
                          (0, (SELECT oid FROM pg_database WHERE datname = current_database())) \
                      AND (s.setrole, s.setdatabase) <> (0, 0) \
                      AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c WHERE c LIKE $1 || '=%') \
                    ORDER BY s.setrole <> 0 AND s.setdatabase <> 0 DESC, s.setrole <> 0 DESC \
                    LIMIT 1), \
                   current_user::text, current_database()::text";
        let Some(row) = rows(conn, SETTING, vec![rls.setting().into()])
            .await?
            .into_iter()
            .next()
        else {
            return Ok(());
        };
        let value: String = row.try_get_by_index(0)?;
        if value.is_empty() {
            return Ok(());
        }
        let source: Option<String> = row.try_get_by_index(1)?;
        let user: String = row.try_get_by_index(2)?;
        let database: String = row.try_get_by_index(3)?;
        let setting = rls.setting();
        let (q_user, q_db) = (quote_ident(&user), quote_ident(&database));
        let fix = match source.as_deref() {
            Some("user") => format!("`ALTER ROLE {q_user} RESET {setting}`"),
            Some("database") => format!("`ALTER DATABASE {q_db} RESET {setting}`"),
            Some("database user") => {
                format!("`ALTER ROLE {q_user} IN DATABASE {q_db} RESET {setting}`")
            }
            _ => format!(
                "remove `{setting}` from the server's configuration or the connection's options; if it was a session-level `SET {setting}` left on a pooled connection, find that code (bind with `SET LOCAL` inside a transaction)"
            ),
        };
        out.push(Finding::new(
            Kind::TenantSettingDefault,
            None,
            format!(
                "`{setting}` reads `{value}` for role `{user}` outside any transaction (set {}): every session that binds no tenant is bound to that one, and sees its rows",
                match source.as_deref() {
                    Some("user") => "for the role",
                    Some("database") => "for the database",
                    Some("database user") => "for the role in this database",
                    _ => "by the server's configuration, the connection or the session",
                }
            ),
            fix,
        ));
        Ok(())
    }

    /// Every check on one tenant table.
    pub(super) async fn table<C: Conn>(
        conn: &C,
        t: &ExpectedTable,
        out: &mut Vec<Finding>,
    ) -> Result<()> {
        // `MEMBER`, not `USAGE`: a `NOINHERIT` membership still lets `SET ROLE` become the owner.
        // A superuser is a member of every role; that is its own finding.
        const TABLE: &str = "SELECT c.oid::int8, c.relrowsecurity, c.relforcerowsecurity, \
                   pg_has_role(current_user, c.relowner, 'MEMBER') \
                       AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
                   pg_get_userbyid(c.relowner)::text, \
                   format('%I.%I', n.nspname, c.relname), current_user::text, \
                   pg_has_role(current_user, c.relowner, 'USAGE') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass($1)";
        let name = t.name;
        let quoted = quote_ident(name);
        let tenant = t.tenant_column.unwrap_or_default();
        let Some(row) = rows(conn, TABLE, vec![quoted.clone().into()])
            .await?
            .into_iter()
            .next()
        else {
            out.push(Finding::new(
                Kind::TableMissing,
                Some(name),
                format!("tenant table `{name}` does not exist, or is not on the `search_path`"),
                "run the schema's migrations (`TenantTables::statements`) as the tables' owner"
                    .to_owned(),
            ));
            return Ok(());
        };
        let oid: i64 = row.try_get_by_index(0)?;
        let enabled: bool = row.try_get_by_index(1)?;
        let forced: bool = row.try_get_by_index(2)?;
        let owns: bool = row.try_get_by_index(3)?;
        let owner: String = row.try_get_by_index(4)?;
        let qualified: String = row.try_get_by_index(5)?;
        let user: String = row.try_get_by_index(6)?;
        let inherits: bool = row.try_get_by_index(7)?;

        if let Some(policy) = &t.policy {
            if !enabled {
                out.push(Finding::new(
                    Kind::RlsDisabled,
                    Some(name),
                    format!(
                        "row-level security is disabled on `{name}`: its policies are ignored and every role sees every tenant's rows"
                    ),
                    format!("`ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY`"),
                ));
            }
            let via = match (owner == user, inherits) {
                (true, _) => String::new(),
                (false, true) => format!(" (through membership in `{owner}`)"),
                (false, false) => format!(" (through `SET ROLE {}`)", quote_ident(&owner)),
            };
            let hand_over = format!(
                "let a migration role that the application role cannot become own the tables: `ALTER TABLE {quoted} OWNER TO <migration role>`"
            );
            if owns && forced {
                out.push(Finding::new(
                    Kind::TableOwner,
                    Some(name),
                    format!(
                        "role `{user}` owns `{name}`{via}: `FORCE ROW LEVEL SECURITY` holds only until an owner runs `ALTER TABLE {quoted} NO FORCE ROW LEVEL SECURITY`, and an owner may also disable row-level security or drop the policy"
                    ),
                    hand_over.clone(),
                ));
            }
            if owns && !forced {
                out.push(Finding::new(
                    Kind::OwnerNotForced,
                    Some(name),
                    format!(
                        "role `{user}` owns `{name}`{via}, and without `FORCE ROW LEVEL SECURITY` owners skip its policies"
                    ),
                    format!("`ALTER TABLE {quoted} FORCE ROW LEVEL SECURITY`, and {hand_over}"),
                ));
            }
            policies(conn, t, policy, oid, &qualified, &user, out).await?;
        }
        keys(conn, t, tenant, oid, out).await
    }

    struct LivePolicy {
        name: String,
        permissive: bool,
        command: String,
        public: bool,
        applies: bool,
        using: Option<String>,
        with_check: Option<String>,
    }

    async fn policies<C: Conn>(
        conn: &C,
        t: &ExpectedTable,
        declared: &ExpectedPolicy,
        oid: i64,
        qualified: &str,
        user: &str,
        out: &mut Vec<Finding>,
    ) -> Result<()> {
        // `applies`: the policy is for PUBLIC (role 0) or a role whose rights `current_user` has.
        // The CASE keeps `pg_has_role` away from role 0.
        const POLICIES: &str = "SELECT p.polname::text, p.polpermissive, p.polcmd::text, \
                   p.polroles = '{0}'::oid[], \
                   EXISTS (SELECT 1 FROM unnest(p.polroles) r \
                           WHERE CASE WHEN r = 0 THEN true \
                                      ELSE pg_has_role(current_user, r, 'USAGE') END), \
                   pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid) \
             FROM pg_policy p WHERE p.polrelid = $1::int8::oid ORDER BY p.polname";
        let name = t.name;
        let quoted = quote_ident(name);
        let mut live = Vec::new();
        for row in rows(conn, POLICIES, vec![oid.into()]).await? {
            live.push(LivePolicy {
                name: row.try_get_by_index(0)?,
                permissive: row.try_get_by_index(1)?,
                command: row.try_get_by_index(2)?,
                public: row.try_get_by_index(3)?,
                applies: row.try_get_by_index(4)?,
                using: row.try_get_by_index(5)?,
                with_check: row.try_get_by_index(6)?,
            });
        }
        let create = format!(
            "CREATE POLICY {} ON {quoted} USING ({}) WITH CHECK ({})",
            Rls::POLICY,
            declared.using,
            declared.with_check
        );
        match live.iter().find(|p| p.name == declared.name) {
            None => out.push(Finding::new(
                Kind::PolicyMissing,
                Some(name),
                format!(
                    "`{name}` has no policy `{}`: nothing ties its rows to the bound tenant",
                    declared.name
                ),
                format!("`{create}`"),
            )),
            Some(p) => {
                let diffs = differences(conn, p, declared, qualified).await;
                if !diffs.is_empty() {
                    out.push(Finding::new(
                        Kind::PolicyMismatch,
                        Some(name),
                        format!(
                            "policy `{}` on `{name}` differs from the declared one: {}",
                            declared.name,
                            diffs.join("; ")
                        ),
                        format!("`DROP POLICY {} ON {quoted}` then `{create}`", Rls::POLICY),
                    ));
                }
            }
        }
        for p in live
            .iter()
            .filter(|p| p.name != declared.name && p.permissive && p.applies)
        {
            out.push(Finding::new(
                Kind::PolicyMismatch,
                Some(name),
                format!(
                    "`{name}` has another permissive policy `{}` (`USING` {}) that applies to `{user}`; permissive policies are OR-ed, so it widens what `{}` allows",
                    p.name,
                    p.using.as_deref().map_or("none".to_owned(), |e| format!("`{e}`")),
                    declared.name
                ),
                format!(
                    "`DROP POLICY {} ON {quoted}`, or recreate it `AS RESTRICTIVE`",
                    quote_ident(&p.name)
                ),
            ));
        }
        Ok(())
    }

    /// How the live policy `p` differs from `declared`, one phrase per difference.
    async fn differences<C: Conn>(
        conn: &C,
        p: &LivePolicy,
        declared: &ExpectedPolicy,
        qualified: &str,
    ) -> Vec<String> {
        let mut diffs = Vec::new();
        if !p.permissive {
            diffs.push("it is `AS RESTRICTIVE`".to_owned());
        }
        if p.command != "*" {
            diffs.push(format!("it is not `FOR ALL` commands (`{}`)", p.command));
        }
        if !p.public {
            diffs.push("it is not `TO PUBLIC`".to_owned());
        }
        let (using, with_check) = declared_as_printed(conn, qualified, declared).await;
        let same = |live: Option<&String>, want: &Canonical| match (live, want) {
            (Some(live), Canonical::Printed(want)) => live == want,
            (Some(live), Canonical::Text(want)) => normalise(live) == normalise(want),
            (None, _) => false,
        };
        let shown = |e: Option<&String>| e.map_or("none".to_owned(), |e| format!("`{e}`"));
        if !same(p.using.as_ref(), &using) {
            diffs.push(format!(
                "`USING` is {}, declared `{}`",
                shown(p.using.as_ref()),
                declared.using
            ));
        }
        if !same(p.with_check.as_ref(), &with_check) {
            diffs.push(format!(
                "`WITH CHECK` is {}, declared `{}`",
                shown(p.with_check.as_ref()),
                declared.with_check
            ));
        }
        diffs
    }

    /// The declared expression in the form to compare with `pg_get_expr`'s output.
    enum Canonical {
        /// Printed by PostgreSQL: compare exactly.
        Printed(String),
        /// As we wrote it: compare after [`normalise`].
        Text(String),
    }

    /// The declared `USING` and `WITH CHECK` as PostgreSQL prints them, read from the same
    /// policy put on a temporary copy of the table in a transaction that is rolled back; as
    /// text when that is refused.
    async fn declared_as_printed<C: Conn>(
        conn: &C,
        qualified: &str,
        declared: &ExpectedPolicy,
    ) -> (Canonical, Canonical) {
        const PROBE: &str = "\"__tenant_audit_probe\"";
        let statements = [
            format!("CREATE TEMP TABLE {PROBE} (LIKE {qualified}) ON COMMIT DROP"),
            format!(
                "CREATE POLICY {PROBE} ON pg_temp.{PROBE} USING ({}) WITH CHECK ({})",
                declared.using, declared.with_check
            ),
        ];
        let read = format!(
            "SELECT pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid) \
             FROM pg_policy WHERE polrelid = 'pg_temp.{PROBE}'::regclass"
        );
        match probe(conn, statements, &read).await {
            Ok(Some((using, with_check))) => {
                (Canonical::Printed(using), Canonical::Printed(with_check))
            }
            Ok(None) => text(declared),
            Err(e) => {
                tracing::debug!(
                    target: "tenant::audit",
                    error = %e,
                    "cannot print the declared policy through PostgreSQL; comparing normalised text"
                );
                text(declared)
            }
        }
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "catalog queries this crate writes, with bound values"
    )]
    async fn probe<C: Conn>(
        conn: &C,
        statements: [String; 2],
        read: &str,
    ) -> Result<Option<(String, String)>> {
        let txn = conn.begin().await?;
        let result = async {
            for sql in statements {
                txn.execute_raw(Statement::from_string(DbBackend::Postgres, sql))
                    .await?;
            }
            match rows(&txn, read, Vec::new()).await?.into_iter().next() {
                Some(row) => Ok(Some((row.try_get_by_index(0)?, row.try_get_by_index(1)?))),
                None => Ok(None),
            }
        }
        .await;
        // Always rolled back: the probe leaves nothing behind.
        txn.rollback().await?;
        result
    }

    fn text(declared: &ExpectedPolicy) -> (Canonical, Canonical) {
        (
            Canonical::Text(declared.using.clone()),
            Canonical::Text(declared.with_check.clone()),
        )
    }

    /// The fallback comparison form: lowercase, without whitespace, parentheses, double quotes,
    /// `::text` casts and the `AS "nullif"` alias `pg_get_expr` adds to the subquery.
    pub(super) fn normalise(expr: &str) -> String {
        expr.to_lowercase()
            .replace("::text", "")
            .replace(" as \"nullif\"", "")
            .chars()
            .filter(|c| !c.is_whitespace() && !matches!(c, '(' | ')' | '"'))
            .collect()
    }

    #[derive(Default)]
    struct LiveIndex {
        unique: bool,
        primary: bool,
        /// `invalid` or `partial`: present but not doing its job.
        defect: Option<String>,
        columns: Vec<Option<String>>,
        /// The columns carried beside the key (`INCLUDE`).
        include: Vec<Option<String>>,
        constraint: Option<String>,
    }

    #[derive(Default)]
    struct LiveForeignKey {
        columns: Vec<String>,
        parent: String,
        parent_columns: Vec<String>,
    }

    /// The declared keys (drift) and the global uniques.
    async fn keys<C: Conn>(
        conn: &C,
        t: &ExpectedTable,
        tenant: &str,
        oid: i64,
        out: &mut Vec<Finding>,
    ) -> Result<()> {
        // One row per key column; expression columns have no `attname`.
        const INDEXES: &str = "SELECT i.relname::text, x.indisunique, x.indisprimary, \
                   CASE WHEN NOT x.indisvalid THEN 'invalid' \
                        WHEN x.indpred IS NOT NULL THEN 'partial' END, \
                   a.attname::text, con.conname::text, k.n <= x.indnkeyatts \
             FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid \
             LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid \
                   AND con.conrelid = x.indrelid AND con.contype IN ('p', 'u', 'x') \
             CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
             LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum \
             WHERE x.indrelid = $1::int8::oid \
             ORDER BY i.relname, k.n";
        const FOREIGN_KEYS: &str = "SELECT con.conname::text, a.attname::text, \
                   pa.attname::text, pc.relname::text \
             FROM pg_constraint con \
             CROSS JOIN LATERAL unnest(con.conkey, con.confkey) \
                   WITH ORDINALITY AS k(attnum, refnum, n) \
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum \
             JOIN pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = k.refnum \
             JOIN pg_class pc ON pc.oid = con.confrelid \
             WHERE con.conrelid = $1::int8::oid AND con.contype = 'f' \
             ORDER BY con.conname, k.n";

        // Exclusion constraints: whether the tenant column is among the columns compared with `=`.
        const EXCLUSIONS: &str = "SELECT con.conname::text, \
                   coalesce(bool_or(a.attname = $2 AND o.oprname = '='), false) \
             FROM pg_constraint con \
             CROSS JOIN LATERAL unnest(con.conkey, con.conexclop) AS k(attnum, op) \
             LEFT JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum \
             LEFT JOIN pg_operator o ON o.oid = k.op \
             WHERE con.conrelid = $1::int8::oid AND con.contype = 'x' \
             GROUP BY con.conname ORDER BY con.conname";

        let mut indexes: BTreeMap<String, LiveIndex> = BTreeMap::new();
        for row in rows(conn, INDEXES, vec![oid.into()]).await? {
            let index = indexes.entry(row.try_get_by_index(0)?).or_default();
            index.unique = row.try_get_by_index(1)?;
            index.primary = row.try_get_by_index(2)?;
            index.defect = row.try_get_by_index(3)?;
            let column = row.try_get_by_index(4)?;
            if row.try_get_by_index(6)? {
                index.columns.push(column);
            } else {
                index.include.push(column);
            }
            index.constraint = row.try_get_by_index(5)?;
        }
        let mut fks: BTreeMap<String, LiveForeignKey> = BTreeMap::new();
        for row in rows(conn, FOREIGN_KEYS, vec![oid.into()]).await? {
            let fk = fks.entry(row.try_get_by_index(0)?).or_default();
            fk.columns.push(row.try_get_by_index(1)?);
            fk.parent_columns.push(row.try_get_by_index(2)?);
            fk.parent = row.try_get_by_index(3)?;
        }
        declared_indexes(t, &indexes, out);
        declared_foreign_keys(t, &fks, out);
        global_uniques(t.name, tenant, &indexes, out);
        for row in rows(conn, EXCLUSIONS, vec![oid.into(), tenant.into()]).await? {
            let constraint: String = row.try_get_by_index(0)?;
            let per_tenant: bool = row.try_get_by_index(1)?;
            if !per_tenant {
                out.push(Finding::new(
                    Kind::GlobalUnique,
                    Some(t.name),
                    format!(
                        "exclusion constraint `{constraint}` on `{}` does not compare `{tenant}` with `=`: it excludes across tenants, so its violations tell one tenant about another's rows",
                        t.name
                    ),
                    format!(
                        "`ALTER TABLE {} DROP CONSTRAINT {}`, and add `{tenant} WITH =` to it",
                        quote_ident(t.name),
                        quote_ident(&constraint)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn declared_indexes(
        t: &ExpectedTable,
        indexes: &BTreeMap<String, LiveIndex>,
        out: &mut Vec<Finding>,
    ) {
        let quoted = quote_ident(t.name);
        for want in &t.indexes {
            // Matched by definition: an equivalent index under another name (or the primary key
            // for a unique) does the job. The one with the declared name explains a miss.
            if indexes
                .values()
                .any(|live| index_problem(want, Some(live)).is_none())
            {
                continue;
            }
            let live = indexes.get(&want.name);
            let Some(problem) = index_problem(want, live) else {
                continue;
            };
            let (kind, what) = if want.unique {
                (Kind::UniqueMissing, "per-tenant unique")
            } else {
                (Kind::IndexMissing, "composite index")
            };
            let create = format!(
                "CREATE {}INDEX {} ON {quoted} ({}){}",
                if want.unique { "UNIQUE " } else { "" },
                quote_ident(&want.name),
                list(&want.columns),
                if want.include.is_empty() {
                    String::new()
                } else {
                    format!(" INCLUDE ({})", list(&want.include))
                }
            );
            let fix = match live {
                Some(_) => format!("`DROP INDEX {}` then `{create}`", quote_ident(&want.name)),
                None => format!("`{create}`"),
            };
            out.push(Finding::new(
                kind,
                Some(t.name),
                format!(
                    "declared {what} `{}` on `{}` ({}){} {problem}",
                    want.name,
                    t.name,
                    ticked(&want.columns),
                    if want.include.is_empty() {
                        String::new()
                    } else {
                        format!(" including ({})", ticked(&want.include))
                    }
                ),
                fix,
            ));
        }
    }

    /// Why the live index does not satisfy `want`, if it does not.
    fn index_problem(want: &ExpectedIndex, live: Option<&LiveIndex>) -> Option<String> {
        let Some(live) = live else {
            return Some("is missing".to_owned());
        };
        let columns: Vec<Option<String>> = want.columns.iter().cloned().map(Some).collect();
        // A covering index may carry its columns as `INCLUDE` or as further key columns (what
        // an index made before `INCLUDE` existed, or on SQLite, looks like): both answer the reads.
        let key_matches = if want.include.is_empty() {
            live.columns == columns
        } else {
            live.columns.starts_with(&columns)
        };
        let carries = |c: &String| {
            live.columns[columns.len().min(live.columns.len())..]
                .iter()
                .chain(&live.include)
                .flatten()
                .any(|l| l == c)
        };
        if !key_matches {
            Some(format!("exists but on ({})", ticked_live(&live.columns)))
        } else if let Some(missing) = want.include.iter().find(|c| !carries(c)) {
            Some(format!("exists but does not include `{missing}`"))
        } else if want.unique && !live.unique && !live.primary {
            Some("exists but is not unique".to_owned())
        } else {
            live.defect
                .as_ref()
                .map(|defect| format!("exists but is {defect}"))
        }
    }

    fn declared_foreign_keys(
        t: &ExpectedTable,
        fks: &BTreeMap<String, LiveForeignKey>,
        out: &mut Vec<Finding>,
    ) {
        let quoted = quote_ident(t.name);
        for want in &t.foreign_keys {
            let same = |live: &LiveForeignKey| {
                live.columns == want.columns
                    && live.parent == want.parent
                    && live.parent_columns == want.parent_columns
            };
            // Matched by definition, as indexes are.
            if fks.values().any(same) {
                continue;
            }
            let live = fks.get(&want.name);
            let problem = match live {
                None => "is missing".to_owned(),
                Some(live)
                    if live.columns != want.columns
                        || live.parent != want.parent
                        || live.parent_columns != want.parent_columns =>
                {
                    format!(
                        "exists but is ({}) -> `{}` ({})",
                        ticked(&live.columns),
                        live.parent,
                        ticked(&live.parent_columns),
                    )
                }
                Some(_) => continue,
            };
            let add = format!(
                "ALTER TABLE {quoted} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})",
                quote_ident(&want.name),
                list(&want.columns),
                quote_ident(&want.parent),
                list(&want.parent_columns)
            );
            let fix = match live {
                Some(_) => format!(
                    "`ALTER TABLE {quoted} DROP CONSTRAINT {}` then `{add}`",
                    quote_ident(&want.name)
                ),
                None => format!("`{add}`"),
            };
            out.push(Finding::new(
                Kind::ForeignKeyMissing,
                Some(t.name),
                format!(
                    "declared tenant-consistent foreign key `{}` on `{}` ({}) -> `{}` ({}) {problem}; without it a row can point at another tenant's parent",
                    want.name,
                    t.name,
                    ticked(&want.columns),
                    want.parent,
                    ticked(&want.parent_columns),
                ),
                fix,
            ));
        }
    }

    /// Unique indexes other than the primary key that leave out the tenant column.
    fn global_uniques(
        name: &str,
        tenant: &str,
        indexes: &BTreeMap<String, LiveIndex>,
        out: &mut Vec<Finding>,
    ) {
        let quoted = quote_ident(name);
        for (index, live) in indexes {
            let has_tenant = live.columns.iter().flatten().any(|c| c == tenant);
            if !live.unique || live.primary || has_tenant {
                continue;
            }
            let drop = match &live.constraint {
                Some(c) => format!("ALTER TABLE {quoted} DROP CONSTRAINT {}", quote_ident(c)),
                None => format!("DROP INDEX {}", quote_ident(index)),
            };
            let named: Vec<&str> = live.columns.iter().flatten().map(String::as_str).collect();
            out.push(Finding::new(
                Kind::GlobalUnique,
                Some(name),
                format!(
                    "unique index `{index}` on `{name}` ({}) leaves out `{tenant}`: it is global across tenants, so a unique violation tells one tenant that another has the value",
                    ticked_live(&live.columns)
                ),
                format!(
                    "`{drop}`, and declare a per-tenant unique instead: `#[tenant(unique({}))]`",
                    named.join(", ")
                ),
            ));
        }
    }
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::pg::normalise;
    use crate::Rls;

    #[test]
    fn the_fallback_normalisation_matches_what_postgresql_prints() {
        let declared = format!("\"tenant_id\" = {}", Rls::default().current_tenant_sql());
        let printed = "(tenant_id = ( SELECT (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid AS \"nullif\"))";
        assert_eq!(normalise(&declared), normalise(printed));
        let plain = Rls::default().with_policy_form(crate::PolicyForm::Plain);
        let declared_plain = format!("\"tenant_id\" = {}", plain.current_tenant_sql());
        let printed_plain =
            "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)";
        assert_eq!(normalise(&declared_plain), normalise(printed_plain));
        assert_ne!(normalise(&declared), normalise(printed_plain));
        assert_ne!(normalise(&declared), normalise("true"));
        assert_ne!(
            normalise(&declared),
            normalise(&format!("{printed} OR true"))
        );
    }
}
