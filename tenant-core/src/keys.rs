//! Cache keys and object storage paths that carry their tenant, so that no cache entry or stored
//! object of one tenant is ever read as another's, and one tenant's can be dropped at once.
//!
//! Both are built from the tenant in scope ([`tenant::scope`](crate::scope)) and refuse to build
//! without one ([`Error::NoTenant`]); a system job names the tenant explicitly. The tenant always
//! comes first, and no part can reach outside it: a cache key's parts are escaped, a path's
//! segments may not be empty, `.`, `..`, or hold a `/`.
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> tenant_core::Result<()> {
//! use tenant_core::keys::{CacheKey, ObjectPath};
//! use tenant_core::TenantId;
//!
//! let acme = TenantId::from(uuid::Uuid::from_u128(0xac));
//! tenant_core::scope(acme, async {
//!     let key = CacheKey::scoped("invoice")?.part(42).build();
//!     assert_eq!(key.as_str(), "t:00000000-0000-0000-0000-0000000000ac:invoice:42");
//!     assert!(key.as_str().starts_with(CacheKey::tenant_prefix(acme).as_str()));
//!
//!     let path = ObjectPath::scoped()?.segment("invoices")?.segment("42.pdf")?.build();
//!     assert_eq!(path.as_str(), "tenants/00000000-0000-0000-0000-0000000000ac/invoices/42.pdf");
//!     Ok::<_, tenant_core::Error>(())
//! })
//! .await?;
//! assert!(CacheKey::scoped("invoice").is_err(), "no tenant, no key");
//! # Ok(()) }
//! ```

use std::fmt::{self, Write as _};

use crate::{Error, Result, TenantId, context};

/// A cache key of one tenant: `t:<tenant>:<namespace>[:<part>]..`, each part escaped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

/// Builds a [`CacheKey`].
#[derive(Clone, Debug)]
#[must_use = "a key builder does nothing until `.build()`"]
pub struct CacheKeyBuilder(String);

impl CacheKey {
    /// A key of the tenant in scope, in `namespace` (what the cached value is, such as
    /// `invoice`).
    ///
    /// # Errors
    ///
    /// [`Error::NoTenant`] outside a tenant scope (a system scope has no tenant either: name it
    /// with [`for_tenant`](Self::for_tenant)).
    pub fn scoped(namespace: impl fmt::Display) -> Result<CacheKeyBuilder> {
        Ok(Self::for_tenant(context::current()?, namespace))
    }

    /// A key of `tenant`, for code that serves a tenant it was told about (a job, a fan-out).
    pub fn for_tenant(tenant: TenantId, namespace: impl fmt::Display) -> CacheKeyBuilder {
        CacheKeyBuilder(Self::tenant_prefix(tenant).0).part(namespace)
    }

    /// What every key of `tenant` starts with, `t:<tenant>:`: drop the keys under it (Redis
    /// `SCAN MATCH <prefix>*` then `UNLINK`, a prefix-ordered map's range) to invalidate all of
    /// that tenant's entries and no other's.
    pub fn tenant_prefix(tenant: TenantId) -> CacheKey {
        CacheKey(format!("t:{tenant}:"))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl CacheKeyBuilder {
    /// Appends `part`, with `%`, `:` and the characters a pattern would read (`*`, `?`, `[`,
    /// `]`, `\`) and control characters percent-escaped, so that parts never run into each
    /// other, nor into a glob pattern of invalidation.
    pub fn part(mut self, part: impl fmt::Display) -> Self {
        if !self.0.ends_with(':') {
            self.0.push(':');
        }
        let text = part.to_string();
        for c in text.chars() {
            match c {
                '%' | ':' | '*' | '?' | '[' | ']' | '\\' => {
                    let _ = write!(self.0, "%{:02X}", u32::from(c));
                }
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(self.0, "%{byte:02X}");
                    }
                }
                c => self.0.push(c),
            }
        }
        self
    }

    /// The key.
    pub fn build(self) -> CacheKey {
        CacheKey(self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for CacheKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An object storage path of one tenant: `tenants/<tenant>/<segment>/..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectPath(String);

/// Builds an [`ObjectPath`].
#[derive(Clone, Debug)]
#[must_use = "a path builder does nothing until `.build()`"]
pub struct ObjectPathBuilder(String);

impl ObjectPath {
    /// A path of the tenant in scope.
    ///
    /// # Errors
    ///
    /// [`Error::NoTenant`] outside a tenant scope.
    pub fn scoped() -> Result<ObjectPathBuilder> {
        Ok(Self::for_tenant(context::current()?))
    }

    /// A path of `tenant`.
    pub fn for_tenant(tenant: TenantId) -> ObjectPathBuilder {
        ObjectPathBuilder(Self::tenant_prefix(tenant).0)
    }

    /// What every path of `tenant` starts with, `tenants/<tenant>/`: the prefix to list, to
    /// grant (a bucket policy) or to delete when the tenant leaves.
    pub fn tenant_prefix(tenant: TenantId) -> ObjectPath {
        ObjectPath(format!("tenants/{tenant}/"))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ObjectPathBuilder {
    /// Appends `segment`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for an empty segment, `.` or `..`, or one holding `/`, `\` or a
    /// control character: none may leave the tenant's prefix or make two paths alike.
    pub fn segment(mut self, segment: impl fmt::Display) -> Result<Self> {
        let text = segment.to_string();
        if text.is_empty()
            || text == "."
            || text == ".."
            || text
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control())
        {
            return Err(Error::InvalidName {
                what: "object path segment",
                name: text.chars().take(64).collect(),
                expected: "a non-empty name other than `.` and `..`, without `/`, `\\` or control characters",
            });
        }
        if !self.0.ends_with('/') {
            self.0.push('/');
        }
        self.0.push_str(&text);
        Ok(self)
    }

    /// The path.
    pub fn build(self) -> ObjectPath {
        ObjectPath(self.0)
    }
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> TenantId {
        TenantId::from(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn parts_are_escaped_and_never_leave_the_tenant_prefix() {
        let (a, b) = (id(1), id(2));
        let forged = format!(":{}:x", CacheKey::tenant_prefix(b));
        let key = CacheKey::for_tenant(a, "user")
            .part(&forged)
            .part("*")
            .build();
        assert!(
            key.as_str()
                .starts_with(CacheKey::tenant_prefix(a).as_str())
        );
        // Only the builder's own separators remain: after the tenant, namespace, then two parts.
        assert_eq!(key.as_str().matches(':').count(), 4);
        assert_eq!(
            key.as_str(),
            "t:00000000-0000-0000-0000-000000000001:user:%3At%3A00000000-0000-0000-0000-000000000002%3A%3Ax:%2A"
        );
        // Two different part lists never give the same key.
        assert_ne!(
            CacheKey::for_tenant(a, "a:b").build(),
            CacheKey::for_tenant(a, "a").part("b").build()
        );
        assert_eq!(
            CacheKey::for_tenant(a, "line\nbreak").build().as_str(),
            "t:00000000-0000-0000-0000-000000000001:line%0Abreak"
        );
    }

    #[test]
    fn path_segments_cannot_climb_out_or_split() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b"] {
            assert!(
                ObjectPath::for_tenant(id(1)).segment(bad).is_err(),
                "{bad:?}"
            );
        }
        let path = ObjectPath::for_tenant(id(1))
            .segment("a..b")
            .and_then(|p| p.segment("c d.txt"))
            .unwrap()
            .build();
        assert_eq!(
            path.as_str(),
            "tenants/00000000-0000-0000-0000-000000000001/a..b/c d.txt"
        );
    }

    #[tokio::test]
    async fn without_a_tenant_nothing_is_built() {
        assert!(matches!(CacheKey::scoped("x"), Err(Error::NoTenant)));
        assert!(matches!(ObjectPath::scoped(), Err(Error::NoTenant)));
        let system = crate::SystemScope::assert("test: a system scope has no tenant")
            .run(async {
                (
                    CacheKey::scoped("x").is_err(),
                    ObjectPath::scoped().is_err(),
                )
            })
            .await;
        assert_eq!(system, (true, true));
        let scoped = crate::scope(id(7), async {
            CacheKey::scoped("x").map(CacheKeyBuilder::build)
        })
        .await
        .unwrap();
        assert_eq!(scoped, CacheKey::for_tenant(id(7), "x").build());
    }
}
