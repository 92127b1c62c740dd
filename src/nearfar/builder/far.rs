//! The far tier's settings of [`NearFarBuilder`]: which memcached pools,
//! its keys, how long items live there and how long near copies of them are
//! served (near TTL, revalidation, fleet-wide invalidation), leases, and the
//! circuit breaker.

use std::time::Duration;

use super::NearFarBuilder;

impl<K, V, Cl> NearFarBuilder<K, V, Cl> {
    /// The far tier: a memcached client (its own key prefix, servers and
    /// timeouts apply). Short I/O and connect timeouts keep the cost of a
    /// slow server low.
    pub fn far(mut self, client: Cl) -> Self {
        self.far = Some(client);
        self
    }

    /// An old memcached pool to warm the new one from: on a far miss the
    /// same key is read there, and a value found is copied into the far tier
    /// (with what is left of its TTL) and used. `remove` deletes from both.
    ///
    /// Both pools get the same memcached key, digested when it would be too
    /// long with the longer of the two clients' key prefixes (see
    /// [`NearFar::far_key`](crate::NearFar::far_key)). Give the old client
    /// a key prefix no longer than the new one's: otherwise a long key is
    /// digested by the processes that have this fallback and not by those
    /// that do not, and during a migration the two kinds would not see each
    /// other's writes.
    pub fn fallback(mut self, old: Cl) -> Self {
        self.fallback = Some(old);
        self
    }

    /// The prefix of every far key (`namespace + ":" + key`). Change it
    /// (`"users:v3"` to `"users:v4"`) to invalidate a whole family at once:
    /// the old items are simply never read again and expire. At most 200
    /// bytes, no spaces or control bytes.
    ///
    /// Keys may hold `:` too, so two namespaces where one is the other
    /// plus `":..."` share far keys: `"a"` with key `"b:c"` and `"a:b"`
    /// with key `"c"` are both `a:b:c`. Give caches that share memcached
    /// namespaces none of which starts with another followed by `:`
    /// (`"users:v3"` and `"orders:v1"`, not `"users"` and `"users:v3"`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long values written to memcached live there (default 1 hour;
    /// `Duration::MAX`: as long as the server keeps them).
    pub fn far_ttl(mut self, ttl: Duration) -> Self {
        self.far_ttl = ttl;
        self
    }

    /// The longest a value stays in the near tier; never longer than what
    /// the far tier says is left of the item's TTL. Bounds how long another
    /// process's write can go unseen (see the
    /// [module docs](crate::nearfar)). Must not be zero (leave it unset, or
    /// use [`remove_near`](crate::NearFar::remove_near)).
    pub fn near_ttl(mut self, ttl: Duration) -> Self {
        self.near_ttl = Some(ttl);
        self
    }

    /// Checks a near entry against memcached (by CAS, no value bytes) on the
    /// first read after it has been held this long: unchanged, it is kept
    /// for another period; changed or gone, it is refetched.
    pub fn revalidate_after(mut self, after: Duration) -> Self {
        self.revalidate_after = Some(after);
        self
    }

    /// How long a lease (the right to compute a missing value) is held in
    /// memcached before it lapses if its holder never stores (default 10 s;
    /// memcached counts whole seconds, at least one).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long a caller that lost the lease polls memcached for the
    /// winner's value (default 1 s).
    ///
    /// A lease older than this is taken to be abandoned: the first caller
    /// to find it so deletes the placeholder by its CAS (never a value
    /// stored meanwhile) and leases again, then loads and fills the far
    /// tier for everyone (the old holder's store, if it ever comes, is then
    /// refused by its CAS and its value kept to itself). A placeholder's age
    /// is told from what memcached says is left of its TTL, so a caller that
    /// arrives late takes it over without waiting; give every process that
    /// shares a namespace the same [`lease_ttl`](Self::lease_ttl).
    ///
    /// A caller that finds a fresh placeholder right after its takeover
    /// (another caller took it over first) loads without waiting again,
    /// and its value is returned (and kept near) but not written to
    /// memcached: with the winner's placeholder possibly removed meanwhile,
    /// no store could tell a removal from a lapsed lease.
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// Makes [`NearFar::remove`](crate::NearFar::remove) mark the far item
    /// stale for `stale_for` instead of deleting it: stale-while-revalidate
    /// (see the [module docs](crate::nearfar)). Memcached counts whole
    /// seconds, at least one.
    pub fn stale_on_remove(mut self, stale_for: Duration) -> Self {
        self.stale_on_remove = Some(stale_for);
        self
    }

