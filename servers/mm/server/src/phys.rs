//! Physical memory: the frame allocator, the chunks of RAM and their roles, frame caps, the window, page tables.
//!
//! The [`FrameAllocator`] owns the frame numbers; this module keeps what the
//! kernel needs beside them:
//!
//! - **Chunks.** RAM is split into 2 MiB chunks, each (where the boot
//!   Untypeds allow) with a 2 MiB Untyped of its own. A chunk's *role* says
//!   what its memory is retyped into: 512 small frames (`Small`), one 2 MiB
//!   frame (`Large`, for a block mapping), or 512 page tables
//!   (`PageTables`). Roles change by revoking the chunk's Untyped (which
//!   deletes every cap made from it, undoing their mappings) and retyping it
//!   — only when none of its frames is in use: a free 2 MiB buddy block is
//!   exactly a chunk. Frames of smaller boot Untypeds are `Fixed` small
//!   frames. The buddy allocator decides which frames are used; a chunk's
//!   role follows from what it is allocated for ([`Phys::take`],
//!   [`Phys::take_huge`], [`Phys::alloc_pt`]).
//! - **Frame caps.** Frame `k`'s cap `W(k)` is mapped in the server's window;
//!   its copy `M(k)` (made when a chunk is first used) maps it in one
//!   client. A second mapping of the same frame uses an extra copy in the X
//!   region ([`Phys::acquire_cap`]). Device frames are retyped at start
//!   into the D region, with the same primary/extra scheme.
//! - **The window.** Every RAM frame is mapped in the server's own address
//!   space at [`window_va`]: the server zeroes recycled frames and copies
//!   client data through it (`rt::mem`), never through a client's mapping.
//! - **Zeroing.** Fresh frames (just retyped) are zero; the `clean` bit set
//!   tracks free frames known to be zero, so allocations zero only frames
//!   that were used before, in runs, through the window.
//! - **Page tables.** A pool of PageTable caps, grown by converting a free
//!   chunk; [`TableSet`] records which tables a VSpace has.
//! - **Owners.** Each frame's owner (free, a client's anonymous page, a
//!   client's page block, a shared object, page tables, server objects),
//!   from which the conservation check counts.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use abi::boot::SLOT_VSPACE;
use abi::object::ObjectType;
use abi::vm::{CACHEABLE, EXECUTE_NEVER};
use abi::{CPtr, CapRights, ErrorReply, Word};
use libmm::protocol::MmError;
use mm_core::addr::PAGE_SIZE;
use mm_core::frame::{FrameAllocator, GfpFlags};
use mm_core::memory::{AccessError, MemoryAccess};

use crate::cspace::{CHUNK_FRAMES, Layout};
use crate::error::Fail;
use crate::util::{BitSet, RunAlloc};

/// Free page tables the pool keeps when it gives chunks back (one chunk's
/// worth: the next client's tables come without a conversion).
const PT_SPARE: u64 = CHUNK_FRAMES;

/// Where the server's window onto RAM starts in its own address space.
pub const WINDOW_BASE: u64 = 0x2000_0000_0000;

/// The window address of physical frame `pfn`.
#[inline]
pub fn window_va(pfn: u64) -> u64 {
    WINDOW_BASE + pfn * PAGE_SIZE
}

/// Who holds a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Owner {
    /// Not RAM the server manages (a hole in the frame index space).
    Hole,
    /// Free in the allocator (buddy, per-CPU lists or zero pool).
    Free,
    /// The server's own kernel objects (CNodes): reserved.
    Objects,
    /// Page tables (in a `PageTables` chunk).
    PageTables,
    /// A private anonymous page of client `0` (index).
    Anon(u32),
    /// A page of a block from the page allocator (alloc_pages, exact, contig).
    Block(u32),
    /// A page of a vmalloc area.
    Vmalloc(u32),
    /// A page of coherent DMA memory.
    Dma(u32),
    /// A page of shared object `0` (index into the server's table).
    Shm(u32),
}

/// What a chunk's memory is retyped into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// No managed frames (a hole, or only server objects).
    Absent,
    /// Small frames from boot Untypeds smaller than 2 MiB: not convertible.
    Fixed,
    /// 512 small frames from the chunk's Untyped.
    Small,
    /// One 2 MiB frame: its cap in `W(k0)`, its client copy in `M(k0)`.
    Large,
    /// 512 page tables.
    PageTables,
}

#[derive(Clone, Debug)]
struct Chunk {
    role: Role,
    /// The chunk has a 2 MiB Untyped of its own (in `U(c)`).
    convertible: bool,
    /// The M copies of its small frames exist.
    map_caps: bool,
    /// The window's level-3 table for the chunk, while installed.
    window_pt: Option<CPtr>,
}

/// Counters for statistics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysCounters {
    /// Chunk role changes.
    pub conversions: u64,
    /// Frames zeroed through the window.
    pub zeroed: u64,
    /// Frames handed out without zeroing because they were known zero.
    pub fresh: u64,
    /// Page tables in the pool (installed or free).
    pub page_tables: u64,
}

/// A device range: its first frame number, page count and first D slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DevRange {
    pfn: u64,
    pages: u64,
    first: u64,
}

