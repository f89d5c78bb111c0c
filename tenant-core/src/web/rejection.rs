//! Why a request was not given a tenant, and how that is answered.

use std::fmt;

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Why a request resolved to no tenant. Answered with [`status`](Self::status) and a one-line
/// plain-text reason that names no tenant (or with [`Resolver::on_rejection`](super::Resolver::on_rejection)).
#[derive(Debug)]
pub struct Rejection {
    kind: RejectionKind,
    detail: String,
    challenge: Option<&'static str>,
}

/// The kinds of [`Rejection`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// The request carries no credentials (`401`).
    MissingCredentials,
    /// The request's credentials are not valid (`401`).
    InvalidCredentials,
    /// Nothing in the request names a tenant (`400`).
    NoTenant,
    /// A claim is not a tenant id or slug, or is sent twice (`400`).
    Malformed,
    /// Claims name different tenants (`400`).
    Conflicting,
    /// A claim names another tenant than the authenticated one (`403`), whether or not it exists.
    Mismatch,
    /// The tenant is not in the catalog, or was offboarded (`404`).
    Unknown,
    /// The tenant is suspended (`403`).
    Suspended,
    /// The tenant is being provisioned or moved (`503`).
    Unavailable,
    /// The catalog could not be read (`503`).
    Catalog,
    /// The route asked for its tenant, and runs outside a [`Resolver`](super::Resolver) (`500`).
    OutsideResolver,
}

impl Rejection {
    pub(crate) fn new(kind: RejectionKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            challenge: None,
        }
    }

    /// The request carries no credentials: `401`.
    pub fn missing_credentials() -> Self {
        Self::new(RejectionKind::MissingCredentials, "no credentials")
    }

    /// The request's credentials are not valid, for `reason` (logged, never sent): `401`.
    pub fn invalid_credentials(reason: impl Into<String>) -> Self {
        Self::new(RejectionKind::InvalidCredentials, reason)
    }

    /// Adds `WWW-Authenticate: <scheme>` to a `401`.
    #[must_use]
    pub fn with_challenge(mut self, scheme: &'static str) -> Self {
        self.challenge = Some(scheme);
        self
    }

    pub(crate) fn catalog(error: &crate::Error) -> Self {
        Self::new(RejectionKind::Catalog, error.to_string())
    }

    /// What kind of refusal this is.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// What exactly was refused, for logs: which source, which reason. It can name the
    /// request's own input, never another tenant's data.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            RejectionKind::MissingCredentials | RejectionKind::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            RejectionKind::NoTenant | RejectionKind::Malformed | RejectionKind::Conflicting => {
                StatusCode::BAD_REQUEST
            }
            RejectionKind::Mismatch | RejectionKind::Suspended => StatusCode::FORBIDDEN,
            RejectionKind::Unknown => StatusCode::NOT_FOUND,
            RejectionKind::Unavailable | RejectionKind::Catalog => StatusCode::SERVICE_UNAVAILABLE,
            RejectionKind::OutsideResolver => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The reason sent to the client: fixed per kind, so that it carries nothing of the
    /// request's detail or of another tenant.
    fn reason(&self) -> &'static str {
        match self.kind {
            RejectionKind::MissingCredentials => "credentials required",
            RejectionKind::InvalidCredentials => "invalid credentials",
            RejectionKind::NoTenant => "the request names no tenant",
            RejectionKind::Malformed => "the request's tenant is malformed",
            RejectionKind::Conflicting => "the request names more than one tenant",
            RejectionKind::Mismatch => "the request names another tenant than its credentials",
            RejectionKind::Unknown => "no such tenant",
            RejectionKind::Suspended => "the tenant is suspended",
            RejectionKind::Unavailable | RejectionKind::Catalog => {
                "the tenant is unavailable; try again later"
            }
            RejectionKind::OutsideResolver => "internal error",
        }
    }

    /// Logs the refusal on the `tenant::web` target: a claim of another tenant than the
    /// proven one, and a route outside the resolver, as warnings and errors; the rest at debug.
    pub(crate) fn log(&self) {
        let (kind, detail) = (self.kind, self.detail.as_str());
        match self.kind {
            RejectionKind::OutsideResolver | RejectionKind::Catalog => {
                tracing::error!(target: "tenant::web", ?kind, detail, "tenant resolution failed");
            }
            RejectionKind::Mismatch | RejectionKind::InvalidCredentials => {
                tracing::warn!(target: "tenant::web", ?kind, detail, "request refused");
            }
            _ => tracing::debug!(target: "tenant::web", ?kind, detail, "request refused"),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.detail)
    }
}

impl std::error::Error for Rejection {}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.reason()).into_response();
        if let Some(scheme) = self.challenge
            && self.status() == StatusCode::UNAUTHORIZED
            && let Ok(value) = HeaderValue::from_str(scheme)
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
