//! DMA pools: blocks of one size carved from coherent chunks, with known bus addresses and no boundary crossed.
//!
//! [`DmaPools`] is Linux's `mm/dmapool.c` as a value: pools created with
//! `dma_pool_create(name, size, align, boundary)` hand out blocks of one
//! size (`dma_pool_alloc`, `dma_pool_zalloc`) as a virtual address and a bus
//! address, and take them back (`dma_pool_free`); `dma_pool_destroy` ends a
//! pool. Managed pools (`dmam_pool_create`/`dmam_pool_destroy`) belong to an
//! [`OwnerId`] — a client of the MM server, a device — and are all destroyed
//! by [`DmaPools::destroy_owner`] when it goes.
//!
//! # Where the memory comes from
//!
//! Blocks are cut from *chunks* of coherent memory obtained from a
//! [`DmaChunkSource`]: in `libmm` the MM server's `dma_alloc_coherent`
//! (physically contiguous DMA32 frames mapped Normal non-cacheable into the
//! client, returned as a virtual and a bus address). A chunk is a page, or a
//! large block rounded up to pages (Linux's `allocation`); the pool asks the
//! source only when it has no free block, so allocating and freeing blocks
//! make no call to the source — no IPC per block. A block's bus address is
//! its chunk's bus address plus the block's offset in the chunk, so
//! `bus − vaddr` is the chunk's offset for all its blocks.
//!
//! # Semantics (Linux's, with the differences noted)
//!
//! - `size` is rounded up to `align` (0 means 1; otherwise a power of two)
//!   and to at least [`DMA_POOL_MIN_BLOCK`]; creation fails for a zero size,
//!   an alignment or a boundary that is not a power of two, a boundary
//!   smaller than the rounded size, or a block above [`DMA_POOL_MAX_BLOCK`].
//! - No block crosses a multiple of `boundary` (0: no restriction), in bus
//!   addresses and in virtual addresses alike: blocks are laid out in
//!   boundary windows exactly as Linux's `pool_initialise_page` lays them
//!   out, and chunks are asked for with the alignment that makes the chunk's
//!   windows the real ones ([`DmaChunkSource::alloc_chunk`]'s `align`).
//! - A pool keeps its chunks until it is destroyed (Linux 6.3+); blocks are
//!   handed out last-freed first, a new chunk's in address order.
//! - Destroying a pool with blocks still allocated reports every leaked
//!   block ([`DestroyError::Leaked`]) and does not hand that memory out
//!   again: the chunks holding leaked blocks stay *quarantined* — held and
//!   accounted, never reused — while its other chunks go back to the source.
//!   Unlike Linux, which leaks them for good, a leaked block can later be
//!   given up with [`DmaPools::release_leaked`] (say, once the device that
//!   might still write it is quiesced); a chunk whose last leaked block is
//!   released goes back to the source.
//!
//! # Addresses, not pointers; errors, not corruption
//!
//! The pool never dereferences the addresses it deals in. Its metadata is
//! out of band: per pool, the chunks' addresses, a hash table from virtual
//! address to chunk (the `table` module), one state byte per block (never allocated,
//! free, live, quarantined) and a stack of free blocks. So a free of any
//! address — garbage, an interior or gap address, another pool's block, a
//! block never handed out, a block already free, a bus address that does not
//! go with the virtual one — is answered with a descriptive
//! [`DmaPoolError`] and changes nothing, in every mode; nothing panics on
//! bad input.
//!
//! Memory is touched only by `dma_pool_zalloc` (zeroing) and in checking
//! mode, through the `&mut dyn MemoryAccess` the allocating and freeing calls
//! take; outside checking mode `dma_pool_alloc` and `dma_pool_free` never
//! call it.
//!
//! # Checking mode
//!
//! Per pool ([`PoolOptions::checking`]) or for every pool
//! ([`DmaPools::new_checking`], Linux's `DMAPOOL_DEBUG`): new chunks and
//! freed blocks are filled with [`POOL_POISON_FREED`], allocated blocks with
//! [`POOL_POISON_ALLOCATED`], and a block's poison is verified when it is
//! handed out again: a write after free is reported as
//! [`DmaPoolError::Corrupted`] and the block quarantined (never handed out;
//! the next call gets another). [`DmaPools::check_poison`] verifies every
//! free block. Checking pools take the slow paths; the fast paths test one
//! flag.
//!
//! # The fast paths
//!
//! `dma_pool_alloc` pops a (chunk offset, block id) pair from the pool's
//! free stack, marks the block live and adds the offset to the chunk's two
//! addresses. `dma_pool_free` looks the virtual address's granule up in the
//! chunk table, turns the offset into a block index with a multiplication
//! (never a division; see the `geometry` module), checks the bus address and that the
//! block is live, and pushes it. The free stack's capacity is reserved a
//! chunk at a time, so neither path does Rust-heap work.

mod check;
mod geometry;
mod table;
#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use geometry::{Geometry, Place};
use table::ChunkTable;

use crate::memory::{AccessError, MemoryAccess};

pub use check::InvariantViolation;
pub use geometry::{DMA_POOL_MAX_BLOCK, DMA_POOL_MIN_BLOCK};

/// Poison of a free block (Linux's `POOL_POISON_FREED`).
pub const POOL_POISON_FREED: u8 = 0xa7;
/// Poison of a newly allocated block (Linux's `POOL_POISON_ALLOCATED`).
pub const POOL_POISON_ALLOCATED: u8 = 0xa9;

/// Block state: free, never handed out since its chunk was added.
const NEVER: u8 = 0;
/// Block state: free, handed out and freed at least once.
const FREED: u8 = 1;
/// Block state: handed out.
const LIVE: u8 = 2;
/// Block state: found corrupted in checking mode; never handed out again.
const QUARANTINED: u8 = 3;
/// State of a block id past the end of its chunk's blocks (never used).
const NO_BLOCK: u8 = 4;

/// One block: where the CPU sees it and where the device does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DmaBlock {
    /// The virtual address (the client's mapping).
    pub vaddr: u64,
    /// The bus address (what the device is given).
    pub bus: u64,
}

/// One chunk of coherent memory from a [`DmaChunkSource`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DmaChunk {
    /// The virtual address of its first byte.
    pub vaddr: u64,
    /// The bus address of its first byte.
    pub bus: u64,
}

