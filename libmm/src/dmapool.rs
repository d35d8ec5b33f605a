//! DMA pools in a client: mm-core's pool logic on coherent chunks from the MM server, with no IPC per block.
//!
//! A driver needs many small buffers a device can reach — descriptors,
//! command blocks, status words — each with a known bus address, none
//! crossing a boundary the device cannot cross, and no cache surprises.
//! [`DmaPools`] gives it Linux's `dma_pool_*` family for that:
//!
//! | call | Linux |
//! |------|-------|
//! | [`DmaPools::dma_pool_create`] | `dma_pool_create(name, dev, size, align, boundary)` |
//! | [`DmaPools::dmam_pool_create`] | `dmam_pool_create` (managed: destroyed with its owner) |
//! | [`DmaPools::dma_pool_alloc`], [`DmaPools::dma_pool_zalloc`] | `dma_pool_alloc`, `dma_pool_zalloc` |
//! | [`DmaPools::dma_pool_free`] | `dma_pool_free` |
//! | [`DmaPools::dma_pool_destroy`], [`DmaPools::dmam_pool_destroy`] | `dma_pool_destroy`, `dmam_pool_destroy` |
//!
//! # Where the memory comes from
//!
//! The pool logic is mm-core's [`mm_core::dmapool::DmaPools`], unchanged
//! (its documentation has the semantics: block size rounded up to the
//! alignment, no block crossing `boundary`, create errors, leak reports
//! with quarantine, checking mode). Its chunks come from
//! [`CoherentChunks`]: one `DmaAllocCoherent` request per chunk —
//! physically contiguous DMA32 frames, mapped Normal non-cacheable into the
//! client, with the virtual **and** bus addresses aligned as the pool's
//! geometry needs (the request's `align`) — and one `DmaFreeCoherent` when
//! a pool gives a chunk back. Allocating and freeing blocks happen entirely
//! in the client: **no IPC per block**. A chunk is a page for blocks up to
//! a page, else the block rounded up to pages, so a pool of 64-byte blocks
//! asks the server once per 64 blocks.
//!
//! The server accounts every chunk as a DMA area of the client, charged to
//! its quota; a chunk quarantined because a destroyed pool still had
//! blocks live stays so (held, charged, never handed out again) until the
//! leaked blocks are released ([`DmaPools::release_leaked`]) or the client
//! ends. When a client exits or dies, the server takes back every chunk,
//! quarantined or not.
//!
//! # Who may
//!
//! Only clients the boot manifest grants DMA get chunks: for any other the
//! first allocation of every pool fails with [`DmaError::NotGranted`]
//! (creating a pool allocates nothing, as in Linux 6.3+).
//!
//! # Managed pools
//!
//! A managed pool belongs to an owner: the client itself
//! ([`DmaPools::dmam_pool_create`], owner [`CLIENT_OWNER`]) or a device it
//! drives ([`DmaPools::dmam_pool_create_for`]). [`DmaPools::release_owner`]
//! destroys one owner's pools (a device unbound), and
//! [`DmaPools::release_managed`] every managed pool — what happens at the
//! client's exit ([`DmaPools::exit`]), and what dropping the [`DmaPools`]
//! does. Pools that are
//! not managed are the caller's to destroy, as in Linux: one left when the
//! [`DmaPools`] is dropped keeps its chunks until the client ends.
//!
//! # Example
//!
//! ```
//! use libmm::dmapool::DmaPools;
//! use libmm::mock::MockMm;
//!
//! let server = MockMm::new();
//! let mut pools = DmaPools::new(server.mm(), server.clone());
//! // 64-byte descriptors, 64-byte aligned, never crossing 4 KiB.
//! let pool = pools.dma_pool_create("descriptors", 64, 64, 4096).unwrap();
//! let first = pools.dma_pool_alloc(pool).unwrap();
//! let before = server.requests();
//! for _ in 0..1000 {
//!     let b = pools.dma_pool_alloc(pool).unwrap();
//!     assert_eq!(b.vaddr % 64, 0);
//!     pools.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
//! }
//! assert_eq!(server.requests(), before, "no IPC per block");
//! pools.dma_pool_free(pool, first.vaddr, first.bus).unwrap();
//! pools.dma_pool_destroy(pool).unwrap();
//! ```

use alloc::vec::Vec;
use core::fmt;

