//! Scenarios shared by the SQLite and PostgreSQL test binaries: two tenants with look-alike data,
//! and for every operation a check that one tenant cannot reach the other's rows.

// Each binary uses its own subset of the helpers. The raw SeaORM calls are deliberate: tests
// plant and inspect rows behind the library's back to see what was really written.
#![allow(dead_code, unreachable_pub, clippy::disallowed_methods)]

pub mod audit_log;
pub mod catalog;
pub mod entities;
pub mod http;
pub mod kit;
pub mod service;
pub mod web;

pub use catalog::the_catalog_admits_active_tenants_only;
pub use kit::the_testing_kit_finds_every_entity_isolated;
pub use web::http_requests_run_in_their_tenant_and_another_tenants_id_is_not_found;

use std::any::Any;

use entities::{comment, plan, post, post_tag, tag};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use tenant::catalog::Tier;
use tenant::{Error, TenantDb, TenantId, TenantRepo};
use uuid::Uuid;

/// One test's database: the scoped handle under test, and a raw connection (owner or admin) to
/// plant and inspect rows behind the library's back.
pub struct Env {
    pub db: TenantDb,
    pub raw: DatabaseConnection,
    pub acme: TenantId,
    pub globex: TenantId,
    /// Whether `db` is in RLS mode over tables with policies.
    pub rls: bool,
    /// The pipelined executor `db` reads through, if any.
    pub pipeline: Option<tenant::Pipeline>,
    /// Where each tenant not on the shared tier has its rows (`db` has a catalog that says so).
    pub places: Vec<(TenantId, Place)>,
    /// Whether the tables are in the distributed form: keys unique per tenant only.
    pub distributed_keys: bool,
    /// Superuser connections to the servers behind `db`'s (a Citus cluster's workers), where
    /// no backend of another role may be left in a transaction either.
    pub nodes: Vec<DatabaseConnection>,
    /// What keeps the databases alive (and drops them after a passing test).
    keep: Box<dyn Any + Send + Sync>,
}

/// Where a tenant's rows are, for the raw helpers.
#[derive(Clone, Debug)]
pub enum Place {
    /// A schema of its own in the shared database.
    Schema(String),
    /// A database of its own, and the owner's connection to it.
    Database(DatabaseConnection),
}

/// The tier of each of the two tenants: `(acme, globex)`.
#[derive(Clone, Copy, Debug)]
pub struct Tiers(pub tenant::catalog::Tier, pub tenant::catalog::Tier);

impl Tiers {
    /// Both on schemas of their own.
    pub const SCHEMA: Self = Self(Tier::Schema, Tier::Schema);
    /// `acme` on a schema of its own, `globex` in the shared tables.
    pub const HYBRID: Self = Self(Tier::Schema, Tier::Shared);
    /// Both on databases of their own.
    pub const DATABASE: Self = Self(Tier::Database, Tier::Database);
    /// `acme` on a schema of its own, `globex` on a database of its own.
    pub const FLEET: Self = Self(Tier::Schema, Tier::Database);

    /// How many tenant databases these tiers need.
    pub fn databases(self) -> usize {
        [self.0, self.1]
            .into_iter()
            .filter(|t| *t == Tier::Database)
            .count()
    }
}

/// A database of its own for a database-tier tenant: the owner's connection, the URL the
/// application role connects with, and what keeps it alive.
pub struct TenantDatabase {
    pub owner: DatabaseConnection,
    pub app_url: String,
    pub keep: Box<dyn Any + Send + Sync>,
}

/// Resolves `test:<n>` to the `n`th tenant database's URL.
#[cfg(feature = "postgres")]
pub struct TestUrls(pub Vec<String>);

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl tenant::ResolveDatabase for TestUrls {
    async fn resolve(&self, _: TenantId, reference: &str) -> Result<String, tenant::ResolveError> {
        let n: usize = reference
            .strip_prefix("test:")
            .ok_or("not a `test:` reference")?
            .parse()?;
        Ok(self.0.get(n).ok_or("no such test database")?.clone())
    }
}

impl Env {
    pub async fn new(
        app: DatabaseConnection,
        raw: DatabaseConnection,
        keep: Box<dyn Any + Send + Sync>,
    ) -> Self {
        tenant::create_schema(&raw, &entities::tables())
            .await
            .expect("create the schema");
        Self::with_db(TenantDb::new(app), raw, false, keep)
    }

    /// The tables in the distributed form (`TenantTables::distributed`: keys `(tenant, key)`, as
    /// Citus needs them), with RLS in the plain policy form when `rls`, and the handle told so.
    /// On a Citus coordinator the same statements distribute the tables.
    pub async fn new_distributed(
        app: DatabaseConnection,
        raw: DatabaseConnection,
        rls: bool,
        keep: Box<dyn Any + Send + Sync>,
    ) -> Self {
        let plain = tenant::Rls::default().with_policy_form(tenant::PolicyForm::Plain);
        let mut schema = tenant::TenantTables::new()
            .tables(entities::tables())
            .distributed();
        if rls {
            schema = schema.rls(plain.clone());
        }
        schema
            .create(&raw)
            .await
            .expect("create the distributed form");
        let db = if rls {
            TenantDb::with_rls(app, plain)
                .expect("PostgreSQL")
                .with_system_connection(raw.clone())
        } else {
            TenantDb::new(app)
        };
        let mut env = Self::with_db(db.with_distributed_keys(), raw, rls, keep);
        env.distributed_keys = true;
        env
    }

    /// The same tables under Row-Level Security, and `app` in RLS mode; system scopes use the
    /// owner's connection.
    pub async fn new_rls(
        app: DatabaseConnection,
        raw: DatabaseConnection,
        keep: Box<dyn Any + Send + Sync>,
    ) -> Self {
        tenant::TenantTables::new()
            .tables(entities::tables())
            .rls(tenant::Rls::default())
            .create(&raw)
            .await
            .expect("create the schema with RLS");
        let db = TenantDb::with_rls(app, tenant::Rls::default())
            .expect("PostgreSQL")
            .with_system_connection(raw.clone());
        Self::with_db(db, raw, true, keep)
    }

