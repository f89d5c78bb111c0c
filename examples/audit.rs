//! The start-up audit from the command line: connects as the application role, checks that it
//! cannot bypass Row-Level Security and that every tenant table is under the declared policy
//! with its declared keys, prints the report and exits non-zero on any finding.
//!
//! ```text
//! cargo run --example audit --features postgres -- postgres://app:secret@localhost/app
//! ```
//!
//! Exit status: 0 when clean, 1 with findings, 2 when the audit could not run.

use std::process::ExitCode;

use tenant::{Rls, TenantTables};

mod post {
    #![allow(
        unreachable_pub,
        reason = "SeaORM's entity layout: `pub` items in a private module"
    )]
    use sea_orm::entity::prelude::*;

    /// A blog post, unique per tenant by slug.
    #[tenant::entity]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "post")]
    #[tenant(unique(slug), index(title))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub slug: String,
        pub title: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod comment {
    #![allow(
        unreachable_pub,
        reason = "SeaORM's entity layout: `pub` items in a private module"
    )]
    use sea_orm::entity::prelude::*;

    /// A comment on a post of the same tenant.
    #[tenant::entity]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, tenant::TenantScoped)]
    #[sea_orm(table_name = "comment")]
    #[tenant(index(post_id))]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub post_id: Uuid,
        pub body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::post::Entity",
            from = "Column::PostId",
            to = "super::post::Column::Id"
        )]
        Post,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The schema the application declares, exactly as its migrations create it.
fn schema() -> TenantTables {
    TenantTables::new()
        .table::<post::Entity>()
        .table::<comment::Entity>()
        .rls(Rls::default())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(url), None) = (args.next(), args.next()) else {
        eprintln!(
            "usage: cargo run --example audit --features postgres -- <DATABASE_URL of the application role>"
        );
        return ExitCode::from(2);
    };
    // App-level mode: the audit itself reports a role that would bypass RLS.
    let db = match tenant::TenantDb::connect(&url).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("cannot connect: {e}");
            return ExitCode::from(2);
        }
    };
    let conn = db.unscoped(&tenant::AssertUnscoped::new(
        "the audit reads the catalog as the role it checks",
    ));
    let report = match tenant::audit(conn, &schema()).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("the audit could not run: {e}");
            return ExitCode::from(2);
        }
    };
    db.close().await.ok();
    println!("{report}");
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
