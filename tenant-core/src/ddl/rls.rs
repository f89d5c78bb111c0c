//! PostgreSQL Row-Level Security: the run-time binding of the tenant.
//!
//! In RLS mode every scoped unit of work runs in a transaction that starts with
//! `BEGIN; SET LOCAL <setting> = '<tenant id>'; SET LOCAL search_path = <schemas>, pg_temp`,
//! sent as one message: one round trip for the `BEGIN` and the binding together. `SET LOCAL` (not `set_config(.., true)`) because it is the
//! form Citus propagates to its workers, and it is transaction-scoped, so it works through
//! PgBouncer's transaction pooling and never leaves state on a pooled connection. The value is
//! rendered by us from the typed [`TenantId`], never from user text.

use std::fmt;

use sea_orm::IdenStatic;

use super::ident::{is_plain_ident, quote_ident};
use crate::{Error, Result, Tenancy};

/// The RLS settings of a [`TenantDb`](crate::TenantDb): which setting the policies read.
#[derive(Clone, PartialEq, Eq)]
pub struct Rls {
    setting: String,
    form: PolicyForm,
    /// The schemas every unit of work searches, rendered for `SET LOCAL search_path`.
    search_path: String,
}

/// How a policy reads the bound tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyForm {
    /// `(SELECT NULLIF(current_setting(..), '')::uuid)`: evaluated once per statement. The
    /// default, for PostgreSQL.
    Subquery,
    /// `NULLIF(current_setting(..), '')::uuid`: for Citus, which refuses subqueries in policies
    /// on distributed tables. With an index on the tenant column it is still evaluated once per
    /// scan, as an index condition.
    Plain,
}

impl Rls {
    /// The setting the policies read, such as `app.tenant_id` (the default).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] unless the name is two lowercase identifiers joined by a dot, the form
    /// PostgreSQL accepts for a custom setting; the name is written into SQL, so nothing else is
    /// let through.
    pub fn new(setting: &str) -> Result<Self> {
        match setting.split_once('.') {
            Some((a, b)) if is_plain_ident(a) && is_plain_ident(b) => Ok(Self {
                setting: setting.to_owned(),
                ..Self::default()
            }),
            _ => Err(Error::InvalidName {
                what: "custom setting name",
                name: setting.to_owned(),
                expected: "two lowercase identifiers joined by a dot, such as `app.tenant_id`",
            }),
        }
    }

    /// The setting name.
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// The schemas the application's tables live in, in search order (default: `public`).
    ///
    /// Every unit of work sets `search_path` to these, with `pg_temp` last, for its transaction:
    /// a temporary table, or a session-level `SET search_path`, left on a pooled connection by
    /// raw SQL cannot then stand in for a tenant table.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `schemas` is empty or a name is not a lowercase identifier (the
    /// names are written into SQL, so nothing else is let through).
    pub fn with_search_path(mut self, schemas: &[&str]) -> Result<Self> {
        self.search_path = super::ident::search_path(schemas)?;
        Ok(self)
    }

    /// The schemas, as `SET LOCAL search_path` takes them (without `pg_temp`).
    pub(crate) fn search_path(&self) -> &str {
        &self.search_path
    }

    /// The same settings with policies in `form` (for Citus: [`PolicyForm::Plain`]).
    #[must_use]
    pub fn with_policy_form(mut self, form: PolicyForm) -> Self {
        self.form = form;
        self
    }

    /// The policy form.
    pub fn policy_form(&self) -> PolicyForm {
        self.form
    }

    /// The expression a policy compares the tenant column with. After a transaction-local
    /// setting reverts it reads `''`, not NULL, hence the `NULLIF`: no tenant bound, no rows.
    pub fn current_tenant_sql(&self) -> String {
        let read = format!(
            "NULLIF(current_setting('{}', true), '')::uuid",
            self.setting
        );
        match self.form {
            PolicyForm::Subquery => format!("(SELECT {read})"),
            PolicyForm::Plain => read,
        }
    }

    /// The name of the policy on every tenant table.
    pub const POLICY: &'static str = "tenant_isolation";

    /// The statements that put `E` under RLS, in order: `ENABLE` and `FORCE ROW LEVEL
    /// SECURITY`, and one policy whose `USING` and `WITH CHECK` compare the tenant column with
    /// the bound tenant. Re-runnable (the policy is dropped and created again). Empty for a
    /// global entity.
    pub fn policy_statements<E: Tenancy>(&self) -> Vec<String> {
        let Some(column) = E::tenant_column() else {
            return Vec::new();
        };
        let table = quote_ident(E::default().table_name());
        let check = format!(
            "{} = {}",
            quote_ident(column.as_str()),
            self.current_tenant_sql()
        );
        vec![
            format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
            format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
            format!("DROP POLICY IF EXISTS {} ON {table}", Self::POLICY),
            format!(
                "CREATE POLICY {} ON {table} USING ({check}) WITH CHECK ({check})",
                Self::POLICY
            ),
        ]
    }

    /// The privileges the application role `role` needs on `E`'s table: `SELECT`, `INSERT`,
    /// `UPDATE`, `DELETE`, and nothing that would let it change the policy (it must not own the
    /// table).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `role` is not a plain lowercase identifier.
    pub fn grant_statements<E: Tenancy>(role: &str) -> Result<Vec<String>> {
        if !is_plain_ident(role) {
            return Err(Error::InvalidName {
                what: "role name",
                name: role.to_owned(),
                expected: "a lowercase identifier",
            });
        }
        let table = quote_ident(E::default().table_name());
        Ok(vec![
            format!("REVOKE ALL ON {table} FROM PUBLIC"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {}",
                quote_ident(role)
            ),
        ])
    }
}

impl Default for Rls {
    fn default() -> Self {
        Self {
            setting: "app.tenant_id".to_owned(),
            form: PolicyForm::Subquery,
            search_path: "public".to_owned(),
        }
    }
}

impl fmt::Debug for Rls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rls")
            .field("setting", &self.setting)
            .field("form", &self.form)
            .field("search_path", &self.search_path)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_names_are_validated_before_they_reach_sql() {
        assert!(Rls::new("app.tenant_id").is_ok());
        for bad in [
            "tenant_id",
            "app.tenant-id",
            "app.x; DROP TABLE t",
            "App.Tenant",
            ".x",
            "a.",
            "a.b.c",
        ] {
            assert!(Rls::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn search_path_schemas_are_validated_before_they_reach_sql() {
        for bad in [
            &[][..],
            &["Public"],
            &["a; RESET ALL"],
            &["pg_temp, x"],
            &[""],
            &["pg_temp", "public"],
        ] {
            assert!(Rls::default().with_search_path(bad).is_err(), "{bad:?}");
        }
    }
}