/// Which page tables a VSpace has, by (level, index of the range it covers).
#[derive(Clone, Debug, Default)]
pub(crate) struct TableSet {
    map: BTreeMap<(u8, u64), CPtr>,
    /// The index of a level-3 table known installed (with the tables above
    /// it): the last one `ensure_tables` found or installed. Cleared when
    /// it goes.
    recent_l3: Option<u64>,
}

/// The shift of the range one table at `level` (1..=3) covers.
const fn level_shift(level: u8) -> u32 {
    match level {
        1 => 39,
        2 => 30,
        _ => 21,
    }
}

impl TableSet {
    /// Whether the table of `level` covering `va` is installed.
    pub fn has(&self, level: u8, va: u64) -> bool {
        self.map.contains_key(&(level, va >> level_shift(level)))
    }

    /// How many tables are installed.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every table, deepest level first.
    pub fn drain(&mut self) -> Vec<CPtr> {
        self.recent_l3 = None;
        let mut v: Vec<((u8, u64), CPtr)> = core::mem::take(&mut self.map).into_iter().collect();
        v.sort_by_key(|e| core::cmp::Reverse(e.0.0));
        v.into_iter().map(|(_, c)| c).collect()
    }
}

/// The kernel's error on mapping or unmapping in a client VSpace: `Gone`
/// when the VSpace capability is what failed.
pub(crate) fn batch_fail(what: &'static str, e: rt::invoke::BatchError) -> Fail {
    match (e.frame, e.error) {
        (None, ErrorReply::InvalidCapability { .. }) => Fail::Gone,
        (_, err) => Fail::Bug(what, err),
    }
}

/// Physical memory and everything the kernel needs to use it.
pub(crate) struct Phys {
    /// The frame allocator (owner of the frame numbers).
    pub alloc: FrameAllocator,
    /// Where caps live.
    pub lay: Layout,
    chunks: Vec<Chunk>,
    /// Owner of each frame index.
    pub owner: Vec<Owner>,
    /// Free frames known to be zero.
    clean: BitSet,
    /// `M(k)` (or `D(d)`) is mapped in a client.
    busy: BitSet,
    dev_busy: BitSet,
    /// `W(k)` holds a small frame cap.
    has_cap: BitSet,
    pt_free: Vec<CPtr>,
    /// Page tables the pool keeps at least (its size after start-up).
    pt_reserve: u64,
    window: TableSet,
    extra: RunAlloc,
    dev: Vec<DevRange>,
    /// The last zero-pool refill found nothing to zero.
    zero_stalled: bool,
    /// The zero pool is being refilled (it fell to half its target and has
    /// not reached the target since).
    zero_refilling: bool,
    /// Counters.
    pub counters: PhysCounters,
}

/// The allocator's zeroing goes through the window, skipping frames known
/// to be zero (and marking what it zeroes as known zero: the frames it
/// zeroes are free, bound for the zero pool or a `__GFP_ZERO` allocation).
struct Zeroer<'a> {
    lay: &'a Layout,
    clean: &'a mut BitSet,
    counters: &'a mut PhysCounters,
}

impl MemoryAccess for Zeroer<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        rt::mem::read_bytes(WINDOW_BASE + addr, buf).map_err(|_| AccessError { addr })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        rt::mem::write_bytes(WINDOW_BASE + addr, data).map_err(|_| AccessError { addr })
    }

    fn fill(&mut self, addr: u64, len: u64, byte: u8) -> Result<(), AccessError> {
        if byte != 0 {
            return rt::mem::fill_bytes(WINDOW_BASE + addr, len, byte)
                .map_err(|_| AccessError { addr });
        }
        let first = addr / PAGE_SIZE;
        let n = len.div_ceil(PAGE_SIZE);
        let Some(k0) = self.lay.index(first) else {
            return Err(AccessError { addr });
        };
        zero_dirty(self.lay, self.clean, self.counters, k0, n).map_err(|_| AccessError { addr })?;
        self.clean.set_range(k0, k0 + n, true);
        Ok(())
    }
}

/// Zeroes the frames of `[k0, k0 + n)` not known to be zero, in runs.
fn zero_dirty(
    lay: &Layout,
    clean: &BitSet,
    counters: &mut PhysCounters,
    k0: u64,
    n: u64,
) -> Result<(), Fail> {
    let mut k = k0;
    let end = k0 + n;
    while k < end {
        if clean.get(k) {
            counters.fresh += 1;
            k += 1;
            continue;
        }
        let start = k;
        while k < end && !clean.get(k) {
            k += 1;
        }
        rt::mem::zero(window_va(lay.pfn(start)), (k - start) * PAGE_SIZE)
            .map_err(|_| Fail::Bug("zero through the window", ErrorReply::IllegalOperation))?;
        counters.zeroed += k - start;
    }
    Ok(())
}

/// What a [`Phys`] is built from.
pub(crate) struct PhysInit {
    pub alloc: FrameAllocator,
    pub lay: Layout,
    /// Frame indices that have small frame caps in W.
    pub has_cap: BitSet,
    /// Chunks with a 2 MiB Untyped in U.
    pub convertible: BitSet,
    /// Frame index ranges of server objects (reserved).
    pub objects: Vec<(u64, u64)>,
    /// Device ranges: (first frame number, pages); D slots follow in order.
    pub devices: Vec<(u64, u64)>,
}