/// A supplier of coherent, physically contiguous chunks (in `libmm`: the MM
/// server's `dma_alloc_coherent`/`dma_free_coherent`).
pub trait DmaChunkSource {
    /// Allocates `size` bytes (a multiple of the page size) of coherent,
    /// physically contiguous memory whose virtual **and** bus addresses are
    /// multiples of `align` (a power of two, at least the page size), or
    /// returns `None` when there is none.
    ///
    /// The pool checks the alignment, and that `size` bytes from either
    /// address do not wrap around; a chunk failing the checks is given back
    /// and the allocation fails with [`DmaPoolError::ChunkRejected`].
    fn alloc_chunk(&mut self, size: u64, align: u64) -> Option<DmaChunk>;
    /// Frees a chunk obtained from [`DmaChunkSource::alloc_chunk`] with the same `size`.
    fn free_chunk(&mut self, chunk: DmaChunk, size: u64);
}

/// Who a managed pool belongs to (Linux: the `struct device` of
/// `dmam_pool_create`; here a client of the MM server, or a device).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerId(pub u64);

/// Names a pool. Ids of destroyed pools are refused, even once their slot
/// is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolId {
    index: u32,
    generation: u32,
}

impl PoolId {
    /// The id as one integer (to carry in a message): the slot in the low
    /// 32 bits, the generation in the high 32.
    pub const fn to_raw(self) -> u64 {
        ((self.generation as u64) << 32) | self.index as u64
    }

    /// An id from [`PoolId::to_raw`]. It is an allegation: a forged or stale
    /// id is refused by every operation with [`DmaPoolError::NoSuchPool`].
    pub const fn from_raw(raw: u64) -> PoolId {
        PoolId {
            index: raw as u32,
            generation: (raw >> 32) as u32,
        }
    }
}

/// Options of [`DmaPools::create_pool`] beyond Linux's arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolOptions {
    /// A managed pool's owner ([`DmaPools::destroy_owner`] destroys it).
    pub owner: Option<OwnerId>,
    /// Checking mode for this pool (always on under [`DmaPools::new_checking`]).
    pub checking: bool,
}

/// A write to a free block, found in checking mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The block's virtual address.
    pub block: u64,
    /// The first bad byte.
    pub addr: u64,
    /// The byte that should be there ([`POOL_POISON_FREED`]).
    pub expected: u8,
    /// The byte that is there.
    pub found: u8,
}

/// Why a pool operation failed. Every failure leaves the pools unchanged,
/// except [`DmaPoolError::Corrupted`], which quarantines the block found
/// corrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaPoolError {
    /// `dma_pool_create` with a zero size.
    ZeroSize,
    /// `dma_pool_create` with an alignment that is not a power of two.
    BadAlign {
        /// The alignment given.
        align: u64,
    },
    /// `dma_pool_create` with a boundary that is not a power of two.
    BadBoundary {
        /// The boundary given.
        boundary: u64,
    },
    /// `dma_pool_create` with a boundary smaller than the block size.
    BoundaryTooSmall {
        /// The boundary given.
        boundary: u64,
        /// The block size (the size rounded up to the alignment).
        block: u64,
    },
    /// `dma_pool_create` with a block size above [`DMA_POOL_MAX_BLOCK`].
    TooLarge {
        /// The size given.
        size: u64,
    },
    /// No such pool: destroyed, or never created.
    NoSuchPool,
    /// `dmam_pool_destroy` of a pool that is not managed by that owner.
    NotOwner,
    /// `dma_pool_destroy` of a managed pool (Linux: a bug — the device's
    /// release would destroy it again); use `dmam_pool_destroy`.
    Managed {
        /// The pool's owner.
        owner: OwnerId,
    },
    /// The chunk source has no memory, or the metadata could not grow.
    OutOfMemory,
    /// The chunk source returned a chunk that is misaligned or wraps
    /// around; it was given back.
    ChunkRejected {
        /// Its virtual address.
        vaddr: u64,
        /// Its bus address.
        bus: u64,
    },
    /// The chunk source returned a chunk overlapping one already held; it
    /// was left alone (not given back: it is not ours to free).
    ChunkConflict {
        /// Its virtual address.
        vaddr: u64,
    },
    /// The address is in no chunk of any pool.
    NotInPool {
        /// The address given.
        vaddr: u64,
    },
    /// The address is in a chunk of another pool.
    WrongPool {
        /// The address given.
        vaddr: u64,
        /// The pool that holds it.
        pool: PoolId,
    },
    /// The address is in a chunk quarantined from a destroyed pool.
    DestroyedPool {
        /// The address given.
        vaddr: u64,
    },
    /// The address is in a chunk of the pool, but in no block (the unused
    /// tail of a boundary window or of the chunk).
    Gap {
        /// The address given.
        vaddr: u64,
    },
    /// The address is inside a block, not at its start.
    Interior {
        /// The address given.
        vaddr: u64,
        /// The block's virtual address.
        block: u64,
    },
    /// The bus address does not go with the virtual address.
    BusMismatch {
        /// The virtual address given.
        vaddr: u64,
        /// The bus address given.
        bus: u64,
        /// The block's bus address.
        expected: u64,
    },
    /// A free of a block never handed out.
    NeverAllocated {
        /// The address given.
        vaddr: u64,
    },
    /// A free of a block already free.
    DoubleFree {
        /// The address given.
        vaddr: u64,
    },
    /// A free of a block quarantined after a corruption report.
    Quarantined {
        /// The address given.
        vaddr: u64,
    },
    /// [`DmaPools::release_leaked`] of an address that is not a leaked block.
    NotLeaked {
        /// The address given.
        vaddr: u64,
    },
    /// Memory could not be read or written through the `MemoryAccess`.
    Access(AccessError),
    /// Checking mode found a free block written (it is quarantined).
    Corrupted(Corruption),
}

impl From<AccessError> for DmaPoolError {
    fn from(e: AccessError) -> DmaPoolError {
        DmaPoolError::Access(e)
    }
}

