//! A `GlobalAlloc` over libmm: a process's Rust heap (`Vec`, `Box`, `String`) on MM-served memory.
//!
//! [`GlobalHeap`] is the process's `#[global_allocator]` in QEMU:
//!
//! ```no_run
//! #[global_allocator]
//! static HEAP: libmm::global::RtGlobalHeap = libmm::global::RtGlobalHeap::rt();
//! # fn main() {}
//! ```
//!
//! It connects on first use (finding the `"mm"` endpoint in the boot info)
//! and serves allocations from three places:
//!
//! 1. **The main heap**, a [`Heap`] — the client-side slab over chunks of
//!    demand-zero address space — for everything up to 4 MiB with alignment
//!    up to 4 MiB. Sizes up to 8 KiB with the usual alignment (≤ 8) go
//!    straight to the slab's kmalloc fast path: a try-lock, a magazine pop,
//!    an unlock, no IPC. Larger alignments pick a size class that is a
//!    multiple of the alignment (power-of-two classes are naturally
//!    aligned; large allocations take naturally aligned page blocks).
//! 2. **Direct maps** for anything bigger (Linux's `kvmalloc` falling back
//!    to vmalloc): one anonymous mapping per allocation (one `Map`, aligned
//!    by the server for alignments up to 1 GiB), recorded in a
//!    sorted table so that `dealloc` unmaps exactly what was mapped and
//!    `realloc` can shrink in place or grow in place (`MAP_FIXED_NOREPLACE`
//!    just past the end) before it copies.
//! 3. **The metadata heap** ([`MetaHeap`]) for every allocation made while
//!    the main heap is busy.
//!
//! # Why a metadata heap
//!
//! mm-core's slab keeps its metadata in `alloc` collections (geometrically
//! growing arrays: the page map, per-cache descriptors and object states),
//! which allocate through the global allocator — this one — while it is in
//! the middle of an allocation. With one lock around the main heap, that
//! inner allocation would spin forever on its own lock. Instead, an
//! allocation that finds the main heap's lock taken goes to the metadata
//! heap: a separate region mapped once at start, managed by a first-fit
//! allocator whose own bookkeeping is a fixed array, so it never allocates
//! and its lock is a leaf. In a single-threaded client a busy main heap
//! always means exactly that re-entry, so the metadata heap holds the slab's
//! (and the page source's and direct-map table's) metadata and nothing else.
//! `dealloc` and `realloc` route by address: the metadata region is one
//! range, checked first.
//!
//! With several threads, a busy main heap may also mean that another thread
//! holds it. A heap told how to name threads ([`GlobalHeap::with_thread_id`])
//! records the lock's holder and tells the two apart: its own re-entry goes
//! to the metadata heap, another thread waits. Without it, every busy main
//! heap counts as re-entry: exact in a single-threaded process (every
//! client today), and still correct with threads — blocks are routed back
//! by address — but user data then fills the metadata heap.
//!
//! The slab's metadata grows a slab at a time, never per object, so the
//! fast paths never re-enter.
//!
//! # Memory access
//!
//! Zeroing (`alloc_zeroed`) and copying (`realloc`) go through the
//! [`MemoryAccess`]; blocks carved from untouched pages (a fresh chunk, a
//! trimmed block, a new direct map, the metadata region above its
//! high-water mark) are known to be zero and are not cleared again.
//!
//! On the host, a process's own Rust heap is the host's, so this is a
//! QEMU-side feature; its logic is tested on the host through the safe
//! methods ([`GlobalHeap::allocate`] and friends) with the mock server, and
//! end to end by a host test binary whose global allocator it is.

use alloc::vec::Vec;
use core::alloc::Layout;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use mm_core::addr::PAGE_SIZE;
use mm_core::memory::MemoryAccess;
use mm_core::slab::{KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE, kmalloc_size_class};

