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
//! `Client::settle`): a server with owed invalidations serves no request of
//! this client until they are done. Keys that went to a stand-in server are
//! then owed by the stand-in too (its copy is now the older one, and would
//! be read again if the home server were ejected once more).
//!
//! The record is bounded. When more distinct keys are owed than it holds,
//! the keys are dropped and the server is marked to be emptied instead
//! (`flush_all`) when it returns, and so are the stand-ins that took its
//! writes: never a write silently forgotten.
//!
//! The deletions are sent with the record unlocked (a write that fails
//! meanwhile records its key at once); one caller settles at a time, and
//! the others wait for it, up to their own deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// One owed key: the servers that took its writes instead of this one, and
/// the record's sequence number when it was last recorded (a key recorded
/// again while a settle is under way stays owed).
#[derive(Debug)]
struct Entry {
    stand_ins: Vec<usize>,
    seq: u64,
}

/// The keys one server must forget, and whether it must forget everything.
#[derive(Debug, Default)]
struct Owed {
    keys: HashMap<Box<[u8]>, Entry>,
    /// The record overflowed (at this sequence number, the latest time):
    /// empty the whole server ...
    flush: Option<u64>,
    /// ... and these stand-ins too, which took some of the writes whose
    /// keys were dropped.
    flush_stand_ins: Vec<usize>,
    /// Bumped by every record; a flush covers only what was recorded before
    /// it started.
    seq: u64,
    /// A caller is sending the invalidations now.
    settling: bool,
    /// Async callers waiting for that settle to end (blocking ones wait on
    /// the condition variable).
    wakers: Vec<Waker>,
}

impl Owed {
    fn is_empty(&self) -> bool {
        self.flush.is_none() && self.keys.is_empty()
    }
}

/// What one settle sends: taken from the record by [`Pending::begin`].
#[derive(Debug)]
pub(crate) struct Settle {
    /// `Some(seq)`: empty the server first (`flush_all`); the record's
    /// sequence number then.
    pub(crate) flush: Option<u64>,
    /// The keys to delete, with their sequence numbers.
    pub(crate) keys: Vec<(Box<[u8]>, u64)>,
}

/// Keys forgotten on a server, each with the stand-ins that hold a copy.
pub(crate) type Moved = Vec<(Box<[u8]>, Vec<usize>)>;

/// Why [`Pending::begin`] gave no work.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Busy {
    /// Another caller was settling and did not finish by the deadline.
    Timeout,
}

/// A server's owed invalidations.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Whether the record may hold anything. Read on every request, so a
    /// server that owes nothing costs one load; written under the lock.
    dirty: AtomicBool,
    owed: Mutex<Owed>,
    /// Signalled when a settle ends.
    settled: Condvar,
    /// The most distinct keys kept before the record turns into a flush.
    limit: usize,
}