impl fmt::Display for DmaPoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmaPoolError::ZeroSize => write!(f, "block size 0"),
            DmaPoolError::BadAlign { align } => {
                write!(f, "alignment {align:#x} is not a power of two")
            }
            DmaPoolError::BadBoundary { boundary } => {
                write!(f, "boundary {boundary:#x} is not a power of two")
            }
            DmaPoolError::BoundaryTooSmall { boundary, block } => {
                write!(f, "boundary {boundary:#x} below the block size {block:#x}")
            }
            DmaPoolError::TooLarge { size } => write!(f, "block size {size:#x} too large"),
            DmaPoolError::NoSuchPool => write!(f, "no such pool"),
            DmaPoolError::NotOwner => write!(f, "pool not managed by that owner"),
            DmaPoolError::Managed { owner } => {
                write!(
                    f,
                    "pool managed by owner {}: use dmam_pool_destroy",
                    owner.0
                )
            }
            DmaPoolError::OutOfMemory => write!(f, "out of memory"),
            DmaPoolError::ChunkRejected { vaddr, bus } => {
                write!(f, "chunk {vaddr:#x}/bus {bus:#x} misaligned or wraps")
            }
            DmaPoolError::ChunkConflict { vaddr } => {
                write!(f, "chunk {vaddr:#x} overlaps a chunk already held")
            }
            DmaPoolError::NotInPool { vaddr } => write!(f, "{vaddr:#x} is in no pool"),
            DmaPoolError::WrongPool { vaddr, pool } => {
                write!(f, "{vaddr:#x} belongs to pool {}", pool.index)
            }
            DmaPoolError::DestroyedPool { vaddr } => {
                write!(f, "{vaddr:#x} belongs to a destroyed pool")
            }
            DmaPoolError::Gap { vaddr } => write!(f, "{vaddr:#x} is in no block"),
            DmaPoolError::Interior { vaddr, block } => {
                write!(f, "{vaddr:#x} is inside block {block:#x}")
            }
            DmaPoolError::BusMismatch {
                vaddr,
                bus,
                expected,
            } => write!(
                f,
                "block {vaddr:#x} has bus address {expected:#x}, not {bus:#x}"
            ),
            DmaPoolError::NeverAllocated { vaddr } => {
                write!(f, "block {vaddr:#x} was never allocated")
            }
            DmaPoolError::DoubleFree { vaddr } => write!(f, "block {vaddr:#x} already free"),
            DmaPoolError::Quarantined { vaddr } => write!(f, "block {vaddr:#x} is quarantined"),
            DmaPoolError::NotLeaked { vaddr } => write!(f, "{vaddr:#x} is not a leaked block"),
            DmaPoolError::Access(e) => write!(f, "memory access failed at {:#x}", e.addr),
            DmaPoolError::Corrupted(c) => write!(
                f,
                "free block {:#x} written at {:#x}: expected {:#04x}, found {:#04x}",
                c.block, c.addr, c.expected, c.found
            ),
        }
    }
}

/// What destroying a pool found with blocks still allocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeakReport {
    /// The destroyed pool's (now stale) id.
    pub pool: PoolId,
    /// Its name.
    pub name: String,
    /// Its owner, if managed.
    pub owner: Option<OwnerId>,
    /// Every block still allocated, in address order within each chunk.
    pub leaked: Vec<DmaBlock>,
    /// Chunks kept in quarantine because they hold leaked blocks.
    pub quarantined_chunks: u64,
    /// Their bytes.
    pub quarantined_bytes: u64,
}

/// Why `dma_pool_destroy`/`dmam_pool_destroy` did not end cleanly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestroyError {
    /// Nothing was destroyed.
    Refused(DmaPoolError),
    /// The pool was destroyed, but blocks were still allocated (Linux's
    /// "dma_pool_destroy %s, %p busy"): they are listed, and their chunks
    /// are quarantined.
    Leaked(LeakReport),
}

impl fmt::Display for DestroyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestroyError::Refused(e) => write!(f, "{e}"),
            DestroyError::Leaked(r) => write!(
                f,
                "dma_pool_destroy {}: {} blocks busy, {} chunks quarantined",
                r.name,
                r.leaked.len(),
                r.quarantined_chunks
            ),
        }
    }
}

/// Statistics of one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// The pool's name.
    pub name: String,
    /// Its owner, if managed.
    pub owner: Option<OwnerId>,
    /// Whether it is in checking mode.
    pub checking: bool,
    /// The size asked for.
    pub size: u64,
    /// The block size (rounded up to the alignment and the minimum).
    pub block_size: u64,
    /// The block alignment.
    pub align: u64,
    /// The boundary (0: none).
    pub boundary: u64,
    /// Bytes per chunk.
    pub chunk_size: u64,
    /// The alignment asked of chunks.
    pub chunk_align: u64,
    /// Blocks per chunk.
    pub blocks_per_chunk: u64,
    /// Chunks held.
    pub chunks: u64,
    /// Blocks in all chunks.
    pub blocks_total: u64,
    /// Blocks handed out.
    pub blocks_in_use: u64,
    /// Blocks free.
    pub blocks_free: u64,
    /// Blocks quarantined after a corruption report.
    pub blocks_quarantined: u64,
    /// Bytes held in chunks.
    pub bytes: u64,
}

/// Whole-registry chunk accounting.
///
/// Conservation: `chunks_obtained - chunks_returned == chunks_in_pools +
/// chunks_quarantined`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaStats {
    /// Live pools.
    pub pools: u64,
    /// Destroyed pools whose leaked blocks keep chunks quarantined.
    pub quarantined_pools: u64,
    /// Chunks obtained from the source since creation.
    pub chunks_obtained: u64,
    /// Chunks given back to the source since creation.
    pub chunks_returned: u64,
    /// Chunks held by live pools.
    pub chunks_in_pools: u64,
    /// Chunks held in quarantine.
    pub chunks_quarantined: u64,
    /// Bytes held by live pools.
    pub bytes_in_pools: u64,
    /// Bytes held in quarantine.
    pub bytes_quarantined: u64,
    /// Blocks handed out by live pools.
    pub blocks_in_use: u64,
    /// Leaked blocks of destroyed pools.
    pub blocks_leaked: u64,
}

/// A pool's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Serving.
    Alive,
    /// Destroyed with leaked blocks: holds the chunks that contain them.
    Quarantine,
    /// Destroyed; the slot is free for reuse.
    Dead,
}

