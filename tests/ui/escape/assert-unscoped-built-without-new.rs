use tenant::{AssertUnscoped, TenantDb};

fn _raw(db: &TenantDb) -> &sea_orm::DatabaseConnection {
    db.unscoped(&AssertUnscoped { reason: "backfill" })
}

fn main() {}