impl Pending {
    pub(crate) fn new(limit: usize) -> Pending {
        Pending {
            dirty: AtomicBool::new(false),
            owed: Mutex::new(Owed::default()),
            settled: Condvar::new(),
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

    fn lock(&self) -> MutexGuard<'_, Owed> {
        // Every field is consistent at every unlock.
        self.owed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that this server must forget `key` before it serves again;
    /// `instead` is the server that took the write in its place, if any.
    pub(crate) fn record(&self, key: &[u8], instead: Option<usize>) {
        let mut owed = self.lock();
        owed.seq += 1;
        let seq = owed.seq;
        let full = owed.keys.len() >= self.limit;
        match owed.keys.get_mut(key) {
            Some(entry) => {
                entry.seq = seq;
                if let Some(server) = instead.filter(|s| !entry.stand_ins.contains(s)) {
                    entry.stand_ins.push(server);
                }
            }
            None if full => {
                // Over the bound: the whole server is emptied instead, and
                // every stand-in that took one of the dropped keys' writes.
                let dropped = std::mem::take(&mut owed.keys);
                let stand_ins = dropped.into_values().flat_map(|entry| entry.stand_ins);
                for server in stand_ins.chain(instead) {
                    if !owed.flush_stand_ins.contains(&server) {
                        owed.flush_stand_ins.push(server);
                    }
                }
                owed.flush = Some(seq);
            }
            None => {
                let stand_ins = instead.into_iter().collect();
                owed.keys.insert(key.into(), Entry { stand_ins, seq });
            }
        }
        // Release pairs with the Acquire load in `is_dirty`.
        self.dirty.store(true, Ordering::Release);
    }

    /// Takes what there is to send, making this caller the one settler:
    /// `Ok(None)` when nothing is owed (another caller settled it). While
    /// another caller settles, waits for it until `deadline`.
    pub(crate) fn begin(&self, deadline: Instant) -> Result<Option<Settle>, Busy> {
        let mut owed = self.lock();
        while owed.settling {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(Busy::Timeout);
            };
            owed = self
                .settled
                .wait_timeout(owed, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(Self::take(&mut owed))
    }

    /// [`Pending::begin`] for an async caller: pending while another caller
    /// settles (woken when it ends); the caller bounds the wait.
    #[cfg_attr(
        not(feature = "tokio"),
        allow(dead_code, reason = "used by the async client only")
    )]
    pub(crate) fn poll_begin(&self, cx: &mut Context<'_>) -> Poll<Option<Settle>> {
        let mut owed = self.lock();
        if owed.settling {
            if !owed.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                owed.wakers.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        Poll::Ready(Self::take(&mut owed))
    }

    /// Makes the caller holding `owed`'s lock the settler of what is owed.
    fn take(owed: &mut Owed) -> Option<Settle> {
        if owed.is_empty() {
            return None;
        }
        owed.settling = true;
        Some(Settle {
            flush: owed.flush.map(|_| owed.seq),
            keys: owed
                .keys
                .iter()
                .map(|(key, entry)| (key.clone(), entry.seq))
                .collect(),
        })
    }

    /// The server was emptied by a settle that began at `seq`: the keys
    /// recorded before then are forgotten there. Returns the stand-ins that
    /// must be emptied in turn, and the forgotten keys' stand-ins, whose
    /// copies are owed next (as [`Pending::deleted`] does).
    pub(crate) fn flushed(&self, seq: u64) -> (Vec<usize>, Moved) {
        let mut owed = self.lock();
        let mut moved = Vec::new();
        owed.keys.retain(|key, entry| {
            let keep = entry.seq > seq;
            if !keep && !entry.stand_ins.is_empty() {
                moved.push((key.clone(), std::mem::take(&mut entry.stand_ins)));
            }
            keep
        });
        let flush_stand_ins = if owed.flush.is_some_and(|at| at <= seq) {
            owed.flush = None;
            std::mem::take(&mut owed.flush_stand_ins)
        } else {
            // It overflowed again meanwhile: flushed again next time, its
            // stand-ins with it.
            Vec::new()
        };
        (flush_stand_ins, moved)
    }

    /// `keys` (with the sequence numbers `begin` gave) were deleted on the
    /// server: forgets each unless it was recorded again meanwhile, and
    /// returns the stand-ins of the forgotten ones, whose copies are owed
    /// next.
    pub(crate) fn deleted(&self, keys: &[(Box<[u8]>, u64)]) -> Moved {
        let mut owed = self.lock();
        let mut moved = Vec::new();
        for (key, seq) in keys {
            if owed.keys.get(key).is_some_and(|entry| entry.seq == *seq) {
                if let Some(entry) = owed.keys.remove(key) {
                    if !entry.stand_ins.is_empty() {
                        moved.push((key.clone(), entry.stand_ins));
                    }
                }
            }
        }
        moved
    }

    /// Ends a settle, done or not (what was not sent stays owed), and wakes
    /// the callers waiting for it.
    pub(crate) fn end(&self) {
        let mut owed = self.lock();
        owed.settling = false;
        // Relaxed: the lock orders this with every `record`, which sets the
        // flag again under the same lock.
        self.dirty.store(!owed.is_empty(), Ordering::Relaxed);
        let wakers = std::mem::take(&mut owed.wakers);
        drop(owed);
        self.settled.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Marks the server to be emptied when it next serves (a stand-in of a
    /// server whose record overflowed).
    pub(crate) fn record_flush(&self) {
        let mut owed = self.lock();
        owed.seq += 1;
        owed.keys.clear();
        owed.flush = Some(owed.seq);
        self.dirty.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn records_keys_with_their_stand_ins() {
        let pending = Pending::new(10);
        assert!(!pending.is_dirty());
        pending.record(b"a", None);
        pending.record(b"b", Some(2));
        pending.record(b"b", Some(2));
        pending.record(b"b", Some(3));
        assert!(pending.is_dirty());
        let settle = pending.begin(later()).unwrap().unwrap();
        assert_eq!(settle.flush, None);
        assert_eq!(settle.keys.len(), 2);
        let mut moved = pending.deleted(&settle.keys);
        moved.sort();
        assert_eq!(moved, vec![(b"b"[..].into(), vec![2, 3])]);
        pending.end();
        assert!(!pending.is_dirty());
        assert!(pending.begin(later()).unwrap().is_none());
    }

    #[test]
    fn a_key_recorded_again_during_a_settle_stays_owed() {
        let pending = Pending::new(10);
        pending.record(b"a", None);
        pending.record(b"b", None);
        let settle = pending.begin(later()).unwrap().unwrap();
        pending.record(b"a", Some(1)); // a write failed again meanwhile
        pending.record(b"c", None);
        assert!(pending.deleted(&settle.keys).is_empty());
        pending.end();
        assert!(pending.is_dirty());
        let next = pending.begin(later()).unwrap().unwrap();
        let mut keys: Vec<_> = next.keys.iter().map(|(k, _)| k.to_vec()).collect();
        keys.sort();
        assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec()]);
        pending.end();
    }

    #[test]
    fn overflow_turns_into_a_flush_of_the_server_and_its_stand_ins() {
        let pending = Pending::new(2);
        pending.record(b"a", Some(4));
        pending.record(b"b", None);
        pending.record(b"a", Some(5));
        let settle = pending.begin(later()).unwrap().unwrap();
        assert_eq!(settle.flush, None, "a key already owed takes no room");
        pending.end();
        pending.record(b"c", Some(6)); // over: a flush, with 4, 5, 6
        pending.record(b"d", Some(7)); // kept beside the flush
        let settle = pending.begin(later()).unwrap().unwrap();
        assert!(settle.flush.is_some());
        assert_eq!(settle.keys.len(), 1);
        pending.record(b"e", None); // after the flush began: stays owed
        let (mut stand_ins, moved) = pending.flushed(settle.flush.unwrap());
        stand_ins.sort();
        assert_eq!(stand_ins, vec![4, 5, 6]);
        assert_eq!(moved, vec![(b"d"[..].into(), vec![7])]);
        pending.end();
        let next = pending.begin(later()).unwrap().unwrap();
        assert_eq!(next.flush, None);
        assert_eq!(next.keys.len(), 1, "only e: d was covered by the flush");
        pending.end();
    }

    #[test]
    fn a_zero_limit_flushes_on_the_first_record() {
        let pending = Pending::new(0);
        pending.record(b"a", None);
        let settle = pending.begin(later()).unwrap().unwrap();
        assert!(settle.flush.is_some());
        pending.end();
        pending.record_flush();
        assert!(pending.is_dirty());
    }

    #[test]
    fn one_caller_settles_and_the_others_wait_until_their_deadline() {
        let pending = Pending::new(10);
        pending.record(b"a", None);
        let settle = pending.begin(later()).unwrap().unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(pending.begin(soon).unwrap_err(), Busy::Timeout);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| pending.begin(later()));
            std::thread::sleep(Duration::from_millis(20));
            pending.deleted(&settle.keys);
            pending.end();
            assert!(waiter.join().unwrap().unwrap().is_none(), "done by then");
        });
    }
}
