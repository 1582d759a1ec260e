//! The wait list of one pool: requests that found every available member at
//! its connection limit wait here, in arrival order, until a slot frees up
//! (HAProxy's server `maxconn` with its queue, nginx's upstream `queue`).
//!
//! Owns the waiters, their bounds (how many may wait, for how long), the
//! counts of queued and refused requests and the rate-limited log of
//! refusals. A waiter is woken by an event — a member's slot released (a
//! [`Picked`](crate::Picked) dropped), a member becoming available, a new
//! snapshot — never by polling. Each event grants a *turn* to the first
//! waiter without one; a waiter with a turn tries to pick a member itself
//! (through the caller's closure, which may read a newer snapshot), and a
//! waiter that got a member passes a turn on, so that capacity freed at once
//! for several waiters is used by all of them. While anyone waits, newcomers
//! queue behind them instead of taking a freed slot first.
//!
//! A queue is shared by every snapshot of the pool (the proxy keeps it by
//! the pool's name). It must never pick members itself, perform I/O or hold
//! its lock while the caller's closure runs or while a `Picked` drops.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

/// How many requests may wait, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBounds {
    /// Most requests waiting at once; one more is refused at once (0: none
    /// waits, a request that finds every member full is refused).
    pub length: usize,
    /// The longest a request waits for a slot; past it, it is refused.
    pub timeout: Duration,
}

impl Default for QueueBounds {
    /// The defaults of the config: 10,000 requests for 30 seconds.
    fn default() -> QueueBounds {
        QueueBounds {
            length: 10_000,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a queued request gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `length` requests were already waiting.
    Full,
    /// The request waited `timeout` without a slot freeing up for it.
    TimedOut,
}

/// Which attempt the caller's closure is asked to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The request has not waited: it may use what it started with.
    First,
    /// The request waited: the pool may have changed meanwhile.
    Woken,
}

/// What one attempt found.
#[derive(Debug)]
pub enum Attempt<T> {
    /// Done, with a member or with an answer that needs none.
    Done(T),
    /// Every available member is at its limit: wait for a slot.
    Full,
    /// As [`Attempt::Full`], and a member comes back from a passive
    /// ejection at this instant: look again then too.
    FullUntil(Instant),
}

impl<T> Attempt<T> {
    /// [`Attempt::FullUntil`] when a member comes back at `next_return`
    /// (see [`Pool::next_return`](crate::Pool::next_return)), else
    /// [`Attempt::Full`].
    pub fn full_until(next_return: Option<Instant>) -> Attempt<T> {
        next_return.map_or(Attempt::Full, Attempt::FullUntil)
    }
}

/// Counts of one pool's queue since it was created (across snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Requests waiting now.
    pub waiting: usize,
    /// Requests that had to wait (whatever happened next).
    pub queued: u64,
    /// Requests refused because the queue was full.
    pub full: u64,
    /// Requests refused because they waited too long.
    pub timed_out: u64,
}

