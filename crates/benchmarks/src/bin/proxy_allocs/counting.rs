//! A global allocator that counts the allocations made on the threads that ask for it (the proxy's), and their
//! bytes, then hands every call to the system allocator. The only `unsafe` of this program: implementing
//! `GlobalAlloc` is `unsafe` by definition, and each method only forwards to `System`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counts on the threads that called [`count_this_thread`].
pub struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated minus bytes freed on counted threads: what they hold.
static LIVE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // `const` and without a destructor: reading it never allocates.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
    /// Set while a backtrace is being taken: its own allocations are not traced.
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

/// Whether counted allocations record their backtraces (see [`take_sites`]).
static TRACE: AtomicBool = AtomicBool::new(false);
static SITES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records a backtrace of every counted allocation from now on (slow: for finding where they come from).
pub fn trace_sites(on: bool) {
    TRACE.store(on, Ordering::Relaxed);
}

/// Whether counted allocations are followed until they are freed (see [`take_live`]).
static TRACE_LIVE: AtomicBool = AtomicBool::new(false);
/// The followed allocations not freed yet: their backtraces by address.
static LIVE_SITES: Mutex<Option<HashMap<usize, String>>> = Mutex::new(None);

/// Follows every counted allocation made from now on until it is freed, with its backtrace (slow: for finding
/// what something holds). Frees are followed until [`take_live`].
pub fn trace_live(on: bool) {
    TRACE_LIVE.store(on, Ordering::Relaxed);
    if on {
        LIVE_SITES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new);
    }
}

/// The backtraces of the followed allocations still held, each with its size on its first line; stops following.
pub fn take_live() -> Vec<String> {
    TRACE_LIVE.store(false, Ordering::Relaxed);
    let taken = LIVE_SITES.lock().unwrap_or_else(|e| e.into_inner()).take();
    taken.map(|m| m.into_values().collect()).unwrap_or_default()
}

/// Starts following the allocation at `ptr` (its own allocations are neither traced nor counted).
fn follow(ptr: *mut u8, size: usize) {
    if ptr.is_null() || !counted() || !TRACE_LIVE.load(Ordering::Relaxed) || TRACING.with(Cell::get)
    {
        return;
    }
    TRACING.with(|t| t.set(true));
    let site = format!(
        "{size} bytes\n{}",
        std::backtrace::Backtrace::force_capture()
    );
    if let Some(live) = LIVE_SITES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
    {
        live.insert(ptr as usize, site);
    }
    TRACING.with(|t| t.set(false));
}

/// Stops following the allocation at `ptr`, freed.
fn unfollow(ptr: *mut u8) {
    if !counted() || TRACING.with(Cell::get) {
        return;
    }
    TRACING.with(|t| t.set(true));
    if let Some(live) = LIVE_SITES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
    {
        live.remove(&(ptr as usize));
    }
    TRACING.with(|t| t.set(false));
}

/// The backtraces recorded so far, each with the size asked for on its first line.
pub fn take_sites() -> Vec<String> {
    std::mem::take(&mut *SITES.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Records where the allocation comes from (the allocations this makes are neither traced nor counted).
fn trace(size: usize) {
    if TRACING.with(Cell::get) {
        return;
    }
    TRACING.with(|t| t.set(true));
    let site = format!(
        "{size} bytes\n{}",
        std::backtrace::Backtrace::force_capture()
    );
    SITES.lock().unwrap_or_else(|e| e.into_inner()).push(site);
    TRACING.with(|t| t.set(false));
}

/// Counts the allocations of the calling thread from now on.
pub fn count_this_thread() {
    COUNTED.with(|c| c.set(true));
}

/// What the counted threads allocated so far.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// Calls to `alloc`, `alloc_zeroed` and `realloc`.
    pub allocs: u64,
    /// Bytes those calls asked for.
    pub bytes: u64,
    /// Bytes allocated and not yet freed (frees counted on counted threads only).
    pub live: u64,
}

/// The counts now.
pub fn counts() -> Counts {
    Counts {
        allocs: ALLOCS.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
        live: LIVE.load(Ordering::Relaxed),
    }
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

fn on_alloc(size: usize) {
    if counted() && TRACE.load(Ordering::Relaxed) {
        trace(size);
    }
    if counted() && !TRACING.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
        LIVE.fetch_add(size as u64, Ordering::Relaxed);
    }
}

fn on_free(size: usize) {
    if counted() && !TRACING.with(Cell::get) {
        LIVE.fetch_sub(size as u64, Ordering::Relaxed);
    }
}

#[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
// SAFETY: every method forwards its arguments unchanged to `System`, which upholds `GlobalAlloc`'s contract; the
// counting around the calls never allocates (atomics and a `const` thread-local).
unsafe impl GlobalAlloc for Counting {
    #[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: the caller's layout, passed on (`GlobalAlloc::alloc`'s contract is the caller's).
        let ptr = unsafe { System.alloc(layout) };
        follow(ptr, layout.size());
        ptr
    }

    #[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        follow(ptr, layout.size());
        ptr
    }

    #[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_free(layout.size());
        unfollow(ptr);
        // SAFETY: `ptr` came from `System` through this allocator, with this layout (the caller's contract).
        unsafe { System.dealloc(ptr, layout) }
    }

    #[allow(unsafe_code, reason = "a place ARCHITECTURE.md names")]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_free(layout.size());
        on_alloc(new_size);
        unfollow(ptr);
        // SAFETY: as for `dealloc`, and `new_size` is the caller's valid size.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        follow(moved, new_size);
        moved
    }
}
