//! What proves a request's tenant.

use http::request::Parts;

use super::Rejection;
use crate::TenantId;

/// Proves the tenant of a request from its credentials: [`Jwt`](super::Jwt) (feature `jwt`),
/// or your own (a session cookie, an API key).
///
/// # Examples
///
/// ```
/// use tenant_core::TenantId;
/// use tenant_core::web::{Authenticate, Rejection};
///
/// /// API keys of the form `key-<tenant id>`, for the example's sake.
/// struct ApiKeys;
///
/// #[async_trait::async_trait]
/// impl Authenticate for ApiKeys {
///     async fn authenticate(&self, parts: &tenant_core::web::http::request::Parts) -> Result<TenantId, Rejection> {
///         let key = parts.headers.get("x-api-key").ok_or_else(Rejection::missing_credentials)?;
///         let key = key.to_str().map_err(|_| Rejection::invalid_credentials("not ASCII"))?;
///         let tenant = key.strip_prefix("key-").ok_or_else(|| Rejection::invalid_credentials("no such key"))?;
///         tenant.parse().map_err(|_| Rejection::invalid_credentials("no such key"))
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Authenticate: Send + Sync + 'static {
    /// The tenant the request's credentials prove: [`Rejection::missing_credentials`] without
    /// any, [`Rejection::invalid_credentials`] for bad ones.
    async fn authenticate(&self, parts: &Parts) -> Result<TenantId, Rejection>;
}
