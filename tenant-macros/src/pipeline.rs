//! The row decoding of the pipelined executor (tenant-core's `pipeline` feature).

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::Model;

/// `Tenancy::__pg_decoder` for `model`, written by tenant-core's `pg_decoder!`: the macro
/// expands to nothing when the `pipeline` feature is off, which a derive cannot see.
///
/// The columns go to tenant-core as one list type, `(A, (B, ()))` in `Column` order, with a
/// closure that builds the model from it: whether every column decodes is then decided by one
/// generic impl in tenant-core instead of code written out per field here.
pub(crate) fn decoder(root: &TokenStream, model: &Model<'_>) -> TokenStream {
    let ident = model.ident;
    let (ignored, columns): (Vec<_>, Vec<_>) = model.fields.iter().partition(|f| f.ignored);
    let list = columns.iter().rev().fold(quote!(()), |rest, f| {
        let ty = f.ty;
        quote!((#ty, #rest))
    });
    let pattern = columns.iter().rev().fold(quote!(()), |rest, f| {
        let name = f.ident;
        quote!((#name, #rest))
    });
    let names = columns.iter().map(|f| f.ident);
    let ignored = ignored.iter().map(|f| f.ident);
    quote! {
        #root::__private::pg_decoder!(
            #ident,
            #list,
            |#pattern| #ident {
                #(#names,)*
                #(#ignored: ::core::default::Default::default(),)*
            }
        );
    }
}
