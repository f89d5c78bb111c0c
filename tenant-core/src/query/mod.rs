//! Scoped queries and writes: the builders a user holds ([`Scoped`], the write builders, the
//! repository), how each runs under the scoping rule, and the statements of a fixed shape kept
//! once built.

mod builders;
pub mod future;
mod global;
pub(crate) mod read;
mod repo;
pub(crate) mod scoped;
pub(crate) mod template;
pub(crate) mod write;

pub use builders::{DeleteById, Insert, InsertMany, Update};
pub use global::{AssertGlobal, GlobalWrites};
pub use read::Paginator;
pub use repo::TenantRepo;
pub use scoped::{CursorOf, IntoModel, IntoTuple, Scoped};