impl Phys {
    /// The state after start-up's retypes: chunks with frame caps are
    /// `Small` (or `Fixed`), every frame fresh, nothing mapped yet.
    pub fn new(init: PhysInit) -> Phys {
        let lay = init.lay;
        let frames = lay.frames;
        let mut owner = vec![Owner::Hole; frames as usize];
        for k in 0..frames {
            if init.has_cap.get(k) {
                owner[k as usize] = Owner::Free;
            }
        }
        for &(s, e) in &init.objects {
            for k in s..e.min(frames) {
                owner[k as usize] = Owner::Objects;
            }
        }
        let chunks = (0..lay.chunks)
            .map(|c| {
                let k0 = c * CHUNK_FRAMES;
                let any = (k0..k0 + CHUNK_FRAMES).any(|k| init.has_cap.get(k));
                let convertible = init.convertible.get(c);
                Chunk {
                    role: match (any, convertible) {
                        (false, _) => Role::Absent,
                        (true, true) => Role::Small,
                        (true, false) => Role::Fixed,
                    },
                    convertible,
                    map_caps: false,
                    window_pt: None,
                }
            })
            .collect();
        let mut dev = Vec::new();
        let mut first = 0;
        for &(pfn, pages) in &init.devices {
            dev.push(DevRange { pfn, pages, first });
            first += pages;
        }
        let clean = init.has_cap.clone();
        Phys {
            alloc: init.alloc,
            chunks,
            owner,
            clean,
            busy: BitSet::new(frames),
            dev_busy: BitSet::new(first),
            has_cap: init.has_cap,
            pt_free: Vec::new(),
            pt_reserve: 0,
            window: TableSet::default(),
            extra: RunAlloc::new(lay.x_count),
            dev,
            zero_stalled: false,
            zero_refilling: false,
            counters: PhysCounters::default(),
            lay,
        }
    }

    // ----- chunks -----------------------------------------------------------

    fn chunk_of(&self, k: u64) -> usize {
        (k / CHUNK_FRAMES) as usize
    }

    /// Whether frame `pfn` is a managed RAM frame.
    pub fn is_ram(&self, pfn: u64) -> bool {
        self.lay
            .index(pfn)
            .is_some_and(|k| self.owner[k as usize] != Owner::Hole)
    }

    /// Installs the window's level-3 table for chunk `c` and maps its small
    /// frames there (one batched map per run).
    pub fn map_window(&mut self, c: usize) -> Result<(), Fail> {
        let k0 = c as u64 * CHUNK_FRAMES;
        let va = window_va(self.lay.pfn(k0));
        let mut set = core::mem::take(&mut self.window);
        let r = self.ensure_tables(&mut set, CPtr(SLOT_VSPACE), va, va + (2 << 20), 3);
        self.window = set;
        r?;
        if self.chunks[c].window_pt.is_none() {
            self.chunks[c].window_pt = self.window.map.get(&(3, va >> 21)).copied();
        }
        let mut k = k0;
        while k < k0 + CHUNK_FRAMES {
            if !self.has_cap.get(k) {
                k += 1;
                continue;
            }
            let s = k;
            while k < k0 + CHUNK_FRAMES && self.has_cap.get(k) {
                k += 1;
            }
            rt::invoke::vspace_map_frames(
                CPtr(SLOT_VSPACE),
                self.lay.w(s),
                k - s,
                window_va(self.lay.pfn(s)),
                CapRights::READ_WRITE,
                CACHEABLE | EXECUTE_NEVER,
            )
            .map_err(|e| batch_fail("map the window", e))?;
        }
        Ok(())
    }

    /// Makes the M copies of chunk `c`'s small frames, if not yet made.
    fn ensure_map_caps(&mut self, c: usize) -> Result<(), Fail> {
        if self.chunks[c].map_caps {
            return Ok(());
        }
        let k0 = c as u64 * CHUNK_FRAMES;
        let mut k = k0;
        while k < k0 + CHUNK_FRAMES {
            if !self.has_cap.get(k) {
                k += 1;
                continue;
            }
            let s = k;
            while k < k0 + CHUNK_FRAMES && self.has_cap.get(k) {
                k += 1;
            }
            self.lay
                .copy_run(self.lay.m(s), self.lay.w(s), k - s)
                .map_err(|e| Fail::Bug("copy map caps", e))?;
        }
        self.chunks[c].map_caps = true;
        Ok(())
    }

    /// Revokes chunk `c`'s Untyped: every cap made from it goes, with its mappings.
    fn revoke_chunk(&mut self, c: usize) -> Result<(), Fail> {
        self.lay
            .revoke(self.lay.u(c as u64))
            .map_err(|e| Fail::Bug("revoke a chunk", e))?;
        let k0 = c as u64 * CHUNK_FRAMES;
        self.has_cap.set_range(k0, k0 + CHUNK_FRAMES, false);
        self.busy.set_range(k0, k0 + CHUNK_FRAMES, false);
        self.chunks[c].map_caps = false;
        self.counters.conversions += 1;
        Ok(())
    }

