//! The MM server's own heap: a `GlobalAlloc` over memory it maps for itself at start.
//!
//! The server cannot take its heap from the MM (it *is* the MM), so its
//! `main` carves RAM for it out of its boot Untypeds before the server
//! starts, maps it at [`HEAP_BASE`] with 2 MiB frames, and hands the range
//! to [`init`]. What lives here is the server's bookkeeping: the frame
//! allocator's per-frame arrays, the owner array, bit sets, page maps (one
//! 8 KiB leaf per 2 MiB of a client's address space), B-tree nodes.
//!
//! Two layers, both with their metadata inside free blocks:
//!
//! - **Small blocks** (up to 2 KiB, alignment up to their size): eight
//!   power-of-two classes from 16 bytes, each a singly linked free list,
//!   refilled by splitting a 16 KiB block of the large layer. Small blocks
//!   are reused for their class only.
//! - **Large blocks**: an address-ordered free list of ranges (a multiple
//!   of 64 bytes each), first fit, split at the front for alignment,
//!   coalesced with both neighbours on free. `realloc` grows a block in
//!   place when the range after it is free.
//!
//! A request it cannot serve gets a null pointer, which `alloc` turns into
//! the allocation-error handler: the server's heap is sized for its RAM at
//! start (see `main`), so that would be a sizing bug, reported loudly.
//!
//! The server is single-threaded, so the allocator needs no lock.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

/// Where the heap is mapped in the server's address space (away from its
/// image, stack and IPC buffer, and from the window at `WINDOW_BASE`).
pub const HEAP_BASE: u64 = 0x1000_0000_0000;

/// Granule of the large layer.
const GRANULE: usize = 64;
/// Smallest class: 16 bytes.
const MIN_CLASS: u32 = 4;
/// Classes 16 B .. 2 KiB.
const CLASSES: usize = 8;
/// Largest small block.
const SMALL_MAX: usize = 1 << (MIN_CLASS as usize + CLASSES - 1);
/// Bytes of large memory a class takes at a time.
const REFILL: usize = 16 << 10;

struct State {
    /// Heads of the small classes' free lists (0: empty).
    small: [usize; CLASSES],
    /// Head of the large free list (address order; 0: empty).
    free: usize,
    /// Bytes handed out by the large layer (including small refills).
    used: usize,
}

/// The allocator.
pub struct ServerHeap(UnsafeCell<State>);

// SAFETY: the MM server has one thread, and the allocator is never
// re-entered (it calls nothing that allocates), so the state is never used
// by two contexts at once.
unsafe impl Sync for ServerHeap {}

/// The heap.
#[global_allocator]
pub static HEAP: ServerHeap = ServerHeap(UnsafeCell::new(State {
    small: [0; CLASSES],
    free: 0,
    used: 0,
}));

/// A free range of the large layer, stored in its first 16 bytes.
#[repr(C)]
struct FreeRange {
    size: usize,
    next: usize,
}

/// Gives the heap `[start, start + size)`.
///
/// # Safety
///
/// Call once, before any allocation; the range must be mapped read/write,
/// `GRANULE`-aligned, and used by nothing else for the process's lifetime.
pub unsafe fn init(start: usize, size: usize) {
    // SAFETY: no allocation has happened yet, so nothing else holds the state.
    let s = unsafe { &mut *HEAP.0.get() };
    let size = size & !(GRANULE - 1);
    if size >= GRANULE {
        // SAFETY: the range is unused heap memory (the caller's contract).
        unsafe { write_range(start, size, 0) };
        s.free = start;
    }
}

/// Writes a free-range header at `at`.
///
/// # Safety
///
/// `at` must be free heap memory of at least 16 bytes, 16-byte aligned.
unsafe fn write_range(at: usize, size: usize, next: usize) {
    // SAFETY: the caller's contract.
    unsafe { (at as *mut FreeRange).write(FreeRange { size, next }) };
}

/// Reads the free-range header at `at`.
///
/// # Safety
///
/// `at` must be on the large free list.
unsafe fn read_range(at: usize) -> FreeRange {
    // SAFETY: the caller's contract: a header written by `write_range`.
    unsafe { (at as *const FreeRange).read() }
}

fn small_class(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS);
    (size <= SMALL_MAX).then(|| (size.next_power_of_two().trailing_zeros() - MIN_CLASS) as usize)
}

fn large_size(size: usize) -> Option<usize> {
    Some(size.checked_add(GRANULE - 1)? & !(GRANULE - 1))
}

impl State {
    /// Sets the `next` link of the range at `prev` (0: the list head).
    ///
    /// # Safety
    ///
    /// `prev` is 0 or on the large free list.
    unsafe fn link(&mut self, prev: usize, next: usize) {
        if prev == 0 {
            self.free = next;
        } else {
            // SAFETY: `prev` is on the list (the caller's contract).
            let r = unsafe { read_range(prev) };
            // SAFETY: as above; rewriting its own header.
            unsafe { write_range(prev, r.size, next) };
        }
    }

    /// Takes `size` bytes (a multiple of `GRANULE`) aligned to `align`
    /// from the large free list, first fit.
    fn take(&mut self, size: usize, align: usize) -> Option<usize> {
        let align = align.max(GRANULE);
        let (mut prev, mut cur) = (0, self.free);
        while cur != 0 {
            // SAFETY: `cur` is on the list.
            let r = unsafe { read_range(cur) };
            let at = cur.checked_next_multiple_of(align)?;
            let end = cur + r.size;
            if at.checked_add(size).is_some_and(|e| e <= end) {
                // Sizes and addresses are multiples of GRANULE, so the
                // parts before and after the block are empty or whole
                // ranges; they stay free.
                let tail = end - (at + size);
                let mut next = r.next;
                if tail > 0 {
                    // SAFETY: the tail is free memory inside this range.
                    unsafe { write_range(at + size, tail, next) };
                    next = at + size;
                }
                if at > cur {
                    // SAFETY: `cur` keeps the head part, still free.
                    unsafe { write_range(cur, at - cur, next) };
                } else {
                    // SAFETY: `prev` is 0 or on the list.
                    unsafe { self.link(prev, next) };
                }
                self.used += size;
                return Some(at);
            }
            prev = cur;
            cur = r.next;
        }
        None
    }

