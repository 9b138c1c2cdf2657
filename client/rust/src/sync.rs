//! The one way this crate takes a lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, recovering the lock if a panic poisoned it. Every value this crate keeps
/// behind a lock is updated whole (a single insert, swap or assignment; a generator,
/// any state of which is valid; a callback list only read while locked), so a panic
/// elsewhere cannot leave it half-changed and a poisoned lock still holds a
/// consistent value.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
