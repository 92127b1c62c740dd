//! The loading engine's own tests: loads after a miss, and loaders that
//! close a cycle of waits.

use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::Duration;

use crate::store::{Cache, Sharing};

#[test]
fn a_load_after_a_miss_is_shared_and_stored() {
    let cache: Cache<u32, u32> = Cache::new(10);
    assert_eq!(cache.get(&1), None);
    let told = Mutex::new(Vec::new());
    let got = cache.load_after_miss(
        1,
        |sharing| {
            told.lock().unwrap().push(sharing);
            Ok::<_, ()>((10, None))
        },
        None,
    );
    assert_eq!(got, Ok(10));
    assert_eq!(*told.lock().unwrap(), [Sharing::Shared]);
    assert_eq!(cache.get(&1), Some(10));
    // The loader does not look the key up again: one miss, counted by
    // the caller's own lookup.
    assert_eq!(cache.stats().misses, 1);
}

#[test]
fn the_loader_that_closes_a_cycle_is_told_it_is_unshared_and_its_nested_loads_are_not() {
    for round in 0..20 {
        let cache: Cache<u32, u32> = Cache::new(100);
        let told = Arc::new(Mutex::new(Vec::new()));
        let both_loading = Arc::new(Barrier::new(2));
        let (done_tx, done_rx) = mpsc::channel();
        // Thread for key 1 needs key 2 and the other way round: whichever
        // asks last is refused the wait and loads the other key itself.
        for (mine, other) in [(1u32, 2u32), (2, 1)] {
            let (cache, told, both_loading, done_tx) = (
                cache.clone(),
                Arc::clone(&told),
                Arc::clone(&both_loading),
                done_tx.clone(),
            );
            std::thread::spawn(move || {
                let v = cache.load_after_miss(
                    mine,
                    |sharing| {
                        told.lock().unwrap().push((mine, sharing));
                        both_loading.wait();
                        let o = cache
                            .load_after_miss(
                                other,
                                |sharing| {
                                    told.lock().unwrap().push((other, sharing));
                                    // A load nested in the unshared one: shared.
                                    let nested = cache
                                        .load_after_miss(
                                            10 + other,
                                            |sharing| {
                                                told.lock().unwrap().push((10 + other, sharing));
                                                Ok::<_, ()>((1, None))
                                            },
                                            None,
                                        )
                                        .unwrap();
                                    Ok::<_, ()>((other * 100 + nested, None))
                                },
                                None,
                            )
                            .unwrap();
                        Ok::<_, ()>((o + mine, None))
                    },
                    None,
                );
                done_tx.send(v).unwrap();
            });
        }
        for _ in 0..2 {
            let v = done_rx.recv_timeout(Duration::from_secs(10));
            assert!(matches!(v, Ok(Ok(_))), "round {round}: {v:?}");
        }
        let mut told = told.lock().unwrap().clone();
        let unshared: Vec<_> = told
            .iter()
            .filter(|(_, s)| *s == Sharing::Unshared)
            .collect();
        assert_eq!(unshared.len(), 1, "round {round}: {told:?}");
        let (r, o) = if unshared[0].0 == 1 { (1, 2) } else { (2, 1) };
        // Both leaders shared; the refused caller's loader (for key `r`)
        // unshared; the load nested in it shared. The other thread's
        // wait succeeded: it ran no loader of its own for key `o`.
        let order = |&(k, s): &(u32, Sharing)| (k, s == Sharing::Unshared);
        told.sort_by_key(order);
        let mut expected = vec![
            (1, Sharing::Shared),
            (2, Sharing::Shared),
            (r, Sharing::Unshared),
            (10 + r, Sharing::Shared),
        ];
        expected.sort_by_key(order);
        assert_eq!(told, expected, "round {round}");
        // The unshared value (`r * 100 + 1`) went to its caller only:
        // the leader of `o` got it, and `r` holds its own leader's value.
        assert_eq!(cache.get(&o), Some(r * 100 + 1 + o), "round {round}");
        assert_eq!(cache.get(&r), Some(r * 100 + 1 + o + r), "round {round}");
    }
}
