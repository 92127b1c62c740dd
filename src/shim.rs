//! Atomics and locks used by the concurrent core, in one place.
//!
//! Under `--cfg shuttle` they are replaced by shuttle's instrumented versions so
//! the randomized scheduler can explore interleavings of readers and writers.

#[cfg(shuttle)]
pub(crate) use shuttle::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicPtr, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence},
};
#[cfg(not(shuttle))]
pub(crate) use std::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicPtr, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence},
};

#[cfg(shuttle)]
pub(crate) use shuttle::thread::{ThreadId, current as current_thread};
/// Thread identity, for detecting a loader that waits on itself.
#[cfg(not(shuttle))]
pub(crate) use std::thread::{ThreadId, current as current_thread};

/// Lets other threads run: under shuttle, a scheduling point.
#[cfg(shuttle)]
pub(crate) use shuttle::thread::yield_now;
#[cfg(not(shuttle))]
pub(crate) use std::thread::yield_now;

/// Thread-locals: under shuttle, one per shuttle thread (they share one OS
/// thread, where std's would be shared too).
#[cfg(shuttle)]
pub(crate) use shuttle::thread_local;
#[cfg(not(shuttle))]
pub(crate) use std::thread_local;