use crate::heap::{Heap, HeapConfig, HeapStats};
use crate::memory::RtMemory;
use crate::meta::{MetaHeap, MetaStats};
use crate::mm::Mm;
use crate::protocol::{Align, MapFlags, Prot};
use crate::raw::{SpinGuard, SpinLock};
use crate::transport::{CallError, Error, RtTransport, Transport};

/// The alignment every kmalloc class guarantees (Linux's `ARCH_KMALLOC_MINALIGN` on arm64).
pub const MIN_ALIGN: usize = 8;

/// How a [`GlobalHeap`] is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalConfig {
    /// The main heap's configuration.
    pub heap: HeapConfig,
    /// Bytes of address space reserved for the metadata heap (demand-zero:
    /// only what is used is ever backed).
    pub meta_bytes: u64,
}

impl GlobalConfig {
    /// The defaults: [`HeapConfig::DEFAULT`] and 64 MiB for metadata.
    pub const DEFAULT: GlobalConfig = GlobalConfig {
        heap: HeapConfig::DEFAULT,
        meta_bytes: 64 << 20,
    };
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig::DEFAULT
    }
}

/// How a [`GlobalHeap`] gets its transport and memory access on first use.
pub type Connect<T, M> = fn() -> Result<(T, M), Error>;

/// A global heap's accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalStats {
    /// The main heap.
    pub heap: HeapStats,
    /// The metadata heap.
    pub meta: MetaStats,
    /// Direct maps live.
    pub direct_maps: usize,
    /// Bytes of direct maps live.
    pub direct_bytes: u64,
    /// Frees of addresses that were not allocations (ignored).
    pub bad_frees: u64,
}

/// The main heap and the direct maps.
struct State<T: Transport + Clone, M: MemoryAccess> {
    heap: Heap<T, M>,
    /// Direct maps as `(addr, len)`, sorted by address.
    direct: Vec<(u64, u64)>,
    direct_bytes: u64,
    bad_frees: u64,
}

/// The main heap's lifecycle. (It lives once, in a static: the size
/// difference between the variants costs nothing.)
#[allow(clippy::large_enum_variant)]
enum Main<T: Transport + Clone, M: MemoryAccess> {
    /// Not yet connected: the first allocation connects.
    Unconnected,
    /// Connecting failed: every allocation fails.
    Failed(Error),
    /// Serving.
    Ready(State<T, M>),
}

/// The metadata heap and its memory access.
struct Meta<M> {
    heap: Option<MetaHeap>,
    mem: Option<M>,
}

/// A global allocator over libmm. See the module documentation.
pub struct GlobalHeap<T: Transport + Clone, M: MemoryAccess + Clone> {
    main: SpinLock<Main<T, M>>,
    meta: SpinLock<Meta<M>>,
    /// The metadata region, for routing frees without a lock.
    meta_base: AtomicU64,
    meta_len: AtomicU64,
    connect: Option<Connect<T, M>>,
    config: GlobalConfig,
    /// Names the calling thread, for a heap shared by several threads.
    thread_id: Option<fn() -> usize>,
    /// The main lock's holder: its thread id + 1, or 0 (none, or unknown).
    owner: AtomicUsize,
}

/// The main lock held, with its holder recorded while held.
struct MainGuard<'a, T: Transport + Clone, M: MemoryAccess> {
    guard: SpinGuard<'a, Main<T, M>>,
    owner: &'a AtomicUsize,
}

impl<T: Transport + Clone, M: MemoryAccess> Deref for MainGuard<'_, T, M> {
    type Target = Main<T, M>;
    #[inline(always)]
    fn deref(&self) -> &Main<T, M> {
        &self.guard
    }
}

impl<T: Transport + Clone, M: MemoryAccess> DerefMut for MainGuard<'_, T, M> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Main<T, M> {
        &mut self.guard
    }
}

impl<T: Transport + Clone, M: MemoryAccess> Drop for MainGuard<'_, T, M> {
    #[inline(always)]
    fn drop(&mut self) {
        // Cleared before the lock is released (the guard field drops after this).
        self.owner.store(0, Ordering::Relaxed);
    }
}