use mm_core::dmapool;
pub use mm_core::dmapool::{
    DMA_POOL_MAX_BLOCK, DMA_POOL_MIN_BLOCK, DestroyError, DmaBlock, DmaChunk, DmaChunkSource,
    DmaPoolError, DmaStats, InvariantViolation, LeakReport, OwnerId, POOL_POISON_ALLOCATED,
    POOL_POISON_FREED, PoolId, PoolOptions, PoolStats,
};
use mm_core::memory::MemoryAccess;

use crate::mm::Mm;
use crate::protocol::{Align, MmError};
use crate::transport::{Error, Transport};

/// The owner of the pools [`DmaPools::dmam_pool_create`] makes: the client
/// itself. Device owners passed to [`DmaPools::dmam_pool_create_for`] are
/// any other value.
pub const CLIENT_OWNER: OwnerId = OwnerId(0);

/// The chunk source's accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    /// `DmaAllocCoherent` requests that succeeded.
    pub allocated: u64,
    /// `DmaAllocCoherent` requests the server refused.
    pub refused: u64,
    /// `DmaFreeCoherent` requests that succeeded.
    pub freed: u64,
    /// `DmaFreeCoherent` requests the server refused (the chunk then stays
    /// mapped until the client ends; it is never reused).
    pub free_failures: u64,
    /// Chunks held now.
    pub held: u64,
    /// Bytes held now.
    pub bytes_held: u64,
}

/// Coherent chunks from the MM server: [`DmaChunkSource`] over
/// `DmaAllocCoherent` / `DmaFreeCoherent`.
///
/// Each chunk is a DMA area of the client: physically contiguous DMA32
/// frames mapped Normal non-cacheable, its virtual and bus addresses both
/// multiples of the alignment asked. A refused request is kept
/// ([`CoherentChunks::take_error`]) so that the pool's "out of memory" can
/// say why.
#[derive(Debug)]
pub struct CoherentChunks<T> {
    mm: Mm<T>,
    last_error: Option<Error>,
    stats: ChunkStats,
}

impl<T: Transport> CoherentChunks<T> {
    /// Chunks through `mm`.
    pub fn new(mm: Mm<T>) -> Self {
        CoherentChunks {
            mm,
            last_error: None,
            stats: ChunkStats::default(),
        }
    }

    /// The connection.
    pub fn mm(&self) -> &Mm<T> {
        &self.mm
    }

    /// The accounting.
    pub fn stats(&self) -> ChunkStats {
        self.stats
    }

    /// Why the last chunk allocation failed, if it did (and not asked yet).
    pub fn take_error(&mut self) -> Option<Error> {
        self.last_error.take()
    }
}

impl<T: Transport> DmaChunkSource for CoherentChunks<T> {
    fn alloc_chunk(&mut self, size: u64, align: u64) -> Option<DmaChunk> {
        let Some(align) = Align::from_bytes(align) else {
            self.stats.refused += 1;
            self.last_error = Some(Error::Mm(MmError::InvalidArgument));
            return None;
        };
        match self.mm.dma_alloc_coherent_raw(size, align) {
            Ok((vaddr, bus)) => {
                self.last_error = None;
                self.stats.allocated += 1;
                self.stats.held += 1;
                self.stats.bytes_held += size;
                Some(DmaChunk { vaddr, bus })
            }
            Err(e) => {
                self.stats.refused += 1;
                self.last_error = Some(e);
                None
            }
        }
    }

    fn free_chunk(&mut self, chunk: DmaChunk, size: u64) {
        match self.mm.dma_free_coherent(chunk.vaddr, size) {
            Ok(()) => {
                self.stats.freed += 1;
                self.stats.held -= 1;
                self.stats.bytes_held -= size;
            }
            // Nothing to do but remember: the chunk stays the client's.
            Err(_) => self.stats.free_failures += 1,
        }
    }
}

/// Why a DMA pool operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// The pool refused (a bad argument to create, a bad or double free,
    /// a stale pool id, checking mode's corruption report, ...); see
    /// [`DmaPoolError`]. Nothing changed (but for a corrupted block, which
    /// is quarantined).
    Pool(DmaPoolError),
    /// The pool needed a chunk and the client is not granted DMA by its
    /// boot manifest (the server answered `PermissionDenied`).
    NotGranted,
    /// The pool needed a chunk and the server refused for another reason
    /// (`NoMemory`, `QuotaExceeded`) or the transport failed.
    Server(Error),
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::Pool(e) => write!(f, "{e}"),
            DmaError::NotGranted => {
                write!(
                    f,
                    "this client is not granted DMA: no coherent memory for the pool"
                )
            }
            DmaError::Server(e) => write!(f, "no coherent chunk for the pool: {e}"),
        }
    }
}

