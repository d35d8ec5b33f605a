//! The one module with unsafe code: the heap's spin lock and the `GlobalAlloc` impl.
//!
//! Everything else in libmm is safe Rust and deals in addresses. Two things
//! cannot be written without `unsafe`:
//!
//! - [`SpinLock`]: a lock that makes [`GlobalHeap`] honestly `Sync`. It
//!   hands out `&mut T` from an `UnsafeCell` while an atomic flag is held.
//! - `unsafe impl GlobalAlloc for GlobalHeap`: the trait is unsafe to
//!   implement. The impl only converts between pointers and addresses and
//!   calls the safe logic in [`crate::global`]; it dereferences nothing.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use mm_core::memory::MemoryAccess;

use crate::global::GlobalHeap;
use crate::transport::Transport;

/// A test-and-test-and-set spin lock.
///
/// Clients are single-threaded today, so the lock is never contended; it is
/// there so that the global heap is `Sync` for real. [`SpinLock::try_lock`]
/// is what lets the global heap notice that it is already inside itself.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and at most one guard
// exists at a time (the flag is taken with Acquire and released with
// Release), so sharing the lock between threads shares `T` only by moving
// exclusive access between them: `T: Send` is what that requires, as for
// `std::sync::Mutex`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A lock holding `value`.
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock if it is free.
    #[inline(always)]
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            // `then`, not `then_some`: a guard built eagerly and dropped on
            // failure would unlock the lock its holder still holds.
            .then(|| SpinGuard { lock: self })
    }

    /// Takes the lock, spinning while another holder has it. Never call it
    /// while the calling thread holds this lock: it would spin forever.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        loop {
            if let Some(guard) = self.try_lock() {
                return guard;
            }
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    /// The value, through exclusive access to the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

/// Exclusive access to a [`SpinLock`]'s value; dropping it unlocks.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: this guard exists only while the flag is held by it (see
        // `try_lock`), so no other reference to the value exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow
        // through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// The pointer for an address the heap returned (`None`: null).
#[inline(always)]
fn to_ptr(addr: Option<u64>) -> *mut u8 {
    match addr {
        // The heap hands out addresses of memory mapped into this process
        // for this allocation (in QEMU, the process's own virtual
        // addresses); turning one into a pointer is the conversion the
        // design confines to this module.
        Some(a) => core::ptr::with_exposed_provenance_mut(a as usize),
        None => core::ptr::null_mut(),
    }
}

// SAFETY: `GlobalHeap`'s safe logic meets the `GlobalAlloc` contract:
// - `alloc` returns null or the address of a block of at least
//   `layout.size()` bytes aligned to `layout.align()`, mapped read/write in
//   this process and handed out to no one else until it is deallocated
//   (the slab's, the page source's, the metadata heap's and the direct
//   maps' bookkeeping are out of band and keep blocks disjoint — property
//   tested against a model);
// - `alloc_zeroed` returns such a block with its first `layout.size()`
//   bytes zero;
// - `realloc` returns null and leaves the block untouched, or returns a
//   block as above for the new size holding the old contents up to the
//   smaller size, the old block being freed if it moved;
// - no method unwinds (nothing panics on any input: errors become null or
//   are counted), and none calls back into itself while holding a lock:
//   allocations made while the main heap is busy go to the metadata heap,
//   whose lock is a leaf.
// These hold for addresses the process's memory maps as the heap was
// told (`RtMemory` over the process's own address space in QEMU).
unsafe impl<T, M> GlobalAlloc for GlobalHeap<T, M>
where
    T: Transport + Clone + Send,
    M: MemoryAccess + Clone + Send,
{
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        to_ptr(self.allocate(layout))
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.deallocate(ptr.expose_provenance() as u64, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        to_ptr(self.allocate_zeroed(layout))
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        to_ptr(self.reallocate(ptr.expose_provenance() as u64, layout, new_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_try_lock_leaves_the_lock_held() {
        let lock = SpinLock::new(5u32);
        let mut held = lock.try_lock().unwrap();
        assert!(lock.try_lock().is_none());
        // Still held after the failed attempt.
        assert!(lock.try_lock().is_none());
        *held += 1;
        drop(held);
        assert_eq!(*lock.lock(), 6);
        assert!(lock.try_lock().is_some());
    }

    #[test]
    fn the_lock_is_exclusive_across_threads() {
        use std::sync::Arc;
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: std::vec::Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let mut g = lock.lock();
                        // A non-atomic read-modify-write: lost updates
                        // would show if two guards ever coexisted.
                        let v = *g;
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 40_000);
    }
}