    /// Large → Small: 512 fresh small frames, mapped in the window.
    fn make_small(&mut self, c: usize) -> Result<(), Fail> {
        self.revoke_chunk(c)?;
        let k0 = c as u64 * CHUNK_FRAMES;
        self.lay
            .retype(
                self.lay.u(c as u64),
                ObjectType::SmallPage,
                0,
                self.lay.w(k0).0,
                CHUNK_FRAMES,
            )
            .map_err(|e| Fail::Bug("retype small frames", e))?;
        self.has_cap.set_range(k0, k0 + CHUNK_FRAMES, true);
        self.clean.set_range(k0, k0 + CHUNK_FRAMES, true);
        self.chunks[c].role = Role::Small;
        self.map_window(c)
    }

    /// Small → Large: one fresh 2 MiB frame, mapped in the window as a block.
    fn make_large(&mut self, c: usize) -> Result<(), Fail> {
        self.revoke_chunk(c)?;
        let k0 = c as u64 * CHUNK_FRAMES;
        let va = window_va(self.lay.pfn(k0));
        if let Some(pt) = self.chunks[c].window_pt.take() {
            rt::invoke::page_table_unmap(pt).map_err(|e| Fail::Bug("unmap a window table", e))?;
            self.window.map.remove(&(3, va >> 21));
            if self.window.recent_l3 == Some(va >> 21) {
                self.window.recent_l3 = None;
            }
            self.pt_free.push(pt);
        }
        self.lay
            .retype(
                self.lay.u(c as u64),
                ObjectType::LargePage,
                0,
                self.lay.w(k0).0,
                1,
            )
            .map_err(|e| Fail::Bug("retype a large frame", e))?;
        rt::invoke::page_map(
            self.lay.w(k0),
            CPtr(SLOT_VSPACE),
            va,
            CapRights::READ_WRITE,
            CACHEABLE | EXECUTE_NEVER,
        )
        .map_err(|e| Fail::Bug("map a large frame in the window", e))?;
        self.lay
            .copy(self.lay.m(k0), self.lay.w(k0))
            .map_err(|e| Fail::Bug("copy a large frame cap", e))?;
        self.clean.set_range(k0, k0 + CHUNK_FRAMES, true);
        self.chunks[c].role = Role::Large;
        Ok(())
    }

    /// Small or Large → PageTables: 512 page tables into the pool.
    fn make_pagetables(&mut self, c: usize) -> Result<(), Fail> {
        self.revoke_chunk(c)?;
        let k0 = c as u64 * CHUNK_FRAMES;
        self.lay
            .retype(
                self.lay.u(c as u64),
                ObjectType::PageTable,
                0,
                self.lay.w(k0).0,
                CHUNK_FRAMES,
            )
            .map_err(|e| Fail::Bug("retype page tables", e))?;
        self.chunks[c].role = Role::PageTables;
        self.clean.set_range(k0, k0 + CHUNK_FRAMES, false);
        for k in k0..k0 + CHUNK_FRAMES {
            self.owner[k as usize] = Owner::PageTables;
            self.pt_free.push(self.lay.w(k));
        }
        self.counters.page_tables += CHUNK_FRAMES;
        Ok(())
    }

    // ----- taking and giving back frames --------------------------------------

    /// The frame index of `pfn`, a frame the allocator handed out (outside
    /// the layout: a server bug).
    #[inline(always)]
    fn allocated_index(&self, pfn: u64) -> Result<u64, Fail> {
        self.lay.index(pfn).ok_or(Fail::Bug(
            "allocator frame outside layout",
            ErrorReply::IllegalOperation,
        ))
    }

    /// Chunk `c`, which holds allocated frames, as small frames with their
    /// map caps: a Large chunk goes back to small frames.
    #[inline(always)]
    fn small_frames_ready(&mut self, c: usize) -> Result<(), Fail> {
        match self.chunks[c].role {
            Role::Large => self.make_small(c)?,
            Role::Small | Role::Fixed => {}
            Role::Absent | Role::PageTables => {
                return Err(Fail::Bug(
                    "allocated frame in a chunk without frames",
                    ErrorReply::IllegalOperation,
                ));
            }
        }
        self.ensure_map_caps(c)
    }

    /// Makes the just-allocated frames `[pfn, pfn + count)` ready for a
    /// client: chunks back to small frames, map caps made, contents zeroed
    /// (unless known zero), owner recorded.
    pub fn take(&mut self, pfn: u64, count: u64, owner: Owner) -> Result<(), Fail> {
        let k0 = self.allocated_index(pfn)?;
        let first = self.chunk_of(k0);
        let last = self.chunk_of(k0 + count - 1);
        for c in first..=last {
            self.small_frames_ready(c)?;
        }
        zero_dirty(&self.lay, &self.clean, &mut self.counters, k0, count)?;
        self.clean.set_range(k0, k0 + count, false);
        for k in k0..k0 + count {
            self.owner[k as usize] = owner;
        }
        Ok(())
    }

