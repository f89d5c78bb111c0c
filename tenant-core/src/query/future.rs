//! The futures of the write methods that `#[derive(TenantScoped)]` gives an `ActiveModel` and a
//! `Model`: `insert`, `update`, `save` and `delete`.
//!
//! Each is a plain [`Future`]: `.await` it, or hand it to `join!` or `select!`. It does nothing
//! until polled, and its write acts for the tenant in scope where it is polled. `note.insert(&db)`
//! on a derived entity's `ActiveModel` returns `tenant::future::Insert<'_, TenantDb,
//! note::ActiveModel>`, whose output is `tenant::Result<note::Model>`, and which is `Send`.
//!
//! They are named types rather than `impl Future` so that the generated method only builds a
//! struct: the write's bounds are checked once where it is awaited, not once per entity in the
//! user's crate (a point of the derive's build cost, measured in `BENCHMARKS.md`). The write
//! itself starts on the first poll, on the heap (its type cannot be named on stable Rust): one
//! allocation per write.

use std::fmt;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};

use sea_orm::{ActiveModelBehavior, ActiveModelTrait, EntityTrait, IntoActiveModel};

use super::write;
use crate::Result;
use crate::entity::TenantScoped;
use crate::exec::TenantConnection;

type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;
type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A write that has not started, is running, or is over.
enum State<'a, C, A, T> {
    Ready(&'a C, A),
    Running(Boxed<'a, T>),
    Done,
}

impl<'a, C, A, T> State<'a, C, A, T> {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        what: &str,
        start: impl FnOnce(&'a C, A) -> Boxed<'a, T>,
    ) -> Poll<Result<T>> {
        let mut running = match mem::replace(self, State::Done) {
            State::Ready(conn, am) => start(conn, am),
            State::Running(running) => running,
            State::Done => panic!("`{what}` polled after it completed"),
        };
        let poll = running.as_mut().poll(cx);
        if poll.is_pending() {
            *self = State::Running(running);
        }
        poll
    }
}

/// Declares one write future: the struct, its constructor, `Unpin`, `Debug` and `Future`.
macro_rules! write_future {
    (
        $(#[$doc:meta])*
        $name:ident, $what:literal, $output:ty, $start:path,
        where $($bounds:tt)*
    ) => {
        $(#[$doc])*
        #[must_use = "a write does nothing until it is `.await`ed"]
        pub struct $name<'a, C, A: ActiveModelTrait> {
            state: State<'a, C, A, $output>,
        }

        impl<'a, C, A: ActiveModelTrait> $name<'a, C, A> {
            /// The write of `am` on `conn`, not started yet.
            #[doc(hidden)]
            #[inline]
            pub fn new(conn: &'a C, am: A) -> Self {
                Self {
                    state: State::Ready(conn, am),
                }
            }
        }

        // Nothing in it is pinned in place: the model moves into the write on the first poll,
        // and the running write lives in a box.
        impl<C, A: ActiveModelTrait> Unpin for $name<'_, C, A> {}

        impl<C, A: ActiveModelTrait> fmt::Debug for $name<'_, C, A> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let state = match self.state {
                    State::Ready(..) => "ready",
                    State::Running(_) => "running",
                    State::Done => "done",
                };
                f.debug_struct(stringify!($name))
                    .field("state", &state)
                    .finish_non_exhaustive()
            }
        }

        impl<'a, C, A> Future for $name<'a, C, A>
        where
            $($bounds)*
        {
            type Output = Result<$output>;

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                self.get_mut()
                    .state
                    .poll(cx, $what, |conn, am| Box::pin($start(conn, am)))
            }
        }
    };
}

write_future! {
    /// The future of `ActiveModel::insert(db)`: the row, stamped with the tenant in scope, as
    /// stored.
    Insert, "insert", ModelOf<A>, write::insert,
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send + 'a,
        A::Entity: TenantScoped,
        ModelOf<A>: IntoActiveModel<A>,
        C: TenantConnection,
}

write_future! {
    /// The future of `ActiveModel::update(db)`: the row as stored; another tenant's row is
    /// [`Error::NotFound`](crate::Error::NotFound).
    Update, "update", ModelOf<A>, write::update,
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send + 'a,
        A::Entity: TenantScoped,
        ModelOf<A>: IntoActiveModel<A>,
        C: TenantConnection,
}

write_future! {
    /// The future of `ActiveModel::save(db)`: an insert when the primary key is unset, an update
    /// otherwise.
    Save, "save", A, write::save,
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send + 'a,
        A::Entity: TenantScoped,
        ModelOf<A>: IntoActiveModel<A>,
        C: TenantConnection,
}

write_future! {
    /// The future of `ActiveModel::delete(db)` and `Model::delete(db)`; another tenant's row is
    /// [`Error::NotFound`](crate::Error::NotFound).
    Delete, "delete", (), write::delete,
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send + Sync + 'a,
        A::Entity: TenantScoped,
        C: TenantConnection,
}
