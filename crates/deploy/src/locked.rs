//! The engine's locks. Each piece of the engine's shared state sits in a
//! [`Locked`], reached only through [`Locked::with`], which runs a closure
//! on it: a guard never escapes, so no lock is held across an await, and the
//! closures never take another engine lock, so no two are held at once —
//! there is no lock order to get wrong. Debug builds check the second rule
//! on every call.
//!
//! Must never be used for anything that waits (the one async lock, for
//! publishing one snapshot at a time, is a `tokio::sync::Mutex` of its own).

use std::cell::Cell;
use std::sync::{Mutex, PoisonError};

/// One piece of the engine's state behind a std mutex.
#[derive(Debug, Default)]
pub(crate) struct Locked<T>(Mutex<T>);

thread_local! {
    /// Whether this thread is inside a [`Locked::with`] closure.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

impl<T> Locked<T> {
    pub(crate) fn new(value: T) -> Locked<T> {
        Locked(Mutex::new(value))
    }

    /// Runs `f` on the value under the lock. `f` must not call into the
    /// engine (debug builds panic if it takes another engine lock).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let _holding = Holding::enter();
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

impl<T: Clone> Locked<T> {
    /// A copy of the value.
    pub(crate) fn get(&self) -> T {
        self.with(|v| v.clone())
    }
}

/// Marks the thread as holding an engine lock while it lives.
struct Holding;

impl Holding {
    fn enter() -> Holding {
        let nested = HOLDING.with(|h| h.replace(true));
        debug_assert!(!nested, "an engine lock was taken while holding another");
        Holding
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        HOLDING.with(|h| h.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time() {
        let a = Locked::new(1);
        let b = Locked::new(2);
        assert_eq!(a.with(|a| *a) + b.with(|b| *b), 3);
        let nested = std::panic::catch_unwind(|| a.with(|_| b.with(|b| *b)));
        assert_eq!(nested.is_err(), cfg!(debug_assertions));
        // The flag is cleared on the way out of a panic too.
        assert_eq!(b.with(|b| *b), 2);
    }
}