/// One waiting request.
#[derive(Debug, Default)]
struct Slot {
    /// Granted by an event, cleared by the waiter before each attempt.
    turn: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    fn grant(&self) {
        self.turn.store(true, Ordering::Release);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    async fn granted(&self) {
        poll_fn(|cx| {
            if self.turn.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            if self.turn.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

#[derive(Debug)]
struct State {
    waiters: VecDeque<Arc<Slot>>,
    bounds: QueueBounds,
}

/// The refusals logged last, so that a flood gives one line a second.
#[derive(Debug)]
struct LogState {
    next: Option<Instant>,
    full: u64,
    timed_out: u64,
}

/// How often refusals are logged at most, per pool.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// The wait list of one pool; `Send + Sync`, shared through an `Arc`.
#[derive(Debug)]
pub struct Queue {
    pool: String,
    state: Mutex<State>,
    /// Mirrors `state.waiters.len()`, so that releasing a slot while nobody
    /// waits takes no lock.
    waiting: AtomicUsize,
    queued: AtomicU64,
    full: AtomicU64,
    timed_out: AtomicU64,
    log: Mutex<LogState>,
}

impl Queue {
    /// An empty queue for the pool `pool` (for logs).
    pub fn new(pool: &str, bounds: QueueBounds) -> Queue {
        Queue {
            pool: pool.to_owned(),
            state: Mutex::new(State {
                waiters: VecDeque::new(),
                bounds,
            }),
            waiting: AtomicUsize::new(0),
            queued: AtomicU64::new(0),
            full: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            log: Mutex::new(LogState {
                next: None,
                full: 0,
                timed_out: 0,
            }),
        }
    }

    /// Replaces the bounds (a reload); requests already waiting keep their
    /// deadline.
    pub fn set_bounds(&self, bounds: QueueBounds) {
        self.lock().bounds = bounds;
    }

    /// The bounds now.
    pub fn bounds(&self) -> QueueBounds {
        self.lock().bounds
    }

    /// The counts now.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            waiting: self.waiting.load(Ordering::Acquire),
            queued: self.queued.load(Ordering::Relaxed),
            full: self.full.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
        }
    }

    /// Nobody waits: a request may take a member at once, as
    /// [`wait`](Self::wait) would on its first attempt. Lets a caller try
    /// without building the waiting future, and build it only when it has
    /// to wait.
    pub fn nobody_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) == 0
    }

    /// Runs `attempt` until it is [`Attempt::Done`]: at once if nobody
    /// waits, otherwise (or when it finds every member full) each time this
    /// request is given a turn, in arrival order, within the bounds.
    ///
    /// Dropping the future (the client went away) leaves the queue, and
    /// passes on a turn it was given and did not use.
    pub async fn wait<T>(&self, mut attempt: impl FnMut(Turn) -> Attempt<T>) -> Result<T, Refusal> {
        let mut look_again = None;
        if self.waiting.load(Ordering::SeqCst) == 0 {
            match attempt(Turn::First) {
                Attempt::Done(done) => return Ok(done),
                Attempt::Full => {}
                Attempt::FullUntil(at) => look_again = Some(at),
            }
        }
        let (slot, deadline) = {
            let mut state = self.lock();
            if state.waiters.len() >= state.bounds.length {
                drop(state);
                self.refused(Refusal::Full);
                return Err(Refusal::Full);
            }
            // The first waiter tries once more at once: a slot may have
            // been released between its attempt and now, while nobody was
            // there to be told.
            let slot = Arc::new(Slot {
                turn: AtomicBool::new(state.waiters.is_empty()),
                waker: Mutex::new(None),
            });
            state.waiters.push_back(slot.clone());
            self.waiting.store(state.waiters.len(), Ordering::SeqCst);
            (slot, Instant::now().checked_add(state.bounds.timeout))
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        let mut waiter = Waiter {
            queue: self,
            slot,
            served: false,
        };
        let expired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            let returns = async {
                match look_again {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = waiter.slot.granted() => {}
                () = &mut expired => {
                    drop(waiter);
                    self.refused(Refusal::TimedOut);
                    return Err(Refusal::TimedOut);
                }
                // A member's ejection ends: nothing else would say so.
                () = returns => {}
            }
            // Cleared before the attempt: a slot released during it grants
            // the turn again, and the next round tries once more.
            waiter.slot.turn.store(false, Ordering::SeqCst);
            // Pairs with the fence of `released`.
            fence(Ordering::SeqCst);
            match attempt(Turn::Woken) {
                Attempt::Done(done) => {
                    waiter.served = true;
                    return Ok(done);
                }
                Attempt::Full => look_again = None,
                Attempt::FullUntil(at) => look_again = Some(at),
            }
        }
    }

    /// A slot of a member was released: the first waiter without a turn
    /// gets one. Without waiters, one atomic load and no lock.
    pub fn released(&self) {
        // Pairs with the fence of a new waiter: either it sees the slot
        // free when it tries, or this sees it waiting.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.grant(1);
        }
    }

    /// Every waiter gets a turn: a member became available, or a new
    /// snapshot may have other members.
    pub fn wake_all(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.grant(usize::MAX);
        }
    }

    fn grant(&self, mut count: usize) {
        let state = self.lock();
        for slot in &state.waiters {
            if count == 0 {
                break;
            }
            if !slot.turn.load(Ordering::Acquire) {
                slot.grant();
                count -= 1;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a refusal and logs the refusals at most once a second, with
    /// the counts since the last line.
    fn refused(&self, refusal: Refusal) {
        match refusal {
            Refusal::Full => self.full.fetch_add(1, Ordering::Relaxed),
            Refusal::TimedOut => self.timed_out.fetch_add(1, Ordering::Relaxed),
        };
        let now = Instant::now();
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.next.is_some_and(|next| now < next) {
            return;
        }
        let (full, timed_out) = (
            self.full.load(Ordering::Relaxed),
            self.timed_out.load(Ordering::Relaxed),
        );
        let bounds = self.bounds();
        tracing::warn!(
            pool = %self.pool,
            full = full - log.full,
            timed_out = timed_out - log.timed_out,
            waiting = self.waiting.load(Ordering::Acquire),
            queue_length = bounds.length,
            queue_timeout_ms = u64::try_from(bounds.timeout.as_millis()).unwrap_or(u64::MAX),
            "requests refused with 503: every member of the pool at max_connections_per_member, and the queue full or waited on too long"
        );
        *log = LogState {
            next: now.checked_add(LOG_EVERY),
            full,
            timed_out,
        };
    }
}

/// A request in the queue; leaves it when dropped.
struct Waiter<'a> {
    queue: &'a Queue,
    slot: Arc<Slot>,
    /// It got what it waited for: the next waiter gets a turn, to see
    /// whether there is more room.
    served: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        if let Some(at) = state
            .waiters
            .iter()
            .position(|s| Arc::ptr_eq(s, &self.slot))
        {
            state.waiters.remove(at);
        }
        self.queue
            .waiting
            .store(state.waiters.len(), Ordering::SeqCst);
        // A turn given and not used goes to the next one.
        if self.served || self.slot.turn.load(Ordering::SeqCst) {
            if let Some(next) = state
                .waiters
                .iter()
                .find(|s| !s.turn.load(Ordering::Acquire))
            {
                next.grant();
            }
        }
    }
}

#[cfg(test)]
mod tests;