/// DMA pools of one client over the MM server. See the module docs.
pub struct DmaPools<T: Transport, M: MemoryAccess> {
    pools: dmapool::DmaPools<CoherentChunks<T>>,
    mem: M,
    /// The owners that have managed pools (or had them).
    owners: Vec<OwnerId>,
}

impl<T: Transport, M: MemoryAccess> DmaPools<T, M> {
    /// Pools whose chunks come from the server through `mm`, their memory
    /// touched (zeroing, checking mode's poison) through `mem`.
    pub fn new(mm: Mm<T>, mem: M) -> Self {
        DmaPools {
            pools: dmapool::DmaPools::new(CoherentChunks::new(mm)),
            mem,
            owners: Vec::new(),
        }
    }

    /// As [`DmaPools::new`], every pool in checking mode (Linux's
    /// `DMAPOOL_DEBUG`): freed blocks poisoned and verified when handed out
    /// again, double frees and frees of anything but a live block reported.
    pub fn new_checking(mm: Mm<T>, mem: M) -> Self {
        DmaPools {
            pools: dmapool::DmaPools::new_checking(CoherentChunks::new(mm)),
            mem,
            owners: Vec::new(),
        }
    }

    /// The chunk source (its connection and accounting).
    pub fn chunks(&self) -> &CoherentChunks<T> {
        self.pools.source()
    }

    /// The memory access.
    pub fn mem_mut(&mut self) -> &mut M {
        &mut self.mem
    }

    /// The error for a pool error: an out-of-memory that the server caused
    /// says why.
    #[cold]
    fn error(&mut self, e: DmaPoolError) -> DmaError {
        if e != DmaPoolError::OutOfMemory {
            return DmaError::Pool(e);
        }
        match self.pools.source_mut().take_error() {
            Some(Error::Mm(MmError::PermissionDenied)) => DmaError::NotGranted,
            Some(other) => DmaError::Server(other),
            None => DmaError::Pool(e),
        }
    }

    // ----- creation and destruction ------------------------------------------

    /// Creates a pool of `size`-byte blocks aligned to `align` (0: 1), none
    /// crossing a multiple of `boundary` (0: no boundary). Nothing is
    /// allocated until the first block.
    ///
    /// Linux: `dma_pool_create` (without the device). Refused for a zero
    /// size, an alignment or boundary that is not a power of two, a
    /// boundary below the block size, or a block above 4 MiB.
    pub fn dma_pool_create(
        &mut self,
        name: &str,
        size: u64,
        align: u64,
        boundary: u64,
    ) -> Result<PoolId, DmaError> {
        self.create_pool(name, size, align, boundary, PoolOptions::default())
    }

    /// As [`DmaPools::dma_pool_create`], with explicit options: a managed
    /// pool's owner, checking mode for this pool alone.
    pub fn create_pool(
        &mut self,
        name: &str,
        size: u64,
        align: u64,
        boundary: u64,
        options: PoolOptions,
    ) -> Result<PoolId, DmaError> {
        if let Some(owner) = options.owner
            && !self.owners.contains(&owner)
        {
            self.owners
                .try_reserve(1)
                .map_err(|_| DmaError::Pool(DmaPoolError::OutOfMemory))?;
            self.owners.push(owner);
        }
        self.pools
            .create_pool(name, size, align, boundary, options)
            .map_err(DmaError::Pool)
    }

    /// Creates a pool managed by the client: destroyed by
    /// [`DmaPools::release_managed`], when the [`DmaPools`] is dropped, and
    /// (its chunks) by the server when the client exits or dies.
    ///
    /// Linux: `dmam_pool_create` (the client stands for the device).
    pub fn dmam_pool_create(
        &mut self,
        name: &str,
        size: u64,
        align: u64,
        boundary: u64,
    ) -> Result<PoolId, DmaError> {
        self.dmam_pool_create_for(CLIENT_OWNER, name, size, align, boundary)
    }