/// The global heap of a process: the real transport and `rt::mem`.
pub type RtGlobalHeap = GlobalHeap<RtTransport, RtMemory>;

/// Connects through the boot info's `"mm"` endpoint.
fn rt_connect() -> Result<(RtTransport, RtMemory), Error> {
    Ok((RtTransport::from_boot_info(rt::boot_info())?, RtMemory))
}

impl RtGlobalHeap {
    /// The process's global heap with the default configuration, connecting
    /// on first use through the boot info's `"mm"` endpoint.
    pub const fn rt() -> Self {
        GlobalHeap::new(rt_connect, GlobalConfig::DEFAULT)
    }
}

/// `value` rounded up to a multiple of `align` (a power of two), or `None`.
fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// The page order holding `size` bytes.
fn order_for(size: usize) -> u32 {
    size.div_ceil(PAGE_SIZE as usize)
        .next_power_of_two()
        .trailing_zeros()
}

/// The kmalloc size that gives a block of `size` bytes aligned to `align`,
/// or `None` if the slab cannot (the block is then a direct map).
pub fn slab_size(size: usize, align: usize) -> Option<usize> {
    let size = size.max(1);
    if align <= MIN_ALIGN {
        return (size <= KMALLOC_MAX_SIZE).then_some(size);
    }
    let s = size.max(align);
    if s > KMALLOC_MAX_SIZE {
        return None;
    }
    if s > KMALLOC_MAX_CACHE_SIZE {
        // Page blocks from the arena are naturally aligned to their size,
        // which is at least `s`, hence at least `align`.
        return Some(s);
    }
    let class = kmalloc_size_class(s)?;
    // Classes are aligned to their largest power-of-two divisor.
    if 1usize << class.trailing_zeros() >= align {
        Some(s)
    } else {
        Some(s.next_power_of_two())
    }
}

/// The usable size a fresh slab allocation for `size` and `align` gets.
fn ideal_usable(size: usize, align: usize) -> Option<usize> {
    let s = slab_size(size, align)?;
    if s <= KMALLOC_MAX_CACHE_SIZE {
        kmalloc_size_class(s)
    } else {
        Some((PAGE_SIZE as usize) << order_for(s))
    }
}

impl<T: Transport + Clone, M: MemoryAccess> State<T, M> {
    /// Allocates; the fast path is the slab's kmalloc.
    #[inline(always)]
    fn alloc(&mut self, layout: Layout) -> Option<u64> {
        let size = layout.size();
        if layout.align() <= MIN_ALIGN && size.wrapping_sub(1) < KMALLOC_MAX_CACHE_SIZE {
            return self.heap.kmalloc(size).ok();
        }
        self.alloc_slow(layout, false)
    }

    /// Everything but the fast path: alignment, large sizes, zeroing.
    #[inline(never)]
    fn alloc_slow(&mut self, layout: Layout, zeroed: bool) -> Option<u64> {
        let size = layout.size().max(1);
        match slab_size(size, layout.align()) {
            Some(s) => {
                let addr = self.heap.kmalloc(s).ok()?;
                if zeroed {
                    self.heap
                        .zero_new(addr, size, s > KMALLOC_MAX_CACHE_SIZE)
                        .ok()?;
                }
                Some(addr)
            }
            // Fresh anonymous memory is zero.
            None => self.direct_map(layout),
        }
    }

    /// Frees; the fast path is the slab's kfree.
    #[inline(always)]
    fn dealloc(&mut self, addr: u64) {
        if self.heap.kfree(addr).is_err() {
            self.dealloc_other(addr);
        }
    }

    #[inline(never)]
    fn dealloc_other(&mut self, addr: u64) {
        match self.direct_index(addr) {
            Ok(i) => {
                let (addr, len) = self.direct.remove(i);
                self.direct_bytes -= len;
                // If the server refuses, the memory stays mapped: leaked,
                // not reused, so nothing is corrupted.
                let _ = self.heap.mm().munmap(addr, len);
            }
            Err(_) => self.bad_frees += 1,
        }
    }

