#[derive(tenant::TenantScoped)]
pub enum Model {
    Draft,
    Published,
}

fn main() {}
