//! The kernel heap: the bookkeeping of kernel objects, on a region of RAM reserved at boot.
//!
//! A size-class allocator: every block is a power of two from 16 bytes,
//! aligned to its size up to 4 KiB; freed blocks go on their class's free
//! list and are reused for that class; fresh blocks come from a bump
//! pointer. Simple and predictable; its one weakness (no coalescing) is
//! bounded because the kernel's allocations are few kinds of fixed size
//! plus CNode slot arrays.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

const CLASSES: usize = 48;
const MIN_CLASS: u32 = 4;

struct State {
    next: usize,
    end: usize,
    free: [usize; CLASSES],
}

/// The allocator.
pub struct KernelHeap(UnsafeCell<State>);

// SAFETY: the kernel runs on one core with interrupts masked and never
// re-enters itself, so the heap is never used by two contexts at once.
unsafe impl Sync for KernelHeap {}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(UnsafeCell::new(State {
    next: 0,
    end: 0,
    free: [0; CLASSES],
}));

/// Gives the heap the memory `[start, start + size)` (kernel-space addresses).
///
/// # Safety
///
/// Call once, before any allocation; the region must be mapped read/write,
/// unused by anything else for the kernel's lifetime.
pub unsafe fn init(start: usize, size: usize) {
    // SAFETY: no allocation has happened yet, so nothing else holds the state.
    let s = unsafe { &mut *HEAP.0.get() };
    s.next = start;
    s.end = start + size;
}

fn class(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS);
    let k = size.checked_next_power_of_two()?.trailing_zeros() as usize;
    (k < CLASSES && layout.align() <= 4096).then_some(k)
}

// SAFETY: blocks are handed out once until freed, each at least as large
// and as aligned as its layout asks (class size ≥ size and align; the bump
// pointer is aligned to min(class size, 4096) ≥ align).
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(k) = class(layout) else {
            return core::ptr::null_mut();
        };
        // SAFETY: see `Sync`: no other reference to the state is live.
        let s = unsafe { &mut *self.0.get() };
        let head = s.free[k];
        if head != 0 {
            // SAFETY: a free block of class k holds the next free block's
            // address in its first word (written by `dealloc`).
            s.free[k] = unsafe { *(head as *const usize) };
            return head as *mut u8;
        }
        let size = 1usize << k;
        let at = s.next.next_multiple_of(size.min(4096));
        if at + size > s.end {
            return core::ptr::null_mut();
        }
        s.next = at + size;
        at as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(k) = class(layout) else {
            return;
        };
        // SAFETY: see `Sync`.
        let s = unsafe { &mut *self.0.get() };
        // SAFETY: `ptr` is a block of class k (the caller's contract) at
        // least 16 bytes long and 16-byte aligned, no longer in use.
        unsafe { *(ptr as *mut usize) = s.free[k] };
        s.free[k] = ptr as usize;
    }
}

/// Bytes the heap has never handed out.
pub fn untouched() -> usize {
    // SAFETY: see `Sync`.
    let s = unsafe { &*HEAP.0.get() };
    s.end - s.next
}
