#![doc = include_str!("../README.md")]

extern crate self as tenant;

pub use tenant_core::*;
pub use tenant_macros::{TenantScoped, entity};

#[doc(hidden)]
pub mod doc_support;
