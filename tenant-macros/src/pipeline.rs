//! The row decoding of the pipelined executor (tenant-core's `pipeline` feature).

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::Model;

/// `Tenancy::__pg_decoder` for `model`, written by tenant-core's `pg_decoder!`: the macro
/// expands to nothing when the `pipeline` feature is off, which a derive cannot see.
pub(crate) fn decoder(root: &TokenStream, model: &Model<'_>) -> TokenStream {
    let ident = model.ident;
    let (ignored, columns): (Vec<_>, Vec<_>) = model.fields.iter().partition(|f| f.ignored);
    let names = columns.iter().map(|f| f.ident);
    let types = columns.iter().map(|f| f.ty);
    let ignored = ignored.iter().map(|f| f.ident);
    quote! {
        #root::__private::pg_decoder!(#ident { #(#names: #types),* } ignore { #(#ignored),* });
    }
}
