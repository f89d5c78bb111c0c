//! Web requests resolved to their tenant (feature `axum`): a [`Resolver`] says where a request
//! names its tenant and what proves it, [`Resolver::wrap`] puts it around an axum `Router` (or
//! any tower service), and every request the wrapped service handles runs inside
//! [`tenant::scope`](crate::scope) for the tenant it resolved to, or is answered with a
//! [`Rejection`] before any handler runs.
//!
//! # Where the tenant comes from
//!
//! - **Authenticated**: [`Resolver::authenticate`] with [`Jwt`] (feature `jwt`: a verified
//!   token's claim) or your own [`Authenticate`] (a session, an API key). What it proves is the
//!   tenant. No credentials is `401`.
//! - **Claimed** by the request: a [`header`](Resolver::header), a
//!   [`subdomain`](Resolver::subdomain), a [`path segment`](Resolver::path_segment), or a
//!   [`custom domain`](Resolver::custom_domain) from the tenant catalog. A claim is a tenant id
//!   or, with a [catalog](Resolver::catalog), a tenant's slug. Anyone can forge a claim: on its
//!   own it is only as trustworthy as what sets it (a gateway that strips the header, say).
//!
//! With both, a claim must name the authenticated tenant: any other claim is `403`, whether or not
//! the claimed tenant exists, so the answer says nothing about other tenants. Claims that
//! disagree are `400`; no tenant at all is `400`. With a catalog, a tenant the catalog does not
//! know is `404`, a suspended one `403`, an offboarded one `404`, one being provisioned or moved
//! `503`.
//!
//! # No route without its tenant
//!
//! A layer added with axum's `Router::layer` covers only the routes added before it; a route
//! added after it would run with no tenant. [`Resolver::wrap`] therefore takes the finished
//! router and returns a service that is no longer a `Router`: no route can be added to it, so
//! every route of it resolves its tenant; `Router::layer(resolver)` does not compile, and says so. Routes
//! that need no tenant (health checks, sign-in) go on an outer router that nests the wrapped one
//! with `nest_service` or `fallback_service`. A handler on such an outer route that asks for the
//! tenant ([`TenantId`] or [`RequestTenant`] as an extractor) is answered `500`, and scoped
//! operations there fail with [`Error::NoTenant`]: never another tenant.
//!
//! # Examples
//!
//! ```
//! # async fn example() -> tenant_core::Result<()> {
//! use axum::{Router, routing::get};
//! use tenant_core::TenantId;
//! use tenant_core::web::Resolver;
//!
//! async fn whoami(tenant: TenantId) -> String {
//!     tenant.to_string() // also `tenant_core::current()`, and every scoped query
//! }
//!
//! let api = Router::new().route("/whoami", get(whoami));
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .fallback_service(Resolver::new().header("x-tenant-id").wrap(api)?);
//! # let _ = app;
//! # Ok(()) }
//! ```
//!
//! Errors of scoped operations answer with a status of their own ([`Error`]
//! implements `IntoResponse`): a handler returns `tenant::Result<..>` and `?` does the rest.

mod authenticate;
#[cfg(feature = "jwt")]
mod jwt;
mod rejection;
mod response;
mod service;

use std::sync::Arc;

use http::HeaderName;
use http::request::Parts;

use crate::catalog::{Catalog, TenantRecord, TenantStatus};
use crate::{Error, Result, TenantId};

pub use authenticate::Authenticate;
/// The `http` crate this module speaks, for [`Authenticate`] implementations.
pub use http;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jwt::{Jwt, jsonwebtoken};
pub use rejection::{Rejection, RejectionKind};
pub use service::{RequestTenant, TenantService};

/// Where a request names its tenant and what proves it; see the [module docs](self).
#[derive(Clone)]
#[must_use = "a resolver does nothing until `wrap` puts it around a service"]
pub struct Resolver {
    authenticate: Option<Arc<dyn Authenticate>>,
    claims: Vec<Claim>,
    catalog: Option<Catalog>,
    on_rejection: Option<Arc<RejectionHandler>>,
}

type RejectionHandler = dyn Fn(Rejection) -> axum_core::response::Response + Send + Sync;

