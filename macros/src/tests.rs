use super::*;

fn err(args: TokenStream, item: TokenStream) -> String {
    match expand(args, item) {
        Ok(t) => panic!("expected an error, got {t}"),
        Err(e) => e.to_string(),
    }
}

fn ok(args: TokenStream, item: TokenStream) -> String {
    expand(args, item)
        .map(|t| t.to_string())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn refuses_what_cannot_be_memoised() {
    let cases = [
        (
            quote!(
                async fn f(x: &str) -> u8 {
                    0
                }
            ),
            "owned",
        ),
        (
            quote!(
                async fn f(&self, x: u8) -> u8 {
                    x
                }
            ),
            "methods",
        ),
        (
            quote!(
                async fn f<T>(x: T) -> u8 {
                    0
                }
            ),
            "generic",
        ),
        (
            quote!(
                async unsafe fn f(x: u8) -> u8 {
                    x
                }
            ),
            "unsafe",
        ),
        (
            quote!(
                const fn f(x: u8) -> u8 {
                    x
                }
            ),
            "const fn",
        ),
        (
            quote!(
                unsafe fn f(x: u8) -> u8 {
                    x
                }
            ),
            "unsafe",
        ),
        (
            quote!(
                fn f<T>(x: T) -> u8 {
                    0
                }
            ),
            "generic",
        ),
        (
            quote!(
                fn f<'a>(x: &'a u8) -> u8 {
                    0
                }
            ),
            "generic",
        ),
        (
            quote!(
                fn f(x: u8) -> u8
                where
                    u8: Copy,
                {
                    x
                }
            ),
            "generic",
        ),
        (
            quote!(
                fn f(&self, x: u8) -> u8 {
                    x
                }
            ),
            "methods",
        ),
        (
            quote!(
                fn f((a, b): (u8, u8)) -> u8 {
                    a
                }
            ),
            "plain identifiers",
        ),
        (
            quote!(
                fn f(ref a: u8) -> u8 {
                    *a
                }
            ),
            "plain identifiers",
        ),
        (
            quote!(
                fn f(a: &str) -> u8 {
                    0
                }
            ),
            "owned",
        ),
        (
            quote!(
                fn f(a: impl Copy) -> u8 {
                    0
                }
            ),
            "impl Trait",
        ),
        (
            quote!(
                fn f(a: u8) -> impl Copy {
                    a
                }
            ),
            "impl Trait",
        ),
        (
            quote!(
                fn f(a: u8) -> Option<impl Copy> {
                    Some(a)
                }
            ),
            "impl Trait",
        ),
        (
            quote!(
                fn f(a: (u8, &str)) -> u8 {
                    a.0
                }
            ),
            "owned",
        ),
        (
            quote!(
                fn f(a: Vec<Box<&'static str>>) -> u8 {
                    0
                }
            ),
            "owned",
        ),
        (
            quote!(
                fn f(a: Option<impl Copy>) -> u8 {
                    0
                }
            ),
            "impl Trait",
        ),
        (
            quote!(
                fn f(#[cfg(test)] a: u8) -> u8 {
                    0
                }
            ),
            "`cfg` or `cfg_attr` on arguments",
        ),
    ];
    for (item, why) in cases {
        let e = err(quote!(), item.clone());
        assert!(e.contains(why), "{item}: {e}");
    }
}

#[test]
fn refuses_bad_options() {
    let item = quote!(
        fn f(x: u8) -> u8 {
            x
        }
    );
    let cases = [
        (quote!(max_entries = 0), "at least 1"),
        (quote!(max_entries = 1, max_entries = 2), "twice"),
        (quote!(ttl_secs = 1, ttl_ms = 5), "one TTL"),
        (quote!(ttl_secs = 18446744073709551615), "too large"),
        (quote!(colour = 1), "unknown"),
        (
            quote!(store = S, max_entries = 3),
            "replaces the private cache",
        ),
        (quote!(result, option), "exclude"),
        (quote!(store = make_store()), "takes the path of a `static`"),
        (quote!(store = &S), "takes the path of a `static`"),
        (quote!(weigher = w), "`weigher` needs `max_weight"),
        (
            quote!(weigher = w, max_entries = 5),
            "`weigher` needs `max_weight",
        ),
        (quote!(cache_err = true), "`cache_err` applies"),
        (quote!(cache_none), "`cache_none` applies"),
        (quote!(max_entries = "ten"), "expected integer literal"),
    ];
    for (args, why) in cases {
        let e = err(args.clone(), item.clone());
        assert!(e.contains(why), "{args}: {e}");
    }
}

#[test]
fn fn_pointer_arguments_are_not_references() {
    ok(
        quote!(),
        quote!(
            fn f(g: fn(&str) -> usize, h: Option<fn(&u8)>) -> usize {
                g("x")
            }
        ),
    );
}

