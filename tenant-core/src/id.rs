//! The tenant identifier and the column types that may hold it.

use std::fmt;
use std::str::FromStr;

use sea_orm::Value;
use uuid::Uuid;

/// The identity of one tenant: a UUID.
///
/// # Examples
///
/// ```
/// use tenant_core::TenantId;
///
/// let id: TenantId = "6f1c2a9e-1d4b-4c3e-9f5a-2b7d8e9f0a1b".parse()?;
/// assert_eq!(id.to_string(), "6f1c2a9e-1d4b-4c3e-9f5a-2b7d8e9f0a1b");
/// assert!("acme".parse::<TenantId>().is_err());
/// # Ok::<(), tenant_core::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TenantId(Uuid);

impl TenantId {
    /// Wraps a UUID.
    pub const fn new(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The id as a SeaORM value, for predicates and stamps.
    pub fn to_value(self) -> Value {
        Value::from(self.0)
    }
}

impl From<Uuid> for TenantId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl From<TenantId> for Uuid {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for TenantId {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|source| crate::Error::InvalidTenantId {
                input: s.chars().take(64).collect(),
                source,
            })
    }
}

/// As its hyphenated UUID string (feature `serde`); anything else is refused when read.
#[cfg(feature = "serde")]
impl serde::Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A Rust type that can hold a tenant id in an entity's tenant column.
///
/// Only [`Uuid`] does today; the derive asserts it at the field's type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold a tenant id",
    label = "the tenant column must be a `Uuid`",
    note = "declare the tenant column as `pub tenant_id: Uuid` (`uuid::Uuid`)"
)]
pub trait TenantKey: private::Sealed {}

impl TenantKey for Uuid {}

mod private {
    pub trait Sealed {}
    impl Sealed for uuid::Uuid {}
}