mod sealed {
    /// Never implemented: what turns `Router::layer(resolver)` into a compile error that says
    /// what to write instead.
    #[diagnostic::on_unimplemented(
        message = "the tenant resolver is not a layer: `Router::layer` covers only the routes added before it",
        label = "a route added after this layer would run with no tenant",
        note = "put the resolver around the finished router: `Resolver::wrap(router)?`, then nest the result with `nest_service` or serve it"
    )]
    pub trait WrapTheFinishedRouter {}
}

/// Refused at compile time (see [`Resolver::wrap`]); exists only to say so.
impl<S: sealed::WrapTheFinishedRouter> tower_layer::Layer<S> for Resolver {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> TenantService<S> {
        TenantService::new(inner, Arc::new(self.clone()))
    }
}

/// One place a request can claim its tenant.
#[derive(Clone, Debug)]
enum Claim {
    Header(HeaderName),
    /// The label left of this base domain (lowercase, no leading dot).
    Subdomain(String),
    PathSegment(usize),
    CustomDomain,
}

impl Claim {
    fn describe(&self) -> String {
        match self {
            Claim::Header(name) => format!("header `{name}`"),
            Claim::Subdomain(base) => format!("subdomain of `{base}`"),
            Claim::PathSegment(index) => format!("path segment {index}"),
            Claim::CustomDomain => "custom domain".to_owned(),
        }
    }
}

/// How a claim names a tenant.
enum Named {
    Id(TenantId),
    Slug(String),
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    /// A resolver with no source yet: add at least one before [`wrap`](Self::wrap).
    pub fn new() -> Self {
        Self {
            authenticate: None,
            claims: Vec::new(),
            catalog: None,
            on_rejection: None,
        }
    }

    /// The tenant is the one `authenticate` proves from the request's credentials; a claim that
    /// names another tenant is refused with `403`.
    pub fn authenticate(mut self, authenticate: impl Authenticate) -> Self {
        self.authenticate = Some(Arc::new(authenticate));
        self
    }

    /// The request claims its tenant in the header `name` (a tenant id, or a slug with a
    /// catalog). The header is refused (`400`) when it is sent twice.
    ///
    /// # Panics
    ///
    /// When `name` is not a valid header name: a constant of the program, not input.
    pub fn header(mut self, name: &str) -> Self {
        let name = HeaderName::try_from(name)
            .unwrap_or_else(|_| panic!("`{name}` is not a valid HTTP header name"));
        self.claims.push(Claim::Header(name));
        self
    }

    /// The request claims its tenant in the first label of its host under `base`:
    /// `acme.example.com` with the base `example.com` claims `acme` (a slug, which needs a
    /// catalog, or a tenant id). The base itself claims nothing; a host two or more labels
    /// under it is refused (`400`). The host is the request's `Host` header, or its URI's
    /// authority; a proxy's `X-Forwarded-Host` is not read.
    pub fn subdomain(mut self, base: &str) -> Self {
        let base = base.trim_start_matches('.').to_ascii_lowercase();
        self.claims.push(Claim::Subdomain(base));
        self
    }

    /// The request claims its tenant in the path segment at `index` (from 0):
    /// `/t/{tenant}/projects` is segment 1. A service nested with axum's `nest_service` sees
    /// the path with the nesting prefix removed.
    pub fn path_segment(mut self, index: usize) -> Self {
        self.claims.push(Claim::PathSegment(index));
        self
    }

    /// The request claims the tenant whose own domain (in the catalog,
    /// [`NewTenant::domain`](crate::catalog::NewTenant::domain)) is its host. A host that is no
    /// tenant's domain claims nothing. Needs a [catalog](Self::catalog).
    pub fn custom_domain(mut self) -> Self {
        self.claims.push(Claim::CustomDomain);
        self
    }

    /// Checks every resolved tenant against `catalog` (unknown `404`, suspended `403`,
    /// offboarded `404`, provisioning or moving `503`), and lets claims name tenants by slug.
    /// Lookups use the catalog's cache.
    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Answers a refused request with `handler`'s response instead of the default (its status
    /// and a one-line plain-text reason).
    pub fn on_rejection(
        mut self,
        handler: impl Fn(Rejection) -> axum_core::response::Response + Send + Sync + 'static,
    ) -> Self {
        self.on_rejection = Some(Arc::new(handler));
        self
    }