    /// [`Phys::take`] of the one frame `pfn` (the fault path's case);
    /// returns its frame index.
    pub fn take_one(&mut self, pfn: u64, owner: Owner) -> Result<u64, Fail> {
        let k = self.allocated_index(pfn)?;
        self.small_frames_ready(self.chunk_of(k))?;
        if self.clean.get(k) {
            self.counters.fresh += 1;
            self.clean.set(k, false);
        } else {
            rt::mem::zero(window_va(pfn), PAGE_SIZE)
                .map_err(|_| Fail::Bug("zero through the window", ErrorReply::IllegalOperation))?;
            self.counters.zeroed += 1;
        }
        self.owner[k as usize] = owner;
        Ok(k)
    }

    /// Makes the just-allocated, chunk-aligned order-9 block at `pfn` one
    /// 2 MiB frame for a block mapping, zeroed. `Ok(false)` if the chunk
    /// cannot be converted (its frames come from smaller Untypeds): the
    /// caller uses it as 512 small frames instead.
    pub fn take_huge(&mut self, pfn: u64, owner: Owner) -> Result<bool, Fail> {
        let k0 = self.allocated_index(pfn)?;
        let c = self.chunk_of(k0);
        match self.chunks[c].role {
            Role::Large => {}
            Role::Small if self.chunks[c].convertible => self.make_large(c)?,
            _ => return Ok(false),
        }
        zero_dirty(&self.lay, &self.clean, &mut self.counters, k0, CHUNK_FRAMES)?;
        self.clean.set_range(k0, k0 + CHUNK_FRAMES, false);
        for k in k0..k0 + CHUNK_FRAMES {
            self.owner[k as usize] = owner;
        }
        Ok(true)
    }

    /// Records that frames `[pfn, pfn + count)` are free again (the caller
    /// frees them in the allocator with the call matching their allocation).
    pub fn untake(&mut self, pfn: u64, count: u64) {
        self.zero_stalled = false;
        if let Some(k0) = self.lay.index(pfn) {
            for k in k0..(k0 + count).min(self.lay.frames) {
                self.owner[k as usize] = Owner::Free;
            }
        }
    }

    /// Allocates an exact run of up to 1024 order-0 frames with `flags`.
    pub fn alloc_run(&mut self, count: u64, flags: GfpFlags) -> Result<u64, MmError> {
        self.alloc
            .alloc_pages_exact(count, flags)
            .map(|p| p.0)
            .map_err(crate::error::frame_error)
    }

    /// Frees order-0 frames `[pfn, pfn + count)` (from [`Phys::alloc_run`]
    /// or single-frame allocations; several allocations may be freed as one
    /// run).
    pub fn free_run(&mut self, pfn: u64, count: u64) -> Result<(), Fail> {
        self.untake(pfn, count);
        let split = self.alloc.config().dma32_end.0 / PAGE_SIZE;
        let mut parts = [(pfn, count), (0, 0)];
        if pfn < split && pfn + count > split {
            parts = [(pfn, split - pfn), (split, pfn + count - split)];
        }
        for (s, n) in parts {
            if n > 0 {
                self.alloc
                    .free_pages_exact(mm_core::addr::Pfn(s), n)
                    .map_err(|_| Fail::Bug("free a run", ErrorReply::IllegalOperation))?;
            }
        }
        Ok(())
    }

    /// Frees a block allocated with `alloc_pages(order)`.
    pub fn free_block(&mut self, pfn: u64, order: u32) -> Result<(), Fail> {
        self.untake(pfn, 1 << order);
        self.alloc
            .free_pages(mm_core::addr::Pfn(pfn), order)
            .map_err(|_| Fail::Bug("free a block", ErrorReply::IllegalOperation))
    }

    /// Allocates one zeroed frame (from the zero pool when it has one).
    pub fn alloc_zeroed_page(&mut self, flags: GfpFlags) -> Result<u64, MmError> {
        let mut z = Zeroer {
            lay: &self.lay,
            clean: &mut self.clean,
            counters: &mut self.counters,
        };
        self.alloc
            .alloc_zeroed(0, flags, &mut z)
            .map(|p| p.0)
            .map_err(crate::error::frame_error)
    }

    /// Zeroes up to `budget` free frames for the zero pool (idle work);
    /// returns how many were added.
    pub fn refill_zero_pool(&mut self, budget: usize) -> usize {
        self.zero_refilling = true;
        let mut z = Zeroer {
            lay: &self.lay,
            clean: &mut self.clean,
            counters: &mut self.counters,
        };
        let n = self.alloc.refill_zeroed(&mut z, budget).unwrap_or(0);
        if n == 0 {
            self.zero_stalled = true;
        }
        let (pooled, target) = self.zero_pool_fill();
        if pooled >= target {
            self.zero_refilling = false;
        }
        n
    }

    /// Frames in the zero pool, and its target (the configured high marks
    /// of every zone that has memory).
    fn zero_pool_fill(&self) -> (u64, u64) {
        let high: u64 = self
            .alloc
            .config()
            .zero_pool_high
            .iter()
            .map(|&x| x as u64)
            .sum();
        let mut target = 0;
        let mut pooled = 0;
        for z in mm_core::frame::ZoneType::ALL {
            let s = self.alloc.zone_stats(z);
            if s.managed > 0 {
                target += high;
            }
            pooled += s.zeroed;
        }
        (pooled, target)
    }