    fn direct_index(&self, addr: u64) -> Result<usize, usize> {
        self.direct.binary_search_by_key(&addr, |&(a, _)| a)
    }

    /// Maps a fresh region for `layout`, aligned as it asks.
    fn direct_map(&mut self, layout: Layout) -> Option<u64> {
        let len = align_up(layout.size().max(1) as u64, PAGE_SIZE)?;
        let align = layout.align() as u64;
        self.direct.try_reserve(1).ok()?;
        let mm = self.heap.mm();
        let none = MapFlags::default();
        let fits = Align::from_bytes(align).filter(|a| a.within(Align::MAX_MAP));
        let addr = if let Some(a) = fits {
            // One request, aligned by the server.
            mm.mmap_aligned_raw(0, len, Prot::READ_WRITE, none, a)
                .ok()
                .filter(|at| at.is_multiple_of(align))?
        } else {
            // Beyond what the server aligns: map more and trim.
            let padded = len.checked_add(align)?;
            let start = mm.mmap_raw(0, padded, Prot::READ_WRITE, none).ok()?;
            let base = align_up(start, align)?;
            // The slack is untouched reserved space: harmless if it stays.
            if base > start {
                let _ = mm.munmap(start, base - start);
            }
            let tail = start + padded - (base + len);
            if tail > 0 {
                let _ = mm.munmap(base + len, tail);
            }
            base
        };
        match self.direct_index(addr) {
            Err(i) => self.direct.insert(i, (addr, len)),
            // The server handed out an address that is still ours: a
            // server bug; refuse rather than alias.
            Ok(_) => return None,
        }
        self.direct_bytes += len;
        Some(addr)
    }

    /// Copies `len` bytes from `src` to the new block `dst`; on failure
    /// frees `dst`.
    fn copy_or_undo(&mut self, dst: u64, src: u64, len: usize) -> Option<()> {
        if self.heap.mem_mut().copy(dst, src, len as u64).is_err() {
            self.dealloc(dst);
            return None;
        }
        Some(())
    }

    /// Reallocates a block of the main heap or a direct map.
    fn realloc(&mut self, addr: u64, old: Layout, new: Layout) -> Option<u64> {
        if let Ok(i) = self.direct_index(addr) {
            return self.realloc_direct(i, old, new);
        }
        let usable = self.heap.ksize(addr).ok()?;
        if new.size() <= usable && ideal_usable(new.size(), new.align()) == Some(usable) {
            return Some(addr);
        }
        match self.alloc(new) {
            Some(moved) => {
                self.copy_or_undo(moved, addr, old.size().min(new.size()))?;
                self.dealloc(addr);
                Some(moved)
            }
            // Shrinking can always stay where it is.
            None if new.size() <= usable => Some(addr),
            None => None,
        }
    }

    /// Reallocates direct map `i`.
    fn realloc_direct(&mut self, i: usize, old: Layout, new: Layout) -> Option<u64> {
        let (addr, len) = self.direct[i];
        let size = new.size().max(1);
        let keep = old.size().min(new.size());
        if slab_size(size, new.align()).is_some()
            && let Some(moved) = self.alloc(new)
        {
            self.copy_or_undo(moved, addr, keep)?;
            self.dealloc_other(addr);
            return Some(moved);
        }
        let new_len = align_up(size as u64, PAGE_SIZE)?;
        let mm = self.heap.mm().clone();
        if new_len <= len {
            if new_len < len && mm.munmap(addr + new_len, len - new_len).is_ok() {
                self.direct[i].1 = new_len;
                self.direct_bytes -= len - new_len;
            }
            return Some(addr);
        }
        // Grow in place if the space after it is free.
        let extra = new_len - len;
        match mm.mmap_raw(
            addr + len,
            extra,
            Prot::READ_WRITE,
            MapFlags::FIXED_NOREPLACE,
        ) {
            Ok(at) if at == addr + len => {
                self.direct[i].1 = new_len;
                self.direct_bytes += extra;
                return Some(addr);
            }
            Ok(elsewhere) => {
                let _ = mm.munmap(elsewhere, extra);
            }
            Err(_) => {}
        }
        let moved = self.direct_map(new)?;
        self.copy_or_undo(moved, addr, keep)?;
        self.dealloc_other(addr);
        Some(moved)
    }
}

