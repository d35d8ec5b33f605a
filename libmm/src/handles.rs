//! RAII handles: what the MM server gave a client, released when the handle drops.
//!
//! Each handle keeps a clone of the [`Mm`] connection and, when dropped,
//! sends the request that releases what it owns:
//!
//! | handle            | made by                                             | dropping sends |
//! |-------------------|-----------------------------------------------------|----------------|
//! | [`Mapping`]       | `mmap`, `shm_map`, `memdup_user`                    | `Unmap` (munmap) |
//! | [`Pages`]         | `alloc_pages`, `alloc_pages_exact`, `alloc_contig_range` | `FreePages`, `FreePagesExact`, `FreeContigRange` |
//! | [`VmArea`]        | `vmalloc` family, `vmap`, `vm_map_ram`              | `Vfree`, `Vunmap`, `VmUnmapRam` |
//! | [`SharedObject`]  | `shm_create`                                        | `ShmDestroy` |
//! | [`Pins`]          | `get_user_pages_fast`                               | `PutUserPages` |
//! | [`DmaBuffer`]     | `dma_alloc_coherent`                                | `DmaFreeCoherent` |
//!
//! `Drop` cannot report an error, so a refused release is ignored there;
//! each handle also has an explicit release method (`munmap`, `free`, ...)
//! that returns it. The escape hatches: `into_raw` gives up ownership and
//! returns what is needed to release it later with the raw calls of [`Mm`];
//! `leak` gives it up for good; `from_raw` takes ownership of raw parts.

use core::fmt;

use crate::mm::Mm;
use crate::protocol::{ClientId, List, MAX_PFNS, Prot, Request};
use crate::transport::{Error, Transport};
use mm_core::addr::PAGE_SIZE;

/// What a handle sends to release what it owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    Unmap { addr: u64, len: u64 },
    FreePages { addr: u64, order: u8 },
    FreePagesExact { addr: u64, count: u32 },
    FreeContigRange { addr: u64, count: u64 },
    Vfree { addr: u64 },
    Vunmap { addr: u64 },
    VmUnmapRam { addr: u64, count: u32 },
    ShmDestroy { handle: u64 },
    PutUserPages { addr: u64, count: u32 },
    DmaFreeCoherent { addr: u64, size: u64 },
}

impl Release {
    /// The request.
    pub(crate) fn request(self) -> Request {
        match self {
            Release::Unmap { addr, len } => Request::Unmap { addr, len },
            Release::FreePages { addr, order } => Request::FreePages { addr, order },
            Release::FreePagesExact { addr, count } => Request::FreePagesExact { addr, count },
            Release::FreeContigRange { addr, count } => Request::FreeContigRange { addr, count },
            Release::Vfree { addr } => Request::Vfree { addr },
            Release::Vunmap { addr } => Request::Vunmap { addr },
            Release::VmUnmapRam { addr, count } => Request::VmUnmapRam { addr, count },
            Release::ShmDestroy { handle } => Request::ShmDestroy { handle },
            Release::PutUserPages { addr, count } => Request::PutUserPages { addr, count },
            Release::DmaFreeCoherent { addr, size } => Request::DmaFreeCoherent { addr, size },
        }
    }
}

/// The ownership part every handle shares: the connection and the release
/// request, sent once (by an explicit release or by `Drop`).
struct Owned<T: Transport + Clone> {
    mm: Mm<T>,
    release: Option<Release>,
}

impl<T: Transport + Clone> Owned<T> {
    fn new(mm: Mm<T>, release: Release) -> Self {
        Owned {
            mm,
            release: Some(release),
        }
    }

    /// Sends the release request now.
    fn release(&mut self) -> Result<(), Error> {
        match self.release.take() {
            Some(r) => self.mm.release(r),
            None => Ok(()),
        }
    }

    /// Gives up ownership: nothing is sent on drop.
    fn disarm(&mut self) {
        self.release = None;
    }
}

