//! The tenant of a request from a verified JSON Web Token (feature `jwt`).

use http::request::Parts;
use jsonwebtoken::{DecodingKey, Validation};

use super::{Authenticate, Rejection};
use crate::{Error, TenantId};

pub use jsonwebtoken;

/// Proves a request's tenant with a bearer token (`Authorization: Bearer <jwt>`): its signature
/// and its registered claims (`exp` and whatever the [`Validation`] asks) are verified, and the
/// tenant is its claim [`claim`](Self::claim) (`tenant_id` unless set), a tenant id.
///
/// # Examples
///
/// ```
/// use tenant_core::web::{Jwt, Resolver};
///
/// let jwt = Jwt::hs256(b"the service's signing secret, 32 bytes or more")?.claim("tid");
/// let resolver = Resolver::new().authenticate(jwt).header("x-tenant-id");
/// # let _ = resolver;
/// # Ok::<(), tenant_core::Error>(())
/// ```
pub struct Jwt {
    key: DecodingKey,
    validation: Validation,
    claim: String,
}

impl Jwt {
    /// Tokens signed with `key`, checked as `validation` says (algorithm, `exp`, `aud`, `iss`, ..).
    pub fn new(key: DecodingKey, validation: Validation) -> Self {
        // Another crate in the build may enable jsonwebtoken's second backend, which leaves it
        // without a default: this crate's then serves.
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        }
        Self {
            key,
            validation,
            claim: "tenant_id".to_owned(),
        }
    }

    /// Tokens signed with HMAC-SHA256 and `secret`, with an `exp` claim.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] for a secret shorter than 32 bytes, the least RFC 7518 (§3.2)
    /// allows for HS256.
    pub fn hs256(secret: &[u8]) -> crate::Result<Self> {
        let short = Error::InvalidSetting {
            setting: "HS256 secret",
            reason: "must be at least 32 bytes (RFC 7518, section 3.2)",
        };
        if secret.len() < 32 {
            return Err(short);
        }
        let key = DecodingKey::from_secret(secret).map_err(|_| short)?;
        Ok(Self::new(
            key,
            Validation::new(jsonwebtoken::Algorithm::HS256),
        ))
    }

    /// The claim that holds the tenant id.
    #[must_use]
    pub fn claim(mut self, name: impl Into<String>) -> Self {
        self.claim = name.into();
        self
    }
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("algorithms", &self.validation.algorithms)
            .field("claim", &self.claim)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Authenticate for Jwt {
    async fn authenticate(&self, parts: &Parts) -> Result<TenantId, Rejection> {
        let invalid =
            |reason: String| Rejection::invalid_credentials(reason).with_challenge("Bearer");
        let mut values = parts.headers.get_all(http::header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(Rejection::missing_credentials().with_challenge("Bearer"));
        };
        if values.next().is_some() {
            return Err(invalid("more than one Authorization header".to_owned()));
        }
        let value = value
            .to_str()
            .map_err(|_| invalid("an Authorization header that is not ASCII".to_owned()))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(invalid("not a bearer token".to_owned())),
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| invalid(format!("token refused: {e}")))?;
        let claim = data
            .claims
            .get(&self.claim)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| invalid(format!("the token has no string claim `{}`", self.claim)))?;
        claim
            .parse()
            .map_err(|_| invalid(format!("the token's `{}` is not a tenant id", self.claim)))
    }
}