    /// The tenants on the `tiers` a catalog says, on one handle: the shared tables (for the
    /// global ones, and a shared tenant) in `public`, a copy of the tenant tables in each schema
    /// tenant's schema (`t_acme`, `t_globex`), and each database tenant's tables in one of
    /// `databases` (each with a pipeline when `pipelined_databases`), with RLS when `rls`; `app`
    /// connects as `app_role`.
    #[cfg(feature = "postgres")]
    #[expect(
        clippy::too_many_arguments,
        reason = "a test fixture's every knob, spelled at each call"
    )]
    pub async fn new_tiered(
        app: DatabaseConnection,
        raw: DatabaseConnection,
        app_role: &str,
        rls: bool,
        tiers: Tiers,
        databases: Vec<TenantDatabase>,
        pipelined_databases: bool,
        keep: Box<dyn Any + Send + Sync>,
    ) -> Self {
        use tenant::catalog::{Catalog, NewTenant, TenantStatus};
        assert_eq!(
            databases.len(),
            tiers.databases(),
            "one database per database tenant"
        );
        let mut tables = tenant::TenantTables::new().tables(entities::tables());
        if rls {
            tables = tables.rls(tenant::Rls::default());
        }
        tables.create(&raw).await.expect("create the shared tables");
        // On the owner's one connection, which system units also hold: entries stay cached (and
        // changes here invalidate them), so a lookup never waits for that connection.
        let catalog = Catalog::with_max_staleness(raw.clone(), std::time::Duration::from_hours(1));
        catalog.create_table().await.expect("create the catalog");
        let urls = databases.iter().map(|d| d.app_url.clone()).collect();
        let mut keeps = vec![keep];
        let mut databases = databases.into_iter().enumerate();
        let mut env = Self::with_db(TenantDb::new(app.clone()), raw.clone(), rls, Box::new(()));
        for (id, slug, tier) in [(env.acme, "acme", tiers.0), (env.globex, "globex", tiers.1)] {
            let entry = match tier {
                Tier::Schema => {
                    let schema = format!("t_{slug}");
                    tables
                        .create_in(&raw, &schema)
                        .await
                        .expect("create a tenant schema");
                    for grant in tenant::TenantTables::grants_in(&schema, app_role).unwrap() {
                        raw.execute_unprepared(&grant).await.expect("grant");
                    }
                    env.places.push((id, Place::Schema(schema.clone())));
                    NewTenant::schema(id, slug, schema)
                }
                Tier::Database => {
                    let (n, database) = databases.next().expect("a tenant database");
                    tables
                        .create(&database.owner)
                        .await
                        .expect("create a tenant database's tables");
                    env.places.push((id, Place::Database(database.owner)));
                    keeps.push(database.keep);
                    NewTenant::database(id, slug, format!("test:{n}"))
                }
                Tier::Shared => NewTenant::shared(id, slug),
            };
            catalog
                .register(entry.status(TenantStatus::Active))
                .await
                .expect("register");
        }
        let db = if rls {
            TenantDb::with_rls(app, tenant::Rls::default())
                .expect("PostgreSQL")
                .with_system_connection(raw)
        } else {
            TenantDb::new(app)
        }
        .with_catalog(catalog);
        env.db = if tiers.databases() > 0 {
            // Room for one tenant database's pool (and pipeline) at a time: every switch closes
            // the other.
            let mut tier = tenant::DatabaseTier::new(TestUrls(urls))
                .max_connections(1 + u32::from(pipelined_databases))
                .per_tenant(1);
            if pipelined_databases {
                tier = tier.pipeline(1);
            }
            db.with_database_tier(tier).expect("a valid database tier")
        } else {
            db
        };
        env.keep = Box::new(keeps);
        env
    }

    /// Where `t`'s rows are, unless in the shared tables.
    pub fn place_of(&self, t: TenantId) -> Option<&Place> {
        self.places.iter().find(|(id, _)| *id == t).map(|(_, p)| p)
    }

    /// Whether `t` and `u` have their rows in the same tables.
    /// Whether a key of `t`'s and the same key of `u`'s are one key: their rows share tables,
    /// and the tables key rows by key alone (not per tenant).
    pub fn keys_meet(&self, t: TenantId, u: TenantId) -> bool {
        self.same_place(t, u) && !self.distributed_keys
    }

    pub fn same_place(&self, t: TenantId, u: TenantId) -> bool {
        match (self.place_of(t), self.place_of(u)) {
            (None, None) => true,
            (Some(Place::Schema(a)), Some(Place::Schema(b))) => a == b,
            _ => t == u,
        }
    }

    /// The places rows live: the shared tables, then every tenant's own.
    fn all_places(&self) -> Vec<Option<&Place>> {
        std::iter::once(None)
            .chain(self.places.iter().map(|(_, p)| Some(p)))
            .collect()
    }

    /// A transaction on the owner's connection whose unqualified names are `place`'s tables
    /// (`None`: the shared ones).
    async fn raw_in(&self, place: Option<&Place>) -> sea_orm::DatabaseTransaction {
        use sea_orm::TransactionTrait;
        match place {
            None => self.raw.begin().await.unwrap(),
            Some(Place::Database(owner)) => owner.begin().await.unwrap(),
            Some(Place::Schema(schema)) => {
                let txn = self.raw.begin().await.unwrap();
                txn.execute_unprepared(&format!("SET LOCAL search_path = \"{schema}\", public"))
                    .await
                    .unwrap();
                txn
            }
        }
    }

    fn with_db(
        db: TenantDb,
        raw: DatabaseConnection,
        rls: bool,
        keep: Box<dyn Any + Send + Sync>,
    ) -> Self {
        Self {
            db,
            raw,
            acme: TenantId::from(Uuid::from_u128(0xacac_acac)),
            globex: TenantId::from(Uuid::from_u128(0x6106_1061)),
            rls,
            pipeline: None,
            places: Vec::new(),
            distributed_keys: false,
            nodes: Vec::new(),
            keep,
        }
    }

    /// The same handle with its reads on a pipelined executor of `size` connections to `url`.
    #[must_use]
    pub fn with_pipeline(mut self, url: &str, size: usize) -> Self {
        let pipeline = tenant::Pipeline::connect(url, size).expect("a pipeline pool");
        self.db = self
            .db
            .clone()
            .with_pipeline(pipeline.clone())
            .expect("PostgreSQL");
        self.pipeline = Some(pipeline);
        self
    }

    /// Inserts, for both tenants, the same posts (`hello`, `world`) with a comment each, a tag
    /// `rust` on `hello`, and returns the ids per tenant: `[hello, world]`.
    pub async fn seed(&self) -> Seeded {
        let acme = self.seed_one(self.acme).await;
        let globex = self.seed_one(self.globex).await;
        plan::Entity::insert(plan::ActiveModel {
            id: Set(1),
            name: Set("pro".into()),
        })
        .exec(&self.raw)
        .await
        .ok();
        Seeded { acme, globex }
    }

    async fn seed_one(&self, t: TenantId) -> [Uuid; 2] {
        tenant::scope(t, async {
            let posts = TenantRepo::<post::Entity>::new(&self.db);
            let mut ids = [Uuid::nil(); 2];
            for (i, slug) in ["hello", "world"].into_iter().enumerate() {
                let p = posts.insert(new_post(slug)).await.expect("insert post");
                ids[i] = p.id;
                comment::Entity::insert(comment::ActiveModel {
                    id: Set(Uuid::new_v4()),
                    post_id: Set(p.id),
                    body: Set(format!("on {slug}")),
                    ..Default::default()
                })
                .exec(&self.db)
                .await
                .expect("insert comment");
            }
            let rust = tag::ActiveModel {
                id: Set(Uuid::new_v4()),
                name: Set("rust".into()),
                ..Default::default()
            }
            .insert(&self.db)
            .await
            .expect("insert tag");
            TenantRepo::<post_tag::Entity>::new(&self.db)
                .insert(post_tag::ActiveModel {
                    post_id: Set(ids[0]),
                    tag_id: Set(rust.id),
                    ..Default::default()
                })
                .await
                .expect("insert post_tag");
            ids
        })
        .await
    }

    /// Runs `sql` on the raw connection with foreign-key checks off, to plant rows the schema
    /// would refuse (and see what the queries make of them), among the tables where `place`'s rows
    /// are.
    pub async fn plant(&self, place: TenantId, stmt: sea_orm::Statement) {
        use sea_orm::ConnectionTrait;
        let txn = self.raw_in(self.place_of(place)).await;
        // SQLite's raw connection is opened with foreign keys off (see its `setup`).
        if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            // On Citus the setting must reach the workers, where the shards' keys are checked
            // (elsewhere the first line only sets a placeholder).
            txn.execute_unprepared("SET LOCAL citus.propagate_set_commands = 'local'")
                .await
                .unwrap();
            txn.execute_unprepared("SET LOCAL session_replication_role = replica")
                .await
                .unwrap();
        }
        txn.execute_raw(stmt).await.expect("plant a row");
        txn.commit().await.unwrap();
    }

    /// The number of `E` rows, every tenant's and every place's included.
    pub async fn raw_count<E: EntityTrait>(&self) -> usize {
        let mut n = 0;
        for place in self.all_places() {
            let txn = self.raw_in(place).await;
            let stmt = in_place(&E::find(), place, txn.get_database_backend());
            n += E::find().from_raw_sql(stmt).all(&txn).await.unwrap().len();
            txn.commit().await.unwrap();
        }
        n
    }

    /// The number of `post` rows, every tenant's included.
    pub async fn raw_posts(&self) -> usize {
        self.raw_count::<post::Entity>().await
    }

    /// The post `id` among the tables where `t`'s rows are.
    pub async fn raw_post_in(&self, t: TenantId, id: Uuid) -> post::Model {
        self.find_post_of(self.place_of(t), id, Some(t))
            .await
            .unwrap_or_else(|| panic!("post {id} is not where {t}'s rows are"))
    }

    /// The post `id`, wherever it is.
    pub async fn raw_post(&self, id: Uuid) -> post::Model {
        for place in self.all_places() {
            if let Some(found) = self.find_post(place, id).await {
                return found;
            }
        }
        panic!("post {id} exists nowhere")
    }

    /// The post `id` among `place`'s tables, if there.
    async fn find_post(&self, place: Option<&Place>, id: Uuid) -> Option<post::Model> {
        self.find_post_of(place, id, None).await
    }

    /// The post `id` of `tenant` (of any tenant: `None`) among `place`'s tables. With keys
    /// unique per tenant (the distributed form), two tenants may each have a post `id`.
    async fn find_post_of(
        &self,
        place: Option<&Place>,
        id: Uuid,
        tenant: Option<TenantId>,
    ) -> Option<post::Model> {
        let txn = self.raw_in(place).await;
        let mut select = <post::Entity as EntityTrait>::find_by_id(id);
        if let Some(t) = tenant {
            select = select.filter(post::Column::TenantId.eq(tid(t)));
        }
        let stmt = in_place(&select, place, txn.get_database_backend());
        let found = <post::Entity as EntityTrait>::find()
            .from_raw_sql(stmt)
            .one(&txn)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        found
    }

    /// How many of the seeded posts are in the shared tables: the ones a system scope reaches.
    pub fn shared_seeded_posts(&self) -> usize {
        2 * [self.acme, self.globex]
            .into_iter()
            .filter(|t| self.place_of(*t).is_none())
            .count()
    }
}