    /// Whether the zero pool wants frames: once it has fallen to half its
    /// target, until it is full again (so that the idle work runs in
    /// batches, not one frame after every reply), and only while refills
    /// make progress (a refill that finds nothing to zero stops asking
    /// until frames are freed again).
    pub fn zero_pool_wants(&self) -> bool {
        if self.zero_stalled {
            return false;
        }
        let (pooled, target) = self.zero_pool_fill();
        if self.zero_refilling {
            pooled < target
        } else {
            pooled <= target / 2 && pooled < target
        }
    }

    // ----- caps for mappings --------------------------------------------------

    /// The cap to map RAM frame index `k` (or device frame `d`) at one more
    /// place: the primary copy if unused, else a new extra copy. Returns the
    /// cap and its extra-slot tag (0: primary; `i + 1`: extra slot `i`).
    pub fn acquire_cap(&mut self, fr: Fr) -> Result<(CPtr, u32), Fail> {
        let (primary, busy, src) = match fr {
            Fr::Ram(k) => (self.lay.m(k), self.busy.get(k), self.lay.w(k)),
            Fr::Dev(d) => (self.lay.d(d), self.dev_busy.get(d), self.lay.d(d)),
        };
        if !busy {
            match fr {
                Fr::Ram(k) => self.busy.set(k, true),
                Fr::Dev(d) => self.dev_busy.set(d, true),
            }
            return Ok((primary, 0));
        }
        let i = self.extra.alloc(1).ok_or(MmError::NoMemory)?;
        if let Err(e) = self.lay.copy(self.lay.x(i), src) {
            self.extra.free(i, 1);
            return Err(Fail::Bug("copy an extra cap", e));
        }
        Ok((self.lay.x(i), i as u32 + 1))
    }

    /// Acquires the primary caps of the RAM frames `[k, k + n)` (all unused,
    /// as for frames just taken): their CPtrs are consecutive from `M(k)`.
    pub fn acquire_primary_run(&mut self, k: u64, n: u64) -> CPtr {
        self.busy.set_range(k, k + n, true);
        self.lay.m(k)
    }

    /// Gives back a cap from [`Phys::acquire_cap`] after its mapping is gone
    /// (an extra copy is deleted, which also unmaps it).
    pub fn release_cap(&mut self, fr: Fr, tag: u32) {
        if tag == 0 {
            match fr {
                Fr::Ram(k) => self.busy.set(k, false),
                Fr::Dev(d) => self.dev_busy.set(d, false),
            }
        } else {
            let i = (tag - 1) as u64;
            let _ = self.lay.delete(self.lay.x(i));
            self.extra.free(i, 1);
        }
    }

    /// The cap a mapping with `tag` uses.
    pub fn cap_of(&self, fr: Fr, tag: u32) -> CPtr {
        match (fr, tag) {
            (Fr::Ram(k), 0) => self.lay.m(k),
            (Fr::Dev(d), 0) => self.lay.d(d),
            (_, t) => self.lay.x((t - 1) as u64),
        }
    }

    /// Extra slots in use.
    pub fn extra_used(&self) -> u64 {
        self.extra.used()
    }

    /// Primary caps in use (RAM, device).
    pub fn busy_counts(&self) -> (u64, u64) {
        (self.busy.count(), self.dev_busy.count())
    }

    /// The device frame index of device frame number `pfn`.
    pub fn dev_index(&self, pfn: u64) -> Option<u64> {
        self.dev
            .iter()
            .find(|r| pfn >= r.pfn && pfn < r.pfn + r.pages)
            .map(|r| r.first + (pfn - r.pfn))
    }

    /// Whether `[pfn, pfn + n)` is device memory the server holds.
    pub fn is_device_range(&self, pfn: u64, n: u64) -> bool {
        (0..n).all(|i| self.dev_index(pfn + i).is_some())
    }

    // ----- page tables --------------------------------------------------------

    /// The role of chunk `c`.
    pub fn chunk_role(&self, c: usize) -> Role {
        self.chunks.get(c).map_or(Role::Absent, |ch| ch.role)
    }

    /// A page table cap from the pool (growing it from a free chunk).
    pub fn alloc_pt(&mut self) -> Result<CPtr, Fail> {
        if let Some(pt) = self.pt_free.pop() {
            return Ok(pt);
        }
        self.grow_pt_pool()?;
        self.pt_free.pop().ok_or(Fail::Mm(MmError::NoMemory))
    }

    /// Turns a free 2 MiB chunk into 512 page tables for the pool.
    pub fn grow_pt_pool(&mut self) -> Result<(), Fail> {
        let pfn = self
            .alloc
            .alloc_pages(9, GfpFlags::KERNEL)
            .map_err(|_| Fail::Mm(MmError::NoMemory))?
            .0;
        let k = self.lay.index(pfn).unwrap_or(u64::MAX);
        let c = (k / CHUNK_FRAMES) as usize;
        let ok = k.is_multiple_of(CHUNK_FRAMES)
            && self
                .chunks
                .get(c)
                .is_some_and(|ch| ch.convertible && matches!(ch.role, Role::Small | Role::Large));
        if !ok {
            let _ = self.alloc.free_pages(mm_core::addr::Pfn(pfn), 9);
            return Err(Fail::Mm(MmError::NoMemory));
        }
        self.make_pagetables(c)
    }

