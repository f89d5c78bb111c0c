//! The service a [`Resolver`] wraps, and the extractors of the resolved tenant.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::extract::FromRequestParts;
use axum_core::response::Response;
use http::Request;
use http::request::Parts;
use tower_service::Service;

use super::{Rejection, RejectionKind, Resolver};
use crate::TenantId;
use crate::catalog::TenantRecord;

/// A service whose every request runs in the scope of the tenant it resolved to; made by
/// [`Resolver::wrap`]. Serve it with axum (`axum::serve(listener, axum::ServiceExt::into_make_service(svc))`),
/// or nest it in an outer router with `nest_service` / `fallback_service`.
#[derive(Clone)]
pub struct TenantService<S> {
    inner: S,
    resolver: Arc<Resolver>,
}

impl<S> TenantService<S> {
    pub(super) fn new(inner: S, resolver: Arc<Resolver>) -> Self {
        Self { inner, resolver }
    }
}

impl<S> std::fmt::Debug for TenantService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantService")
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for TenantService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The instance that was polled ready serves this request; the clone waits for the next.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let resolver = Arc::clone(&self.resolver);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let tenant = match resolver.resolve(&parts).await {
                Ok(tenant) => tenant,
                Err(rejection) => return Ok(resolver.reject(rejection)),
            };
            let id = tenant.id;
            // Replaces whatever an outer layer put there: the resolver's word is the tenant's.
            parts.extensions.insert(tenant);
            let request = Request::from_parts(parts, body);
            // The inner call is made inside the scope too: a service may start its work in
            // `call`, before its future is first polled.
            crate::scope(id, async move { inner.call(request).await }).await
        })
    }
}

/// The tenant a request resolved to, as an extractor and a request extension.
#[derive(Clone, Debug)]
pub struct RequestTenant {
    pub(super) id: TenantId,
    pub(super) record: Option<Arc<TenantRecord>>,
    pub(super) authenticated: bool,
}

impl RequestTenant {
    /// The tenant's id.
    pub fn id(&self) -> TenantId {
        self.id
    }

    /// Its catalog entry, when the resolver has a catalog.
    pub fn record(&self) -> Option<&TenantRecord> {
        self.record.as_deref()
    }

    /// Whether credentials proved it (rather than a claim alone).
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }
}

/// A rejection for a route that asked for its tenant outside a resolver's scope.
fn outside(what: &str) -> Rejection {
    let rejection = Rejection::new(
        RejectionKind::OutsideResolver,
        format!(
            "a handler asked for {what}, and its route is not inside `Resolver::wrap` (or runs in a task that did not carry the tenant)"
        ),
    );
    rejection.log();
    rejection
}

/// The tenant in scope: the one the request resolved to. A route outside
/// [`Resolver::wrap`] is answered `500`.
impl<S: Send + Sync> FromRequestParts<S> for TenantId {
    type Rejection = Rejection;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        // The scope, not the extension, is what scoped operations obey: read the same.
        crate::current().map_err(|_| outside("its tenant"))
    }
}

/// The request's resolved tenant with its catalog entry. A route outside [`Resolver::wrap`]
/// is answered `500`.
impl<S: Send + Sync> FromRequestParts<S> for RequestTenant {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        let tenant = parts.extensions.get::<RequestTenant>().cloned();
        match (tenant, crate::current()) {
            (Some(tenant), Ok(current)) if tenant.id == current => Ok(tenant),
            _ => Err(outside("its `RequestTenant`")),
        }
    }
}
