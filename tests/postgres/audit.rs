//! The start-up audit: for every finding, a database with the schema created correctly (as the
//! owner, with RLS) and then broken in exactly that way, audited as the application role. Role
//! findings use a login role of their own per test (roles are cluster-wide, and other tests use
//! `tenant_app` concurrently); they are dropped at the end.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use tenant::{Error, FindingKind, PolicyForm, Report, Rls, TenantDb, TenantTables};

use crate::pg;

fn schema() -> TenantTables {
    schema_with(Rls::default())
}

fn schema_with(rls: Rls) -> TenantTables {
    TenantTables::new()
        .tables(crate::common::entities::tables())
        .rls(rls)
}

async fn connect(url: &str) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(2)
        .min_connections(0)
        .sqlx_logging(false);
    Database::connect(options).await.expect("connect")
}

async fn run(conn: &DatabaseConnection, statements: &[&str]) {
    for sql in statements {
        conn.execute_raw(Statement::from_string(DbBackend::Postgres, *sql))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A fresh database with the schema and its policies created by the owner.
struct Db {
    test_db: pg::TestDb,
    admin: DatabaseConnection,
}

impl Db {
    async fn new() -> Self {
        let test_db = pg::fresh_database().await;
        let admin = connect(&test_db.admin_url).await;
        schema()
            .create(&admin)
            .await
            .expect("create the schema with RLS as the owner");
        Self { test_db, admin }
    }

    /// Breaks the schema as the owner.
    async fn admin(&self, statements: &[&str]) {
        run(&self.admin, statements).await;
    }

    /// The audit as `tenant_app`.
    async fn audit(&self) -> Report {
        self.audit_of(&schema()).await
    }

    async fn audit_of(&self, schema: &TenantTables) -> Report {
        let app = connect(&self.test_db.app_url).await;
        let report = tenant::audit(&app, schema).await.expect("audit");
        app.close().await.ok();
        report
    }

    /// A login role of this test only, with the application's privileges on the tables.
    async fn role(&self, attributes: &str) -> Role {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "tenant_audit_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.admin(&[
            &format!("CREATE ROLE {name} LOGIN PASSWORD 'audit' {attributes}"),
            &format!("GRANT USAGE ON SCHEMA public TO {name}"),
            &format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}"
            ),
        ])
        .await;
        let app_role = format!("{}:", pg::cluster().app_role());
        let at = self
            .test_db
            .app_url
            .find(&app_role)
            .expect("the app URL has credentials");
        let rest = &self.test_db.app_url[at..];
        let after = rest.find('@').expect("the app URL has credentials");
        let url = format!(
            "{}{name}:audit{}",
            &self.test_db.app_url[..at],
            &rest[after..]
        );
        Role {
            name,
            url,
            extra: Vec::new(),
        }
    }

    /// The audit as `role`.
    async fn audit_as(&self, role: &Role) -> Report {
        let conn = connect(&role.url).await;
        let report = tenant::audit(&conn, &schema()).await.expect("audit");
        conn.close().await.ok();
        report
    }

    /// Drops `role` (and the roles made for it) once its connections are closed.
    async fn drop_role(&self, role: Role) {
        self.admin(&[
            &format!("REASSIGN OWNED BY {} TO CURRENT_USER", role.name),
            &format!("DROP OWNED BY {}", role.name),
            &format!("DROP ROLE {}", role.name),
        ])
        .await;
        for extra in role.extra {
            self.admin(&[
                &format!("REASSIGN OWNED BY {extra} TO CURRENT_USER"),
                &format!("DROP ROLE {extra}"),
            ])
            .await;
        }
    }
}

struct Role {
    name: String,
    url: String,
    /// Roles created for this one (granted to it), dropped with it.
    extra: Vec<String>,
}

fn kinds(report: &Report) -> BTreeSet<FindingKind> {
    report.findings().iter().map(|f| f.kind).collect()
}