    /// Returns `[at, at + size)` to the large free list, merging neighbours.
    ///
    /// # Safety
    ///
    /// The range must have come from `take` (or be the unused tail of a
    /// block from it) and be no longer in use.
    unsafe fn give(&mut self, at: usize, size: usize) {
        self.used -= size;
        let (mut prev, mut cur) = (0, self.free);
        while cur != 0 && cur < at {
            prev = cur;
            // SAFETY: `cur` is on the list.
            cur = unsafe { read_range(cur) }.next;
        }
        let (mut start, mut len, mut next) = (at, size, cur);
        if cur != 0 && at + size == cur {
            // SAFETY: `cur` is on the list.
            let r = unsafe { read_range(cur) };
            len += r.size;
            next = r.next;
        }
        if prev != 0 {
            // SAFETY: `prev` is on the list.
            let p = unsafe { read_range(prev) };
            if prev + p.size == at {
                start = prev;
                len += p.size;
                // SAFETY: the merged range is free.
                unsafe { write_range(start, len, next) };
                return;
            }
        }
        // SAFETY: `[at, at + len)` is free memory.
        unsafe { write_range(start, len, next) };
        // SAFETY: `prev` is 0 or on the list.
        unsafe { self.link(prev, start) };
    }

    /// Grows the block `[at, at + old)` to `new` bytes in place if the
    /// range right after it is free and big enough.
    fn grow_in_place(&mut self, at: usize, old: usize, new: usize) -> bool {
        let want = at + old;
        let (mut prev, mut cur) = (0, self.free);
        while cur != 0 && cur < want {
            prev = cur;
            // SAFETY: `cur` is on the list.
            cur = unsafe { read_range(cur) }.next;
        }
        if cur != want {
            return false;
        }
        // SAFETY: `cur` is on the list.
        let r = unsafe { read_range(cur) };
        let extra = new - old;
        if r.size < extra {
            return false;
        }
        let rest = r.size - extra;
        let next = if rest > 0 {
            // SAFETY: the rest of the range stays free.
            unsafe { write_range(cur + extra, rest, r.next) };
            cur + extra
        } else {
            r.next
        };
        // SAFETY: `prev` is 0 or on the list.
        unsafe { self.link(prev, next) };
        self.used += extra;
        true
    }
}

// SAFETY: blocks are handed out once until freed. A small block of class k
// is 2^(k+4) bytes aligned to its size (carved from 16 KiB refills, which
// are 4 KiB-aligned), at least the layout's size and alignment. A large
// block is `large_size(size)` bytes at an address aligned to
// max(align, 64), taken from a free range that contains it.
unsafe impl GlobalAlloc for ServerHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded, not re-entered (see `Sync`).
        let s = unsafe { &mut *self.0.get() };
        if let Some(k) = small_class(layout) {
            if s.small[k] == 0 {
                let Some(block) = s.take(REFILL, 4096) else {
                    return core::ptr::null_mut();
                };
                let size = 1usize << (k as u32 + MIN_CLASS);
                for at in (block..block + REFILL).step_by(size).rev() {
                    // SAFETY: `at` is a fresh small block of the refill;
                    // it holds the link to the next free one.
                    unsafe { (at as *mut usize).write(s.small[k]) };
                    s.small[k] = at;
                }
            }
            let head = s.small[k];
            // SAFETY: `head` is a free small block holding the next one's address.
            s.small[k] = unsafe { (head as *const usize).read() };
            return head as *mut u8;
        }
        match large_size(layout.size()).and_then(|n| s.take(n, layout.align())) {
            Some(at) => at as *mut u8,
            None => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: single-threaded, not re-entered (see `Sync`).
        let s = unsafe { &mut *self.0.get() };
        if let Some(k) = small_class(layout) {
            // SAFETY: `ptr` is a small block of class k no longer in use.
            unsafe { (ptr as *mut usize).write(s.small[k]) };
            s.small[k] = ptr as usize;
            return;
        }
        if let Some(n) = large_size(layout.size()) {
            // SAFETY: `ptr` came from `take` with this size, now unused.
            unsafe { s.give(ptr as usize, n) };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // In place only while both the old and the new layout are large
        // blocks (`dealloc` tells the layers apart by the layout).
        let new_is_large = Layout::from_size_align(new_size, layout.align())
            .is_ok_and(|l| small_class(l).is_none());
        if small_class(layout).is_none()
            && new_is_large
            && let (Some(old), Some(new)) = (large_size(layout.size()), large_size(new_size))
        {
            if new <= old {
                if old > new {
                    // SAFETY: single-threaded (see `Sync`).
                    let s = unsafe { &mut *self.0.get() };
                    // SAFETY: the tail of the block is no longer in use.
                    unsafe { s.give(ptr as usize + new, old - new) };
                }
                return ptr;
            }
            // SAFETY: single-threaded (see `Sync`).
            let s = unsafe { &mut *self.0.get() };
            if s.grow_in_place(ptr as usize, old, new) {
                return ptr;
            }
        }
        // SAFETY: the default: allocate, copy, free (the layout is valid,
        // as the caller's contract says).
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}