/// A free block on the free stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// The block's offset in its chunk.
    off: u32,
    /// The block id (`chunk << bshift | index`).
    gid: u32,
}

/// A chunk held by a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunk {
    vaddr: u64,
    bus: u64,
    /// Still held (a quarantined pool gives back its chunks as they empty).
    held: bool,
}

/// One pool.
struct Pool {
    /// Bumped at destruction, so that stale ids never match.
    generation: u32,
    checking: bool,
    life: Life,
    geo: Geometry,
    /// Free blocks, the next to hand out last. Capacity: every block.
    free: Vec<Entry>,
    /// One state byte per block id.
    state: Vec<u8>,
    chunks: Vec<Chunk>,
    table: ChunkTable,
    /// Blocks live (in quarantine: leaked blocks not yet released).
    in_use: u64,
    /// Blocks quarantined after corruption reports.
    corrupted: u64,
    /// Chunks with `held` set.
    held: u64,
    name: String,
    owner: Option<OwnerId>,
}

impl Pool {
    fn new(name: &str, geo: Geometry, options: PoolOptions, generation: u32) -> Pool {
        Pool {
            generation,
            checking: options.checking,
            life: Life::Alive,
            geo,
            free: Vec::new(),
            state: Vec::new(),
            chunks: Vec::new(),
            table: ChunkTable::new(),
            in_use: 0,
            corrupted: 0,
            held: 0,
            name: String::from(name),
            owner: options.owner,
        }
    }

    /// The block ids of chunk `ci`.
    fn gids(&self, ci: usize) -> core::ops::Range<usize> {
        let first = ci << self.geo.bshift;
        first..first + self.geo.blocks as usize
    }

    /// The block with id `gid` at chunk offset `off`.
    fn block(&self, gid: u32, off: u64) -> DmaBlock {
        let c = &self.chunks[(gid >> self.geo.bshift) as usize];
        DmaBlock {
            vaddr: c.vaddr.wrapping_add(off),
            bus: c.bus.wrapping_add(off),
        }
    }

    /// Live blocks of chunk `ci`.
    fn live_in(&self, ci: usize) -> usize {
        self.state[self.gids(ci)]
            .iter()
            .filter(|&&s| s == LIVE)
            .count()
    }

    /// The chunk of this pool holding `vaddr`, and the offset, if any.
    fn chunk_of(&self, vaddr: u64) -> Option<(usize, u64)> {
        let ci = self.table.get(vaddr >> self.geo.gshift)? as usize;
        let c = self.chunks.get(ci)?;
        let off = vaddr.wrapping_sub(c.vaddr);
        (c.held && off < self.geo.chunk_size).then_some((ci, off))
    }
}

/// Who holds a chunk, in the registry-wide list of chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Home {
    vaddr: u64,
    end: u64,
    /// The pool's slot (alive or in quarantine).
    pool: u32,
}

/// DMA pools over one chunk source.
pub struct DmaPools<S: DmaChunkSource> {
    pools: Vec<Pool>,
    /// Dead slots, reused first. Capacity: every slot.
    dead: Vec<u32>,
    source: S,
    /// Every chunk held, sorted by virtual address (slow paths only).
    homes: Vec<Home>,
    checking: bool,
    obtained: u64,
    returned: u64,
}

impl<S: DmaChunkSource> DmaPools<S> {
    /// Pools over `source` (none yet).
    pub fn new(source: S) -> Self {
        Self::build(source, false)
    }

    /// Pools over `source`, every one in checking mode (Linux's `DMAPOOL_DEBUG`).
    pub fn new_checking(source: S) -> Self {
        Self::build(source, true)
    }

    fn build(source: S, checking: bool) -> Self {
        DmaPools {
            pools: Vec::new(),
            dead: Vec::new(),
            source,
            homes: Vec::new(),
            checking,
            obtained: 0,
            returned: 0,
        }
    }

    /// Whether every pool is in checking mode.
    pub fn is_checking(&self) -> bool {
        self.checking
    }

    /// The chunk source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The chunk source, mutably (e.g. to inject failures in tests).
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    // ----- creation and destruction -----

    /// Creates a pool of `size`-byte blocks aligned to `align`, none crossing
    /// a multiple of `boundary`.
    ///
    /// Linux: `dma_pool_create` (without the device: the pool's memory is
    /// the chunk source's). Fails, creating nothing, for a zero size, an
    /// alignment or boundary that is not a power of two, a boundary smaller
    /// than the block size, or a block above [`DMA_POOL_MAX_BLOCK`]. Unlike
    /// Linux, names need not be unique and are not truncated.
    pub fn dma_pool_create(
        &mut self,
        name: &str,
        size: u64,
        align: u64,
        boundary: u64,
    ) -> Result<PoolId, DmaPoolError> {
        self.create_pool(name, size, align, boundary, PoolOptions::default())
    }

    /// Creates a pool managed by `owner`: destroyed by
    /// [`DmaPools::destroy_owner`] when the owner goes.
    ///
    /// Linux: `dmam_pool_create` (the device's devres list is the owner).
    pub fn dmam_pool_create(
        &mut self,
        owner: OwnerId,
        name: &str,
        size: u64,
        align: u64,
        boundary: u64,
    ) -> Result<PoolId, DmaPoolError> {
        let options = PoolOptions {
            owner: Some(owner),
            checking: false,
        };
        self.create_pool(name, size, align, boundary, options)
    }

    /// Creates a pool with explicit options (owner, checking mode); the
    /// parameters are those of [`DmaPools::dma_pool_create`].
    pub fn create_pool(
        &mut self,
        name: &str,
        size: u64,
        align: u64,
        boundary: u64,
        options: PoolOptions,
    ) -> Result<PoolId, DmaPoolError> {
        let geo = Geometry::new(size, align, boundary)?;
        let options = PoolOptions {
            checking: options.checking || self.checking,
            ..options
        };
        let oom = DmaPoolError::OutOfMemory;
        let index = match self.dead.pop() {
            Some(index) => {
                let slot = &mut self.pools[index as usize];
                let generation = slot.generation.wrapping_add(1);
                *slot = Pool::new(name, geo, options, generation);
                index
            }
            None => {
                let index = u32::try_from(self.pools.len()).map_err(|_| oom)?;
                self.pools.try_reserve(1).map_err(|_| oom)?;
                // Every slot may be dead at once: pushing never allocates.
                let slots = self.pools.len() + 1;
                self.dead
                    .try_reserve(slots.saturating_sub(self.dead.len()))
                    .map_err(|_| oom)?;
                self.pools.push(Pool::new(name, geo, options, 0));
                index
            }
        };
        Ok(PoolId {
            index,
            generation: self.pools[index as usize].generation,
        })
    }

