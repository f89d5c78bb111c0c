fn _raw(db: &tenant::TenantDb) -> &sea_orm::DatabaseConnection {
    db.unscoped()
}

fn main() {}