    /// Page tables free in the pool.
    pub fn pt_free_count(&self) -> u64 {
        self.pt_free.len() as u64
    }

    /// Page tables the window uses.
    pub fn window_tables(&self) -> u64 {
        self.window.len() as u64
    }

    /// Installs every missing table of levels 1..=`leaf` that translates
    /// `[lo, hi)` in `vs`, recording them in `set`.
    pub fn ensure_tables(
        &mut self,
        set: &mut TableSet,
        vs: CPtr,
        lo: u64,
        hi: u64,
        leaf: u8,
    ) -> Result<(), Fail> {
        // Tables go in top down and only level-3 ones come out alone
        // (`drop_l3`), so a range inside one installed level-3 table has
        // every table it needs: one lookup instead of one per level.
        if leaf == 3 && lo >> 21 == (hi - 1) >> 21 {
            if set.recent_l3 == Some(lo >> 21) {
                return Ok(());
            }
            if set.map.contains_key(&(3, lo >> 21)) {
                set.recent_l3 = Some(lo >> 21);
                return Ok(());
            }
        }
        for level in 1..=leaf {
            let shift = level_shift(level);
            for i in (lo >> shift)..=((hi - 1) >> shift) {
                if set.map.contains_key(&(level, i)) {
                    continue;
                }
                let pt = self.alloc_pt()?;
                let va = (i << shift).max(lo);
                if let Err(e) = rt::invoke::page_table_map(pt, vs, va, 0) {
                    self.pt_free.push(pt);
                    return Err(match e {
                        ErrorReply::InvalidCapability { .. } => Fail::Gone,
                        e => Fail::Bug("install a page table", e),
                    });
                }
                set.map.insert((level, i), pt);
            }
        }
        Ok(())
    }

    /// Removes the level-3 table covering `va` from `set` (and the VSpace),
    /// if installed: before a 2 MiB block goes in its place.
    pub fn drop_l3(&mut self, set: &mut TableSet, va: u64) -> Result<(), Fail> {
        if set.recent_l3 == Some(va >> 21) {
            set.recent_l3 = None;
        }
        if let Some(pt) = set.map.remove(&(3, va >> 21)) {
            rt::invoke::page_table_unmap(pt).map_err(|e| Fail::Bug("unmap a page table", e))?;
            self.pt_free.push(pt);
        }
        Ok(())
    }

    /// Uninstalls every table of `set` and returns them to the pool; whole
    /// chunks of free tables the pool grew by beyond its reserve go back to
    /// the frame allocator.
    pub fn release_tables(&mut self, set: &mut TableSet) -> Result<(), Fail> {
        for pt in set.drain() {
            let _ = rt::invoke::page_table_unmap(pt);
            self.pt_free.push(pt);
        }
        self.shrink_pt_pool()
    }

    /// Makes the pool's present size its reserve: it never gives chunks
    /// back below it (start-up sizes the pool from the configuration).
    pub fn reserve_pt_pool(&mut self) {
        self.pt_reserve = self.counters.page_tables;
    }

    /// Whether the pool may give a chunk back: it stays at its reserve or
    /// above, with at least [`PT_SPARE`] free tables.
    fn pt_pool_has_extra(&self) -> bool {
        self.pt_free.len() as u64 >= PT_SPARE + CHUNK_FRAMES
            && self.counters.page_tables >= self.pt_reserve + CHUNK_FRAMES
    }

    /// Gives back the chunks none of whose 512 tables is installed, while
    /// the pool has more than it keeps ([`Phys::pt_pool_has_extra`]).
    fn shrink_pt_pool(&mut self) -> Result<(), Fail> {
        if !self.pt_pool_has_extra() {
            return Ok(());
        }
        let w0 = self.lay.w(0).0;
        let mut free_in: BTreeMap<usize, u64> = BTreeMap::new();
        for pt in &self.pt_free {
            if let Some(k) = pt.0.checked_sub(w0) {
                *free_in.entry(self.chunk_of(k)).or_insert(0) += 1;
            }
        }
        for (c, n) in free_in {
            if !self.pt_pool_has_extra() {
                break;
            }
            let tables = self
                .chunks
                .get(c)
                .is_some_and(|ch| ch.role == Role::PageTables);
            if n == CHUNK_FRAMES && tables {
                self.release_pt_chunk(c)?;
            }
        }
        Ok(())
    }