    /// Makes [`invalidate_all`](crate::NearFar::invalidate_all) possible: this
    /// process reads the namespace's generation (one memcached item, a
    /// number) at most once per `interval`, and its far keys carry it once
    /// the namespace has been invalidated (`namespace:#g<generation>:key`;
    /// before that they are unchanged, `namespace:key`). Off by default:
    /// nothing is read and far keys never change.
    ///
    /// **The bound.** A process that finds a newer generation serves none
    /// of its near copies again and reads and writes only the new far keys
    /// (the old items are never read again and expire). It finds it at its
    /// first read once `interval` has passed since its previous check, one
    /// round trip later: so after `invalidate_all` returns, no reader
    /// anywhere sees a value from before it later than `interval` plus one
    /// round trip (the check's; at most the client's `request_timeout`).
    /// Two limits: reads of a process running during its check's round trip
    /// go on with the generation known before (after a pause in reads longer
    /// than `interval`, that one may be older than `interval`); and a process
    /// that cannot reach memcached goes on with the generation it knows (its
    /// near copies then end with their near TTL, as in any outage).
    ///
    /// **The cost.** One `get` of a few bytes per `interval` per process,
    /// made by the first read to find the check due (that read waits for
    /// it; the others go on). A near hit otherwise costs an atomic load and
    /// a clock read more. Before its first check is answered, a process
    /// knows no generation: every call checks (the first answer ends that),
    /// and while memcached is unreachable the process uses its near tier
    /// only (its loader's values are not stored far, its `insert` and
    /// `remove` not sent).
    ///
    /// **Compatibility.** Every process sharing the namespace must set it
    /// (with any interval): one that does not never sees an invalidation
    /// and keeps the plain keys. Other clients (pymemcache) share items only
    /// until the first `invalidate_all`; after it they must name keys the
    /// same way: read `namespace:#generation` (decimal), and prefix
    /// `#g<generation>:` when it is above 0. The tag must fit memcached's
    /// 250-byte keys with a digest: with it, the key prefix and the
    /// namespace may take at most 193 bytes together (216 without).
    ///
    /// Must not be zero.
    pub fn generation_check(mut self, interval: Duration) -> Self {
        self.generation_check = Some(interval);
        self
    }

    /// Opens the circuit breaker after `failures` consecutive far failures
    /// (connection errors, timeouts, no server up, replies that make no
    /// sense: the same judgement as the client's dead-server ejection) for
    /// `cooldown`, timed on [`clock`](Self::clock); then one call probes the
    /// server and closes it on success. `failures == 0` turns it off.
    /// Default: 5 failures, 1 s.
    ///
    /// The breaker sits in front of the client's own dead-server ejection
    /// ([`ClientBuilder::retry_attempts`](crate::memcached::ClientBuilder::retry_attempts)
    /// and [`ClientBuilder::dead_timeout`](crate::memcached::ClientBuilder::dead_timeout),
    /// default 2 failures, 1 s), and the two cooldowns do not add up: once
    /// `cooldown` is over, the breaker's probe waits until the client
    /// would send it (calls skip the far tier meanwhile, as while the
    /// breaker is open), so it is never spent on a server the client still
    /// leaves out; and a probe the client refused unsent anyway proves
    /// nothing, so it is given back rather than counted as a failure.
    /// When memcached comes back, the far tier is used again within the
    /// longer of `cooldown` and `dead_timeout`, plus the time to the next
    /// call: measured with both defaults, memcached killed for 2 s under
    /// load and restarted, the first far hit came 0.8 s to 1.0 s after it
    /// accepted connections, with `NearFar` and `AsyncNearFar` alike
    /// (`tests/recovery.rs`). A dead server still gets one probe per
    /// `dead_timeout`, sent by the client, however many calls are made.
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker = (failures, cooldown);
        self
    }
}