/// `select` for the tables of `place`, its text told apart by the place: the raw connection's
/// cached statements then never meet a schema whose tables differ (a schema change in one).
fn in_place<S: QueryTrait>(
    select: &S,
    place: Option<&Place>,
    backend: sea_orm::DbBackend,
) -> sea_orm::Statement {
    let mut stmt = select.build(backend);
    if let Some(Place::Schema(schema)) = place {
        stmt.sql = format!("{} /* {schema} */", stmt.sql);
    }
    stmt
}

pub struct Seeded {
    pub acme: [Uuid; 2],
    pub globex: [Uuid; 2],
}

pub fn new_post(slug: &str) -> post::ActiveModel {
    post::ActiveModel {
        id: Set(Uuid::new_v4()),
        slug: Set(slug.into()),
        title: Set(format!("Title {slug}")),
        views: Set(0),
        ..Default::default()
    }
}

fn tid(t: TenantId) -> Uuid {
    *t.as_uuid()
}

/// Calls `$callback!($($args)*; <every scenario that also runs on a handle with a catalog>)`:
/// the one list of them, for [`scenarios!`] and for the Citus suite, which runs them in sequence.
#[macro_export]
macro_rules! with_scenarios {
    ($callback:ident ($($args:tt)*)) => {
        $crate::$callback!($($args)*;
            reads_see_only_the_current_tenant,
            find_by_id_of_another_tenants_row_is_none,
            count_exists_and_paginate_are_scoped,
            partial_models_and_tuples_are_scoped,
            inserts_are_stamped_and_foreign_tenant_ids_refused,
            write_futures_start_when_polled_in_the_scope_they_run_in,
            insert_many_is_all_or_nothing_on_a_foreign_tenant_id,
            update_by_id_cannot_touch_another_tenants_row,
            update_cannot_change_the_tenant,
            update_with_nothing_to_set_cannot_read_another_tenants_row,
            delete_by_id_cannot_touch_another_tenants_row,
            update_many_and_delete_many_are_scoped,
            upsert_never_touches_another_tenants_row,
            find_related_and_joins_are_scoped,
            find_also_related_keeps_left_join_semantics,
            hand_written_joins_are_refused_and_scoped_joins_filter_the_joined_tenant,
            many_to_many_through_the_junction_is_scoped,
            no_tenant_in_scope_fails_closed,
            tokio_spawn_has_no_tenant_and_tenant_spawn_carries_it,
            transactions_are_scoped_and_bound_to_their_tenant,
            system_scope_sees_every_tenant,
            global_entities_are_readable_through_tenant_db,
            global_tables_are_written_through_global_writes_and_read_by_every_tenant,
            concurrent_tasks_alternating_tenants_never_see_wrong_rows,
            per_tenant_unique_holds_within_a_tenant_only,
            a_child_cannot_point_at_another_tenants_parent,
            http_requests_run_in_their_tenant_and_another_tenants_id_is_not_found,
            the_testing_kit_finds_every_entity_isolated,
        );
    };
}

/// Generates one test per scenario for a backend's `setup` function.
#[macro_export]
macro_rules! scenarios {
    ($setup:path) => {
        $crate::scenarios!($setup; the_catalog_admits_active_tenants_only);
        $crate::scenarios!(@with_catalog $setup);
    };
    // Every scenario that also runs on a handle with a catalog of its own (the tiers).
    (@with_catalog $setup:path) => {
        $crate::with_scenarios!(scenarios($setup));
    };
    ($setup:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let env = $setup().await;
                $crate::common::$name(&env).await;
            }
        )*
    };
}

