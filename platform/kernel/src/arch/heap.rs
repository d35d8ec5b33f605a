//! The kernel heap: the bookkeeping of kernel objects, on a region of RAM reserved at boot.
//!
//! A size-class allocator: every block is a power of two from 16 bytes,
//! aligned to its size up to 4 KiB; freed blocks go on their class's free
//! list and are reused for that class; fresh blocks come from a bump
//! pointer, and the gaps its alignment skips go on the free lists. When
//! both the class's list and the bump region are exhausted, a larger free
//! block is split (buddy-style, without merging), so memory freed in big
//! blocks still serves small requests.
//!
//! It never panics: a request it cannot serve gets a null pointer, which
//! the kernel only ever meets through fallible allocation (`try_reserve`)
//! after boot — the kernel's logic allocates nowhere else (see
//! `kerncore::invoke`'s retype), so no user action can exhaust the heap
//! into a panic.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

const CLASSES: usize = 48;
const MIN_CLASS: usize = 4;
/// Blocks are aligned to their size up to this.
const MAX_ALIGN: usize = 4096;

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
    (k < CLASSES && layout.align() <= MAX_ALIGN).then_some(k)
}

impl State {
    /// Takes a block of class `k` off its free list.
    ///
    /// # Safety
    ///
    /// Every block on a free list is unused heap memory whose first word
    /// holds the next block's address (`push`).
    unsafe fn pop(&mut self, k: usize) -> Option<usize> {
        let head = self.free[k];
        if head == 0 {
            return None;
        }
        // SAFETY: `head` is a free block (the caller's contract), at least
        // 16 bytes and 16-byte aligned, holding the next one's address.
        self.free[k] = unsafe { *(head as *const usize) };
        Some(head)
    }

    /// Puts the unused block `at` of class `k` on its free list.
    ///
    /// # Safety
    ///
    /// `at` must be unused heap memory of `2^k` bytes (k ≥ 4), aligned to
    /// `min(2^k, MAX_ALIGN)`, which nothing else references.
    unsafe fn push(&mut self, k: usize, at: usize) {
        // SAFETY: the caller hands over the block, which has room for a word.
        unsafe { *(at as *mut usize) = self.free[k] };
        self.free[k] = at;
    }

    /// Puts `[from, to)`, a gap the bump pointer skipped, on the free
    /// lists as aligned blocks.
    ///
    /// # Safety
    ///
    /// The range must be unused heap memory below the bump pointer, 16-byte
    /// aligned at both ends.
    unsafe fn recycle(&mut self, mut from: usize, to: usize) {
        while to - from >= 1 << MIN_CLASS {
            let align = 1usize << from.trailing_zeros().min(12);
            let fits = 1usize << (usize::BITS - 1 - (to - from).leading_zeros());
            let size = align.min(fits);
            // SAFETY: the block lies in the unused gap and is aligned to
            // its size (at most MAX_ALIGN).
            unsafe { self.push(size.trailing_zeros() as usize, from) };
            from += size;
        }
    }
}

// SAFETY: blocks are handed out once until freed, each at least as large
// and as aligned as its layout asks (class size ≥ size and align; blocks
// of class k are aligned to min(2^k, 4096) ≥ align, whether they come from
// the bump pointer, a free list, or the halves of a split block).
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(k) = class(layout) else {
            return core::ptr::null_mut();
        };
        // SAFETY: see `Sync`: no other reference to the state is live.
        let s = unsafe { &mut *self.0.get() };
        // SAFETY: the free lists hold only free blocks.
        if let Some(block) = unsafe { s.pop(k) } {
            return block as *mut u8;
        }
        let size = 1usize << k;
        let at = s.next.next_multiple_of(size.min(MAX_ALIGN));
        if at.checked_add(size).is_some_and(|end| end <= s.end) {
            let gap = s.next;
            s.next = at + size;
            // SAFETY: the alignment gap is unused memory below the bump
            // pointer; `next` and `at` are 16-byte aligned.
            unsafe { s.recycle(gap, at) };
            return at as *mut u8;
        }
        // Split the smallest larger free block: keep its first 2^k bytes
        // and free the halves above them (each aligned to its size).
        for j in k + 1..CLASSES {
            // SAFETY: as above.
            if let Some(block) = unsafe { s.pop(j) } {
                for m in (k..j).rev() {
                    // SAFETY: `block + 2^m` starts the unused upper half of
                    // a `2^(m+1)` block aligned to min(2^(m+1), 4096).
                    unsafe { s.push(m, block + (1 << m)) };
                }
                return block as *mut u8;
            }
        }
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(k) = class(layout) else {
            return;
        };
        // SAFETY: see `Sync`.
        let s = unsafe { &mut *self.0.get() };
        // SAFETY: `ptr` is a block of class k (the caller's contract), no
        // longer in use.
        unsafe { s.push(k, ptr as usize) };
    }
}
