//! The far half of `insert` and `remove`: the write or removal, and the
//! invalidation a server is left owing when it did not take it.

use std::time::Duration;

use super::{FarOp, Flow, Input, Next, unexpected};
use crate::memcached::Cas;
use crate::nearfar::call::{Failure, Pool};

/// Stores a value for `far_ttl`; the result is the CAS unique memcached
/// gave the write (a revalidation of the near copy then finds the item
/// unchanged), `None` when it did not take it.
#[derive(Debug)]
pub(in crate::nearfar) struct Insert<'a, V> {
    key: &'a str,
    value: &'a V,
    far_ttl: Duration,
    state: InsertState<'a>,
}

#[derive(Debug)]
enum InsertState<'a> {
    Start,
    Setting,
    /// The write was skipped: the server is told to forget the older copy
    /// before it serves again.
    Owing,
    /// The write was refused (too large, not encodable, declined): the
    /// older copy is still there. Removed, or every process would read it
    /// until `far_ttl`.
    Removing(Removal<'a>),
    Done,
}

impl<'a, V> Insert<'a, V> {
    pub(in crate::nearfar) fn new(key: &'a str, value: &'a V, far_ttl: Duration) -> Self {
        Insert {
            key,
            value,
            far_ttl,
            state: InsertState::Start,
        }
    }

    fn removing(
        &mut self,
        mut removal: Removal<'a>,
        input: Input<V>,
        now: u64,
    ) -> Next<Option<Cas>> {
        match Flow::<V>::advance(&mut removal, input, now).pending() {
            Ok(next) => {
                self.state = InsertState::Removing(removal);
                next
            }
            Err(()) => Next::Done(None),
        }
    }
}

impl<V> Flow<V> for Insert<'_, V> {
    type Out = Option<Cas>;

    fn advance(&mut self, input: Input<V>, now: u64) -> Next<Option<Cas>> {
        let state = std::mem::replace(&mut self.state, InsertState::Done);
        match (state, input) {
            (InsertState::Start, Input::Start) => {
                self.state = InsertState::Setting;
                Next::Far
            }
            (InsertState::Setting, Input::Far(reply)) => match reply.set() {
                Ok(Some(cas)) => Next::Done(Some(cas)),
                Ok(None) => {
                    self.state = InsertState::Owing;
                    Next::Far
                }
                Err(Failure::Codec | Failure::Refused) => {
                    self.removing(Removal::delete(Pool::Far, self.key), Input::Start, now)
                }
                // The client recorded it.
                Err(Failure::Owed) => Next::Done(None),
            },
            (InsertState::Owing, Input::Far(_)) => Next::Done(None),
            (InsertState::Removing(removal), input) => self.removing(removal, input, now),
            _ => unexpected("Insert"),
        }
    }

    fn request(&self) -> FarOp<'_, V> {
        let key = self.key;
        match &self.state {
            InsertState::Setting => FarOp::SetReturningCas {
                key,
                value: self.value,
                ttl: self.far_ttl,
            },
            InsertState::Owing => FarOp::Owe {
                pool: Pool::Far,
                key,
            },
            InsertState::Removing(removal) => removal.request(),
            _ => unexpected("Insert"),
        }
    }
}

/// Removes a key from one pool (deletes it, or marks it stale for
/// `stale_for`), and has the pool's client record it as owed unless it was
/// done or the client recorded it already (a failure that leaves doubt):
/// when it was skipped or refused.
#[derive(Debug)]
pub(in crate::nearfar) struct Removal<'a> {
    pool: Pool,
    key: &'a str,
    stale_for: Option<Duration>,
    state: RemovalState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RemovalState {
    Start,
    Removing,
    Owing,
    Done,
}

impl<'a> Removal<'a> {
    /// Deletes `key` from `pool`.
    pub(in crate::nearfar) fn delete(pool: Pool, key: &'a str) -> Self {
        Removal {
            pool,
            key,
            stale_for: None,
            state: RemovalState::Start,
        }
    }

    /// Marks `key` stale in the far tier for `stale_for`.
    pub(in crate::nearfar) fn invalidate(key: &'a str, stale_for: Duration) -> Self {
        Removal {
            stale_for: Some(stale_for),
            ..Removal::delete(Pool::Far, key)
        }
    }
}

impl<V> Flow<V> for Removal<'_> {
    type Out = ();

    fn advance(&mut self, input: Input<V>, _now: u64) -> Next<()> {
        self.state = match (self.state, input) {
            (RemovalState::Start, Input::Start) => RemovalState::Removing,
            (RemovalState::Removing, Input::Far(reply)) => match reply.done() {
                Ok(None) | Err(Failure::Refused) => RemovalState::Owing,
                _ => RemovalState::Done,
            },
            (RemovalState::Owing, Input::Far(_)) => RemovalState::Done,
            _ => unexpected("Removal"),
        };
        match self.state {
            RemovalState::Done => Next::Done(()),
            _ => Next::Far,
        }
    }

    fn request(&self) -> FarOp<'_, V> {
        let (pool, key) = (self.pool, self.key);
        match (self.state, self.stale_for) {
            (RemovalState::Removing, Some(stale_for)) => FarOp::Invalidate { key, stale_for },
            (RemovalState::Removing, None) => FarOp::Delete { pool, key },
            (RemovalState::Owing, _) => FarOp::Owe { pool, key },
            _ => unexpected("Removal"),
        }
    }
}

/// The far half of `remove`: the far tier's removal (a delete, or marking
/// the item stale for `stale_on_remove`), then the fallback pool's delete.
#[derive(Debug)]
pub(in crate::nearfar) struct Remove<'a> {
    key: &'a str,
    removal: Removal<'a>,
    fallback_next: bool,
}

impl<'a> Remove<'a> {
    pub(in crate::nearfar) fn new(key: &'a str, stale_on_remove: Option<Duration>) -> Self {
        let removal = match stale_on_remove {
            Some(stale_for) => Removal::invalidate(key, stale_for),
            None => Removal::delete(Pool::Far, key),
        };
        Remove {
            key,
            removal,
            fallback_next: true,
        }
    }
}

impl<V> Flow<V> for Remove<'_> {
    type Out = ();

    fn advance(&mut self, input: Input<V>, now: u64) -> Next<()> {
        match Flow::<V>::advance(&mut self.removal, input, now) {
            Next::Done(()) if self.fallback_next => {
                self.fallback_next = false;
                self.removal = Removal::delete(Pool::Fallback, self.key);
                Flow::<V>::advance(&mut self.removal, Input::Start, now)
            }
            next => next,
        }
    }

    fn request(&self) -> FarOp<'_, V> {
        self.removal.request()
    }
}