    /// The slot of the live pool named by `id`.
    #[inline(always)]
    fn index_of(&self, id: PoolId) -> Result<usize, DmaPoolError> {
        match self.pools.get(id.index as usize) {
            Some(p) if p.generation == id.generation && p.life == Life::Alive => {
                Ok(id.index as usize)
            }
            _ => Err(DmaPoolError::NoSuchPool),
        }
    }

    /// Destroys pool `id`, returning its chunks to the source.
    ///
    /// Linux: `dma_pool_destroy`. With blocks still allocated the pool is
    /// destroyed all the same, and [`DestroyError::Leaked`] lists every
    /// leaked block; the chunks holding them stay quarantined (see
    /// [`DmaPools::release_leaked`]). A managed pool is refused with
    /// [`DmaPoolError::Managed`]: use [`DmaPools::dmam_pool_destroy`].
    pub fn dma_pool_destroy(&mut self, id: PoolId) -> Result<(), DestroyError> {
        let pi = self.index_of(id).map_err(DestroyError::Refused)?;
        if let Some(owner) = self.pools[pi].owner {
            return Err(DestroyError::Refused(DmaPoolError::Managed { owner }));
        }
        self.destroy(pi)
            .map_or(Ok(()), |r| Err(DestroyError::Leaked(r)))
    }

    /// Destroys managed pool `id` of `owner`.
    ///
    /// Linux: `dmam_pool_destroy`. A pool not managed by `owner` is refused
    /// with [`DmaPoolError::NotOwner`] (Linux warns and destroys nothing).
    pub fn dmam_pool_destroy(&mut self, owner: OwnerId, id: PoolId) -> Result<(), DestroyError> {
        let pi = self.index_of(id).map_err(DestroyError::Refused)?;
        if self.pools[pi].owner != Some(owner) {
            return Err(DestroyError::Refused(DmaPoolError::NotOwner));
        }
        self.destroy(pi)
            .map_or(Ok(()), |r| Err(DestroyError::Leaked(r)))
    }

    /// Destroys every pool managed by `owner`, as when a device is unbound
    /// or a client exits (Linux: the devres release of `dmam_pool_create`'s
    /// pools). Returns how many pools were destroyed, or, if any had blocks
    /// still allocated, one report per such pool (all were destroyed).
    pub fn destroy_owner(&mut self, owner: OwnerId) -> Result<usize, Vec<LeakReport>> {
        let mut destroyed = 0;
        let mut reports = Vec::new();
        for pi in 0..self.pools.len() {
            let p = &self.pools[pi];
            if p.life == Life::Alive && p.owner == Some(owner) {
                destroyed += 1;
                if let Some(report) = self.destroy(pi) {
                    // A report that cannot be kept is still a destroyed pool.
                    if reports.try_reserve(1).is_ok() {
                        reports.push(report);
                    }
                }
            }
        }
        if reports.is_empty() {
            Ok(destroyed)
        } else {
            Err(reports)
        }
    }

    /// The live pools managed by `owner`.
    pub fn pools_of(&self, owner: OwnerId) -> Vec<PoolId> {
        self.pools
            .iter()
            .enumerate()
            .filter(|(_, p)| p.life == Life::Alive && p.owner == Some(owner))
            .map(|(i, p)| PoolId {
                index: i as u32,
                generation: p.generation,
            })
            .collect()
    }

    /// Destroys the live pool in slot `pi`: chunks without live blocks go
    /// back to the source; if there are live blocks, the pool goes into
    /// quarantine with the chunks that hold them and the report lists them.
    /// Allocates nothing but the report's list (which, if even that fails,
    /// stays short of `in_use` entries; the accounting does not).
    fn destroy(&mut self, pi: usize) -> Option<LeakReport> {
        let DmaPools {
            pools,
            dead,
            source,
            homes,
            returned,
            ..
        } = self;
        let pool = &mut pools[pi];
        let id = PoolId {
            index: pi as u32,
            generation: pool.generation,
        };
        pool.generation = pool.generation.wrapping_add(1);
        pool.free = Vec::new();
        let size = pool.geo.chunk_size;
        let mut leaked = Vec::new();
        if pool.in_use > 0 {
            let _ = leaked.try_reserve_exact(pool.in_use as usize);
        }
        let mut quarantined = 0;
        for ci in 0..pool.chunks.len() {
            let live = pool.live_in(ci);
            if live == 0 {
                let c = &mut pool.chunks[ci];
                source.free_chunk(
                    DmaChunk {
                        vaddr: c.vaddr,
                        bus: c.bus,
                    },
                    size,
                );
                c.held = false;
                *returned += 1;
                continue;
            }
            quarantined += 1;
            for gid in pool.gids(ci) {
                if pool.state[gid] == LIVE && leaked.len() < leaked.capacity() {
                    let index = (gid & ((1 << pool.geo.bshift) - 1)) as u32;
                    leaked.push(pool.block(gid as u32, pool.geo.offset(index)));
                }
            }
        }
        pool.held = quarantined;
        let pool_index = pi as u32;
        homes.retain(|h| {
            h.pool != pool_index
                || pool
                    .chunk_of(h.vaddr)
                    .is_some_and(|(ci, _)| pool.chunks[ci].held)
        });
        if pool.in_use == 0 {
            pool.life = Life::Dead;
            pool.release_metadata();
            dead.push(pi as u32);
            return None;
        }
        pool.life = Life::Quarantine;
        Some(LeakReport {
            pool: id,
            name: pool.name.clone(),
            owner: pool.owner,
            leaked,
            quarantined_chunks: quarantined,
            quarantined_bytes: quarantined * size,
        })
    }