impl<T: Transport + Clone> Drop for Owned<T> {
    fn drop(&mut self) {
        // A refused release cannot be reported from Drop; the explicit
        // release methods return it.
        let _ = self.release();
    }
}

impl<T: Transport + Clone> fmt::Debug for Owned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.release)
    }
}

/// A region mapped in the caller's address space; dropping it unmaps it.
#[derive(Debug)]
pub struct Mapping<T: Transport + Clone> {
    owned: Owned<T>,
    addr: u64,
    len: u64,
}

impl<T: Transport + Clone> Mapping<T> {
    /// Takes ownership of the mapping `[addr, addr + len)`: dropping the
    /// handle unmaps it.
    pub fn from_raw(mm: Mm<T>, addr: u64, len: u64) -> Self {
        Mapping {
            owned: Owned::new(mm, Release::Unmap { addr, len }),
            addr,
            len,
        }
    }

    /// The first address.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// The length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the mapping is empty (never, for a mapping the server made).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `addr` lies inside the mapping.
    pub fn contains(&self, addr: u64) -> bool {
        addr.wrapping_sub(self.addr) < self.len
    }

    /// Changes the protection of the whole mapping (Linux: `mprotect`).
    pub fn mprotect(&self, prot: Prot) -> Result<(), Error> {
        self.owned.mm.mprotect(self.addr, self.len, prot)
    }

    /// Backs and maps every page now (Linux: `mm_populate`).
    pub fn populate(&self) -> Result<(), Error> {
        self.owned.mm.mm_populate(self.addr, self.len)
    }

    /// Drops every page and keeps the mapping: anonymous pages read as
    /// zero again (Linux: `madvise(MADV_DONTNEED)`).
    pub fn discard(&self) -> Result<(), Error> {
        self.owned.mm.madvise_dontneed(self.addr, self.len)
    }

    /// Unmaps it now, reporting a refusal (Linux: `munmap`).
    pub fn munmap(mut self) -> Result<(), Error> {
        self.owned.release()
    }

    /// Gives up ownership; returns `(addr, len)` for [`Mm::munmap`].
    pub fn into_raw(mut self) -> (u64, u64) {
        self.owned.disarm();
        (self.addr, self.len)
    }

    /// Gives up ownership for good: the mapping stays until the process
    /// exits. Returns its address.
    pub fn leak(self) -> u64 {
        self.into_raw().0
    }
}

/// How [`Pages`] were allocated, hence how they are freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagesKind {
    /// `alloc_pages` of this order: `free_pages`.
    Order(u8),
    /// `alloc_pages_exact` of this many pages: `free_pages_exact`.
    Exact(u32),
    /// `alloc_contig_range` of this many frames: `free_contig_range`.
    Contig(u64),
}

impl PagesKind {
    /// The number of pages.
    pub fn pages(self) -> u64 {
        match self {
            PagesKind::Order(order) => 1u64.checked_shl(order as u32).unwrap_or(0),
            PagesKind::Exact(count) => count as u64,
            PagesKind::Contig(count) => count,
        }
    }
}

/// Physically contiguous frames mapped into the caller; dropping them frees them.
#[derive(Debug)]
pub struct Pages<T: Transport + Clone> {
    owned: Owned<T>,
    addr: u64,
    pfn: u64,
    kind: PagesKind,
}

impl<T: Transport + Clone> Pages<T> {
    /// Takes ownership of pages at `addr` (first frame `pfn`) allocated as `kind`.
    pub fn from_raw(mm: Mm<T>, addr: u64, pfn: u64, kind: PagesKind) -> Self {
        let release = match kind {
            PagesKind::Order(order) => Release::FreePages { addr, order },
            PagesKind::Exact(count) => Release::FreePagesExact { addr, count },
            PagesKind::Contig(count) => Release::FreeContigRange { addr, count },
        };
        Pages {
            owned: Owned::new(mm, release),
            addr,
            pfn,
            kind,
        }
    }

