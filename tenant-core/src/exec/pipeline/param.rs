//! The values of a pipelined statement, encoded as sqlx encodes them for the same column.

use sea_orm::{Statement, Value};
use tokio_postgres::types::{ToSql, Type};

/// The statement's values, or `None` when one has no encoding here.
pub(super) fn params(stmt: &Statement) -> Option<Vec<Param>> {
    let values = stmt.values.as_ref().map_or(&[][..], |v| v.0.as_slice());
    values
        .iter()
        .all(encodable)
        .then(|| values.iter().cloned().map(Param).collect())
}

/// Values [`Param`] encodes, the same way sqlx does for the same column. Every other variant
/// (whichever sea-query features a build turns on) sends its statement to sqlx.
fn encodable(value: &Value) -> bool {
    matches!(
        value,
        Value::Bool(_)
            | Value::SmallInt(_)
            | Value::Int(_)
            | Value::BigInt(_)
            | Value::BigUnsigned(None)
            | Value::Float(_)
            | Value::Double(_)
            | Value::String(_)
            | Value::Bytes(_)
            | Value::Json(_)
            | Value::Uuid(_)
            | Value::ChronoDate(_)
            | Value::ChronoTime(_)
            | Value::ChronoDateTime(_)
            | Value::ChronoDateTimeUtc(_)
            | Value::ChronoDateTimeWithTimeZone(_)
    ) || matches!(value, Value::BigUnsigned(Some(v)) if i64::try_from(*v).is_ok())
}

/// One bound value of a pipelined statement.
///
/// Written here rather than taken from `sea-query-postgres`, whose exhaustive match over
/// sea-query's `Value` stops compiling when a user's SeaORM features add variants to it.
#[derive(Debug)]
pub(super) struct Param(Value);

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        match &self.0 {
            Value::Bool(v) => v.to_sql(ty, out),
            Value::SmallInt(v) => v.to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::BigInt(v) => v.to_sql(ty, out),
            // SeaORM's `LIMIT` and `OFFSET`; `encodable` let through only what fits.
            Value::BigUnsigned(v) => v.map(i64::try_from).transpose()?.to_sql(ty, out),
            Value::Float(v) => v.to_sql(ty, out),
            Value::Double(v) => v.to_sql(ty, out),
            Value::String(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.to_sql(ty, out),
            Value::Json(v) => v.as_deref().to_sql(ty, out),
            Value::Uuid(v) => v.to_sql(ty, out),
            Value::ChronoDate(v) => v.to_sql(ty, out),
            Value::ChronoTime(v) => v.to_sql(ty, out),
            Value::ChronoDateTime(v) => v.to_sql(ty, out),
            Value::ChronoDateTimeUtc(v) => v.to_sql(ty, out),
            Value::ChronoDateTimeWithTimeZone(v) => v.to_sql(ty, out),
            other => Err(format!("no PostgreSQL encoding for {other:?} here").into()),
        }
    }

    // Whether the value fits the parameter's type is decided per variant by `bindable`, before
    // anything is sent.
    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Whether every value's Rust type accepts the type PostgreSQL inferred for its parameter.
pub(super) fn bindable(params: &[Param], types: &[Type]) -> bool {
    params.len() == types.len()
        && params.iter().zip(types).all(|(p, ty)| match &p.0 {
            Value::Bool(_) => <bool as ToSql>::accepts(ty),
            Value::SmallInt(_) => <i16 as ToSql>::accepts(ty),
            Value::Int(_) => <i32 as ToSql>::accepts(ty),
            // SeaORM's `LIMIT` and `OFFSET`: sent as `i64`, as sqlx does.
            Value::BigInt(_) | Value::BigUnsigned(_) => <i64 as ToSql>::accepts(ty),
            Value::Float(_) => <f32 as ToSql>::accepts(ty),
            Value::Double(_) => <f64 as ToSql>::accepts(ty),
            Value::String(_) => <String as ToSql>::accepts(ty),
            Value::Bytes(_) => <Vec<u8> as ToSql>::accepts(ty),
            Value::Json(_) => <serde_json::Value as ToSql>::accepts(ty),
            Value::Uuid(_) => <uuid::Uuid as ToSql>::accepts(ty),
            Value::ChronoDate(_) => <chrono::NaiveDate as ToSql>::accepts(ty),
            Value::ChronoTime(_) => <chrono::NaiveTime as ToSql>::accepts(ty),
            Value::ChronoDateTime(_) => <chrono::NaiveDateTime as ToSql>::accepts(ty),
            Value::ChronoDateTimeUtc(_) => <chrono::DateTime<chrono::Utc> as ToSql>::accepts(ty),
            Value::ChronoDateTimeWithTimeZone(_) => {
                <chrono::DateTime<chrono::FixedOffset> as ToSql>::accepts(ty)
            }
            _ => false,
        })
}