pub async fn reads_see_only_the_current_tenant(env: &Env) {
    let s = env.seed().await;
    for (t, mine) in [(env.acme, s.acme), (env.globex, s.globex)] {
        tenant::scope(t, async {
            let hello = post::Entity::find()
                .filter(post::Column::Slug.eq("hello"))
                .all(&env.db)
                .await
                .unwrap();
            assert_eq!(hello.len(), 1, "one `hello` per tenant");
            assert_eq!(hello[0].id, mine[0]);
            assert_eq!(hello[0].tenant_id, tid(t));
            let all = post::Entity::find()
                .order_by_asc(post::Column::Slug)
                .all(&env.db)
                .await
                .unwrap();
            assert_eq!(all.iter().map(|p| p.id).collect::<Vec<_>>(), mine.to_vec());
            // An `OR` in the user's filter cannot widen the tenant predicate.
            let either = post::Entity::find()
                .filter(
                    sea_orm::Condition::any()
                        .add(post::Column::Slug.eq("hello"))
                        .add(post::Column::Slug.ne("hello")),
                )
                .all(&env.db)
                .await
                .unwrap();
            assert!(either.iter().all(|p| p.tenant_id == tid(t)));
            assert_eq!(either.len(), 2);
        })
        .await;
    }
    assert_eq!(env.raw_posts().await, 4);
}

pub async fn find_by_id_of_another_tenants_row_is_none(env: &Env) {
    let s = env.seed().await;
    tenant::scope(env.acme, async {
        assert!(
            post::Entity::find_by_id(s.globex[0])
                .one(&env.db)
                .await
                .unwrap()
                .is_none()
        );
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        assert!(repo.find_by_id(s.globex[0]).await.unwrap().is_none());
        assert_eq!(
            repo.find_by_id(s.acme[0]).await.unwrap().unwrap().id,
            s.acme[0]
        );
    })
    .await;
}

pub async fn count_exists_and_paginate_are_scoped(env: &Env) {
    let s = env.seed().await;
    tenant::scope(env.acme, async {
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        assert_eq!(repo.count().await.unwrap(), 2);
        assert!(repo.exists(post::Column::Id.eq(s.acme[1])).await.unwrap());
        assert!(!repo.exists(post::Column::Id.eq(s.globex[1])).await.unwrap());
        let pages = repo.paginate(repo.find().order_by_asc(post::Column::Slug), 1);
        assert_eq!(pages.num_items().await.unwrap(), 2);
        assert_eq!(pages.num_pages().await.unwrap(), 2);
        assert_eq!(pages.fetch_page(1).await.unwrap()[0].id, s.acme[1]);
        assert!(pages.fetch_page(2).await.unwrap().is_empty());
        // Cursor pagination: the page after acme's first post holds only acme's rows.
        let first = post::Entity::find()
            .cursor_by(post::Column::Id)
            .first(1)
            .all(&env.db)
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        let rest = post::Entity::find()
            .cursor_by(post::Column::Id)
            .after(first[0].id)
            .all(&env.db)
            .await
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert!(first.iter().chain(&rest).all(|p| s.acme.contains(&p.id)));
        assert_eq!(comment::Entity::find().count(&env.db).await.unwrap(), 2);
        // As SeaORM's `count`: the select's limit and offset apply.
        let limited = post::Entity::find().limit(5).offset(1);
        assert_eq!(limited.count(&env.db).await.unwrap(), 1);
    })
    .await;
}

#[derive(Debug, sea_orm::DerivePartialModel)]
#[sea_orm(entity = "post::Entity")]
struct PostSlug {
    id: Uuid,
    slug: String,
}

pub async fn partial_models_and_tuples_are_scoped(env: &Env) {
    let s = env.seed().await;
    tenant::scope(env.globex, async {
        let slugs: Vec<PostSlug> = post::Entity::find()
            .into_partial_model()
            .all(&env.db)
            .await
            .unwrap();
        let mut ids: Vec<Uuid> = slugs.iter().map(|p| p.id).collect();
        ids.sort();
        let mut want = s.globex.to_vec();
        want.sort();
        assert_eq!(ids, want);
        assert!(slugs.iter().all(|p| p.slug == "hello" || p.slug == "world"));
        let tuples: Vec<(Uuid, String)> = post::Entity::find()
            .select_only()
            .column(post::Column::Id)
            .column(post::Column::Slug)
            .into_tuple()
            .all(&env.db)
            .await
            .unwrap();
        assert_eq!(tuples.len(), 2);
        assert!(tuples.iter().all(|(id, _)| s.globex.contains(id)));
    })
    .await;
}

pub async fn inserts_are_stamped_and_foreign_tenant_ids_refused(env: &Env) {
    tenant::scope(env.acme, async {
        let p = post::Entity::insert(new_post("a"))
            .exec(&env.db)
            .await
            .unwrap();
        assert_eq!(p.tenant_id, tid(env.acme));
        let mut foreign = new_post("b");
        foreign.tenant_id = Set(tid(env.globex));
        let err = foreign.clone().insert(&env.db).await.unwrap_err();
        assert!(matches!(err, Error::CrossTenant { .. }), "{err}");
        let err = TenantRepo::<post::Entity>::new(&env.db)
            .insert(foreign)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::CrossTenant { .. }), "{err}");
        // Naming the scope's own tenant is fine.
        let mut own = new_post("c");
        own.tenant_id = Set(tid(env.acme));
        own.insert(&env.db).await.unwrap();
    })
    .await;
    assert_eq!(env.raw_posts().await, 2);
}

/// The derive's write methods return futures that do nothing until polled, and take the tenant
/// in scope where they run, like every other future of the crate.
#[expect(
    clippy::async_yields_async,
    reason = "the futures are made in one scope and awaited in another"
)]
pub async fn write_futures_start_when_polled_in_the_scope_they_run_in(env: &Env) {
    fn send<F: Send>(f: F) -> F {
        f
    }
    // Built in acme's scope, never polled: nothing is written.
    let never = tenant::scope(env.acme, async { send(new_post("never").insert(&env.db)) }).await;
    assert_eq!(format!("{never:?}"), r#"Insert { state: "ready", .. }"#);
    drop(never);
    assert_eq!(env.raw_posts().await, 0);
    // Built in acme's scope, awaited in globex's: the row is globex's.
    let later = tenant::scope(env.acme, async { new_post("later").insert(&env.db) }).await;
    let p = tenant::scope(env.globex, later).await.unwrap();
    assert_eq!(p.tenant_id, tid(env.globex));
    // Awaited with no tenant in scope: refused.
    let none = tenant::scope(env.acme, async { new_post("none").insert(&env.db) }).await;
    assert!(matches!(none.await, Err(Error::NoTenant)), "no tenant");
    // Several at once, through `join!`.
    tenant::scope(env.acme, async {
        let (a, b) = tokio::join!(
            send(new_post("a").insert(&env.db)),
            send(new_post("b").insert(&env.db)),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!((a.tenant_id, b.tenant_id), (tid(env.acme), tid(env.acme)));
        let mut renamed = a.into_active_model();
        renamed.slug = Set("a2".into());
        let (renamed, deleted) =
            tokio::join!(send(renamed.save(&env.db)), send(b.delete(&env.db)),);
        assert_eq!(renamed.unwrap().slug.unwrap(), "a2");
        deleted.unwrap();
    })
    .await;
    assert_eq!(env.raw_posts().await, 2);
}

pub async fn insert_many_is_all_or_nothing_on_a_foreign_tenant_id(env: &Env) {
    tenant::scope(env.acme, async {
        let mut foreign = new_post("y");
        foreign.tenant_id = Set(tid(env.globex));
        let err = post::Entity::insert_many([new_post("x"), foreign])
            .exec(&env.db)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::CrossTenant { .. }));
        let rows = TenantRepo::<post::Entity>::new(&env.db)
            .insert_many([new_post("x"), new_post("z")])
            .await
            .unwrap();
        assert!(rows.iter().all(|p| p.tenant_id == tid(env.acme)));
    })
    .await;
    assert_eq!(env.raw_posts().await, 2);
}