/// Exactly the kinds `expected` are reported, each on `table` (or on the role when `None`).
#[track_caller]
fn assert_findings(report: &Report, expected: &[FindingKind], table: Option<&str>) {
    assert_eq!(
        kinds(report),
        expected.iter().copied().collect::<BTreeSet<_>>(),
        "{report}"
    );
    for f in report.findings() {
        assert_eq!(f.table.as_deref(), table, "{report}");
        assert!(!f.fix.is_empty(), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_schema_audited_as_the_app_role_has_no_findings() {
    let db = Db::new().await;
    let report = db.audit().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.to_string(), "no findings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expected_objects_are_the_ones_the_schema_creates() {
    let expected = schema().expected();
    let post = expected.iter().find(|t| t.name == "post").unwrap();
    let names: Vec<&str> = post.indexes.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ux_post_tenant_id_id",
            "ux_post_tenant_id_slug",
            "ix_post_tenant_id_title",
            "ix_post_tenant_id_views_include_title"
        ]
    );
    assert_eq!(post.indexes[3].columns, ["tenant_id", "views"]);
    assert_eq!(post.indexes[3].include, ["title"]);
    assert!(post.policy.is_some());
    let comment = expected.iter().find(|t| t.name == "comment").unwrap();
    let fks: Vec<(&str, &[String], &str)> = comment
        .foreign_keys
        .iter()
        .map(|f| (f.name.as_str(), &f.columns[..], f.parent.as_str()))
        .collect();
    assert_eq!(
        fks,
        [(
            "fk_comment_tenant_id_post_id",
            &["tenant_id".to_owned(), "post_id".to_owned()][..],
            "post"
        )]
    );
    let plan = expected.iter().find(|t| t.name == "plan").unwrap();
    assert_eq!(plan.tenant_column, None);
    assert!(plan.indexes.is_empty() && plan.policy.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superuser_role_is_reported() {
    let db = Db::new().await;
    let role = db.role("SUPERUSER").await;
    let report = db.audit_as(&role).await;
    assert_findings(&report, &[FindingKind::Superuser], None);
    db.drop_role(role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bypassrls_role_is_reported() {
    let db = Db::new().await;
    let role = db.role("BYPASSRLS").await;
    let report = db.audit_as(&role).await;
    assert_findings(&report, &[FindingKind::BypassRls], None);
    db.drop_role(role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_in_a_bypassrls_role_through_another_role_is_reported() {
    let db = Db::new().await;
    let mut role = db.role("").await;
    let (middle, privileged) = (format!("{}_mid", role.name), format!("{}_priv", role.name));
    db.admin(&[
        &format!("CREATE ROLE {privileged} NOLOGIN BYPASSRLS"),
        &format!("CREATE ROLE {middle} NOLOGIN"),
        &format!("GRANT {privileged} TO {middle}"),
        &format!("GRANT {middle} TO {}", role.name),
    ])
    .await;
    role.extra = vec![middle, privileged.clone()];
    let report = db.audit_as(&role).await;
    assert_findings(&report, &[FindingKind::PrivilegedMembership], None);
    assert!(
        report.findings()[0].message.contains(&privileged),
        "{report}"
    );
    db.drop_role(role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owning_a_tenant_table_that_is_not_forced_is_reported() {
    let db = Db::new().await;
    let role = db.role("").await;
    db.admin(&[
        "ALTER TABLE post NO FORCE ROW LEVEL SECURITY",
        &format!("ALTER TABLE post OWNER TO {}", role.name),
    ])
    .await;
    let report = db.audit_as(&role).await;
    assert_findings(&report, &[FindingKind::OwnerNotForced], Some("post"));
    db.drop_role(role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owning_a_forced_tenant_table_is_reported_since_an_owner_can_switch_force_off() {
    let db = Db::new().await;
    let role = db.role("").await;
    db.admin(&[&format!("ALTER TABLE post OWNER TO {}", role.name)])
        .await;
    let report = db.audit_as(&role).await;
    assert_findings(&report, &[FindingKind::TableOwner], Some("post"));
    assert!(
        report.findings()[0]
            .message
            .contains("NO FORCE ROW LEVEL SECURITY"),
        "{report}"
    );
    db.drop_role(role).await;
}

/// `NOINHERIT`: the role holds none of the owner's rights until it runs `SET ROLE`, which it may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaching_the_tables_owner_through_a_noinherit_membership_is_reported() {
    let db = Db::new().await;
    let mut role = db.role("NOINHERIT").await;
    let owner = format!("{}_owner", role.name);
    db.admin(&[
        &format!("CREATE ROLE {owner} NOLOGIN"),
        &format!("ALTER TABLE post OWNER TO {owner}"),
        &format!("ALTER TABLE comment OWNER TO {owner}"),
        "ALTER TABLE comment NO FORCE ROW LEVEL SECURITY",
        &format!("GRANT {owner} TO {}", role.name),
    ])
    .await;
    role.extra = vec![owner.clone()];
    let report = db.audit_as(&role).await;
    let found: BTreeSet<(FindingKind, Option<&str>)> = report
        .findings()
        .iter()
        .map(|f| (f.kind, f.table.as_deref()))
        .collect();
    assert_eq!(
        found,
        BTreeSet::from([
            (FindingKind::TableOwner, Some("post")),
            (FindingKind::OwnerNotForced, Some("comment")),
        ]),
        "{report}"
    );
    assert!(
        report
            .findings()
            .iter()
            .all(|f| f.message.contains(&format!("SET ROLE \"{owner}\""))),
        "{report}"
    );
    db.drop_role(role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_level_default_of_the_tenant_setting_is_reported() {
    let db = Db::new().await;
    let role = db.role("").await;
    db.admin(&[&format!(
        "ALTER ROLE {} SET app.tenant_id = '00000000-0000-0000-0000-0000acacacac'",
        role.name
    )])
    .await;
    let report = db.audit_as(&role).await;
    assert_findings(&report, &[FindingKind::TenantSettingDefault], None);
    assert!(
        report.findings()[0]
            .fix
            .contains(&format!("ALTER ROLE \"{}\" RESET app.tenant_id", role.name)),
        "{report}"
    );
    db.drop_role(role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_level_default_of_the_tenant_setting_is_reported() {
    let db = Db::new().await;
    let name = db.test_db.name.clone();
    db.admin(&[&format!(
        "ALTER DATABASE \"{name}\" SET app.tenant_id = '00000000-0000-0000-0000-0000acacacac'"
    )])
    .await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::TenantSettingDefault], None);
    assert!(
        report.findings()[0].fix.contains("ALTER DATABASE"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_table_without_row_level_security_is_reported() {
    let db = Db::new().await;
    db.admin(&["ALTER TABLE comment DISABLE ROW LEVEL SECURITY"])
        .await;
    assert_findings(
        &db.audit().await,
        &[FindingKind::RlsDisabled],
        Some("comment"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_table_without_the_policy_is_reported() {
    let db = Db::new().await;
    db.admin(&["DROP POLICY tenant_isolation ON post"]).await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::PolicyMissing], Some("post"));
    assert!(
        report.findings()[0]
            .fix
            .contains("CREATE POLICY tenant_isolation")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_replaced_by_using_true_is_reported() {
    let db = Db::new().await;
    db.admin(&[
        "DROP POLICY tenant_isolation ON post",
        "CREATE POLICY tenant_isolation ON post USING (true) WITH CHECK (true)",
    ])
    .await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::PolicyMismatch], Some("post"));
    assert!(report.findings()[0].message.contains("`true`"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_only_differs_in_with_check_is_reported() {
    let db = Db::new().await;
    db.admin(&[
        "DROP POLICY tenant_isolation ON post",
        "CREATE POLICY tenant_isolation ON post \
         USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))",
    ])
    .await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::PolicyMismatch], Some("post"));
    assert!(
        report.findings()[0].message.contains("WITH CHECK"),
        "{report}"
    );
    assert!(
        !report.findings()[0].message.contains("`USING`"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_only_adds_casts_is_reported() {
    // Same rows, but a text comparison that no index on `tenant_id` serves; the normalised-text
    // fallback would not see it, PostgreSQL's own printing of the declared policy does.
    let db = Db::new().await;
    db.admin(&[
        "DROP POLICY tenant_isolation ON post",
        "CREATE POLICY tenant_isolation ON post \
         USING (tenant_id::text = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid)::text) \
         WITH CHECK (tenant_id::text = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid)::text)",
    ])
    .await;
    assert_findings(
        &db.audit().await,
        &[FindingKind::PolicyMismatch],
        Some("post"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_in_the_other_form_is_reported() {
    let db = Db::new().await;
    // The database has the subquery form; the schema declares the plain one.
    let plain = schema_with(Rls::default().with_policy_form(PolicyForm::Plain));
    let report = db.audit_of(&plain).await;
    assert_eq!(
        kinds(&report),
        BTreeSet::from([FindingKind::PolicyMismatch]),
        "{report}"
    );
    assert_eq!(report.findings().len(), 4, "one per tenant table: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_permissive_policy_is_reported_and_a_restrictive_one_is_not() {
    let db = Db::new().await;
    db.admin(&[
        "CREATE POLICY narrower ON post AS RESTRICTIVE USING (views >= 0)",
        "CREATE POLICY everyone ON post FOR SELECT USING (true)",
    ])
    .await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::PolicyMismatch], Some("post"));
    assert_eq!(report.findings().len(), 1, "{report}");
    assert!(
        report.findings()[0].message.contains("`everyone`"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_compared_as_text_when_temporary_tables_are_refused() {
    let db = Db::new().await;
    let name = &db.test_db.name;
    db.admin(&[&format!(
        "REVOKE TEMPORARY ON DATABASE \"{name}\" FROM PUBLIC"
    )])
    .await;
    let report = db.audit().await;
    assert!(report.is_clean(), "{report}");
    db.admin(&[
        "DROP POLICY tenant_isolation ON post",
        "CREATE POLICY tenant_isolation ON post USING (true) WITH CHECK (true)",
    ])
    .await;
    assert_findings(
        &db.audit().await,
        &[FindingKind::PolicyMismatch],
        Some("post"),
    );
    let plain = schema_with(Rls::default().with_policy_form(PolicyForm::Plain));
    assert_eq!(db.audit_of(&plain).await.findings().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_composite_index_is_reported() {
    let db = Db::new().await;
    db.admin(&["DROP INDEX ix_post_tenant_id_title"]).await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::IndexMissing], Some("post"));
    assert!(
        report.findings()[0].fix.contains("CREATE INDEX"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_with_the_declared_name_but_other_columns_is_reported() {
    let db = Db::new().await;
    db.admin(&[
        "DROP INDEX ix_post_tenant_id_title",
        "CREATE INDEX ix_post_tenant_id_title ON post (title, tenant_id)",
    ])
    .await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::IndexMissing], Some("post"));
    assert!(
        report.findings()[0].message.contains("exists but on"),
        "{report}"
    );
}

/// A covering index is matched on what it carries too: the key alone does not answer the
/// reads it was declared for from the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_covering_index_without_its_included_column_is_reported() {
    let db = Db::new().await;
    db.admin(&[
        "DROP INDEX ix_post_tenant_id_views_include_title",
        "CREATE INDEX ix_post_tenant_id_views_include_title ON post (tenant_id, views) INCLUDE (slug)",
    ])
    .await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::IndexMissing], Some("post"));
    let finding = &report.findings()[0];
    assert_eq!(
        finding.message,
        "declared composite index `ix_post_tenant_id_views_include_title` on `post` (`tenant_id`, \
         `views`) including (`title`) exists but does not include `title`"
    );
    assert_eq!(
        finding.fix,
        "`DROP INDEX \"ix_post_tenant_id_views_include_title\"` then `CREATE INDEX \
         \"ix_post_tenant_id_views_include_title\" ON \"post\" (\"tenant_id\", \"views\") INCLUDE \
         (\"title\")`"
    );
    // Nor does an index that leads with another key.
    db.admin(&[
        "DROP INDEX ix_post_tenant_id_views_include_title",
        "CREATE INDEX post_by_title ON post (tenant_id, title, views)",
    ])
    .await;
    assert_findings(
        &db.audit().await,
        &[FindingKind::IndexMissing],
        Some("post"),
    );
    // What the fix creates, under any name and carrying more, is accepted; so is the carried
    // column as a further key column, which answers the same reads.
    for equivalent in [
        "CREATE INDEX post_by_views ON post (tenant_id, views) INCLUDE (slug, title)",
        "CREATE INDEX post_by_views ON post (tenant_id, views, title)",
    ] {
        db.admin(&["DROP INDEX IF EXISTS post_by_views", equivalent])
            .await;
        let report = db.audit().await;
        assert!(report.is_clean(), "{equivalent}: {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_per_tenant_unique_is_reported() {
    let db = Db::new().await;
    db.admin(&["DROP INDEX ux_post_tenant_id_slug"]).await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::UniqueMissing], Some("post"));
    assert!(
        report.findings()[0].fix.contains("CREATE UNIQUE INDEX"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_tenant_unique_that_is_not_unique_is_reported() {
    let db = Db::new().await;
    db.admin(&[
        "DROP INDEX ux_post_tenant_id_slug",
        "CREATE INDEX ux_post_tenant_id_slug ON post (tenant_id, slug)",
    ])
    .await;
    assert_findings(
        &db.audit().await,
        &[FindingKind::UniqueMissing],
        Some("post"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_composite_foreign_key_is_reported() {
    let db = Db::new().await;
    db.admin(&["ALTER TABLE comment DROP CONSTRAINT fk_comment_tenant_id_post_id"])
        .await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::ForeignKeyMissing], Some("comment"));
    assert!(report.findings()[0].fix.contains("FOREIGN KEY"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_unique_on_a_tenant_column_is_reported() {
    let db = Db::new().await;
    db.admin(&["CREATE UNIQUE INDEX ON post (slug)"]).await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::GlobalUnique], Some("post"));
    assert!(report.findings()[0].fix.contains("DROP INDEX"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_unique_constraint_is_reported_with_its_constraint() {
    let db = Db::new().await;
    db.admin(&["ALTER TABLE tag ADD CONSTRAINT tag_name_key UNIQUE (name)"])
        .await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::GlobalUnique], Some("tag"));
    assert!(
        report.findings()[0]
            .fix
            .contains("DROP CONSTRAINT \"tag_name_key\""),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_expression_index_without_the_tenant_column_is_reported() {
    let db = Db::new().await;
    db.admin(&["CREATE UNIQUE INDEX post_lower_slug ON post (lower(slug))"])
        .await;
    assert_findings(
        &db.audit().await,
        &[FindingKind::GlobalUnique],
        Some("post"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusion_constraint_across_tenants_is_reported_and_one_per_tenant_is_not() {
    let db = Db::new().await;
    db.admin(&["ALTER TABLE post ADD CONSTRAINT post_title_per_tenant \
         EXCLUDE USING btree (tenant_id WITH =, title WITH =)"])
        .await;
    let report = db.audit().await;
    assert!(report.is_clean(), "{report}");
    db.admin(&[
        "ALTER TABLE post ADD CONSTRAINT post_slug_everywhere EXCLUDE USING btree (slug WITH =)",
    ])
    .await;
    let report = db.audit().await;
    assert_findings(&report, &[FindingKind::GlobalUnique], Some("post"));
    assert!(
        report.findings()[0].fix.contains("post_slug_everywhere"),
        "{report}"
    );
}

/// A team adopting the library on an existing database: what is already right under another
/// name, or as the primary key, is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivalent_keys_under_other_names_are_accepted() {
    let db = Db::new().await;
    db.admin(&[
        "ALTER INDEX ix_post_tenant_id_title RENAME TO post_by_title",
        "ALTER INDEX ux_post_tenant_id_slug RENAME TO post_slug_per_tenant",
        "ALTER TABLE comment RENAME CONSTRAINT fk_comment_tenant_id_post_id TO comment_post",
        "ALTER TABLE comment DROP CONSTRAINT comment_pkey",
        "DROP INDEX ux_comment_tenant_id_id",
        "ALTER TABLE comment ADD PRIMARY KEY (tenant_id, id)",
    ])
    .await;
    let report = db.audit().await;
    assert!(report.is_clean(), "{report}");
    // The primary key stands in for the unique; a non-unique index under the name does not.
    db.admin(&[
        "ALTER TABLE comment DROP CONSTRAINT comment_pkey",
        "CREATE INDEX ux_comment_tenant_id_id ON comment (tenant_id, id)",
    ])
    .await;
    assert_findings(
        &db.audit().await,
        &[FindingKind::UniqueMissing],
        Some("comment"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tenant_table_is_reported() {
    let db = Db::new().await;
    db.admin(&["DROP TABLE post_tag"]).await;
    assert_findings(
        &db.audit().await,
        &[FindingKind::TableMissing],
        Some("post_tag"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_problems_are_reported_together_in_order() {
    let db = Db::new().await;
    db.admin(&[
        "ALTER TABLE post DISABLE ROW LEVEL SECURITY",
        "DROP INDEX ix_comment_tenant_id_post_id",
    ])
    .await;
    let report = db.audit().await;
    let listed: Vec<(FindingKind, Option<&str>)> = report
        .findings()
        .iter()
        .map(|f| (f.kind, f.table.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            (FindingKind::RlsDisabled, Some("post")),
            (FindingKind::IndexMissing, Some("comment")),
        ]
    );
    assert!(
        report.to_string().starts_with("2 findings:\n- "),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rls_checked_refuses_a_broken_database_and_accepts_a_fixed_one() {
    let db = Db::new().await;
    db.admin(&["ALTER TABLE post DISABLE ROW LEVEL SECURITY"])
        .await;
    let app = connect(&db.test_db.app_url).await;
    match TenantDb::with_rls_checked(app.clone(), Rls::default(), &schema()).await {
        Err(Error::Audit(report)) => {
            assert_eq!(kinds(&report), BTreeSet::from([FindingKind::RlsDisabled]));
            let message = Error::Audit(report).to_string();
            assert!(
                message.contains("ENABLE ROW LEVEL SECURITY"),
                "the error lists the fix: {message}"
            );
        }
        other => panic!("expected Error::Audit, got {other:?}"),
    }
    db.admin(&["ALTER TABLE post ENABLE ROW LEVEL SECURITY"])
        .await;
    let tenant_db = TenantDb::with_rls_checked(app.clone(), Rls::default(), &schema())
        .await
        .expect("a clean database is accepted");
    assert!(tenant_db.rls().is_some());
    // The handle and the schema must agree on the setting the policies read.
    let other = Rls::new("app.other_tenant").unwrap();
    assert!(matches!(
        TenantDb::with_rls_checked(app, other, &schema()).await,
        Err(Error::RlsMismatch { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_that_runs_the_statements_of_one_entity_at_a_time_audits_clean() {
    use sea_orm::ConnectionTrait;

    let test_db = pg::fresh_database().await;
    let owner = connect(&test_db.admin_url).await;
    let schema = schema();
    // As a `sea-orm-migration` migration would: one call per entity, parents first.
    for table in ["plan", "post", "comment", "tag", "post_tag"] {
        for stmt in schema.statements_for(table, sea_orm::DbBackend::Postgres) {
            owner.execute_raw(stmt).await.unwrap();
        }
    }
    let app = connect(&test_db.app_url).await;
    let report = tenant::audit(&app, &schema).await.unwrap();
    assert!(report.is_clean(), "{report}");
}

/// The kit's audit helper passes a correct schema and panics, with the report, on a broken one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kits_audit_helper_passes_a_clean_schema_and_reports_a_broken_one() {
    use futures::FutureExt as _;

    let db = Db::new().await;
    let app = connect(&db.test_db.app_url).await;
    tenant::testing::assert_audit_clean(&app, &schema()).await;
    db.admin(&["ALTER TABLE post DISABLE ROW LEVEL SECURITY"])
        .await;
    let caught = std::panic::AssertUnwindSafe(tenant::testing::assert_audit_clean(&app, &schema()))
        .catch_unwind()
        .await;
    let message = *caught
        .expect_err("RLS is off on `post`, and the audit passed")
        .downcast::<String>()
        .unwrap();
    assert!(message.contains("post"), "{message}");
    app.close().await.ok();
}

/// The distributed form audits clean against its own declaration, and the start-up check of a
/// handle built from it turns on the per-tenant keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distributed_form_audits_clean_and_the_builder_keys_upserts_by_tenant() {
    let test_db = pg::fresh_database().await;
    let admin = connect(&test_db.admin_url).await;
    let plain = Rls::default().with_policy_form(tenant::PolicyForm::Plain);
    let schema = schema_with(plain.clone()).distributed();
    schema.create(&admin).await.unwrap();
    let app = connect(&test_db.app_url).await;
    let report = tenant::audit(&app, &schema).await.unwrap();
    assert!(report.is_clean(), "{report}");
    // The primary key `(tenant, id)` is the unique the standard form declares: that audit
    // passes too.
    let report = tenant::audit(&app, &schema_with(plain.clone()))
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");

    let db = tenant::TenantDb::builder(test_db.app_url.clone())
        .rls(plain)
        .audit(&schema)
        .connect()
        .await
        .unwrap();
    let repo = db.repo::<crate::common::entities::post::Entity>();
    let (acme, globex) = (
        tenant::TenantId::from(uuid::Uuid::new_v4()),
        tenant::TenantId::from(uuid::Uuid::new_v4()),
    );
    // The same key in two tenants: two rows, each upserted in place in its own tenant.
    let id = uuid::Uuid::new_v4();
    for tenant in [acme, globex] {
        for title in ["first", "second"] {
            let mut row = crate::common::new_post("same");
            row.id = sea_orm::Set(id);
            row.title = sea_orm::Set(title.into());
            let saved = tenant::scope(tenant, repo.upsert(row)).await.unwrap();
            assert_eq!(
                (saved.tenant_id, saved.title.as_str()),
                (*tenant.as_uuid(), title)
            );
        }
    }
    for tenant in [acme, globex] {
        assert_eq!(tenant::scope(tenant, repo.count()).await.unwrap(), 1);
    }
    app.close().await.ok();
    admin.close().await.ok();
}