    /// PageTables → Small, the chunk's frames free in the allocator: its
    /// 512 tables (all in the pool, none installed) leave the pool.
    fn release_pt_chunk(&mut self, c: usize) -> Result<(), Fail> {
        let k0 = c as u64 * CHUNK_FRAMES;
        let tables = self.lay.w(k0).0..self.lay.w(k0 + CHUNK_FRAMES).0;
        self.pt_free.retain(|pt| !tables.contains(&pt.0));
        self.counters.page_tables -= CHUNK_FRAMES;
        // Revokes the tables' caps and retypes fresh (zero) small frames.
        self.make_small(c)?;
        for k in k0..k0 + CHUNK_FRAMES {
            self.owner[k as usize] = Owner::Free;
        }
        self.alloc
            .free_pages(mm_core::addr::Pfn(self.lay.pfn(k0)), 9)
            .map_err(|_| Fail::Bug("free a page-table chunk", ErrorReply::IllegalOperation))
    }

    // ----- the window ------------------------------------------------------------

    /// Reads bytes of frame `pfn` from `offset` through the window.
    pub fn read(&self, pfn: u64, offset: u64, buf: &mut [u8]) -> Result<(), Fail> {
        rt::mem::read_bytes(window_va(pfn) + offset, buf)
            .map_err(|_| Fail::Bug("read through the window", ErrorReply::IllegalOperation))
    }

    /// Writes bytes into frame `pfn` at `offset` through the window.
    pub fn write(&self, pfn: u64, offset: u64, data: &[u8]) -> Result<(), Fail> {
        rt::mem::write_bytes(window_va(pfn) + offset, data)
            .map_err(|_| Fail::Bug("write through the window", ErrorReply::IllegalOperation))
    }

    /// Zeroes bytes of frame `pfn` through the window.
    pub fn zero(&self, pfn: u64, offset: u64, len: u64) -> Result<(), Fail> {
        rt::mem::zero(window_va(pfn) + offset, len)
            .map_err(|_| Fail::Bug("zero through the window", ErrorReply::IllegalOperation))
    }

    // ----- checks ------------------------------------------------------------------

    /// Frames by owner class: (free, objects, page tables, the rest).
    pub fn owner_census(&self) -> BTreeMap<Owner, u64> {
        let mut m = BTreeMap::new();
        for &o in &self.owner {
            if o != Owner::Hole {
                *m.entry(o).or_insert(0) += 1;
            }
        }
        m
    }

    /// Internal consistency: role vs owner, extra pool, clean frames free.
    pub fn check(&self) -> Result<(), alloc::string::String> {
        use alloc::format;
        if !self.extra.check() {
            return Err("extra slot pool inconsistent".into());
        }
        for (c, ch) in self.chunks.iter().enumerate() {
            let k0 = c as u64 * CHUNK_FRAMES;
            for k in k0..k0 + CHUNK_FRAMES {
                let o = self.owner[k as usize];
                let ok = match ch.role {
                    Role::PageTables => o == Owner::PageTables,
                    Role::Large | Role::Small | Role::Fixed | Role::Absent => {
                        o != Owner::PageTables
                    }
                };
                if !ok {
                    return Err(format!("frame {k}: owner {o:?} in a {:?} chunk", ch.role));
                }
                if self.clean.get(k) && o != Owner::Free {
                    return Err(format!("frame {k}: marked known-zero but owned by {o:?}"));
                }
            }
        }
        Ok(())
    }
}

/// A frame as the cap scheme sees it: RAM frame index or device frame index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fr {
    /// RAM frame index `k`.
    Ram(u64),
    /// Device frame index `d`.
    Dev(u64),
}

/// The rights a mapping with these permissions gets.
pub(crate) fn rights(write: bool) -> CapRights {
    if write {
        CapRights::READ_WRITE
    } else {
        CapRights::READ
    }
}

/// Unmaps `count` consecutive caps from `first` in `vs` (batched); when the
/// VSpace is gone, clears each cap's mapping one by one instead.
pub(crate) fn unmap_caps(vs: CPtr, first: CPtr, count: u64) -> Result<(), Fail> {
    let mut done = 0;
    while done < count {
        let n = (count - done).min(abi::invocation::MAX_BATCH_FRAMES);
        if rt::invoke::vspace_unmap_frames(vs, CPtr(first.0 + done), n).is_err() {
            // The VSpace is gone (the client died): clear each cap's mapping
            // on its own. (Unmapping a frame cap is always valid, so this is
            // also the right fallback for any other refusal.)
            for i in 0..n {
                let _ = rt::invoke::page_unmap(CPtr(first.0 + done + i));
            }
        }
        done += n;
    }
    Ok(())
}

/// Maps `count` consecutive caps from `first` at `va` in `vs` (batched).
pub(crate) fn map_caps(
    vs: CPtr,
    first: CPtr,
    count: u64,
    va: u64,
    rights: CapRights,
    attr: Word,
) -> Result<(), Fail> {
    let mut done = 0;
    while done < count {
        let n = (count - done).min(abi::invocation::MAX_BATCH_FRAMES);
        if let Err(e) = rt::invoke::vspace_map_frames(
            vs,
            CPtr(first.0 + done),
            n,
            va + done * PAGE_SIZE,
            rights,
            attr,
        ) {
            // All or nothing: take back the batches already mapped.
            let _ = unmap_caps(vs, first, done);
            return Err(batch_fail("map frames", e));
        }
        done += n;
    }
    Ok(())
}