    /// Puts the resolver around `service` (a finished axum `Router`, usually): every request
    /// it handles runs in the scope of the tenant it resolves to.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] at start-up, not at the first request, when the resolver has
    /// no source of a tenant, or a custom domain or subdomain source without a catalog.
    pub fn wrap<S>(self, service: S) -> Result<TenantService<S>> {
        if self.authenticate.is_none() && self.claims.is_empty() {
            return Err(Error::InvalidSetting {
                setting: "tenant resolver",
                reason: "it has no source of a tenant; add `.authenticate(..)`, `.header(..)`, `.subdomain(..)`, `.path_segment(..)` or `.custom_domain()`",
            });
        }
        if self.catalog.is_none() {
            if self.claims.iter().any(|c| matches!(c, Claim::CustomDomain)) {
                return Err(Error::InvalidSetting {
                    setting: "tenant resolver",
                    reason: "a custom domain is found in the tenant catalog; add `.catalog(..)`",
                });
            }
            if self.claims.iter().any(|c| matches!(c, Claim::Subdomain(_))) {
                return Err(Error::InvalidSetting {
                    setting: "tenant resolver",
                    reason: "a subdomain names a tenant by its slug, which the tenant catalog resolves; add `.catalog(..)`",
                });
            }
        }
        let bases = self.claims.iter().filter_map(|c| match c {
            Claim::Subdomain(base) => Some(base),
            _ => None,
        });
        if bases
            .into_iter()
            .any(|base| !crate::catalog::is_host_name(base))
        {
            return Err(Error::InvalidSetting {
                setting: "tenant resolver subdomain base",
                reason: "must be a lowercase host name such as `example.com`",
            });
        }
        Ok(TenantService::new(service, Arc::new(self)))
    }