    /// Gives up a leaked block of a destroyed pool (one listed by a
    /// [`LeakReport`]): when the last leaked block of a quarantined chunk is
    /// released, the chunk goes back to the source (returns `true`).
    ///
    /// Not in Linux, whose leaked blocks stay leaked. Errors: the address is
    /// not a leaked block ([`DmaPoolError::NotLeaked`]), or `bus` does not
    /// go with it ([`DmaPoolError::BusMismatch`]); nothing changes.
    pub fn release_leaked(&mut self, vaddr: u64, bus: u64) -> Result<bool, DmaPoolError> {
        let not_leaked = DmaPoolError::NotLeaked { vaddr };
        let home = self.home_of(vaddr).ok_or(not_leaked)?;
        let pi = home.pool as usize;
        let pool = &mut self.pools[pi];
        if pool.life != Life::Quarantine {
            return Err(not_leaked);
        }
        let (ci, off) = pool.chunk_of(vaddr).ok_or(not_leaked)?;
        let Place::Block(index) = pool.geo.place(off) else {
            return Err(not_leaked);
        };
        let gid = (ci << pool.geo.bshift) | index as usize;
        if pool.state[gid] != LIVE {
            return Err(not_leaked);
        }
        let c = pool.chunks[ci];
        let expected = c.bus.wrapping_add(off);
        if bus != expected {
            return Err(DmaPoolError::BusMismatch {
                vaddr,
                bus,
                expected,
            });
        }
        pool.state[gid] = FREED;
        pool.in_use -= 1;
        if pool.live_in(ci) > 0 {
            return Ok(false);
        }
        self.source.free_chunk(
            DmaChunk {
                vaddr: c.vaddr,
                bus: c.bus,
            },
            pool.geo.chunk_size,
        );
        pool.chunks[ci].held = false;
        pool.held -= 1;
        self.returned += 1;
        self.homes.retain(|h| h.vaddr != c.vaddr);
        if pool.in_use == 0 {
            pool.life = Life::Dead;
            pool.release_metadata();
            self.dead.push(pi as u32);
        }
        Ok(true)
    }

    /// The leaked blocks of destroyed pools not yet released.
    pub fn leaked_blocks(&self) -> Vec<DmaBlock> {
        let mut out = Vec::new();
        for pool in self.pools.iter().filter(|p| p.life == Life::Quarantine) {
            out.extend(pool.live_blocks());
        }
        out
    }

    // ----- blocks -----

    /// Allocates a block of pool `id`: its virtual and bus addresses.
    ///
    /// Linux: `dma_pool_alloc` (the `gfp_t` has no counterpart: this never
    /// sleeps). Obtains a chunk from the source only when the pool has no
    /// free block. Errors: [`DmaPoolError::NoSuchPool`],
    /// [`DmaPoolError::OutOfMemory`], the chunk source's misbehaviour
    /// ([`DmaPoolError::ChunkRejected`], [`DmaPoolError::ChunkConflict`]),
    /// and in checking mode [`DmaPoolError::Corrupted`] (the block about to
    /// be handed out was written while free; it is quarantined and the next
    /// call gets another) or [`DmaPoolError::Access`].
    #[inline]
    pub fn dma_pool_alloc(
        &mut self,
        mem: &mut dyn MemoryAccess,
        id: PoolId,
    ) -> Result<DmaBlock, DmaPoolError> {
        if let Some(pool) = self.pools.get_mut(id.index as usize)
            && pool.generation == id.generation
            && !pool.checking
            && let Some(&e) = pool.free.last()
            && let Some(c) = pool.chunks.get((e.gid >> pool.geo.bshift) as usize)
            && let Some(state) = pool.state.get_mut(e.gid as usize)
        {
            pool.free.pop();
            *state = LIVE;
            pool.in_use += 1;
            let off = e.off as u64;
            return Ok(DmaBlock {
                vaddr: c.vaddr.wrapping_add(off),
                bus: c.bus.wrapping_add(off),
            });
        }
        self.alloc_slow(mem, id, None)
    }

    /// Allocates a zeroed block of pool `id` (Linux: `dma_pool_zalloc`;
    /// the whole block, padding to the alignment included, is zeroed). If
    /// the memory cannot be written the block stays free and
    /// [`DmaPoolError::Access`] is returned.
    pub fn dma_pool_zalloc(
        &mut self,
        mem: &mut dyn MemoryAccess,
        id: PoolId,
    ) -> Result<DmaBlock, DmaPoolError> {
        self.alloc_slow(mem, id, Some(0))
    }

    /// The allocation slow path: grows the pool when it has no free block,
    /// fills the block (`fill`, or checking mode's poison) and checks its
    /// poison in checking mode.
    #[inline(never)]
    fn alloc_slow(
        &mut self,
        mem: &mut dyn MemoryAccess,
        id: PoolId,
        fill: Option<u8>,
    ) -> Result<DmaBlock, DmaPoolError> {
        let pi = self.index_of(id)?;
        if self.pools[pi].free.is_empty() {
            self.grow(pi, mem)?;
        }
        let pool = &mut self.pools[pi];
        let e = pool.free.pop().ok_or(DmaPoolError::OutOfMemory)?;
        let block = pool.block(e.gid, e.off as u64);
        let len = pool.geo.block;
        let fill = if pool.checking {
            match check::mismatch(mem, block.vaddr, len, POOL_POISON_FREED) {
                Ok(None) => {}
                Ok(Some((addr, found))) => {
                    pool.state[e.gid as usize] = QUARANTINED;
                    pool.corrupted += 1;
                    return Err(DmaPoolError::Corrupted(Corruption {
                        block: block.vaddr,
                        addr,
                        expected: POOL_POISON_FREED,
                        found,
                    }));
                }
                Err(err) => {
                    pool.free.push(e);
                    return Err(err.into());
                }
            }
            Some(fill.unwrap_or(POOL_POISON_ALLOCATED))
        } else {
            fill
        };
        if let Some(byte) = fill
            && let Err(err) = mem.fill(block.vaddr, len, byte)
        {
            pool.free.push(e);
            return Err(err.into());
        }
        pool.state[e.gid as usize] = LIVE;
        pool.in_use += 1;
        Ok(block)
    }

