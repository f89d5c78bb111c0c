//! Decoding models from tokio-postgres rows: what `#[derive(TenantScoped)]` generates for a
//! model, and the checks against a prepared statement's columns.

use std::fmt;
use std::marker::PhantomData;

use tokio_postgres::types::{FromSqlOwned, Type};
use tokio_postgres::{Column, Row};

/// Decodes a model from a tokio-postgres row: the model's [`Columns`] and how to build it from
/// them, as the derive's `pg_decoder!` gives them.
#[doc(hidden)]
pub struct Decoder<M> {
    /// How many columns (fields not `#[sea_orm(ignore)]`) the model has.
    columns: usize,
    /// Whether each column's Rust type (in `Column` order) accepts a PostgreSQL type.
    accepts: fn(usize, &Type) -> bool,
    /// The model from a row, given where each column sits in it. Boxed: it erases the model's
    /// column list, which is what lets tenant-core check the decoding once instead of the
    /// derive writing it out per model.
    pub(super) decode: Box<DecodeFn<M>>,
}

/// Reads a model from a row, given where each column sits in it.
type DecodeFn<M> =
    dyn Fn(&Row, &[usize]) -> std::result::Result<M, tokio_postgres::Error> + Send + Sync;

impl<M> Decoder<M> {
    /// Where each of `columns` sits in the statement's result, when every one is there with a
    /// type its field accepts.
    pub(super) fn plan(&self, result: &[Column], columns: &[&str]) -> Option<Vec<usize>> {
        if columns.len() != self.columns {
            return None;
        }
        columns
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let at = result.iter().position(|c| c.name() == *name)?;
                (self.accepts)(i, result[at].type_()).then_some(at)
            })
            .collect()
    }
}

impl<M> fmt::Debug for Decoder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

/// A model's column types as a list `(A, (B, (C, ())))`, in `Column` order, each read by
/// tokio-postgres. One generic impl for any length, so that a model's decoding is checked here
/// once rather than per field in every derived entity.
#[doc(hidden)]
pub trait Columns: Sized + 'static {
    /// How many columns.
    const LEN: usize;

    /// Whether column `i`'s type accepts the PostgreSQL type `ty`.
    fn accepts(i: usize, ty: &Type) -> bool;

    /// The columns, read from `row` at the positions `at` yields (one per column).
    ///
    /// # Errors
    /// tokio-postgres's, when a value does not decode.
    fn read(
        row: &Row,
        at: &mut std::slice::Iter<'_, usize>,
    ) -> std::result::Result<Self, tokio_postgres::Error>;
}

impl Columns for () {
    const LEN: usize = 0;

    #[inline]
    fn accepts(_: usize, _: &Type) -> bool {
        false
    }

    #[inline]
    fn read(
        _: &Row,
        _: &mut std::slice::Iter<'_, usize>,
    ) -> std::result::Result<Self, tokio_postgres::Error> {
        Ok(())
    }
}

impl<H: FromSqlOwned + 'static, T: Columns> Columns for (H, T) {
    const LEN: usize = T::LEN + 1;

    #[inline]
    fn accepts(i: usize, ty: &Type) -> bool {
        match i.checked_sub(1) {
            None => H::accepts(ty),
            Some(rest) => T::accepts(rest, ty),
        }
    }

    #[inline]
    fn read(
        row: &Row,
        at: &mut std::slice::Iter<'_, usize>,
    ) -> std::result::Result<Self, tokio_postgres::Error> {
        let head = row.try_get(*at.next().expect("one position per column"))?;
        Ok((head, T::read(row, at)?))
    }
}

/// Picks, for a model's column list `L`, tokio-postgres's decoding when every column type has
/// one ([`ViaPg`], an impl on `&Probe<L>`) and none otherwise ([`ViaNone`], on `Probe<L>`):
/// method lookup on `(&&Probe::<L>::NEW)` tries the reference first.
#[doc(hidden)]
#[derive(Debug)]
pub struct Probe<L>(PhantomData<L>);

impl<L> Probe<L> {
    #[doc(hidden)]
    pub const NEW: Self = Self(PhantomData);
}

#[doc(hidden)]
pub trait ViaPg<L> {
    /// The decoder of a model that `build` makes from its columns.
    fn pg_decoder<M: 'static>(&self, build: fn(L) -> M) -> Option<Decoder<M>>;
}

impl<L: Columns> ViaPg<L> for &Probe<L> {
    #[inline]
    fn pg_decoder<M: 'static>(&self, build: fn(L) -> M) -> Option<Decoder<M>> {
        Some(Decoder {
            columns: L::LEN,
            accepts: L::accepts,
            decode: Box::new(move |row, at| L::read(row, &mut at.iter()).map(build)),
        })
    }
}

#[doc(hidden)]
pub trait ViaNone<L> {
    /// No decoder: a column type has no tokio-postgres decoding.
    #[inline]
    fn pg_decoder<M: 'static>(&self, _: fn(L) -> M) -> Option<Decoder<M>> {
        None
    }
}

impl<L> ViaNone<L> for Probe<L> {}

/// The `Tenancy::__pg_decoder` of a `Model`, as `#[derive(TenantScoped)]` writes it:
/// `pg_decoder!(Model, (A, (B, ())), |(a, (b, ()))| Model { a, b, .. })`, the column types
/// in `Column` order and how to build the model from them.
#[doc(hidden)]
#[macro_export]
macro_rules! __pg_decoder {
    ($model:ty, $columns:ty, $build:expr) => {
        #[inline]
        fn __pg_decoder() -> ::core::option::Option<$crate::pipeline::Decoder<$model>> {
            #[allow(unused_imports)]
            use $crate::pipeline::{Probe, ViaNone as _, ViaPg as _};
            (&&Probe::<$columns>::NEW).pg_decoder($build)
        }
    };
}
