//! The `#[memoize]` attribute of the `nearfar` crate.
//!
//! Use it through `nearfar` (`#[nearfar::memoize]`, feature `macros`, on by
//! default): the expansion names `::nearfar::...` items, and the attribute's
//! documentation, with examples, lives at `nearfar::memoize`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{
    Error, Expr, FnArg, GenericArgument, Ident, ItemFn, LitBool, LitInt, Pat, PathArguments,
    ReturnType, Token, Type,
};

/// This attribute is defined in the `nearfar-macros` crate and re-exported as
/// `nearfar::memoize`, where its options are described; its expansion names
/// items of `::nearfar` (see the `crate` option).
#[proc_macro_attribute]
pub fn memoize(
    args: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand(args.into(), item.into())
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

/// The default bound of the private cache when no bound is given.
const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// The attribute's options, as written.
#[derive(Default)]
struct Options {
    max_entries: Option<(usize, Span)>,
    max_weight: Option<(u64, Span)>,
    weigher: Option<Expr>,
    /// The TTL in milliseconds, and the option that gave it.
    ttl_ms: Option<(u64, Span)>,
    /// A path to a `static` store.
    store: Option<syn::Path>,
    result: Option<bool>,
    option: Option<bool>,
    cache_err: Option<(bool, Span)>,
    cache_none: Option<(bool, Span)>,
    krate: Option<syn::Path>,
    cache_fn: Option<Ident>,
}

/// Stores an option's value, refusing a second one.
fn once<T>(
    slot: &mut Option<T>,
    value: T,
    meta: &syn::meta::ParseNestedMeta<'_>,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error("this option is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// `= true` / `= false`, or a bare flag meaning `true`.
fn flag(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<bool> {
    if meta.input.peek(Token![=]) {
        Ok(meta.value()?.parse::<LitBool>()?.value)
    } else {
        Ok(true)
    }
}

/// A positive integer literal.
fn positive<T>(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<(T, Span)>
where
    T: std::str::FromStr + PartialEq + From<u8>,
    T::Err: std::fmt::Display,
{
    let lit: LitInt = meta.value()?.parse()?;
    let n: T = lit.base10_parse()?;
    if n == T::from(0) {
        return Err(Error::new(lit.span(), "must be at least 1"));
    }
    Ok((n, lit.span()))
}

const OPTIONS: &str = "max_entries, max_weight, weigher, ttl_secs, ttl_ms, store, result, \
                       option, cache_err, cache_none, cache_fn, crate";

fn parse_options(args: TokenStream) -> syn::Result<Options> {
    let mut o = Options::default();
    let parser = syn::meta::parser(|meta| {
        let p = &meta.path;
        if p.is_ident("max_entries") {
            let v = positive::<usize>(&meta)?;
            once(&mut o.max_entries, v, &meta)
        } else if p.is_ident("max_weight") {
            let v = positive::<u64>(&meta)?;
            once(&mut o.max_weight, v, &meta)
        } else if p.is_ident("weigher") {
            let v: Expr = meta.value()?.parse()?;
            once(&mut o.weigher, v, &meta)
        } else if p.is_ident("ttl_secs") || p.is_ident("ttl_ms") {
            let (n, span) = positive::<u64>(&meta)?;
            let ms = if p.is_ident("ttl_secs") {
                n.checked_mul(1000)
                    .ok_or_else(|| Error::new(span, "TTL too large"))?
            } else {
                n
            };
            if o.ttl_ms.is_some() {
                return Err(meta.error("give one TTL: `ttl_secs` or `ttl_ms`"));
            }
            o.ttl_ms = Some((ms, span));
            Ok(())
        } else if p.is_ident("store") {
            let v = match meta.value()?.parse::<Expr>()? {
                Expr::Path(e) if e.qself.is_none() && e.attrs.is_empty() => e.path,
                e => {
                    return Err(Error::new(
                        e.span(),
                        "`store` takes the path of a `static` store (`store = STORE`, for \
                         `static STORE: LazyLock<...>`): any other expression would be \
                         evaluated again on every call",
                    ));
                }
            };
            once(&mut o.store, v, &meta)
        } else if p.is_ident("result") {
            let v = flag(&meta)?;
            once(&mut o.result, v, &meta)
        } else if p.is_ident("option") {
            let v = flag(&meta)?;
            once(&mut o.option, v, &meta)
        } else if p.is_ident("cache_err") {
            let v = (flag(&meta)?, p.span());
            once(&mut o.cache_err, v, &meta)
        } else if p.is_ident("cache_none") {
            let v = (flag(&meta)?, p.span());
            once(&mut o.cache_none, v, &meta)
        } else if p.is_ident("cache_fn") {
            let v: Ident = meta.value()?.parse()?;
            once(&mut o.cache_fn, v, &meta)
        } else if p.is_ident("crate") {
            let v: syn::Path = meta.value()?.parse()?;
            once(&mut o.krate, v, &meta)
        } else {
            Err(meta.error(format!(
                "unknown #[memoize] option; the options are: {OPTIONS}"
            )))
        }
    });
    parser.parse2(args)?;
    if let Some(store) = &o.store {
        let private_cache_only = o.max_entries.is_some()
            || o.max_weight.is_some()
            || o.weigher.is_some()
            || o.ttl_ms.is_some()
            || o.cache_fn.is_some();
        if private_cache_only {
            return Err(Error::new(
                store.span(),
                "`store = ...` replaces the private cache: `max_entries`, `max_weight`, `weigher`, \
                 `ttl_secs`, `ttl_ms` and `cache_fn` do not apply (configure your store instead)",
            ));
        }
    }
    if let (Some(w), None) = (&o.weigher, o.max_weight) {
        return Err(Error::new(
            w.span(),
            "`weigher` needs `max_weight = N`: weights bound the cache only against a maximum \
             weight (without one the cache is bounded by entry count, and the weigher is unused)",
        ));
    }
    if o.result == Some(true) && o.option == Some(true) {
        return Err(Error::new(
            Span::call_site(),
            "`result = true` and `option = true` exclude each other",
        ));
    }
    Ok(o)
}

/// How results are cached.
enum Mode {
    /// Every return value is cached.
    Plain,
    /// `Result<T, E>`: `Ok` values are cached.
    Result,
    /// `Option<T>`: `Some` values are cached.
    Option,
}

/// The last path segment of `ty` if it is `name<..>` (angle-bracketed).
fn generic_args<'a>(ty: &'a Type, name: &str) -> Option<Vec<&'a Type>> {
    let Type::Path(tp) = ty else { return None };
    if tp.qself.is_some() {
        return None;
    }
    let last = tp.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let types: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    (!types.is_empty()).then_some(types)
}

/// What [`find_in_type`] looks for.
#[derive(Clone, Copy, PartialEq)]
enum Found {
    ImplTrait,
    Reference,
}

/// Walks a type for the first `impl Trait` (and, if `refs`, reference)
/// anywhere in it, such as `Option<impl Display>` or `(u8, &str)`.
struct TypeFinder {
    refs: bool,
    found: Option<(Span, Found)>,
}

impl<'ast> Visit<'ast> for TypeFinder {
    fn visit_type(&mut self, ty: &'ast Type) {
        if self.found.is_some() {
            return;
        }
        match ty {
            Type::ImplTrait(_) => self.found = Some((ty.span(), Found::ImplTrait)),
            Type::Reference(_) if self.refs => self.found = Some((ty.span(), Found::Reference)),
            // A fn pointer's own arguments (`fn(&str) -> u8`) are its
            // business, not the memoised fn's.
            Type::BareFn(_) => {}
            _ => visit::visit_type(self, ty),
        }
    }

    // Likewise `Fn(&str) -> u8` in a bound.
    fn visit_parenthesized_generic_arguments(
        &mut self,
        _: &'ast syn::ParenthesizedGenericArguments,
    ) {
    }
}

/// The first `impl Trait` in `ty`, or reference if `refs`, at any depth.
fn find_in_type(ty: &Type, refs: bool) -> Option<(Span, Found)> {
    let mut finder = TypeFinder { refs, found: None };
    finder.visit_type(ty);
    finder.found
}

/// Rejects what a memoised signature cannot have, with a message saying why.
fn check_signature(f: &ItemFn) -> syn::Result<()> {
    let sig = &f.sig;
    let refuse = |span: Span, msg: &str| Err(Error::new(span, msg));
    if let Some(t) = &sig.constness {
        return refuse(t.span(), "#[memoize] cannot apply to a const fn");
    }
    if let Some(t) = &sig.unsafety {
        return refuse(t.span(), "#[memoize] does not support unsafe fns");
    }
    if let Some(abi) = &sig.abi {
        return refuse(abi.span(), "#[memoize] does not support extern fns");
    }
    if let Some(v) = &sig.variadic {
        return refuse(v.span(), "#[memoize] does not support variadic fns");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return refuse(
            sig.generics.span(),
            "#[memoize] does not support generic fns (type, lifetime or const parameters): \
             the cache is one static with one key type and one value type",
        );
    }
    for input in &sig.inputs {
        let FnArg::Typed(arg) = input else {
            return refuse(
                input.span(),
                "#[memoize] does not support methods (`self`): memoise a free function that \
                 takes the receiver's data as a `Clone + Hash + Eq` argument",
            );
        };
        if let Some(a) = arg
            .attrs
            .iter()
            .find(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr"))
        {
            return refuse(
                a.span(),
                "#[memoize] does not support `cfg` or `cfg_attr` on arguments: the key is \
                 built from every argument (put the `cfg` on the whole fn)",
            );
        }
        match &*arg.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {}
            _ => {
                return refuse(
                    arg.pat.span(),
                    "#[memoize] arguments must be plain identifiers (`name: Type`), not patterns",
                );
            }
        }
        match find_in_type(&arg.ty, true) {
            Some((span, Found::Reference)) => {
                return refuse(
                    span,
                    "#[memoize] arguments must be owned (e.g. `String`, not `&str`): they are \
                     cloned into the cache key, which lives in a static",
                );
            }
            Some((span, Found::ImplTrait)) => {
                return refuse(
                    span,
                    "#[memoize] does not support `impl Trait` arguments (they make the fn generic)",
                );
            }
            None => {}
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let Some((span, _)) = find_in_type(ty, false) {
            return refuse(
                span,
                "#[memoize] does not support `impl Trait` return types: the cached type must be named",
            );
        }
    }
    Ok(())
}

/// The whole expansion: the memoised fn, and the cache fn unless a store is
/// given.
fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let opts = parse_options(args)?;
    let func: ItemFn = syn::parse2(item)?;
    check_signature(&func)?;
    let asyncness = &func.sig.asyncness;
    let krate = opts
        .krate
        .as_ref()
        .map_or_else(|| quote!(::nearfar), |p| quote!(#p));
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &func;
    let name = &sig.ident;

    // Arguments: the outer fn takes them without `mut` (the body's copy
    // keeps it).
    let mut arg_names = Vec::new();
    let mut arg_types = Vec::new();
    let mut arg_attrs = Vec::new();
    for input in &sig.inputs {
        if let FnArg::Typed(arg) = input {
            if let Pat::Ident(p) = &*arg.pat {
                // Lint attributes (the only others allowed here) stay on
                // both fns' arguments.
                let attrs = &arg.attrs;
                arg_attrs.push(quote!(#(#attrs)*));
                arg_names.push(p.ident.clone());
                arg_types.push((*arg.ty).clone());
            }
        }
    }
    let ret: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };

    // The key: the argument itself for one argument, else a tuple.
    let (key_ty, key_expr, body_call) = match arg_names.len() {
        1 => {
            let (n, t) = (&arg_names[0], &arg_types[0]);
            (
                quote!(#t),
                quote!(#n),
                quote!(__nearfar_body(<#t as ::core::clone::Clone>::clone(__nearfar_key))),
            )
        }
        _ => {
            let idx = (0..arg_names.len()).map(syn::Index::from);
            (
                quote!((#(#arg_types,)*)),
                quote!((#(#arg_names,)*)),
                quote!(__nearfar_body(#(<#arg_types as ::core::clone::Clone>::clone(&__nearfar_key.#idx)),*)),
            )
        }
    };

    // How to cache: by the return type's last path segment, unless told.
    let result_args = generic_args(&ret, "Result");
    let option_args = generic_args(&ret, "Option").filter(|a| a.len() == 1);
    let is_result = opts
        .result
        .unwrap_or(result_args.is_some() && opts.option != Some(true));
    let is_option = opts.option.unwrap_or(option_args.is_some() && !is_result);
    let mut mode = if is_result {
        Mode::Result
    } else if is_option {
        Mode::Option
    } else {
        Mode::Plain
    };
    match (&mode, opts.cache_err, opts.cache_none) {
        (Mode::Result, Some((true, _)), _) | (Mode::Option, _, Some((true, _))) => {
            mode = Mode::Plain
        }
        (Mode::Result, Some((false, _)), _) | (Mode::Option, _, Some((false, _))) => {}
        (_, Some((_, span)), _) => {
            return Err(Error::new(
                span,
                "`cache_err` applies to a `Result` return type (write `result = true` if it is \
                 an alias the attribute cannot see through)",
            ));
        }
        (_, _, Some((_, span))) => {
            return Err(Error::new(
                span,
                "`cache_none` applies to an `Option` return type (write `option = true` if it \
                 is an alias the attribute cannot see through)",
            ));
        }
        _ => {}
    }
    let value_ty = match mode {
        Mode::Plain => quote!(#ret),
        Mode::Result => match &result_args {
            Some(a) => {
                let t = a[0];
                quote!(#t)
            }
            _ => quote!(<#ret as #krate::memo::__private::ResultOk>::Ok),
        },
        Mode::Option => match &option_args {
            Some(a) => {
                let t = a[0];
                quote!(#t)
            }
            None => quote!(<#ret as #krate::memo::__private::OptionSome>::Some),
        },
    };
    // An async fn memoised in a store goes through `AsyncMemoStore` (the
    // `_in` calls); in its private cache, through the `Cache` itself.
    let call = match (mode, asyncness.is_some(), opts.store.is_some()) {
        (Mode::Plain, false, _) => quote!(#krate::memo::memoize),
        (Mode::Result, false, _) => quote!(#krate::memo::memoize_result),
        (Mode::Option, false, _) => quote!(#krate::memo::memoize_option),
        (Mode::Plain, true, false) => quote!(#krate::memo::memoize_async),
        (Mode::Result, true, false) => quote!(#krate::memo::memoize_result_async),
        (Mode::Option, true, false) => quote!(#krate::memo::memoize_option_async),
        (Mode::Plain, true, true) => quote!(#krate::memo::memoize_async_in),
        (Mode::Result, true, true) => quote!(#krate::memo::memoize_result_async_in),
        (Mode::Option, true, true) => quote!(#krate::memo::memoize_option_async_in),
    };
    // An async fn's body becomes an inner async fn: the closure returns its
    // future (holding clones of the arguments), awaited only on a miss.
    let awaited = asyncness.map(|_| quote!(.await));

    let cfgs: Vec<_> = attrs.iter().filter(|a| a.path().is_ident("cfg")).collect();
    let (store, cache_item) = match &opts.store {
        // A `'static` borrow: a `const` store would be a new store on every
        // call, and is refused here.
        Some(path) => (
            quote! {{
                let __nearfar_store: &'static _ = &#path;
                __nearfar_store
            }},
            TokenStream::new(),
        ),
        None => {
            let cache_fn = opts
                .cache_fn
                .clone()
                .unwrap_or_else(|| format_ident!("{}_cache", name));
            // A weigher without `max_weight` is refused above, so only a weight
            // bound replaces the default entry bound.
            let has_weight = opts.max_weight.is_some();
            let max_entries = match opts.max_entries {
                Some((n, _)) => Some(n),
                None if has_weight => None,
                None => Some(DEFAULT_MAX_ENTRIES),
            };
            // Turbofished, so that a closure weigher's argument types are known.
            let mut builder = quote!(#krate::Cache::<#key_ty, #value_ty>::builder());
            if let Some(n) = max_entries {
                builder = quote!(#builder.max_entries(#n));
            }
            if let Some((w, _)) = opts.max_weight {
                builder = quote!(#builder.max_weight(#w));
            }
            if let Some(w) = &opts.weigher {
                builder = quote!(#builder.weigher(#w));
            }
            if let Some((ms, _)) = opts.ttl_ms {
                builder = quote!(#builder.time_to_live(::std::time::Duration::from_millis(#ms)));
            }
            // Named after the fn's path: the `name` label of the cache's
            // metrics (nearfar's feature `metrics`) and its `Debug`.
            let fn_name = name.to_string();
            builder =
                quote!(#builder.name(::core::concat!(::core::module_path!(), "::", #fn_name)));
            let doc = format!(
                "The cache behind the memoised fn `{name}` (generated by `#[memoize]`): for \
                 its stats, or to clear, inspect or seed it."
            );
            // The outer fn reaches the cache through a private fn with a
            // reserved name: an argument named like the cache fn would shadow
            // it (and an item nested in the outer fn still resolves names to
            // the arguments, to refuse capturing them).
            let private_fn = format_ident!("__nearfar_{}_cache", name);
            let item = quote! {
                #(#cfgs)*
                #[doc = #doc]
                #vis fn #cache_fn() -> &'static #krate::Cache<#key_ty, #value_ty> {
                    #private_fn()
                }
                #(#cfgs)*
                #[doc(hidden)]
                fn #private_fn() -> &'static #krate::Cache<#key_ty, #value_ty> {
                    static CACHE: ::std::sync::LazyLock<#krate::Cache<#key_ty, #value_ty>> =
                        ::std::sync::LazyLock::new(|| #builder.build());
                    &CACHE
                }
            };
            (quote!(#private_fn()), item)
        }
    };

    let inputs = &sig.inputs;
    let output = &sig.output;
    let closure_arg = if arg_names.is_empty() {
        quote!(_)
    } else {
        quote!(__nearfar_key)
    };
    Ok(quote! {
        #(#attrs)*
        #vis #asyncness fn #name(#(#arg_attrs #arg_names: #arg_types),*) #output {
            #asyncness fn __nearfar_body(#inputs) #output #block
            #call(#store, #key_expr, |#closure_arg: &#key_ty| #body_call)#awaited
        }
        #cache_item
    })
}

#[cfg(test)]
mod tests;
