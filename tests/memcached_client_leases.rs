//! The blocking client's CAS and leases against real memcached: CAS
//! conflicts, the lease flow between clients, invalidation (stale values,
//! placeholders, `invalidate_if_cas`, `delete_if_cas`) and the CAS each
//! write returns.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

#[path = "common/client_setup.rs"]
mod client_setup;

use std::time::Duration;

use client_setup::{MINUTE, User, client, store_undecodable};
use nearfar::memcached::{Cas, Client, Lease};
use server::Memcached;

#[test]
fn cas_conflict() {
    let mc = Memcached::start();
    let c = client(&mc);
    let other = client(&mc);
    c.set("doc", "v1", MINUTE).unwrap();
    let (_, cas) = c.gets::<String>("doc").unwrap().unwrap();
    let (_, cas2) = other.gets::<String>("doc").unwrap().unwrap();
    assert_eq!(cas, cas2);
    assert!(other.cas("doc", "v2-other", MINUTE, cas2).unwrap());
    assert!(!c.cas("doc", "v2-mine", MINUTE, cas).unwrap());
    assert_eq!(c.get::<String>("doc").unwrap().as_deref(), Some("v2-other"));
}

#[test]
fn lease_flow_between_two_clients() {
    let mc = Memcached::start();
    let first = client(&mc);
    let second = client(&mc);
    let lease = Duration::from_secs(30);

    assert_eq!(
        first.get_or_lease::<String>("report", lease).unwrap(),
        Lease::Won {
            previous: None,
            cas: match first.cas_only("report").unwrap() {
                Some(cas) => cas,
                None => panic!("no placeholder"),
            }
        }
    );
    assert_eq!(
        second.get_or_lease::<String>("report", lease).unwrap(),
        Lease::Wait
    );
    first.set("report", "computed", MINUTE).unwrap();
    for c in [&first, &second] {
        match c.get_or_lease::<String>("report", lease).unwrap() {
            Lease::Hit { value, stale, .. } => {
                assert_eq!(value, "computed");
                assert!(!stale);
            }
            other => panic!("expected a hit, got {other:?}"),
        }
    }

    // Invalidate: the value stays, marked stale; one reader wins.
    assert!(first.invalidate("report", MINUTE).unwrap());
    assert!(!first.invalidate("nothing-here", MINUTE).unwrap());
    match second.get_or_lease::<String>("report", lease).unwrap() {
        Lease::Won { previous, .. } => assert_eq!(previous.as_deref(), Some("computed")),
        other => panic!("expected to win, got {other:?}"),
    }
    match first.get_or_lease::<String>("report", lease).unwrap() {
        Lease::Hit { value, stale, .. } => {
            assert_eq!(value, "computed");
            assert!(stale);
        }
        other => panic!("expected a stale hit, got {other:?}"),
    }
    second.set("report", "recomputed", MINUTE).unwrap();
    assert!(matches!(
        first.get_or_lease::<String>("report", lease).unwrap(),
        Lease::Hit { value, stale: false, .. } if value == "recomputed"
    ));

    // Early recache: under the threshold one caller wins with the value.
    first.set("soon", "old", Duration::from_secs(5)).unwrap();
    match first
        .get_or_lease_with_recache::<String>("soon", lease, Duration::from_secs(30))
        .unwrap()
    {
        Lease::Won { previous, .. } => assert_eq!(previous.as_deref(), Some("old")),
        other => panic!("expected an early win, got {other:?}"),
    }
    assert!(matches!(
        second
            .get_or_lease_with_recache::<String>("soon", lease, Duration::from_secs(30))
            .unwrap(),
        Lease::Hit { value, .. } if value == "old"
    ));
}

#[test]
fn an_invalidated_placeholder_is_never_a_value() {
    let mc = Memcached::start();
    let (first, second) = (client(&mc), client(&mc));
    let lease = Duration::from_secs(30);
    assert!(matches!(
        first.get_or_lease::<String>("k", lease).unwrap(),
        Lease::Won { previous: None, .. }
    ));
    // Removed with stale-while-revalidate while the lease is held.
    assert!(second.invalidate("k", MINUTE).unwrap());
    // One reader takes the new recompute token, with nothing to serve...
    assert!(matches!(
        second.peek_lease::<String>("k").unwrap(),
        Some(Lease::Won { previous: None, .. })
    ));
    // ...and the others wait: the empty placeholder is not an empty value.
    for c in [&first, &second] {
        assert_eq!(c.peek_lease::<String>("k").unwrap(), Some(Lease::Wait));
        assert_eq!(c.get_or_lease::<String>("k", lease).unwrap(), Lease::Wait);
        assert_eq!(c.peek_lease_cas("k").unwrap(), Some(Lease::Wait));
    }

    // delete_if_cas removes only the item it was read from.
    let now = first.cas_only("k").unwrap().expect("the placeholder");
    assert!(!first.delete_if_cas("k", Cas(now.0 + 1)).unwrap());
    assert!(first.delete_if_cas("k", now).unwrap());
    assert!(!first.delete_if_cas("k", now).unwrap());
}