    /// Creates a pool managed by `owner` (a device the client drives):
    /// destroyed by [`DmaPools::release_owner`] and whenever all managed
    /// pools are.
    ///
    /// Linux: `dmam_pool_create` with that device.
    pub fn dmam_pool_create_for(
        &mut self,
        owner: OwnerId,
        name: &str,
        size: u64,
        align: u64,
        boundary: u64,
    ) -> Result<PoolId, DmaError> {
        let options = PoolOptions {
            owner: Some(owner),
            checking: false,
        };
        self.create_pool(name, size, align, boundary, options)
    }

    /// Destroys pool `pool`, giving its chunks back to the server.
    ///
    /// Linux: `dma_pool_destroy`. With blocks still allocated the pool is
    /// destroyed all the same and [`DestroyError::Leaked`] lists them; the
    /// chunks holding them stay with the client, never reused (see
    /// [`DmaPools::release_leaked`]). A managed pool is refused: use
    /// [`DmaPools::dmam_pool_destroy`].
    pub fn dma_pool_destroy(&mut self, pool: PoolId) -> Result<(), DestroyError> {
        self.pools.dma_pool_destroy(pool)
    }

    /// Destroys the managed pool `pool`, whoever its owner.
    ///
    /// Linux: `dmam_pool_destroy`. A pool that is not managed is refused
    /// with [`DmaPoolError::NotOwner`] (Linux warns and destroys nothing).
    pub fn dmam_pool_destroy(&mut self, pool: PoolId) -> Result<(), DestroyError> {
        let stats = self.pools.pool_stats(pool).map_err(DestroyError::Refused)?;
        let owner = stats
            .owner
            .ok_or(DestroyError::Refused(DmaPoolError::NotOwner))?;
        self.pools.dmam_pool_destroy(owner, pool)
    }

    /// Destroys every pool managed by `owner` (Linux: the devres release of
    /// a device's `dmam_pool_create` pools when it is unbound). Returns how
    /// many were destroyed, or a leak report per pool that still had blocks
    /// allocated (all were destroyed).
    pub fn release_owner(&mut self, owner: OwnerId) -> Result<usize, Vec<LeakReport>> {
        self.pools.destroy_owner(owner)
    }

    /// Destroys every managed pool, of every owner: what the client's exit
    /// does (and dropping the [`DmaPools`]). Returns how many were
    /// destroyed, or the leak reports of those that had blocks allocated.
    pub fn release_managed(&mut self) -> Result<usize, Vec<LeakReport>> {
        let mut destroyed = 0;
        let mut reports = Vec::new();
        for i in 0..self.owners.len() {
            match self.pools.destroy_owner(self.owners[i]) {
                Ok(n) => destroyed += n,
                Err(mut r) => {
                    destroyed += r.len();
                    reports.append(&mut r);
                }
            }
        }
        if reports.is_empty() {
            Ok(destroyed)
        } else {
            Err(reports)
        }
    }

    /// The client exits: every managed pool is destroyed (its chunks given
    /// back), then the server is told (`Exit`), which takes back all the
    /// client still holds — the chunks of pools not destroyed and of
    /// leaked blocks included. Returns the leak reports of the managed
    /// pools that still had blocks allocated.
    ///
    /// Linux: the devres release of a driver's `dmam_pool_create` pools
    /// when it goes, then `exit_mmap`.
    pub fn exit(mut self) -> Result<Vec<LeakReport>, Error> {
        let reports = self.release_managed().err().unwrap_or_default();
        self.pools.source().mm().exit()?;
        Ok(reports)
    }

    /// Gives up a leaked block of a destroyed pool (listed by a
    /// [`LeakReport`]) once its device is known to be done with it; when
    /// the last leaked block of a chunk goes, the chunk goes back to the
    /// server (returns `true`). Not in Linux, whose leaked blocks stay.
    pub fn release_leaked(&mut self, vaddr: u64, bus: u64) -> Result<bool, DmaError> {
        self.pools
            .release_leaked(vaddr, bus)
            .map_err(DmaError::Pool)
    }

    // ----- blocks ------------------------------------------------------------

    /// A block of `pool`: its virtual address and its bus address (the
    /// address to give the device). No IPC unless the pool has no free
    /// block and needs another chunk.
    ///
    /// Linux: `dma_pool_alloc` (no `gfp_t`: it never sleeps). Errors: the
    /// pool's ([`DmaError::Pool`]), or, when a chunk was needed,
    /// [`DmaError::NotGranted`] or [`DmaError::Server`].
    #[inline]
    pub fn dma_pool_alloc(&mut self, pool: PoolId) -> Result<DmaBlock, DmaError> {
        match self.pools.dma_pool_alloc(&mut self.mem, pool) {
            Ok(b) => Ok(b),
            Err(e) => Err(self.error(e)),
        }
    }

