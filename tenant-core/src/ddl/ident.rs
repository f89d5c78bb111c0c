//! SQL identifiers this crate writes into DDL and bindings: checked, then quoted.

use crate::{Error, Result};

/// A lowercase SQL identifier that needs no quoting, the only form written into SQL unquoted.
pub(crate) fn is_plain_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// A name a tenant's own schema may have: a plain identifier that is none of the schemas
/// PostgreSQL or every tenant shares (`public`, `information_schema`, `pg_*`).
pub(crate) fn is_tenant_schema_name(s: &str) -> bool {
    is_plain_ident(s) && !s.starts_with("pg_") && s != "public" && s != "information_schema"
}

/// `schemas` rendered for `SET LOCAL search_path` (`pg_temp` is appended by the binding, last).
pub(crate) fn search_path(schemas: &[&str]) -> Result<String> {
    // Named earlier than last, `pg_temp` would search temporary tables first.
    let valid = |s: &&str| is_plain_ident(s) && !s.starts_with("pg_temp");
    if schemas.is_empty() || !schemas.iter().all(valid) {
        return Err(Error::InvalidName {
            what: "search path",
            name: schemas.join(", "),
            expected: "one or more lowercase identifiers other than `pg_temp`, such as `public`",
        });
    }
    Ok(schemas.join(", "))
}

/// `name` as a quoted SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
