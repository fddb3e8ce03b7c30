//! `#[transform]`, `#[map]` and `#[filter]`: turn one plain function into a
//! Spillway plugin by generating the ABI exports around it.

use proc_macro::TokenStream;
use quote::quote;
use syn::{FnArg, ItemFn, Type, parse_macro_input};

/// The config type: the second argument's type without `&`, or `NoConfig`.
fn config_type(f: &ItemFn) -> syn::Result<Type> {
    let args: Vec<&FnArg> = f.sig.inputs.iter().collect();
    match args.get(1) {
        None => Ok(syn::parse_quote!(::spillway_sdk::NoConfig)),
        Some(FnArg::Typed(p)) => match &*p.ty {
            Type::Reference(r) => Ok((*r.elem).clone()),
            other => {
                Err(syn::Error::new_spanned(other, "the config argument must be a reference: `cfg: &Config`"))
            }
        },
        Some(other) => Err(syn::Error::new_spanned(other, "expected `cfg: &Config`")),
    }
}

/// `reads = ["a", "b"]` and `column = "x"` from an attribute.
fn parse_attr(attr: TokenStream, column: &mut Option<String>, reads: &mut Vec<String>) -> syn::Result<()> {
    if attr.is_empty() {
        return Ok(());
    }
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("column") {
            let s: syn::LitStr = meta.value()?.parse()?;
            *column = Some(s.value());
            Ok(())
        } else if meta.path.is_ident("reads") {
            let a: syn::ExprArray = meta.value()?.parse()?;
            for e in a.elems {
                match e {
                    syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => reads.push(s.value()),
                    other => return Err(syn::Error::new_spanned(other, "expected a column name string")),
                }
            }
            Ok(())
        } else {
            Err(meta.error("expected `column = \"name\"` or `reads = [\"col\", ...]`"))
        }
    });
    syn::parse::Parser::parse(parser, attr)
}

fn exports(
    cfg: &Type,
    run: proc_macro2::TokenStream,
    shape: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    quote! {
        #[doc(hidden)]
        #[allow(dead_code)]
        fn __spillway_run(batch: ::spillway_sdk::FlowBatch, cfg: &#cfg) -> ::spillway_sdk::Result<::spillway_sdk::FlowBatch> {
            #run
        }
        // The ABI exports exist only in the wasm build: natively (the
        // author's `cargo test`) unmangled `alloc`/`init` symbols could
        // collide with the C library's.
        #[cfg(target_family = "wasm")]
        #[doc(hidden)]
        #[allow(non_snake_case)]
        mod __spillway_abi {
            #[allow(unused_imports)]
            use super::*;
            #[doc(hidden)]
            #[unsafe(no_mangle)]
            pub extern "C" fn abi_version() -> u32 {
                ::spillway_sdk::ABI_VERSION
            }
            #[doc(hidden)]
            #[unsafe(no_mangle)]
            pub extern "C" fn alloc(len: u32) -> u32 {
                ::spillway_sdk::__private::alloc(len)
            }
            #[doc(hidden)]
            #[unsafe(no_mangle)]
            pub extern "C" fn dealloc(ptr: u32, len: u32) {
                ::spillway_sdk::__private::dealloc(ptr, len)
            }
            #[doc(hidden)]
            #[unsafe(no_mangle)]
            pub extern "C" fn init(ptr: u32, len: u32) -> u64 {
                ::spillway_sdk::__private::init::<#cfg>(ptr, len, super::__spillway_run, #shape)
            }
            #[doc(hidden)]
            #[unsafe(no_mangle)]
            pub extern "C" fn process(ptr: u32, len: u32) -> u64 {
                ::spillway_sdk::__private::process::<#cfg>(ptr, len, super::__spillway_run)
            }
        }
    }
}

/// A batch-level transform:
/// `fn process(batch: FlowBatch, cfg: &Config) -> Result<FlowBatch>`.
/// The output schema is learned by running it on an empty batch at init.
#[proc_macro_attribute]
pub fn transform(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let f = parse_macro_input!(item as ItemFn);
    let cfg = match config_type(&f) {
        Ok(c) => c,
        Err(e) => return e.to_compile_error().into(),
    };
    let name = &f.sig.ident;
    let call = if f.sig.inputs.len() == 1 { quote!(#name(batch)) } else { quote!(#name(batch, cfg)) };
    let shape = quote!(::spillway_sdk::__private::Shape {
        reads: &[],
        output: ::spillway_sdk::__private::Output::Full
    });
    let ex = exports(&cfg, quote! { let _ = cfg; #call }, shape);
    quote!(#f #ex).into()
}

/// A per-record filter: `fn keep(flow: &Flow, cfg: &Config) -> bool`.
/// Records for which it returns false are removed.
#[proc_macro_attribute]
pub fn filter(attr: TokenStream, item: TokenStream) -> TokenStream {
    let f = parse_macro_input!(item as ItemFn);
    let cfg = match config_type(&f) {
        Ok(c) => c,
        Err(e) => return e.to_compile_error().into(),
    };
    let (mut column, mut reads) = (None, Vec::new());
    if let Err(e) = parse_attr(attr, &mut column, &mut reads) {
        return e.to_compile_error().into();
    }
    let name = &f.sig.ident;
    let call = if f.sig.inputs.len() == 1 { quote!(#name(flow)) } else { quote!(#name(flow, cfg)) };
    // The plugin answers a `keep` mask; the host filters the batch it has.
    let shape = quote!(::spillway_sdk::__private::Shape {
        reads: &[#(#reads),*],
        output: ::spillway_sdk::__private::Output::Mask("__spillway_keep"),
    });
    let ex = exports(&cfg, quote! { let _ = cfg; batch.with_column("__spillway_keep", |flow| #call) }, shape);
    quote!(#f #ex).into()
}

/// A per-record derived column:
/// `fn app(flow: &Flow, cfg: &Config) -> Option<String>` adds a column
/// named after the function (or `#[map(column = "name")]`) whose type
/// follows the return type (`Option<String>`, `Option<&'static str>`, `Option<u64>`, `Option<i64>`,
/// `Option<f64>`, `Option<bool>`, or the same without `Option`).
/// `#[map(reads = ["src_port", "dst_port"])]` names the columns the
/// function reads: only those cross into the plugin, which is much cheaper
/// (the others are absent from `Flow`). The same holds for `#[filter]`.
#[proc_macro_attribute]
pub fn map(attr: TokenStream, item: TokenStream) -> TokenStream {
    let f = parse_macro_input!(item as ItemFn);
    let cfg = match config_type(&f) {
        Ok(c) => c,
        Err(e) => return e.to_compile_error().into(),
    };
    let name = &f.sig.ident;
    let (mut column, mut reads) = (None, Vec::new());
    if let Err(e) = parse_attr(attr, &mut column, &mut reads) {
        return e.to_compile_error().into();
    }
    let column = column.unwrap_or_else(|| name.to_string());
    let call = if f.sig.inputs.len() == 1 { quote!(#name(flow)) } else { quote!(#name(flow, cfg)) };
    // The plugin answers only the new column; the host appends it.
    let shape = quote!(::spillway_sdk::__private::Shape {
        reads: &[#(#reads),*],
        output: ::spillway_sdk::__private::Output::Append(#column),
    });
    let ex = exports(&cfg, quote! { let _ = cfg; batch.with_column(#column, |flow| #call) }, shape);
    quote!(#f #ex).into()
}
