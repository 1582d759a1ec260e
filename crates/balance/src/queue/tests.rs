//! The queue on tokio's paused clock: arrival order, the length bound, the
//! timeout, clients that go away, turns passed on, and a real pool whose
//! released slots wake the waiters.

use std::sync::atomic::AtomicUsize;

use tokio::task::JoinHandle;
use tokio::time::advance;

use super::*;
use crate::{MemberHealth, MemberSpec, NoPick, Picked, Policy, Pool};

/// A stand-in for a pool's slots: `free` of them, taken by attempts.
#[derive(Default)]
struct Slots {
    free: AtomicUsize,
}

impl Slots {
    fn take(&self) -> bool {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Frees a slot and tells the queue, as a dropped `Picked` does.
    fn release(&self, queue: &Queue) {
        self.free.fetch_add(1, Ordering::AcqRel);
        queue.released();
    }
}

fn bounds(length: usize, timeout_ms: u64) -> QueueBounds {
    QueueBounds {
        length,
        timeout: Duration::from_millis(timeout_ms),
    }
}

/// Runs the other tasks until `queue` has `n` waiters (the test runtime is
/// single-threaded, so this is deterministic).
async fn waiting(queue: &Queue, n: usize) {
    for _ in 0..1000 {
        if queue.stats().waiting == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{} waiting, not {n}", queue.stats().waiting);
}

/// A request that takes a slot, waiting if needed; yields its `id`.
fn request(
    queue: &Arc<Queue>,
    slots: &Arc<Slots>,
    id: usize,
) -> JoinHandle<Result<usize, Refusal>> {
    let (queue, slots) = (queue.clone(), slots.clone());
    tokio::spawn(async move {
        queue
            .wait(|_| {
                if slots.take() {
                    Attempt::Done(id)
                } else {
                    Attempt::Full
                }
            })
            .await
    })
}

#[tokio::test(start_paused = true)]
async fn a_free_slot_is_taken_at_once_without_queueing() {
    let queue = Arc::new(Queue::new("p", bounds(0, 1_000)));
    let slots = Arc::new(Slots::default());
    slots.free.store(1, Ordering::Release);
    assert_eq!(request(&queue, &slots, 7).await.unwrap(), Ok(7));
    assert_eq!(queue.stats(), QueueStats::default(), "nothing waited");
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order_one_per_released_slot() {
    let queue = Arc::new(Queue::new("p", bounds(100, 60_000)));
    let slots = Arc::new(Slots::default());
    let mut waiters = Vec::new();
    for id in 0..5 {
        waiters.push(request(&queue, &slots, id));
        waiting(&queue, id + 1).await;
    }
    for (served, waiter) in waiters.into_iter().enumerate() {
        slots.release(&queue);
        assert_eq!(waiter.await.unwrap(), Ok(served));
        assert_eq!(queue.stats().waiting, 4 - served);
    }
    assert_eq!(queue.stats().queued, 5);
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_queues_behind_waiters_even_if_a_slot_is_free() {
    let queue = Arc::new(Queue::new("p", bounds(100, 60_000)));
    let slots = Arc::new(Slots::default());
    let first = request(&queue, &slots, 1);
    waiting(&queue, 1).await;
    // A slot frees up without the queue being told yet, then a newcomer
    // arrives: it must not take the slot from the one waiting before it.
    slots.free.store(1, Ordering::Release);
    let newcomer = request(&queue, &slots, 2);
    waiting(&queue, 2).await;
    queue.released();
    assert_eq!(first.await.unwrap(), Ok(1));
    slots.release(&queue);
    assert_eq!(newcomer.await.unwrap(), Ok(2));
}

#[tokio::test(start_paused = true)]
async fn slots_freed_together_serve_as_many_waiters() {
    let queue = Arc::new(Queue::new("p", bounds(100, 60_000)));
    let slots = Arc::new(Slots::default());
    let waiters: Vec<_> = (0..3).map(|id| request(&queue, &slots, id)).collect();
    waiting(&queue, 3).await;
    // Three slots, but only one event (a new snapshot with more room, say
    // told to the first waiter only): the served waiters pass turns on.
    slots.free.store(3, Ordering::Release);
    queue.released();
    for (id, waiter) in waiters.into_iter().enumerate() {
        assert_eq!(waiter.await.unwrap(), Ok(id));
    }
}

#[tokio::test(start_paused = true)]
async fn one_more_than_length_is_refused_at_once() {
    let queue = Arc::new(Queue::new("p", bounds(2, 60_000)));
    let slots = Arc::new(Slots::default());
    let a = request(&queue, &slots, 1);
    let b = request(&queue, &slots, 2);
    waiting(&queue, 2).await;
    let started = Instant::now();
    assert_eq!(
        request(&queue, &slots, 3).await.unwrap(),
        Err(Refusal::Full)
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    // Length 0: nobody waits.
    let none = Arc::new(Queue::new("p", bounds(0, 60_000)));
    assert_eq!(request(&none, &slots, 4).await.unwrap(), Err(Refusal::Full));
    slots.release(&queue);
    slots.release(&queue);
    assert_eq!((a.await.unwrap(), b.await.unwrap()), (Ok(1), Ok(2)));
    let stats = queue.stats();
    assert_eq!((stats.queued, stats.full, stats.timed_out), (2, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_request_waits_the_timeout_then_is_refused() {
    let queue = Arc::new(Queue::new("p", bounds(10, 300)));
    let slots = Arc::new(Slots::default());
    let started = Instant::now();
    let waiter = request(&queue, &slots, 1);
    waiting(&queue, 1).await;
    advance(Duration::from_millis(299)).await;
    assert!(!waiter.is_finished());
    assert_eq!(waiter.await.unwrap(), Err(Refusal::TimedOut));
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(queue.stats().waiting, 0, "it left the queue");
    assert_eq!(queue.stats().timed_out, 1);
    // New bounds apply to new waiters.
    queue.set_bounds(bounds(10, 50));
    let started = Instant::now();
    assert_eq!(
        request(&queue, &slots, 2).await.unwrap(),
        Err(Refusal::TimedOut)
    );
    assert_eq!(started.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_away_leaves_and_passes_its_turn_on() {
    let queue = Arc::new(Queue::new("p", bounds(10, 60_000)));
    let slots = Arc::new(Slots::default());
    let gone = request(&queue, &slots, 1);
    waiting(&queue, 1).await;
    let next = request(&queue, &slots, 2);
    waiting(&queue, 2).await;
    // The first waiter is given the freed slot's turn and goes away before
    // it runs: the turn is not lost.
    slots.release(&queue);
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    assert_eq!(next.await.unwrap(), Ok(2));
    assert_eq!(queue.stats().waiting, 0);
}

#[tokio::test(start_paused = true)]
async fn wake_all_gives_every_waiter_a_turn() {
    let queue = Arc::new(Queue::new("p", bounds(10, 60_000)));
    let slots = Arc::new(Slots::default());
    let waiters: Vec<_> = (0..3).map(|id| request(&queue, &slots, id)).collect();
    waiting(&queue, 3).await;
    slots.free.store(2, Ordering::Release);
    queue.wake_all();
    waiting(&queue, 1).await;
    slots.release(&queue);
    for (id, waiter) in waiters.into_iter().enumerate() {
        assert_eq!(waiter.await.unwrap(), Ok(id));
    }
}

/// A pool of one member with room for `max` requests.
fn one_member(max: usize) -> (Pool, Arc<MemberHealth>) {
    let health = MemberHealth::new(true);
    let spec = MemberSpec {
        key: "a:80".into(),
        weight: 1,
        max_connections: max,
    };
    let pool = Pool::new(
        "p",
        Policy::WeightedRoundRobin,
        vec![(spec, health.clone())],
        None,
    );
    (pool, health)
}

async fn pick(pool: Pool) -> Result<Result<Picked, NoPick>, Refusal> {
    let queue = pool.queue().clone();
    queue
        .wait(|_| match pool.try_pick(&[]) {
            Ok(picked) => Attempt::Done(Ok(picked)),
            Err(NoPick::Full) => Attempt::full_until(pool.next_return(Instant::now())),
            Err(NoPick::Unavailable) => Attempt::Done(Err(NoPick::Unavailable)),
        })
        .await
}

#[tokio::test(start_paused = true)]
async fn a_dropped_pick_wakes_the_next_waiter_of_the_pool() {
    let (pool, health) = one_member(1);
    let first = pool.try_pick(&[]).unwrap();
    assert_eq!(pool.try_pick(&[]).unwrap_err(), NoPick::Full);
    let waiter = tokio::spawn(pick(pool.clone()));
    waiting(pool.queue(), 1).await;
    drop(first);
    let second = waiter.await.unwrap().unwrap().unwrap();
    assert_eq!((second.key(), health.in_flight()), ("a:80", 1));
    // Nothing available is not a reason to wait.
    health.set_healthy(false);
    drop(second);
    assert_eq!(pool.try_pick(&[]).unwrap_err(), NoPick::Unavailable);
    assert!(matches!(
        pick(pool.clone()).await,
        Ok(Err(NoPick::Unavailable))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_looks_again_when_an_ejection_ends() {
    let spec = |key: &str| MemberSpec {
        key: key.into(),
        weight: 1,
        max_connections: 1,
    };
    let ejection = Duration::from_secs(10);
    let pool = Pool::new(
        "p",
        Policy::WeightedRoundRobin,
        vec![
            (spec("a:80"), MemberHealth::new(true)),
            (spec("b:80"), MemberHealth::new(true)),
        ],
        Some(crate::PassiveConfig {
            consecutive_failures: 1,
            ejection_time: ejection,
            max_ejection_time: ejection,
        }),
    );
    // a fails once and is ejected for 10 s; b is busy with a long request.
    pool.try_pick(&[1])
        .unwrap()
        .report(crate::Outcome::ConnectFailure);
    let busy = pool.try_pick(&[]).unwrap();
    assert_eq!(busy.key(), "b:80");
    assert_eq!(pool.try_pick(&[]).unwrap_err(), NoPick::Full);
    let started = Instant::now();
    let waiter = tokio::spawn(pick(pool.clone()));
    waiting(pool.queue(), 1).await;
    // No slot is released and no event announces a's return: the waiter
    // looks again when the ejection ends, and gets a.
    let picked = waiter.await.unwrap().unwrap().unwrap();
    assert_eq!((picked.key(), started.elapsed()), ("a:80", ejection));
    drop(busy);
}