    /// Where they are mapped.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// The first frame number (the frames are contiguous).
    pub fn pfn(&self) -> u64 {
        self.pfn
    }

    /// How they were allocated.
    pub fn kind(&self) -> PagesKind {
        self.kind
    }

    /// The number of pages.
    pub fn count(&self) -> u64 {
        self.kind.pages()
    }

    /// The size in bytes.
    pub fn bytes(&self) -> u64 {
        self.count().saturating_mul(PAGE_SIZE)
    }

    /// Frees them now, reporting a refusal (Linux: `free_pages`,
    /// `free_pages_exact` or `free_contig_range`, by kind).
    pub fn free(mut self) -> Result<(), Error> {
        self.owned.release()
    }

    /// Gives up ownership; returns `(addr, pfn, kind)`.
    pub fn into_raw(mut self) -> (u64, u64, PagesKind) {
        self.owned.disarm();
        (self.addr, self.pfn, self.kind)
    }

    /// Gives up ownership for good; returns the address.
    pub fn leak(self) -> u64 {
        self.into_raw().0
    }
}

/// What a [`VmArea`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmKind {
    /// From the vmalloc family: freed with `vfree`.
    Vmalloc,
    /// From `vmap`: unmapped with `vunmap`.
    Vmap,
    /// From `vm_map_ram`: unmapped with `vm_unmap_ram`.
    VmMapRam,
}

/// A virtually contiguous area; dropping it vfrees (or unmaps) it.
#[derive(Debug)]
pub struct VmArea<T: Transport + Clone> {
    owned: Owned<T>,
    addr: u64,
    size: u64,
    kind: VmKind,
}

impl<T: Transport + Clone> VmArea<T> {
    /// Takes ownership of the area at `addr` of `size` bytes made as `kind`.
    pub fn from_raw(mm: Mm<T>, addr: u64, size: u64, kind: VmKind) -> Self {
        let release = match kind {
            VmKind::Vmalloc => Release::Vfree { addr },
            VmKind::Vmap => Release::Vunmap { addr },
            VmKind::VmMapRam => Release::VmUnmapRam {
                addr,
                count: u32::try_from(size / PAGE_SIZE).unwrap_or(u32::MAX),
            },
        };
        VmArea {
            owned: Owned::new(mm, release),
            addr,
            size,
            kind,
        }
    }

    /// The first address.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// The size in bytes, as asked for.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// What it is.
    pub fn kind(&self) -> VmKind {
        self.kind
    }

    /// Frees or unmaps it now, reporting a refusal (Linux: `vfree`,
    /// `vunmap` or `vm_unmap_ram`, by kind).
    pub fn free(mut self) -> Result<(), Error> {
        self.owned.release()
    }

    /// Gives up ownership; returns `(addr, size, kind)`.
    pub fn into_raw(mut self) -> (u64, u64, VmKind) {
        self.owned.disarm();
        (self.addr, self.size, self.kind)
    }

    /// Gives up ownership for good; returns the address.
    pub fn leak(self) -> u64 {
        self.into_raw().0
    }
}

/// A shared memory object this client created; dropping it destroys it
/// (it disappears when its last mapping goes).
#[derive(Debug)]
pub struct SharedObject<T: Transport + Clone> {
    owned: Owned<T>,
    handle: u64,
    size: u64,
}

impl<T: Transport + Clone> SharedObject<T> {
    /// Takes ownership of the object `handle` of `size` bytes.
    pub fn from_raw(mm: Mm<T>, handle: u64, size: u64) -> Self {
        SharedObject {
            owned: Owned::new(mm, Release::ShmDestroy { handle }),
            handle,
            size,
        }
    }

    /// Its handle, to pass to the clients it is granted to.
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Allows client `to` to map it with at most `prot`.
    pub fn grant(&self, to: ClientId, prot: Prot) -> Result<(), Error> {
        self.owned.mm.shm_grant(self.handle, to, prot)
    }