impl<T: Transport + Clone, M: MemoryAccess + Clone> GlobalHeap<T, M> {
    /// A global heap that connects with `connect` on first use. `const`, for
    /// a `static` `#[global_allocator]`.
    pub const fn new(connect: Connect<T, M>, config: GlobalConfig) -> Self {
        GlobalHeap {
            main: SpinLock::new(Main::Unconnected),
            meta: SpinLock::new(Meta {
                heap: None,
                mem: None,
            }),
            meta_base: AtomicU64::new(0),
            meta_len: AtomicU64::new(0),
            connect: Some(connect),
            config,
            thread_id: None,
            owner: AtomicUsize::new(0),
        }
    }

    /// The same heap, told how to name the calling thread (any value unique
    /// among the process's live threads, e.g. the address of a
    /// thread-local; it must not allocate). Needed only when several
    /// threads allocate: then a thread that finds the main heap busy can
    /// tell its own re-entry (served by the metadata heap) from another
    /// thread holding the lock (it waits). Without it, a busy main heap is
    /// always taken for re-entry — exact in a single-threaded process, and
    /// still correct but wasteful of the metadata heap with several threads.
    pub const fn with_thread_id(mut self, thread_id: fn() -> usize) -> Self {
        self.thread_id = Some(thread_id);
        self
    }

    /// A global heap connected now over `transport` and `mem` (for tests,
    /// and for a heap that is not the process's `#[global_allocator]`).
    /// Maps the metadata region now; fails if the server refuses it.
    pub fn with_transport(transport: T, mem: M, config: GlobalConfig) -> Result<Self, Error> {
        let mut heap = GlobalHeap {
            main: SpinLock::new(Main::Unconnected),
            meta: SpinLock::new(Meta {
                heap: None,
                mem: None,
            }),
            meta_base: AtomicU64::new(0),
            meta_len: AtomicU64::new(0),
            connect: None,
            config,
            thread_id: None,
            owner: AtomicUsize::new(0),
        };
        let mut main = Main::Unconnected;
        heap.connect_with(&mut main, Ok((transport, mem)));
        match main {
            Main::Failed(e) => Err(e),
            ready => {
                *heap.main.get_mut() = ready;
                Ok(heap)
            }
        }
    }

    /// Connects: maps the metadata region, then builds the main heap. Runs
    /// with the main lock held, so the main heap's own allocations already
    /// go to the metadata heap.
    fn connect_with(&self, main: &mut Main<T, M>, conn: Result<(T, M), Error>) {
        let (transport, mem) = match conn {
            Ok(c) => c,
            Err(e) => {
                *main = Main::Failed(e);
                return;
            }
        };
        let mm = Mm::new(transport);
        let len = align_up(self.config.meta_bytes.max(PAGE_SIZE), PAGE_SIZE).unwrap_or(PAGE_SIZE);
        let base = match mm.mmap_raw(0, len, Prot::READ_WRITE, MapFlags::default()) {
            Ok(base) => base,
            Err(e) => {
                *main = Main::Failed(e);
                return;
            }
        };
        {
            let mut meta = self.meta.lock();
            meta.heap = Some(MetaHeap::new(base, len));
            meta.mem = Some(mem.clone());
        }
        self.meta_base.store(base, Ordering::Release);
        self.meta_len.store(len, Ordering::Release);
        *main = Main::Ready(State {
            heap: Heap::new(mm, mem, self.config.heap),
            direct: Vec::new(),
            direct_bytes: 0,
            bad_frees: 0,
        });
    }

