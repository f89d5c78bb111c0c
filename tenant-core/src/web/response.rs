//! [`Error`] as an HTTP response.

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use sea_orm::{DbErr, SqlErr};

use crate::Error;

impl Error {
    /// The HTTP status this error is answered with (feature `axum`).
    ///
    /// A row of another tenant is `404`, exactly like a row that does not exist, never `403`:
    /// the answer must not tell one tenant that another's id exists. Mistakes of the service
    /// (no tenant in scope, a refused join, a misconfiguration) are `500`; a tenant that cannot
    /// be served now is `503`.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotFound { .. }
            | Error::ParentNotFound { .. }
            | Error::UnknownTenant { .. }
            | Error::TenantOffboarded { .. } => StatusCode::NOT_FOUND,
            Error::TenantSuspended { .. } => StatusCode::FORBIDDEN,
            Error::TenantUnavailable { .. }
            | Error::DatabaseTierFull { .. }
            | Error::DatabaseUnresolved { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::InvalidTenantId { .. } => StatusCode::BAD_REQUEST,
            // The request's row names a tenant, or moves one: input the service let through.
            Error::CrossTenant { .. } | Error::TenantChange { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::Db(db) => db_status(db),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn db_status(error: &DbErr) -> StatusCode {
    match error {
        DbErr::RecordNotFound(_) | DbErr::RecordNotUpdated => StatusCode::NOT_FOUND,
        _ => match error.sql_err() {
            // Unique keys of tenant tables lead with the tenant: a conflict is with a row of
            // the same tenant.
            Some(SqlErr::UniqueConstraintViolation(_)) => StatusCode::CONFLICT,
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

/// The status and its reason phrase, nothing more: the error's text names tables, tenants and
/// the database's message, which stay in the log (`tenant::web`, at error level for a `5xx`).
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(target: "tenant::web", error = %self, status = status.as_u16(), "request failed");
        } else {
            tracing::debug!(target: "tenant::web", error = %self, status = status.as_u16(), "request refused");
        }
        (status, status.canonical_reason().unwrap_or_default()).into_response()
    }
}