    /// Adds a chunk to pool `pi` and its blocks to the free stack.
    fn grow(&mut self, pi: usize, mem: &mut dyn MemoryAccess) -> Result<(), DmaPoolError> {
        let geo = self.pools[pi].geo;
        let size = geo.chunk_size;
        let chunk = self
            .source
            .alloc_chunk(size, geo.chunk_align)
            .ok_or(DmaPoolError::OutOfMemory)?;
        let aligned = chunk.vaddr.is_multiple_of(geo.chunk_align)
            && chunk.bus.is_multiple_of(geo.chunk_align);
        let end = chunk.vaddr.checked_add(size);
        if !aligned || end.is_none() || chunk.bus.checked_add(size).is_none() {
            self.source.free_chunk(chunk, size);
            return Err(DmaPoolError::ChunkRejected {
                vaddr: chunk.vaddr,
                bus: chunk.bus,
            });
        }
        let end = end.unwrap_or(u64::MAX);
        let pos = self.homes.partition_point(|h| h.vaddr < chunk.vaddr);
        let overlaps_prev = pos > 0 && self.homes[pos - 1].end > chunk.vaddr;
        let overlaps_next = self.homes.get(pos).is_some_and(|h| h.vaddr < end);
        if overlaps_prev || overlaps_next {
            return Err(DmaPoolError::ChunkConflict { vaddr: chunk.vaddr });
        }
        let pool = &mut self.pools[pi];
        let ci = pool.chunks.len();
        let per_chunk = 1usize << geo.bshift;
        let granules = size.div_ceil(geo.chunk_align) as usize;
        let total_blocks = (ci + 1) * geo.blocks as usize;
        let reserved = ((ci + 1) << geo.bshift) - 1 <= u32::MAX as usize
            && pool.chunks.try_reserve(1).is_ok()
            && pool.state.try_reserve(per_chunk).is_ok()
            && pool
                .free
                .try_reserve(total_blocks.saturating_sub(pool.free.len()))
                .is_ok()
            && pool.table.reserve(granules).is_ok()
            && self.homes.try_reserve(1).is_ok();
        if !reserved {
            self.source.free_chunk(chunk, size);
            return Err(DmaPoolError::OutOfMemory);
        }
        if pool.checking
            && let Err(err) = mem.fill(chunk.vaddr, size, POOL_POISON_FREED)
        {
            self.source.free_chunk(chunk, size);
            return Err(err.into());
        }
        self.obtained += 1;
        pool.chunks.push(Chunk {
            vaddr: chunk.vaddr,
            bus: chunk.bus,
            held: true,
        });
        pool.held += 1;
        let first = ci << geo.bshift;
        pool.state.resize(first + per_chunk, NO_BLOCK);
        pool.state[first..first + geo.blocks as usize].fill(NEVER);
        // Pushed last block first: the chunk's blocks go out in address order.
        for index in (0..geo.blocks).rev() {
            pool.free.push(Entry {
                off: geo.offset(index) as u32,
                gid: (first as u32) | index,
            });
        }
        for g in 0..granules as u64 {
            pool.table
                .insert((chunk.vaddr >> geo.gshift) + g, ci as u32);
        }
        self.homes.insert(
            pos,
            Home {
                vaddr: chunk.vaddr,
                end,
                pool: pi as u32,
            },
        );
        Ok(())
    }

    /// Frees a block of pool `id`, given both its addresses.
    ///
    /// Linux: `dma_pool_free`. Anything that is not a live block of this
    /// pool with this bus address is refused with a descriptive error and
    /// changes nothing: [`DmaPoolError::NotInPool`],
    /// [`DmaPoolError::WrongPool`], [`DmaPoolError::DestroyedPool`],
    /// [`DmaPoolError::Gap`], [`DmaPoolError::Interior`],
    /// [`DmaPoolError::BusMismatch`], [`DmaPoolError::NeverAllocated`],
    /// [`DmaPoolError::DoubleFree`], [`DmaPoolError::Quarantined`] (Linux
    /// detects some of these only under `DMAPOOL_DEBUG`, and then prints and
    /// leaks). In checking mode the block is poisoned; if that write fails
    /// the block stays live and [`DmaPoolError::Access`] is returned.
    #[inline]
    pub fn dma_pool_free(
        &mut self,
        mem: &mut dyn MemoryAccess,
        id: PoolId,
        vaddr: u64,
        bus: u64,
    ) -> Result<(), DmaPoolError> {
        if let Some(pool) = self.pools.get_mut(id.index as usize)
            && pool.generation == id.generation
            && !pool.checking
            && let Some(ci) = pool.table.get(vaddr >> pool.geo.gshift)
            && let Some(c) = pool.chunks.get(ci as usize)
        {
            let off = vaddr.wrapping_sub(c.vaddr);
            if off < pool.geo.chunk_size
                && bus == c.bus.wrapping_add(off)
                && let Some(index) = pool.geo.block_at(off)
            {
                let gid = (ci << pool.geo.bshift) | index;
                if let Some(state) = pool.state.get_mut(gid as usize)
                    && *state == LIVE
                    && pool.free.len() < pool.free.capacity()
                {
                    *state = FREED;
                    pool.in_use -= 1;
                    pool.free.push(Entry {
                        off: off as u32,
                        gid,
                    });
                    return Ok(());
                }
            }
        }
        self.free_slow(mem, id, vaddr, bus)
    }

    /// The free slow path: diagnoses refused frees, and frees the blocks of
    /// checking pools (poisoning them).
    #[inline(never)]
    fn free_slow(
        &mut self,
        mem: &mut dyn MemoryAccess,
        id: PoolId,
        vaddr: u64,
        bus: u64,
    ) -> Result<(), DmaPoolError> {
        let pi = self.index_of(id)?;
        let (gid, off) = self.locate(pi, vaddr, bus)?;
        let pool = &mut self.pools[pi];
        match pool.state[gid as usize] {
            LIVE => {}
            NEVER => return Err(DmaPoolError::NeverAllocated { vaddr }),
            FREED => return Err(DmaPoolError::DoubleFree { vaddr }),
            QUARANTINED => return Err(DmaPoolError::Quarantined { vaddr }),
            _ => return Err(DmaPoolError::Gap { vaddr }),
        }
        if pool.checking {
            mem.fill(vaddr, pool.geo.block, POOL_POISON_FREED)?;
        }
        if pool.free.try_reserve(1).is_err() {
            return Err(DmaPoolError::OutOfMemory);
        }
        pool.state[gid as usize] = FREED;
        pool.in_use -= 1;
        pool.free.push(Entry {
            off: off as u32,
            gid,
        });
        Ok(())
    }