    /// Maps it into the caller (`addr`: a hint, 0 for anywhere).
    pub fn map(&self, addr: u64, prot: Prot) -> Result<Mapping<T>, Error> {
        self.owned.mm.shm_map(self.handle, addr, prot)
    }

    /// Unmaps pages `[first, first + count)` (0: to the end) from every
    /// client mapping them (Linux: `unmap_mapping_range`).
    pub fn unmap_mapping_range(&self, first: u64, count: u64) -> Result<(), Error> {
        self.owned.mm.unmap_mapping_range(self.handle, first, count)
    }

    /// Destroys it now, reporting a refusal.
    pub fn destroy(mut self) -> Result<(), Error> {
        self.owned.release()
    }

    /// Gives up ownership; returns `(handle, size)`.
    pub fn into_raw(mut self) -> (u64, u64) {
        self.owned.disarm();
        (self.handle, self.size)
    }

    /// Gives up ownership for good; returns the handle.
    pub fn leak(self) -> u64 {
        self.into_raw().0
    }
}

/// Pages pinned by `get_user_pages_fast`; dropping the handle unpins them.
#[derive(Debug)]
pub struct Pins<T: Transport + Clone> {
    owned: Owned<T>,
    addr: u64,
    pfns: List<u64, MAX_PFNS>,
}

impl<T: Transport + Clone> Pins<T> {
    /// Takes ownership of the pins of the pages from `addr` whose frames are `pfns`.
    pub fn from_raw(mm: Mm<T>, addr: u64, pfns: List<u64, MAX_PFNS>) -> Self {
        let count = pfns.as_slice().len() as u32;
        Pins {
            owned: Owned::new(mm, Release::PutUserPages { addr, count }),
            addr,
            pfns,
        }
    }

    /// The first pinned page's address.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// The frames, one per page, in address order.
    pub fn pfns(&self) -> &[u64] {
        self.pfns.as_slice()
    }

    /// Unpins them now, reporting a refusal (Linux: `put_page` on each).
    pub fn unpin(mut self) -> Result<(), Error> {
        self.owned.release()
    }

    /// Gives up ownership; returns `(addr, count)` for [`Mm::put_user_pages`].
    pub fn into_raw(mut self) -> (u64, u32) {
        self.owned.disarm();
        (self.addr, self.pfns.as_slice().len() as u32)
    }

    /// Gives up ownership for good: the pages stay pinned.
    pub fn leak(self) {
        self.into_raw();
    }
}

/// A coherent DMA buffer; dropping it frees it.
#[derive(Debug)]
pub struct DmaBuffer<T: Transport + Clone> {
    owned: Owned<T>,
    addr: u64,
    bus: u64,
    size: u64,
}

impl<T: Transport + Clone> DmaBuffer<T> {
    /// Takes ownership of the buffer at `addr` (bus address `bus`) of `size` bytes.
    pub fn from_raw(mm: Mm<T>, addr: u64, bus: u64, size: u64) -> Self {
        DmaBuffer {
            owned: Owned::new(mm, Release::DmaFreeCoherent { addr, size }),
            addr,
            bus,
            size,
        }
    }

    /// Its address in the caller.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// The address the device uses.
    pub fn bus(&self) -> u64 {
        self.bus
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Frees it now, reporting a refusal (Linux: `dma_free_coherent`).
    pub fn free(mut self) -> Result<(), Error> {
        self.owned.release()
    }

    /// Gives up ownership; returns `(addr, bus, size)`.
    pub fn into_raw(mut self) -> (u64, u64, u64) {
        self.owned.disarm();
        (self.addr, self.bus, self.size)
    }

    /// Gives up ownership for good; returns the address.
    pub fn leak(self) -> u64 {
        self.into_raw().0
    }
}
