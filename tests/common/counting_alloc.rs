//! Counts the heap allocations made by the current thread, so "this path does not
//! allocate" is tested rather than believed. Other test threads do not disturb the count.
//!
//! A test binary opts in with
//! `#[path = "common/counting_alloc.rs"] mod counting_alloc;` and
//! `#[global_allocator] static ALLOC: counting_alloc::Counting = counting_alloc::Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The counting allocator: forwards to the system allocator.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the thread-local
// counter is a const-initialised Cell, which never allocates (`try_with` also keeps it
// safe during thread teardown).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations (and reallocations) this thread has made so far.
pub fn count() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}