#[test]
fn detects_result_and_option_by_last_segment() {
    let r = ok(
        quote!(),
        quote!(
            fn f(x: u8) -> std::io::Result<u8> {
                Ok(x)
            }
        ),
    );
    assert!(r.contains("memoize_result"), "{r}");
    assert!(r.contains("Cache < u8 , u8 >"), "{r}");
    let r = ok(
        quote!(),
        quote!(
            fn f(x: u8) -> Result<String, E> {
                todo!()
            }
        ),
    );
    assert!(r.contains("Cache < u8 , String >"), "{r}");
    let r = ok(
        quote!(),
        quote!(
            fn f(x: u8) -> Option<u16> {
                None
            }
        ),
    );
    assert!(r.contains("memoize_option"), "{r}");
    assert!(r.contains("Cache < u8 , u16 >"), "{r}");
    let r = ok(
        quote!(cache_err),
        quote!(
            fn f(x: u8) -> Result<u8, ()> {
                Ok(x)
            }
        ),
    );
    assert!(
        r.contains("memo :: memoize (") && r.contains("Result < u8 , () >"),
        "{r}"
    );
    let r = ok(
        quote!(cache_none = true),
        quote!(
            fn f(x: u8) -> Option<u8> {
                None
            }
        ),
    );
    assert!(r.contains("memo :: memoize ("), "{r}");
    let r = ok(
        quote!(result = false),
        quote!(
            fn f(x: u8) -> Result<u8, ()> {
                Ok(x)
            }
        ),
    );
    assert!(r.contains("memo :: memoize ("), "{r}");
    let r = ok(
        quote!(result = true),
        quote!(
            fn f(x: u8) -> MyResult<u8> {
                Ok(x)
            }
        ),
    );
    assert!(r.contains("ResultOk > :: Ok"), "{r}");
    let r = ok(
        quote!(option),
        quote!(
            fn f(x: u8) -> Maybe {
                None
            }
        ),
    );
    assert!(r.contains("OptionSome > :: Some"), "{r}");
}

#[test]
fn keys_and_options_expand() {
    let r = ok(
        quote!(),
        quote!(
            fn f() -> u8 {
                1
            }
        ),
    );
    assert!(
        r.contains("Cache < () , u8 >") && r.contains("max_entries (10000usize)"),
        "{r}"
    );
    let r = ok(
        quote!(),
        quote!(
            fn f(a: u8, b: String) -> u8 {
                a
            }
        ),
    );
    assert!(r.contains("Cache < (u8 , String ,) , u8 >"), "{r}");
    let r = ok(
        quote!(
            max_weight = 100,
            weigher = w,
            ttl_secs = 2,
            cache_fn = c,
            crate = ::nf
        ),
        quote!(
            pub fn f(mut a: u8) -> u8 {
                a += 1;
                a
            }
        ),
    );
    assert!(!r.contains("max_entries"), "{r}");
    assert!(r.contains("max_weight (100u64) . weigher (w)"), "{r}");
    assert!(r.contains("from_millis (2000u64)"), "{r}");
    assert!(
        r.contains("pub fn c ()") && r.contains(":: nf :: Cache"),
        "{r}"
    );
    assert!(r.contains("pub fn f (a : u8)"), "outer fn drops `mut`: {r}");
    let r = ok(
        quote!(),
        quote!(
            fn f(#[allow(non_snake_case)] A: u8, b: u8) -> u8 {
                A + b
            }
        ),
    );
    assert!(
        r.contains("fn f (# [allow (non_snake_case)] A : u8 , b : u8)"),
        "outer fn keeps argument attributes: {r}"
    );
    let r = ok(
        quote!(store = crate::S),
        quote!(
            fn f(a: u8) -> u8 {
                a
            }
        ),
    );
    assert!(
        r.contains("& 'static _ = & crate :: S") && !r.contains("LazyLock"),
        "{r}"
    );
}

#[test]
fn async_fns_take_a_store() {
    let item = quote!(
        async fn f(x: u8) -> u8 {
            x
        }
    );
    // The store is passed to the async memoize call, which needs an
    // `AsyncMemoStore` (a Cache or an AsyncNearFar): no private cache.
    let r = ok(quote!(store = S), item.clone());
    assert!(r.contains("memoize_async_in"), "{r}");
    assert!(r.contains("& S"), "{r}");
    assert!(!r.contains("LazyLock"), "{r}");
    // Refused when combined with private-cache options.
    let e = err(quote!(store = S, ttl_secs = 1), item);
    assert!(e.contains("replaces the private cache"), "{e}");
}

#[test]
fn async_fns_expand_to_async_fns() {
    let r = ok(
        quote!(max_entries = 5, ttl_secs = 1),
        quote!(
            pub async fn f(a: u8, b: String) -> u8 {
                a
            }
        ),
    );
    assert!(
        r.contains("pub async fn f (a : u8 , b : String) -> u8"),
        "{r}"
    );
    assert!(
        r.contains("async fn __nearfar_body (a : u8 , b : String)"),
        "{r}"
    );
    assert!(r.contains("memo :: memoize_async ("), "{r}");
    assert!(r.contains(") . await"), "{r}");
    assert!(r.contains("Cache < (u8 , String ,) , u8 >"), "{r}");
    assert!(
        r.contains("max_entries (5usize)") && r.contains("from_millis (1000u64)"),
        "{r}"
    );
    assert!(r.contains("pub fn f_cache ()"), "{r}");
    let r = ok(
        quote!(),
        quote!(
            async fn f(x: u8) -> std::io::Result<u16> {
                Ok(x.into())
            }
        ),
    );
    assert!(r.contains("memo :: memoize_result_async ("), "{r}");
    assert!(r.contains("Cache < u8 , u16 >"), "{r}");
    let r = ok(
        quote!(),
        quote!(
            async fn f(x: u8) -> Option<u16> {
                None
            }
        ),
    );
    assert!(r.contains("memo :: memoize_option_async ("), "{r}");
    let r = ok(
        quote!(cache_err),
        quote!(
            async fn f(x: u8) -> Result<u8, ()> {
                Ok(x)
            }
        ),
    );
    assert!(r.contains("memo :: memoize_async ("), "{r}");
    let r = ok(
        quote!(),
        quote!(
            fn f(x: u8) -> u8 {
                x
            }
        ),
    );
    assert!(
        !r.contains("async") && !r.contains("await"),
        "sync stays sync: {r}"
    );
}