/// Every way to update by key refuses `am` (another tenant's key) with `NotFound`:
/// `ActiveModel::update`, `Entity::update(..).exec`, `TenantRepo::update`, and `save` with a key.
async fn assert_every_update_is_not_found(env: &Env, am: post::ActiveModel) {
    let err = am.clone().update(&env.db).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = post::Entity::update(am.clone())
        .exec(&env.db)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = TenantRepo::<post::Entity>::new(&env.db)
        .update(am.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = am.save(&env.db).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

pub async fn update_by_id_cannot_touch_another_tenants_row(env: &Env) {
    let s = env.seed().await;
    tenant::scope(env.acme, async {
        let mut am = post::ActiveModel {
            id: Set(s.globex[0]),
            ..Default::default()
        };
        am.title = Set("hijacked".into());
        assert_every_update_is_not_found(env, am).await;
        // Its own row updates.
        let mut own = post::ActiveModel {
            id: Set(s.acme[0]),
            ..Default::default()
        };
        own.title = Set("edited".into());
        assert_eq!(own.update(&env.db).await.unwrap().title, "edited");
    })
    .await;
    assert_eq!(env.raw_post(s.globex[0]).await.title, "Title hello");
}

/// SeaORM answers an update with no column to set by reading the row back by its key alone:
/// scoped, that read must not find another tenant's row.
pub async fn update_with_nothing_to_set_cannot_read_another_tenants_row(env: &Env) {
    let s = env.seed().await;
    tenant::scope(env.acme, async {
        // Only the key, or the key and this tenant's id (kept out of the `SET` list).
        let key_only = post::ActiveModel {
            id: Set(s.globex[0]),
            ..Default::default()
        };
        let with_tenant = post::ActiveModel {
            id: Set(s.globex[0]),
            tenant_id: Set(tid(env.acme)),
            ..Default::default()
        };
        for am in [key_only, with_tenant] {
            assert_every_update_is_not_found(env, am).await;
        }
        // Its own row comes back unchanged.
        let own = post::ActiveModel {
            id: Set(s.acme[0]),
            ..Default::default()
        };
        let model = own.update(&env.db).await.unwrap();
        assert_eq!((model.id, model.tenant_id), (s.acme[0], tid(env.acme)));
    })
    .await;
}

pub async fn update_cannot_change_the_tenant(env: &Env) {
    let s = env.seed().await;
    tenant::scope(env.acme, async {
        let mut am = post::Entity::find_by_id(s.acme[0])
            .one(&env.db)
            .await
            .unwrap()
            .unwrap()
            .into_active_model();
        am.tenant_id = Set(tid(env.globex));
        let refused = |err: Error, how: &str| {
            assert!(
                matches!(err, Error::TenantChange { entity: "post" }),
                "{how}: {err:?}"
            );
            assert_eq!(
                err.to_string(),
                "`post` rows cannot move to another tenant; leave the tenant column out of the \
                 update (a row's tenant is fixed at insert)",
                "{how}"
            );
        };
        refused(am.update(&env.db).await.unwrap_err(), "update by id");
        let globex = sea_orm::sea_query::Expr::value(tid(env.globex));
        refused(
            post::Entity::update_many()
                .col_expr(post::Column::TenantId, globex.clone())
                .exec(&env.db)
                .await
                .unwrap_err(),
            "update_many().col_expr",
        );
        refused(
            post::Entity::update_many()
                .set(post::ActiveModel {
                    tenant_id: Set(tid(env.globex)),
                    ..Default::default()
                })
                .exec(&env.db)
                .await
                .unwrap_err(),
            "update_many().set",
        );
        // The statement itself, reached past the builder.
        let mut update = post::Entity::update_many().col_expr(post::Column::Views, 1.into());
        QueryFilter::query(&mut update).value(post::Column::TenantId, tid(env.globex));
        refused(
            update.exec(&env.db).await.unwrap_err(),
            "update_many().query().value",
        );
    })
    .await;
    for id in s.acme {
        let p = env.raw_post(id).await;
        assert_eq!((p.tenant_id, p.views), (tid(env.acme), 0));
    }
}

pub async fn delete_by_id_cannot_touch_another_tenants_row(env: &Env) {
    let s = env.seed().await;
    let other = env.raw_post(s.globex[1]).await;
    tenant::scope(env.acme, async {
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        assert!(matches!(
            repo.delete_by_id(s.globex[0]).await.unwrap_err(),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            post::Entity::delete_by_id(s.globex[0])
                .exec(&env.db)
                .await
                .unwrap_err(),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            other.clone().delete(&env.db).await.unwrap_err(),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            other
                .clone()
                .into_active_model()
                .delete(&env.db)
                .await
                .unwrap_err(),
            Error::NotFound { .. }
        ));
        // Children first: the post is their parent.
        comment::Entity::delete_many()
            .filter(comment::Column::PostId.eq(s.acme[0]))
            .exec(&env.db)
            .await
            .unwrap();
        post_tag::Entity::delete_many()
            .filter(post_tag::Column::PostId.eq(s.acme[0]))
            .exec(&env.db)
            .await
            .unwrap();
        repo.delete_by_id(s.acme[0]).await.unwrap();
    })
    .await;
    assert_eq!(env.raw_posts().await, 3);
    env.raw_post(s.globex[0]).await;
    env.raw_post(s.globex[1]).await;
}

pub async fn update_many_and_delete_many_are_scoped(env: &Env) {
    let s = env.seed().await;
    tenant::scope(env.acme, async {
        let changed = post::Entity::update_many()
            .col_expr(post::Column::Views, sea_orm::sea_query::Expr::value(7))
            .exec(&env.db)
            .await
            .unwrap();
        assert_eq!(changed, 2);
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        let changed = repo
            .update_many(
                post::ActiveModel {
                    title: Set("same".into()),
                    ..Default::default()
                },
                post::Column::Slug.eq("world"),
            )
            .await
            .unwrap();
        assert_eq!(changed, 1);
        let gone = comment::Entity::delete_many().exec(&env.db).await.unwrap();
        assert_eq!(gone, 2);
        let gone = TenantRepo::<post_tag::Entity>::new(&env.db)
            .delete_many(sea_orm::Condition::all())
            .await
            .unwrap();
        assert_eq!(gone, 1);
    })
    .await;
    for id in s.globex {
        let p = env.raw_post(id).await;
        assert_eq!((p.views, p.title.starts_with("Title")), (0, true));
    }
    assert_eq!(env.raw_count::<comment::Entity>().await, 2);
}

pub async fn upsert_never_touches_another_tenants_row(env: &Env) {
    let s = env.seed().await;
    tenant::scope(env.acme, async {
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        // Same primary key as globex's row.
        let clash = post::ActiveModel {
            id: Set(s.globex[0]),
            slug: Set("fresh".into()),
            title: Set("taken over".into()),
            views: Set(99),
            ..Default::default()
        };
        let clashed = repo.upsert(clash).await;
        if env.keys_meet(env.acme, env.globex) {
            let err = clashed.unwrap_err();
            assert!(matches!(err, Error::NotFound { .. }), "{err}");
        } else {
            // Apart, or keyed per tenant, the two tenants' keys do not meet: acme gets a row of
            // its own.
            let mine = clashed.unwrap();
            assert_eq!(
                (mine.tenant_id, mine.title.as_str()),
                (tid(env.acme), "taken over")
            );
        }
        // Its own row by key: updated in place.
        let own = post::ActiveModel {
            id: Set(s.acme[0]),
            slug: Set("hello".into()),
            title: Set("upserted".into()),
            views: Set(1),
            ..Default::default()
        };
        assert_eq!(repo.upsert(own).await.unwrap().title, "upserted");
        // On the per-tenant unique (tenant_id, slug): globex's `world` is not a conflict for acme.
        let by_slug = post::ActiveModel {
            id: Set(Uuid::new_v4()),
            slug: Set("world".into()),
            title: Set("by slug".into()),
            views: Set(2),
            ..Default::default()
        };
        let row = repo.upsert_on(by_slug, [post::Column::Slug]).await.unwrap();
        assert_eq!((row.id, row.title.as_str()), (s.acme[1], "by slug"));
        // A brand-new row is inserted and stamped.
        let new = repo.upsert(new_post("new")).await.unwrap();
        assert_eq!(new.tenant_id, tid(env.acme));
    })
    .await;
    let theirs = env.raw_post_in(env.globex, s.globex[0]).await;
    assert_eq!(
        (theirs.title.as_str(), theirs.views, theirs.tenant_id),
        ("Title hello", 0, tid(env.globex))
    );
    assert_eq!(env.raw_post(s.globex[1]).await.title, "Title world");
}

pub async fn find_related_and_joins_are_scoped(env: &Env) {
    let s = env.seed().await;
    tenant::scope(env.acme, async {
        let hello = post::Entity::find_by_id(s.acme[0])
            .one(&env.db)
            .await
            .unwrap()
            .unwrap();
        let comments = hello
            .find_related(comment::Entity)
            .all(&env.db)
            .await
            .unwrap();
        assert_eq!(comments.len(), 1);
        assert_eq!(comments[0].tenant_id, tid(env.acme));
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        assert_eq!(
            repo.find_related(&hello, comment::Entity)
                .await
                .unwrap()
                .len(),
            1
        );
        let with = post::Entity::find()
            .find_with_related(comment::Entity)
            .all(&env.db)
            .await
            .unwrap();
        assert_eq!(with.len(), 2);
        assert!(with.iter().all(|(p, cs)| p.tenant_id == tid(env.acme)
            && cs.len() == 1
            && cs[0].tenant_id == tid(env.acme)));
        let posts = repo.all().await.unwrap();
        let loaded = repo.load_many(&posts, comment::Entity).await.unwrap();
        assert!(
            loaded
                .iter()
                .flatten()
                .all(|c| c.tenant_id == tid(env.acme))
        );
        assert_eq!(loaded.iter().flatten().count(), 2);
    })
    .await;
}

pub async fn hand_written_joins_are_refused_and_scoped_joins_filter_the_joined_tenant(env: &Env) {
    use sea_orm::{JoinType, RelationTrait};
    let s = env.seed().await;
    // A globex comment on acme's `hello`, which the composite foreign key would refuse.
    let backend = env.raw.get_database_backend();
    env.plant(
        env.acme,
        <comment::Entity as EntityTrait>::insert(comment::ActiveModel {
            id: Set(Uuid::new_v4()),
            tenant_id: Set(tid(env.globex)),
            post_id: Set(s.acme[0]),
            body: Set("planted".into()),
        })
        .build(backend),
    )
    .await;
    tenant::scope(env.acme, async {
        let rel = || post::Relation::Comment.def();
        let refused = [
            post::Entity::find().join(JoinType::InnerJoin, rel()),
            post::Entity::find().join_rev(JoinType::InnerJoin, comment::Relation::Post.def()),
            post::Entity::find().join_as(
                JoinType::LeftJoin,
                rel(),
                sea_orm::sea_query::Alias::new("c"),
            ),
        ];
        for (i, query) in refused.into_iter().enumerate() {
            let query = query.filter(comment::Column::Body.eq("planted"));
            let err = query.all(&env.db).await.unwrap_err();
            assert!(
                matches!(err, Error::UnscopedJoin { .. }),
                "join {i}: {err:?}"
            );
            assert!(
                err.to_string()
                    .contains("use `.left_join(Related)`, `.inner_join(Related)`"),
                "{err}"
            );
        }
        // The scoped spelling: the joined comment must be acme's too.
        let planted = post::Entity::find()
            .inner_join(comment::Entity)
            .filter(comment::Column::Body.eq("planted"))
            .all(&env.db)
            .await
            .unwrap();
        assert!(
            planted.is_empty(),
            "joined another tenant's comment: {planted:?}"
        );
        let own = post::Entity::find()
            .left_join(comment::Entity)
            .filter(comment::Column::Body.eq("on hello"))
            .all(&env.db)
            .await
            .unwrap();
        assert_eq!(
            own.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![s.acme[0]]
        );
    })
    .await;
}

pub async fn find_also_related_keeps_left_join_semantics(env: &Env) {
    let s = env.seed().await;
    // Planted behind the library's back: an acme comment pointing at globex's post.
    let planted = Uuid::new_v4();
    let backend = env.raw.get_database_backend();
    env.plant(
        env.acme,
        <comment::Entity as EntityTrait>::insert(comment::ActiveModel {
            id: Set(planted),
            tenant_id: Set(tid(env.acme)),
            post_id: Set(s.globex[0]),
            body: Set("planted".into()),
        })
        .build(backend),
    )
    .await;
    tenant::scope(env.acme, async {
        let rows = comment::Entity::find()
            .find_also_related(post::Entity)
            .order_by_asc(comment::Column::Body)
            .all(&env.db)
            .await
            .unwrap();
        assert_eq!(
            rows.len(),
            3,
            "every acme comment, none dropped by the join"
        );
        for (c, p) in &rows {
            assert_eq!(c.tenant_id, tid(env.acme));
            if c.id == planted {
                assert!(p.is_none(), "globex's post must not be joined in");
            } else {
                assert_eq!(p.as_ref().unwrap().tenant_id, tid(env.acme));
            }
        }
        let planted_row = comment::Entity::find_by_id(planted)
            .one(&env.db)
            .await
            .unwrap()
            .unwrap();
        assert!(
            planted_row
                .find_related(post::Entity)
                .all(&env.db)
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

pub async fn many_to_many_through_the_junction_is_scoped(env: &Env) {
    let s = env.seed().await;
    // Planted: an acme junction row linking acme's `hello` to globex's tag.
    let globex_tag = tenant::scope(env.globex, tag::Entity::find().one(&env.db))
        .await
        .unwrap()
        .unwrap();
    let backend = env.raw.get_database_backend();
    env.plant(
        env.acme,
        <post_tag::Entity as EntityTrait>::insert(post_tag::ActiveModel {
            post_id: Set(s.acme[0]),
            tag_id: Set(globex_tag.id),
            tenant_id: Set(tid(env.acme)),
        })
        .build(backend),
    )
    .await;
    // And a globex junction row linking acme's `world` to acme's tag: a relation acme never
    // made, which the junction's own tenant column keeps out of acme's reads.
    let acme_tag = tenant::scope(env.acme, tag::Entity::find().one(&env.db))
        .await
        .unwrap()
        .unwrap();
    env.plant(
        env.globex,
        <post_tag::Entity as EntityTrait>::insert(post_tag::ActiveModel {
            post_id: Set(s.acme[1]),
            tag_id: Set(acme_tag.id),
            tenant_id: Set(tid(env.globex)),
        })
        .build(backend),
    )
    .await;
    tenant::scope(env.acme, async {
        let rows = post::Entity::find()
            .find_with_related(tag::Entity)
            .all(&env.db)
            .await
            .unwrap();
        let tags: Vec<_> = rows.iter().flat_map(|(_, ts)| ts).collect();
        assert_eq!(tags.len(), 1, "{tags:?}");
        assert_eq!(tags[0].tenant_id, tid(env.acme));
        let world = rows.iter().find(|(p, _)| p.id == s.acme[1]).unwrap();
        assert!(world.1.is_empty(), "globex's junction row: {world:?}");
        let world = world.0.clone();
        assert!(
            world
                .find_related(tag::Entity)
                .all(&env.db)
                .await
                .unwrap()
                .is_empty()
        );
        let repo = TenantRepo::<post::Entity>::new(&env.db);
        assert!(
            repo.find_related(&world, tag::Entity)
                .await
                .unwrap()
                .is_empty()
        );
        let loaded = repo.load_many(&[world], tag::Entity).await.unwrap();
        assert!(loaded[0].is_empty(), "globex's junction row: {loaded:?}");
        let hello = post::Entity::find_by_id(s.acme[0])
            .one(&env.db)
            .await
            .unwrap()
            .unwrap();
        let related = hello.find_related(tag::Entity).all(&env.db).await.unwrap();
        assert_eq!(related.len(), 1);
        assert_eq!(related[0].tenant_id, tid(env.acme));
        let loaded = TenantRepo::<post::Entity>::new(&env.db)
            .load_many(&[hello], tag::Entity)
            .await
            .unwrap();
        assert_eq!(loaded[0].len(), 1);
        assert_eq!(loaded[0][0].tenant_id, tid(env.acme));
    })
    .await;
}

pub async fn no_tenant_in_scope_fails_closed(env: &Env) {
    let s = env.seed().await;
    let db = &env.db;
    assert!(matches!(
        post::Entity::find().all(db).await,
        Err(Error::NoTenant)
    ));
    assert!(matches!(
        post::Entity::find_by_id(s.acme[0]).one(db).await,
        Err(Error::NoTenant)
    ));
    assert!(matches!(
        post::Entity::find().count(db).await,
        Err(Error::NoTenant)
    ));
    assert!(matches!(
        new_post("x").insert(db).await,
        Err(Error::NoTenant)
    ));
    assert!(matches!(
        post::Entity::delete_by_id(s.acme[0]).exec(db).await,
        Err(Error::NoTenant)
    ));
    assert!(matches!(
        post::Entity::delete_many().exec(db).await,
        Err(Error::NoTenant)
    ));
    assert!(matches!(db.begin().await, Err(Error::NoTenant)));
    let msg = Error::NoTenant.to_string();
    assert!(msg.contains("tenant::scope"), "{msg}");
    assert_eq!(env.raw_posts().await, 4);
}

pub async fn tokio_spawn_has_no_tenant_and_tenant_spawn_carries_it(env: &Env) {
    env.seed().await;
    let db = env.db.clone();
    let acme = env.acme;
    tenant::scope(acme, async move {
        let plain = tokio::spawn({
            let db = db.clone();
            async move { post::Entity::find().all(&db).await }
        });
        assert!(matches!(plain.await.unwrap(), Err(Error::NoTenant)));
        let carried = tenant::spawn({
            let db = db.clone();
            async move { post::Entity::find().all(&db).await }
        })
        .unwrap();
        let rows = carried.await.unwrap().unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|p| p.tenant_id == tid(acme)));
    })
    .await;
    assert!(matches!(tenant::spawn(async {}), Err(Error::NoTenant)));
}

pub async fn transactions_are_scoped_and_bound_to_their_tenant(env: &Env) {
    let s = env.seed().await;
    tenant::scope(env.acme, async {
        let txn = env.db.begin().await.unwrap();
        let p = new_post("in-txn").insert(&txn).await.unwrap();
        assert_eq!(p.tenant_id, tid(env.acme));
        assert_eq!(post::Entity::find().all(&txn).await.unwrap().len(), 3);
        assert!(matches!(
            post::Entity::delete_by_id(s.globex[0]).exec(&txn).await,
            Err(Error::NotFound { .. })
        ));
        let repo = txn.repo::<post::Entity>();
        assert_eq!(repo.count().await.unwrap(), 3);
        // Used inside another tenant's scope: refused.
        let inner = tenant::scope(env.globex, post::Entity::find().all(&txn)).await;
        let Err(err @ Error::ScopeMismatch { bound, scope }) = inner else {
            panic!("{inner:?}");
        };
        assert_eq!((bound, scope), (Some(env.acme), Some(env.globex)));
        assert_eq!(
            err.to_string(),
            format!(
                "this transaction belongs to tenant {}, but the scope is tenant {}; begin a new \
                 transaction inside the inner scope",
                env.acme, env.globex
            )
        );
        txn.rollback().await.unwrap();
        assert_eq!(post::Entity::find().count(&env.db).await.unwrap(), 2);
        let txn = env.db.begin().await.unwrap();
        new_post("kept").insert(&txn).await.unwrap();
        txn.commit().await.unwrap();
        assert_eq!(post::Entity::find().count(&env.db).await.unwrap(), 3);
    })
    .await;
}

pub async fn system_scope_sees_every_tenant(env: &Env) {
    env.seed().await;
    let all = tenant::SystemScope::assert("integration test: count every tenant's posts")
        .run(post::Entity::find().all(&env.db))
        .await
        .unwrap();
    // It reaches the shared tables: a tenant of its own schema is reached in its own scope.
    assert_eq!(all.len(), env.shared_seeded_posts());
    // A system scope has no tenant to stamp: inserts must name one.
    let err = tenant::SystemScope::assert("integration test: insert without tenant")
        .run(new_post("x").insert(&env.db))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingTenant { .. }), "{err}");
    let mut named = new_post("x");
    named.tenant_id = Set(tid(env.globex));
    let written = tenant::SystemScope::assert("integration test: insert for a named tenant")
        .run(named.insert(&env.db))
        .await;
    // It writes the shared tables: a row for a tenant whose rows are elsewhere is refused.
    let shared_globex = env.place_of(env.globex).is_none();
    if shared_globex {
        assert_eq!(written.unwrap().tenant_id, tid(env.globex));
    } else {
        let err = written.unwrap_err();
        assert!(
            matches!(err, Error::TenantElsewhere { tenant, .. } if tenant == env.globex),
            "{err}"
        );
    }
    let raw = env
        .db
        .unscoped(&tenant::AssertUnscoped::new("integration test: raw count"));
    let seen = <post::Entity as EntityTrait>::find()
        .all(raw)
        .await
        .unwrap()
        .len();
    // Under RLS the application role sees nothing with no tenant bound, escape hatch or not.
    let expected = env.shared_seeded_posts() + usize::from(shared_globex);
    assert_eq!(seen, if env.rls { 0 } else { expected });
}

pub async fn global_tables_are_written_through_global_writes_and_read_by_every_tenant(env: &Env) {
    use sea_orm::sea_query::Expr;
    env.seed().await;
    let writes = env.db.global_writes(&tenant::AssertGlobal::new(
        "integration test: the pricing page",
    ));
    // From inside a tenant's scope too: a global table is nobody's.
    let team = tenant::scope(
        env.acme,
        writes.insert(plan::ActiveModel {
            id: Set(2),
            name: Set("team".into()),
        }),
    )
    .await
    .unwrap();
    assert_eq!(team.name, "team");
    let renamed = writes
        .update(plan::ActiveModel {
            id: Set(2),
            name: Set("teams".into()),
        })
        .await
        .unwrap();
    assert_eq!(renamed.name, "teams");
    let touched = writes
        .update_many::<plan::Entity>(|q| {
            q.col_expr(plan::Column::Name, Expr::value("enterprise"))
                .filter(plan::Column::Id.eq(2))
        })
        .await
        .unwrap();
    assert_eq!(touched, 1);
    for t in [env.acme, env.globex] {
        let seen = tenant::scope(t, plan::Entity::find_by_id(2).one(&env.db))
            .await
            .unwrap();
        assert_eq!(seen.unwrap().name, "enterprise", "{t} reads the global row");
    }
    let gone = writes
        .delete_many::<plan::Entity>(|q| q.filter(plan::Column::Id.eq(2)))
        .await
        .unwrap();
    assert_eq!(gone, 1);
    assert_eq!(
        writes
            .delete(plan::ActiveModel {
                id: Set(2),
                ..Default::default()
            })
            .await
            .unwrap(),
        0
    );
    assert_eq!(plan::Entity::find().all(&env.db).await.unwrap().len(), 1);
}

pub async fn global_entities_are_readable_through_tenant_db(env: &Env) {
    env.seed().await;
    let plans = plan::Entity::find().all(&env.db).await.unwrap();
    assert_eq!(plans.len(), 1);
    let in_scope = tenant::scope(env.acme, plan::Entity::find_by_id(1).one(&env.db))
        .await
        .unwrap();
    assert_eq!(in_scope.unwrap().name, "pro");
}

pub async fn concurrent_tasks_alternating_tenants_never_see_wrong_rows(env: &Env) {
    env.seed().await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let t = if i % 2 == 0 { env.acme } else { env.globex };
        let db = env.db.clone();
        tasks.push(tokio::spawn(tenant::scope(t, async move {
            let mut wrong = 0;
            for _ in 0..5 {
                let rows = post::Entity::find().all(&db).await.unwrap();
                wrong += rows.iter().filter(|p| p.tenant_id != tid(t)).count();
                assert_eq!(rows.len(), 2);
                tokio::task::yield_now().await;
                let c = comment::Entity::find().all(&db).await.unwrap();
                wrong += c.iter().filter(|c| c.tenant_id != tid(t)).count();
            }
            wrong
        })));
    }
    let mut wrong = 0;
    for task in tasks {
        wrong += task.await.unwrap();
    }
    assert_eq!(wrong, 0);
}

pub async fn per_tenant_unique_holds_within_a_tenant_only(env: &Env) {
    env.seed().await; // both tenants already hold `hello`
    let again = tenant::scope(env.acme, new_post("hello").insert(&env.db)).await;
    let Err(Error::Db(err)) = again else {
        panic!("a duplicate `hello` in acme: {again:?}");
    };
    assert!(
        matches!(
            err.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        ),
        "not a unique violation: {err:?}"
    );
    // The database's own message, naming the per-tenant unique.
    let shown = Error::Db(err).to_string();
    assert!(
        shown.contains("UNIQUE") || shown.contains("unique"),
        "{shown}"
    );
    assert_eq!(env.raw_posts().await, 4);
}

pub async fn a_child_cannot_point_at_another_tenants_parent(env: &Env) {
    let s = env.seed().await;
    let to_globex = |id| comment::ActiveModel {
        id: Set(id),
        post_id: Set(s.globex[0]),
        body: Set("cross".into()),
        ..Default::default()
    };
    tenant::scope(env.acme, async {
        // Through the library: refused with a clear error.
        let err = to_globex(Uuid::new_v4()).insert(&env.db).await.unwrap_err();
        assert!(matches!(err, Error::ParentNotFound { .. }), "{err}");
        // Past the library, as the same application role: the database refuses it.
        let raw = env
            .db
            .unscoped(&tenant::AssertUnscoped::new("test: bypass the repo"));
        let mut row = to_globex(Uuid::new_v4());
        row.tenant_id = Set(tid(env.acme));
        let refused = <comment::Entity as EntityTrait>::insert(row)
            .exec(raw)
            .await;
        if env.rls {
            // No tenant bound on the raw connection: the policy's `WITH CHECK` refuses first.
            let err = refused.unwrap_err().to_string();
            assert!(err.contains("row-level security"), "{err}");
        } else {
            assert!(
                matches!(
                    refused.as_ref().map_err(sea_orm::DbErr::sql_err),
                    Err(Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)))
                ),
                "{refused:?}"
            );
        }
    })
    .await;
    assert_eq!(env.raw_count::<comment::Entity>().await, 4);
}