    /// The block id and chunk offset of the block of pool `pi` at `vaddr`
    /// with bus address `bus`, or why there is none.
    fn locate(&self, pi: usize, vaddr: u64, bus: u64) -> Result<(u32, u64), DmaPoolError> {
        let pool = &self.pools[pi];
        let Some((ci, off)) = pool.chunk_of(vaddr) else {
            return Err(self.foreign(pi, vaddr));
        };
        let c = pool.chunks[ci];
        let index = match pool.geo.place(off) {
            Place::Block(index) => index,
            Place::Interior { start } => {
                return Err(DmaPoolError::Interior {
                    vaddr,
                    block: c.vaddr.wrapping_add(start),
                });
            }
            Place::Gap => return Err(DmaPoolError::Gap { vaddr }),
        };
        let expected = c.bus.wrapping_add(off);
        if bus != expected {
            return Err(DmaPoolError::BusMismatch {
                vaddr,
                bus,
                expected,
            });
        }
        Ok((((ci as u32) << pool.geo.bshift) | index, off))
    }

    /// The error for `vaddr`, which lies in no chunk of pool `pi`.
    fn foreign(&self, pi: usize, vaddr: u64) -> DmaPoolError {
        match self.home_of(vaddr) {
            Some(h) if h.pool as usize != pi => {
                let other = &self.pools[h.pool as usize];
                match other.life {
                    Life::Alive => DmaPoolError::WrongPool {
                        vaddr,
                        pool: PoolId {
                            index: h.pool,
                            generation: other.generation,
                        },
                    },
                    _ => DmaPoolError::DestroyedPool { vaddr },
                }
            }
            _ => DmaPoolError::NotInPool { vaddr },
        }
    }

    /// The chunk holding `vaddr`, among all chunks held.
    fn home_of(&self, vaddr: u64) -> Option<Home> {
        let pos = self.homes.partition_point(|h| h.vaddr <= vaddr);
        let h = *self.homes.get(pos.checked_sub(1)?)?;
        (vaddr < h.end).then_some(h)
    }

    // ----- inspection -----

    /// The blocks of pool `id` handed out and not freed, in address order
    /// within each chunk (what destroying it now would report).
    pub fn live_blocks(&self, id: PoolId) -> Result<Vec<DmaBlock>, DmaPoolError> {
        Ok(self.pools[self.index_of(id)?].live_blocks())
    }

    /// Statistics of pool `id`.
    pub fn pool_stats(&self, id: PoolId) -> Result<PoolStats, DmaPoolError> {
        let p = &self.pools[self.index_of(id)?];
        let g = p.geo;
        let chunks = p.chunks.len() as u64;
        let total = chunks * g.blocks as u64;
        Ok(PoolStats {
            name: p.name.clone(),
            owner: p.owner,
            checking: p.checking,
            size: g.size,
            block_size: g.block,
            align: g.align,
            boundary: g.boundary,
            chunk_size: g.chunk_size,
            chunk_align: g.chunk_align,
            blocks_per_chunk: g.blocks as u64,
            chunks,
            blocks_total: total,
            blocks_in_use: p.in_use,
            blocks_free: p.free.len() as u64,
            blocks_quarantined: p.corrupted,
            bytes: chunks * g.chunk_size,
        })
    }

    /// Whole-registry accounting.
    pub fn stats(&self) -> DmaStats {
        let mut s = DmaStats {
            pools: 0,
            quarantined_pools: 0,
            chunks_obtained: self.obtained,
            chunks_returned: self.returned,
            chunks_in_pools: 0,
            chunks_quarantined: 0,
            bytes_in_pools: 0,
            bytes_quarantined: 0,
            blocks_in_use: 0,
            blocks_leaked: 0,
        };
        for p in &self.pools {
            let bytes = p.held * p.geo.chunk_size;
            match p.life {
                Life::Alive => {
                    s.pools += 1;
                    s.chunks_in_pools += p.held;
                    s.bytes_in_pools += bytes;
                    s.blocks_in_use += p.in_use;
                }
                Life::Quarantine => {
                    s.quarantined_pools += 1;
                    s.chunks_quarantined += p.held;
                    s.bytes_quarantined += bytes;
                    s.blocks_leaked += p.in_use;
                }
                Life::Dead => {}
            }
        }
        s
    }

    /// Checks all metadata: every pool's geometry (blocks aligned, inside
    /// their chunk and their boundary window, not overlapping), chunk
    /// alignment, the chunk table, block states against the free stack and
    /// the counters (free + in use + quarantined = total, per chunk), the
    /// registry's chunk list, and chunk conservation. Returns the first
    /// violation found.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        check::invariants(self)
    }

    /// Checks that every free block of every checking pool still holds
    /// [`POOL_POISON_FREED`] (a write after free shows here before the block
    /// is handed out again). Changes nothing.
    pub fn check_poison(&self, mem: &dyn MemoryAccess) -> Result<(), DmaPoolError> {
        check::poison(self, mem)
    }
}

impl Pool {
    /// The live blocks, in address order within each chunk.
    fn live_blocks(&self) -> Vec<DmaBlock> {
        let mut out = Vec::new();
        for ci in 0..self.chunks.len() {
            for (gid, &s) in self.gids(ci).zip(&self.state[self.gids(ci)]) {
                if s == LIVE {
                    let index = (gid & ((1 << self.geo.bshift) - 1)) as u32;
                    out.push(self.block(gid as u32, self.geo.offset(index)));
                }
            }
        }
        out
    }

    /// Drops the metadata of a dead pool.
    fn release_metadata(&mut self) {
        self.free = Vec::new();
        self.state = Vec::new();
        self.chunks = Vec::new();
        self.table = ChunkTable::new();
        self.held = 0;
        self.in_use = 0;
        self.corrupted = 0;
    }
}