    /// The tenant `parts` resolves to, or why it resolves to none.
    pub(crate) async fn resolve(&self, parts: &Parts) -> Result<RequestTenant, Rejection> {
        let authenticated = match &self.authenticate {
            Some(authenticate) => Some(authenticate.authenticate(parts).await?),
            None => None,
        };
        let mut claimed: Option<TenantId> = None;
        for claim in &self.claims {
            let Some(named) = self.claim(claim, parts).await? else {
                continue;
            };
            let id = self.id_of(named).await?;
            match (authenticated, id) {
                // The same refusal whether the claimed tenant exists or not.
                (Some(proven), id) if id != Some(proven) => {
                    return Err(Rejection::new(RejectionKind::Mismatch, claim.describe()));
                }
                (Some(_), _) => {}
                (None, None) => {
                    return Err(Rejection::new(RejectionKind::Unknown, claim.describe()));
                }
                (None, Some(id)) => {
                    if claimed.is_some_and(|c| c != id) {
                        return Err(Rejection::new(RejectionKind::Conflicting, claim.describe()));
                    }
                    claimed = Some(id);
                }
            }
        }
        let Some(tenant) = authenticated.or(claimed) else {
            let sources = self
                .claims
                .iter()
                .map(Claim::describe)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Rejection::new(RejectionKind::NoTenant, sources));
        };
        let record = match &self.catalog {
            Some(catalog) => Some(admit(catalog, tenant).await?),
            None => None,
        };
        Ok(RequestTenant {
            id: tenant,
            record,
            authenticated: authenticated.is_some(),
        })
    }

    /// What `claim` says in `parts`: nothing, a tenant named, or a refusal of a malformed claim.
    async fn claim(&self, claim: &Claim, parts: &Parts) -> Result<Option<Named>, Rejection> {
        let malformed = |why: &str| {
            Err(Rejection::new(
                RejectionKind::Malformed,
                format!("{}: {why}", claim.describe()),
            ))
        };
        let text = match claim {
            Claim::Header(name) => {
                let mut values = parts.headers.get_all(name).iter();
                let Some(value) = values.next() else {
                    return Ok(None);
                };
                if values.next().is_some() {
                    return malformed("sent more than once");
                }
                match value.to_str() {
                    Ok(text) => text.trim().to_owned(),
                    Err(_) => return malformed("not visible ASCII"),
                }
            }
            Claim::Subdomain(base) => {
                let Some(host) = host(parts) else {
                    return Ok(None);
                };
                let Some(label) = host
                    .strip_suffix(base.as_str())
                    .and_then(|rest| rest.strip_suffix('.'))
                else {
                    return Ok(None);
                };
                if label.contains('.') {
                    return malformed("more than one label under the base domain");
                }
                label.to_owned()
            }
            Claim::PathSegment(index) => {
                let path = parts.uri.path();
                match path
                    .strip_prefix('/')
                    .unwrap_or(path)
                    .split('/')
                    .nth(*index)
                {
                    None | Some("") => return Ok(None),
                    Some(segment) => segment.to_owned(),
                }
            }
            Claim::CustomDomain => {
                let Some(host) = host(parts) else {
                    return Ok(None);
                };
                let catalog = self.catalog.as_ref().expect("checked by `wrap`");
                return match catalog.named_domain(&host).await {
                    Ok(found) => Ok(found.map(Named::Id)),
                    Err(error) => Err(Rejection::catalog(&error)),
                };
            }
        };
        if text.is_empty() {
            return malformed("empty");
        }
        if let Ok(id) = text.parse::<TenantId>() {
            return Ok(Some(Named::Id(id)));
        }
        if self.catalog.is_some() && crate::catalog::is_slug(&text) {
            return Ok(Some(Named::Slug(text)));
        }
        malformed(if self.catalog.is_some() {
            "neither a tenant id nor a slug"
        } else {
            "not a tenant id (slugs need the resolver's catalog)"
        })
    }

    /// The tenant `named` names: `None` for a slug no tenant has.
    async fn id_of(&self, named: Named) -> Result<Option<TenantId>, Rejection> {
        match named {
            Named::Id(id) => Ok(Some(id)),
            Named::Slug(slug) => {
                let catalog = self
                    .catalog
                    .as_ref()
                    .expect("slugs are read with a catalog");
                catalog
                    .named_slug(&slug)
                    .await
                    .map_err(|e| Rejection::catalog(&e))
            }
        }
    }

    pub(crate) fn reject(&self, rejection: Rejection) -> axum_core::response::Response {
        rejection.log();
        match &self.on_rejection {
            Some(handler) => handler(rejection),
            None => axum_core::response::IntoResponse::into_response(rejection),
        }
    }
}

/// The resolved tenant's catalog entry, while it may be served.
async fn admit(catalog: &Catalog, tenant: TenantId) -> Result<Arc<TenantRecord>, Rejection> {
    let Some(record) = catalog
        .lookup(tenant)
        .await
        .map_err(|e| Rejection::catalog(&e))?
    else {
        return Err(Rejection::new(RejectionKind::Unknown, "not in the catalog"));
    };
    let refused = |kind| {
        Err(Rejection::new(
            kind,
            format!("the tenant is {}", record.status),
        ))
    };
    match record.status {
        TenantStatus::Active => Ok(Arc::new(record)),
        TenantStatus::Suspended => refused(RejectionKind::Suspended),
        TenantStatus::Offboarded => refused(RejectionKind::Unknown),
        TenantStatus::Provisioning | TenantStatus::Moving => refused(RejectionKind::Unavailable),
    }
}

/// The request's host, lowercase, without port or trailing dot: the URI's authority (HTTP/2,
/// absolute form) or the `Host` header.
fn host(parts: &Parts) -> Option<String> {
    let raw = if let Some(host) = parts.uri.host() {
        host.to_owned()
    } else {
        let header = parts.headers.get(http::header::HOST)?.to_str().ok()?;
        // `host:port`; an IPv6 literal is `[..]:port` and names no tenant anyway.
        header
            .rsplit_once(':')
            .map_or(header, |(h, _)| h)
            .to_owned()
    };
    let host = raw.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("authenticates", &self.authenticate.is_some())
            .field("claims", &self.claims)
            .field("catalog", &self.catalog)
            .finish_non_exhaustive()
    }
}