    /// Connects if not yet connected (the main lock held).
    #[cold]
    fn connect_locked(&self, main: &mut Main<T, M>) {
        if let Main::Unconnected = main {
            let conn = match self.connect {
                Some(connect) => connect(),
                None => Err(Error::Call(CallError::NoServer)),
            };
            self.connect_with(main, conn);
        }
    }

    /// Records the calling thread as the main lock's holder.
    #[inline(always)]
    fn own<'a>(&'a self, guard: SpinGuard<'a, Main<T, M>>) -> MainGuard<'a, T, M> {
        if let Some(id) = self.thread_id {
            self.owner.store(id().wrapping_add(1), Ordering::Relaxed);
        }
        MainGuard {
            guard,
            owner: &self.owner,
        }
    }

    /// Takes the main lock if it is free.
    #[inline(always)]
    fn try_lock_main(&self) -> Option<MainGuard<'_, T, M>> {
        self.main.try_lock().map(|g| self.own(g))
    }

    /// Takes the main lock, waiting for another thread to release it.
    fn lock_main(&self) -> MainGuard<'_, T, M> {
        let g = self.main.lock();
        self.own(g)
    }

    /// The main lock is taken: whether by the calling thread itself (a
    /// re-entry from inside the main heap). Without a thread id, always.
    #[inline(never)]
    fn reentered(&self) -> bool {
        match self.thread_id {
            None => true,
            Some(id) => self.owner.load(Ordering::Relaxed) == id().wrapping_add(1),
        }
    }

    /// Whether `addr` lies in the metadata region.
    #[inline(always)]
    fn in_meta(&self, addr: u64) -> bool {
        addr.wrapping_sub(self.meta_base.load(Ordering::Acquire))
            < self.meta_len.load(Ordering::Acquire)
    }

    /// Allocates from the metadata heap.
    #[inline(never)]
    fn meta_alloc(&self, layout: Layout, zeroed: bool) -> Option<u64> {
        let mut meta = self.meta.lock();
        let Meta { heap, mem } = &mut *meta;
        let heap = heap.as_mut()?;
        let (addr, dirty) = heap.alloc(layout.size(), layout.align())?;
        let dirty = dirty.min(layout.size() as u64);
        if zeroed && dirty > 0 {
            let cleared = mem.as_mut().map(|m| m.zero(addr, dirty));
            if !matches!(cleared, Some(Ok(()))) {
                heap.free(addr, layout.size());
                return None;
            }
        }
        Some(addr)
    }

    /// Allocates a block for `layout`: its address, or `None` when out of
    /// memory. The safe logic behind `GlobalAlloc::alloc`.
    #[inline]
    pub fn allocate(&self, layout: Layout) -> Option<u64> {
        loop {
            if let Some(mut main) = self.try_lock_main() {
                if let Main::Ready(state) = &mut *main {
                    return state.alloc(layout);
                }
                self.connect_locked(&mut main);
                return match &mut *main {
                    Main::Ready(state) => state.alloc(layout),
                    _ => None,
                };
            }
            if self.reentered() {
                return self.meta_alloc(layout, false);
            }
            core::hint::spin_loop();
        }
    }

    /// Allocates a block for `layout` whose first `layout.size()` bytes are
    /// zero. The logic behind `GlobalAlloc::alloc_zeroed`.
    pub fn allocate_zeroed(&self, layout: Layout) -> Option<u64> {
        loop {
            if let Some(mut main) = self.try_lock_main() {
                self.connect_locked(&mut main);
                return match &mut *main {
                    Main::Ready(state) => state.alloc_slow(layout, true),
                    _ => None,
                };
            }
            if self.reentered() {
                return self.meta_alloc(layout, true);
            }
            core::hint::spin_loop();
        }
    }

    /// Frees the block at `addr` allocated for `layout`. Addresses that are
    /// not live blocks are counted ([`GlobalStats::bad_frees`]) and ignored.
    /// The logic behind `GlobalAlloc::dealloc`.
    #[inline]
    pub fn deallocate(&self, addr: u64, layout: Layout) {
        if self.in_meta(addr) {
            let mut meta = self.meta.lock();
            if let Some(heap) = meta.heap.as_mut() {
                heap.free(addr, layout.size());
            }
            return;
        }
        let mut main = self.lock_main();
        if let Main::Ready(state) = &mut *main {
            state.dealloc(addr);
        }
    }

    /// Resizes the block at `addr` (allocated for `layout`) to `new_size`
    /// bytes, keeping its contents up to the smaller size: the new address,
    /// or `None` with the block untouched. The logic behind
    /// `GlobalAlloc::realloc`.
    pub fn reallocate(&self, addr: u64, layout: Layout, new_size: usize) -> Option<u64> {
        let new = Layout::from_size_align(new_size, layout.align()).ok()?;
        if self.in_meta(addr) {
            return self.meta_realloc(addr, layout, new);
        }
        let mut main = self.lock_main();
        match &mut *main {
            Main::Ready(state) => state.realloc(addr, layout, new),
            _ => None,
        }
    }

    /// Reallocates a block of the metadata heap: in place if the rounded
    /// size is the same, else by allocating (wherever the routing says),
    /// copying and freeing.
    fn meta_realloc(&self, addr: u64, old: Layout, new: Layout) -> Option<u64> {
        if MetaHeap::block_size(old.size()) == MetaHeap::block_size(new.size()) {
            return Some(addr);
        }
        let moved = self.allocate(new)?;
        let mut meta = self.meta.lock();
        let Meta { heap, mem } = &mut *meta;
        let keep = old.size().min(new.size()) as u64;
        let copied = mem.as_mut().map(|m| m.copy(moved, addr, keep));
        if !matches!(copied, Some(Ok(()))) {
            drop(meta);
            self.deallocate(moved, new);
            return None;
        }
        if let Some(heap) = heap.as_mut() {
            heap.free(addr, old.size());
        }
        Some(moved)
    }

    /// The accounting, or `None` if not connected. Takes the main lock: do
    /// not call it from inside [`GlobalHeap::with_heap`].
    pub fn stats(&self) -> Option<GlobalStats> {
        let main = self.lock_main();
        let Main::Ready(state) = &*main else {
            return None;
        };
        let meta = self.meta.lock().heap.as_ref().map(MetaHeap::stats)?;
        Some(GlobalStats {
            heap: state.heap.stats(),
            meta,
            direct_maps: state.direct.len(),
            direct_bytes: state.direct_bytes,
            bad_frees: state.bad_frees,
        })
    }

    /// Why connecting failed, if it did.
    pub fn connect_error(&self) -> Option<Error> {
        match &*self.lock_main() {
            Main::Failed(e) => Some(*e),
            _ => None,
        }
    }

    /// Runs `f` on the main heap (connecting first if needed), with its
    /// lock held: allocations `f` makes go to the metadata heap. `f` must
    /// not free memory of the main heap (drop a `Vec` made outside it):
    /// that free would wait for the lock `f` holds. `None` if the heap
    /// could not connect.
    pub fn with_heap<R>(&self, f: impl FnOnce(&mut Heap<T, M>) -> R) -> Option<R> {
        let mut main = self.lock_main();
        self.connect_locked(&mut main);
        match &mut *main {
            Main::Ready(state) => Some(f(&mut state.heap)),
            _ => None,
        }
    }

    /// Checks the main heap ([`Heap::validate`]) and the metadata heap's
    /// bookkeeping; `Err` names what is wrong.
    pub fn validate(&self) -> Result<(), &'static str> {
        let main = self.lock_main();
        if let Main::Ready(state) = &*main {
            state.heap.validate().map_err(|_| "main heap")?;
            if state.direct.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0) {
                return Err("direct maps overlap");
            }
        }
        if let Some(meta) = self.meta.lock().heap.as_ref() {
            meta.check()?;
        }
        Ok(())
    }
}