    /// As [`DmaPools::dma_pool_alloc`], the whole block zeroed.
    ///
    /// Linux: `dma_pool_zalloc`.
    pub fn dma_pool_zalloc(&mut self, pool: PoolId) -> Result<DmaBlock, DmaError> {
        match self.pools.dma_pool_zalloc(&mut self.mem, pool) {
            Ok(b) => Ok(b),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Frees the block at `vaddr` (bus address `bus`) of `pool`. Never any
    /// IPC: chunks stay with their pool until it is destroyed.
    ///
    /// Linux: `dma_pool_free`. Anything but a live block of this pool with
    /// this bus address is refused with a descriptive
    /// [`DmaPoolError`] and changes nothing (double free, a block of
    /// another pool, an interior or gap address, a wrong bus address).
    #[inline]
    pub fn dma_pool_free(&mut self, pool: PoolId, vaddr: u64, bus: u64) -> Result<(), DmaError> {
        self.pools
            .dma_pool_free(&mut self.mem, pool, vaddr, bus)
            .map_err(DmaError::Pool)
    }

    // ----- inspection ----------------------------------------------------------

    /// Statistics of `pool`.
    pub fn pool_stats(&self, pool: PoolId) -> Result<PoolStats, DmaError> {
        self.pools.pool_stats(pool).map_err(DmaError::Pool)
    }

    /// The blocks of `pool` allocated and not freed.
    pub fn live_blocks(&self, pool: PoolId) -> Result<Vec<DmaBlock>, DmaError> {
        self.pools.live_blocks(pool).map_err(DmaError::Pool)
    }

    /// Leaked blocks of destroyed pools, not yet released.
    pub fn leaked_blocks(&self) -> Vec<DmaBlock> {
        self.pools.leaked_blocks()
    }

    /// Registry-wide accounting (pools, chunks in pools and in quarantine).
    pub fn stats(&self) -> DmaStats {
        self.pools.stats()
    }

    /// Checks the pools' metadata and that the chunks the pools hold are
    /// exactly those the chunk source holds for them.
    pub fn check(&self) -> Result<(), InvariantViolation> {
        self.pools.check_invariants()?;
        let s = self.pools.stats();
        let c = self.pools.source().stats();
        let held = s.chunks_in_pools + s.chunks_quarantined;
        // A chunk whose free the server refused is no longer the pools'.
        if c.held != held + c.free_failures || c.bytes_held < s.bytes_in_pools + s.bytes_quarantined
        {
            return Err(InvariantViolation {
                pool: None,
                what: "chunks held by the pools and by the chunk source disagree",
            });
        }
        Ok(())
    }

    /// Checks that every free block of every checking pool still holds its
    /// poison (a write after free shows here).
    pub fn check_poison(&self) -> Result<(), DmaError> {
        self.pools.check_poison(&self.mem).map_err(DmaError::Pool)
    }

    /// `n` pairs of [`DmaPools::dma_pool_alloc`] and
    /// [`DmaPools::dma_pool_free`] on `pool`, back to back: the loop a
    /// benchmark times (a QEMU client counts its guest instructions around
    /// one call; see the crate's benches for the host figure).
    #[inline(never)]
    pub fn alloc_free_pairs(&mut self, pool: PoolId, n: u64) -> Result<(), DmaError> {
        for _ in 0..n {
            let b = self.dma_pool_alloc(pool)?;
            self.dma_pool_free(pool, b.vaddr, b.bus)?;
        }
        Ok(())
    }
}

impl<T: Transport, M: MemoryAccess> Drop for DmaPools<T, M> {
    /// Destroys every managed pool, as the client's exit does. Leaked
    /// blocks cannot be reported from here: their chunks stay with the
    /// client (never reused) until it ends.
    fn drop(&mut self) {
        let _ = self.release_managed();
    }
}

impl<T: Transport, M: MemoryAccess> fmt::Debug for DmaPools<T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaPools")
            .field("stats", &self.pools.stats())
            .field("chunks", &self.pools.source().stats())
            .finish_non_exhaustive()
    }
}