#[test]
fn a_won_lease_survives_an_undecodable_stale_value() {
    let mc = Memcached::start();
    let c = client(&mc);
    // Bytes that do not decode as a `User` (another client's, or an older
    // layout), then invalidated: the next reader wins the lease.
    store_undecodable(&c, "report");
    assert!(c.invalidate("report", MINUTE).unwrap());
    let cas = match c.get_or_lease::<User>("report", MINUTE).unwrap() {
        Lease::Won {
            previous: None,
            cas,
        } => cas,
        other => panic!("expected to win with nothing to serve, got {other:?}"),
    };
    // The lease is real: the winner's store goes through with its CAS.
    let user = User {
        id: 1,
        name: "Grace".into(),
        tags: Vec::new(),
    };
    assert!(c.cas("report", &user, MINUTE, cas).unwrap());
    assert_eq!(c.get::<User>("report").unwrap(), Some(user));
}

#[test]
fn writes_return_the_cas_they_stored() {
    let mc = Memcached::start();
    let c = client(&mc);
    let first = c.set_returning_cas("doc", "v1", MINUTE).unwrap();
    assert_eq!(
        c.gets::<String>("doc").unwrap(),
        Some(("v1".to_owned(), first))
    );
    assert_eq!(c.cas_only("doc").unwrap(), Some(first));
    // Unconditional over an existing item: a new CAS.
    let second = c.set_returning_cas("doc", "v2", MINUTE).unwrap();
    assert_ne!(second, first);
    assert_eq!(c.cas_only("doc").unwrap(), Some(second));

    // compare_and_set stores only while the CAS holds, and returns the new one.
    let third = c
        .compare_and_set("doc", "v3", MINUTE, second)
        .unwrap()
        .expect("the CAS still held");
    assert_ne!(third, second);
    let item = c.meta_get::<String>("doc").unwrap().unwrap();
    assert_eq!((item.value.as_str(), item.cas), ("v3", third));
    assert!(item.ttl.unwrap() <= MINUTE && item.ttl.unwrap() >= MINUTE - Duration::from_secs(5));
    assert_eq!(
        c.compare_and_set("doc", "v4", MINUTE, second).unwrap(),
        None
    );
    assert_eq!(c.get::<String>("doc").unwrap().as_deref(), Some("v3"));
    assert_eq!(c.compare_and_set("gone", "x", MINUTE, third).unwrap(), None);
    assert_eq!(c.get::<String>("gone").unwrap(), None);

    // The lease flow: the winner's store returns the CAS a later
    // revalidation compares against.
    let lease_cas = match c.get_or_lease::<String>("report", MINUTE).unwrap() {
        Lease::Won { cas, .. } => cas,
        other => panic!("expected to win, got {other:?}"),
    };
    let stored = c
        .compare_and_set("report", "fresh", MINUTE, lease_cas)
        .unwrap()
        .expect("the lease's CAS still held");
    assert_eq!(c.cas_only("report").unwrap(), Some(stored));
    assert_eq!(
        c.gets::<String>("report").unwrap(),
        Some(("fresh".to_owned(), stored))
    );

    // With a key prefix, the CAS is the prefixed item's.
    let prefixed = Client::builder()
        .servers([mc.addr()])
        .key_prefix("app:")
        .build()
        .unwrap();
    let cas = prefixed.set_returning_cas("doc", &7u32, MINUTE).unwrap();
    assert_eq!(c.cas_only("app:doc").unwrap(), Some(cas));
}

#[test]
fn invalidate_if_cas_marks_only_the_item_it_read() {
    let mc = Memcached::start();
    let c = client(&mc);
    let old = c.set_returning_cas("k", "v1", MINUTE).unwrap();
    let new = c.set_returning_cas("k", "v2", MINUTE).unwrap();
    // A CAS read before the write: the fresh value is left alone.
    assert!(!c.invalidate_if_cas("k", MINUTE, old).unwrap());
    match c.peek_lease::<String>("k").unwrap() {
        Some(Lease::Hit { value, stale, .. }) => {
            assert_eq!(value, "v2");
            assert!(!stale, "a fresh value must not be marked stale");
        }
        other => panic!("expected a fresh hit, got {other:?}"),
    }
    // The current CAS: marked stale, its value still served.
    assert!(c.invalidate_if_cas("k", MINUTE, new).unwrap());
    match c.peek_lease::<String>("k").unwrap() {
        Some(Lease::Hit { value, stale, .. }) => {
            assert_eq!(value, "v2");
            assert!(stale);
        }
        Some(Lease::Won { previous, .. }) => assert_eq!(previous.as_deref(), Some("v2")),
        other => panic!("expected the stale item, got {other:?}"),
    }
    assert!(!c.invalidate_if_cas("absent", MINUTE, new).unwrap());
}
