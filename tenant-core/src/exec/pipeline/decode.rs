//! Decoding models from tokio-postgres rows: what `#[derive(TenantScoped)]` generates for a
//! model, and the checks against a prepared statement's columns.

use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

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
    /// The names of the model's columns, in `Column` order, once asked for.
    names: OnceLock<Box<[&'static str]>>,
    /// The same names as SeaORM's `SelectTwo` gives them, `A_..` and `B_..`, once asked for.
    paired: [OnceLock<Box<[String]>>; 2],
}

/// Where each column of a model sits in a statement's result.
#[derive(Debug)]
pub(super) enum At {
    /// The first `n` columns, in order: SeaORM's select of a whole model, the common case, read
    /// without an allocation.
    InOrder(usize),
    /// Anywhere else.
    Mapped(Vec<usize>),
}

/// `0, 1, 2, ..`: the positions of [`At::InOrder`].
static IN_ORDER: [usize; 64] = {
    let mut at = [0; 64];
    let mut i = 0;
    while i < at.len() {
        at[i] = i;
        i += 1;
    }
    at
};

impl std::ops::Deref for At {
    type Target = [usize];

    fn deref(&self) -> &[usize] {
        match self {
            At::InOrder(n) => &IN_ORDER[..*n],
            At::Mapped(at) => at,
        }
    }
}

/// Reads a model from a row, given where each column sits in it.
type DecodeFn<M> =
    dyn Fn(&Row, &[usize]) -> std::result::Result<M, tokio_postgres::Error> + Send + Sync;

impl<M> Decoder<M> {
    /// Where each of `columns` sits in the statement's result, when every one is there with a
    /// type its field accepts.
    pub(super) fn plan(&self, result: &[Column], columns: &[impl AsRef<str>]) -> Option<At> {
        if columns.len() != self.columns {
            return None;
        }
        let in_order = columns.len() <= IN_ORDER.len()
            && result.len() >= columns.len()
            && columns
                .iter()
                .zip(result)
                .enumerate()
                .all(|(i, (name, c))| c.name() == name.as_ref() && (self.accepts)(i, c.type_()));
        if in_order {
            return Some(At::InOrder(columns.len()));
        }
        columns
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let at = result.iter().position(|c| c.name() == name.as_ref())?;
                (self.accepts)(i, result[at].type_()).then_some(at)
            })
            .collect::<Option<Vec<usize>>>()
            .map(At::Mapped)
    }

    /// The names of the model's columns, which `of` lists the first time.
    pub(crate) fn names(&self, of: impl FnOnce() -> Vec<&'static str>) -> &[&'static str] {
        self.names.get_or_init(|| of().into_boxed_slice())
    }

    /// The names of the model's columns as the left (`A_..`) or right (`B_..`) side of SeaORM's
    /// `SelectTwo`; `of` lists the plain names, as for [`names`](Self::names).
    pub(crate) fn paired_names(
        &self,
        right: bool,
        of: impl FnOnce() -> Vec<&'static str>,
    ) -> &[String] {
        let prefix = if right { "B_" } else { "A_" };
        self.paired[usize::from(right)].get_or_init(|| {
            self.names(of)
                .iter()
                .map(|name| [prefix, name].concat())
                .collect()
        })
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
            names: OnceLock::new(),
            paired: [OnceLock::new(), OnceLock::new()],
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
/// in `Column` order and how to build the model from them; the decoder is built once.
#[doc(hidden)]
#[macro_export]
macro_rules! __pg_decoder {
    ($model:ty, $columns:ty, $build:expr) => {
        fn __pg_decoder() -> ::core::option::Option<&'static $crate::pipeline::Decoder<$model>> {
            #[allow(unused_imports)]
            use $crate::pipeline::{Probe, ViaNone as _, ViaPg as _};
            // Built once per model: every pipelined read of it uses the same decoder.
            static DECODER: ::std::sync::OnceLock<
                ::core::option::Option<$crate::pipeline::Decoder<$model>>,
            > = ::std::sync::OnceLock::new();
            DECODER
                .get_or_init(|| (&&Probe::<$columns>::NEW).pg_decoder($build))
                .as_ref()
        }
    };
}
