//! Invalidations a server owes before it may serve again.
//!
//! A write that one server did not take leaves that server holding the
//! key's older copy: the write failed on it (a timeout, a dropped
//! connection: it may even land later), it was never sent (the server was
//! marked dead, or a caller's circuit breaker skipped it), or it went to
//! another server while this one was ejected (the ring's failover). When
//! the server answers again, reading that older copy would undo the write
//! for every process sharing the pool.
//!
//! So each server keeps a record of such keys, [`Pending`], and the client
//! deletes them there before it sends that server anything else (see
//! `Client::on_server`): a server with owed invalidations serves no
//! request of this client until they are done. Keys that went to a
//! stand-in server are then owed by the stand-in too (its copy is now the
//! older one, and would be read again if the home server were ejected
//! once more).
//!
//! The record is bounded. When more distinct keys are owed than it holds,
//! the keys are dropped and the server is marked to be emptied instead
//! (`flush_all`) when it returns: never a write silently forgotten.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The keys one server must forget, and whether it must forget everything.
#[derive(Debug, Default)]
pub(crate) struct Owed {
    /// Each owed key (prefixed, as stored), with the servers that took its
    /// writes instead of this one (their copies are owed once this server
    /// is cleaned up).
    pub(crate) keys: HashMap<Box<[u8]>, Vec<usize>>,
    /// The record overflowed: empty the whole server.
    pub(crate) flush: bool,
}

impl Owed {
    pub(crate) fn is_empty(&self) -> bool {
        !self.flush && self.keys.is_empty()
    }
}

/// A server's owed invalidations.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Whether `owed` holds anything. Read on every request, so a server
    /// that owes nothing costs one load; written only under the lock.
    dirty: AtomicBool,
    owed: Mutex<Owed>,
    /// The most distinct keys kept before the record turns into a flush.
    limit: usize,
}

impl Pending {
    pub(crate) fn new(limit: usize) -> Pending {
        Pending {
            dirty: AtomicBool::new(false),
            owed: Mutex::new(Owed::default()),
            limit,
        }
    }

    /// Whether the server may owe invalidations. A `false` read may be
    /// outdated by a record made at the same moment, by a write that has
    /// not completed yet; a request that races with it is concurrent with
    /// that write, and may see the server either way.
    #[inline]
    pub(crate) fn is_dirty(&self) -> bool {
        // Acquire pairs with the Release store in `record`: a caller that
        // sees the flag set also sees the keys recorded before it.
        self.dirty.load(Ordering::Acquire)
    }

    /// The record, locked. Held while the invalidations are sent, so other
    /// requests to the server wait for them instead of racing past.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Owed> {
        // The map and the flag are consistent at every unlock.
        self.owed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that this server must forget `key` before it serves again;
    /// `instead` is the server that took the write in its place, if any.
    pub(crate) fn record(&self, key: &[u8], instead: Option<usize>) {
        let mut owed = self.lock();
        self.record_locked(&mut owed, key, instead);
    }

    fn record_locked(&self, owed: &mut Owed, key: &[u8], instead: Option<usize>) {
        if !owed.flush {
            let full = owed.keys.len() >= self.limit;
            match owed.keys.get_mut(key) {
                Some(servers) => {
                    if let Some(server) = instead.filter(|s| !servers.contains(s)) {
                        servers.push(server);
                    }
                }
                None if full => {
                    // Over the bound: the whole server is emptied instead.
                    owed.keys = HashMap::new();
                    owed.flush = true;
                }
                None => {
                    owed.keys.insert(key.into(), instead.into_iter().collect());
                }
            }
        }
        // Release pairs with the Acquire load in `is_dirty`.
        self.dirty.store(true, Ordering::Release);
    }

    /// Empties the record once its invalidations were carried out (the lock
    /// still held), and returns the keys with their stand-in servers.
    pub(crate) fn settled(&self, owed: &mut Owed) -> HashMap<Box<[u8]>, Vec<usize>> {
        owed.flush = false;
        // Relaxed: the lock orders this with every `record`, which sets the
        // flag again under the same lock.
        self.dirty.store(false, Ordering::Relaxed);
        std::mem::take(&mut owed.keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keys_with_their_stand_ins() {
        let pending = Pending::new(10);
        assert!(!pending.is_dirty());
        pending.record(b"a", None);
        pending.record(b"b", Some(2));
        pending.record(b"b", Some(2));
        pending.record(b"b", Some(3));
        assert!(pending.is_dirty());
        let mut owed = pending.lock();
        assert!(!owed.is_empty() && !owed.flush);
        let keys = pending.settled(&mut owed);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[&b"a"[..]], Vec::<usize>::new());
        assert_eq!(keys[&b"b"[..]], vec![2, 3]);
        assert!(owed.is_empty());
        drop(owed);
        assert!(!pending.is_dirty());
    }

    #[test]
    fn overflow_turns_into_a_flush_and_forgets_nothing() {
        let pending = Pending::new(2);
        pending.record(b"a", None);
        pending.record(b"b", None);
        pending.record(b"a", Some(1));
        assert!(!pending.lock().flush, "a key already owed takes no room");
        pending.record(b"c", None);
        let owed = pending.lock();
        assert!(owed.flush && owed.keys.is_empty());
        drop(owed);
        // Later keys are covered by the flush.
        pending.record(b"d", None);
        let mut owed = pending.lock();
        assert!(owed.flush && owed.keys.is_empty() && !owed.is_empty());
        pending.settled(&mut owed);
        assert!(owed.is_empty());
    }

    #[test]
    fn a_zero_limit_flushes_on_the_first_record() {
        let pending = Pending::new(0);
        pending.record(b"a", None);
        assert!(pending.lock().flush);
    }
}
