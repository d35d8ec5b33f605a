//! Typed calls: one method per MM request, named after its Linux counterpart.
//!
//! [`Mm`] wraps a [`Transport`] and offers every request of the
//! [protocol](crate::protocol) as a method that checks the reply's kind and
//! returns `Result<_, Error>`: [`Error::Mm`] when the server refused (and
//! nothing changed), [`Error::Call`] when the transport failed. Calls that
//! create something return an RAII handle from [`crate::handles`] that
//! releases it when dropped; calls that release take raw addresses, for
//! memory whose handle was turned into raw parts.
//!
//! Each method names the kernel-doc function it corresponds to and any
//! deliberate difference. All addresses are integers in the caller's address
//! space: nothing here dereferences them, so every method is safe.

use crate::handles::{
    DmaBuffer, Mapping, Pages, PagesKind, Pins, Release, SharedObject, VmArea, VmKind,
};
use crate::protocol::{
    Align, ClientId, ClientInfo, Gfp, List, MAX_PFNS, MapFlags, MemInfo, MmError, Prot, Reply,
    Request, VmallocKind, ZoneInfo,
};
use crate::transport::{CallError, Error, RtTransport, Transport};
use abi::boot::BootInfo;
use mm_core::addr::{PAGE_SIZE, pages_for};

/// A client's connection to the MM server: typed calls over a transport.
///
/// Cheap to clone when the transport is (the real one is a capability
/// pointer); every RAII handle keeps a clone to release itself.
#[derive(Clone, Debug)]
pub struct Mm<T> {
    transport: T,
}

impl Mm<RtTransport> {
    /// The connection through the endpoint the boot info names `"mm"`
    /// ([`crate::transport::MM_ENDPOINT_NAME`]); [`CallError::NoServer`] if
    /// the process was given none.
    pub fn from_boot_info(boot: &BootInfo) -> Result<Self, Error> {
        RtTransport::from_boot_info(boot).map(Mm::new)
    }
}

/// A reply of the wrong kind for its request.
const BAD: Error = Error::Call(CallError::BadReply);

impl<T: Transport> Mm<T> {
    /// A connection over `transport`.
    pub const fn new(transport: T) -> Self {
        Mm { transport }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Sends any request and returns the reply, unchecked.
    pub fn request(&self, req: &Request) -> Result<Reply, Error> {
        self.transport.call(req)
    }

    /// Sends a request whose reply must be [`Reply::Done`].
    pub(crate) fn done(&self, req: &Request) -> Result<(), Error> {
        match self.transport.call(req)? {
            Reply::Done => Ok(()),
            _ => Err(BAD),
        }
    }

    /// Sends a request whose reply must be [`Reply::Mapped`]: the address
    /// and the length mapped.
    fn mapped(&self, req: &Request) -> Result<(u64, u64), Error> {
        match self.transport.call(req)? {
            Reply::Mapped { addr, len } => Ok((addr, len)),
            _ => Err(BAD),
        }
    }

    /// Sends a request whose reply must be [`Reply::Pages`].
    fn pages(&self, req: &Request) -> Result<(u64, u64), Error> {
        match self.transport.call(req)? {
            Reply::Pages { addr, pfn } => Ok((addr, pfn)),
            _ => Err(BAD),
        }
    }

    /// Sends a request whose reply must be [`Reply::NotCopied`].
    fn not_copied(&self, req: &Request) -> Result<u64, Error> {
        match self.transport.call(req)? {
            Reply::NotCopied { bytes } => Ok(bytes),
            _ => Err(BAD),
        }
    }

    // ----- anonymous memory ------------------------------------------------

    /// Sends [`Request::Map`] (page alignment) and returns the address,
    /// without a handle (the heap uses it for regions it manages itself).
    pub fn mmap_raw(&self, addr: u64, len: u64, prot: Prot, flags: MapFlags) -> Result<u64, Error> {
        self.mmap_aligned_raw(addr, len, prot, flags, Align::PAGE)
    }

    /// As [`Mm::mmap_raw`], placing the region at a multiple of `align`
    /// (a `FIXED` address must be one): one request for an aligned region.
    ///
    /// Linux has no flag for it (the usual trick maps more and trims, which
    /// this replaces).
    pub fn mmap_aligned_raw(
        &self,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        align: Align,
    ) -> Result<u64, Error> {
        self.mapped(&Request::Map {
            addr,
            len,
            prot,
            flags,
            align,
        })
        .map(|(at, _)| at)
    }

    /// Drops the pages of `[addr, addr + len)` and keeps the regions:
    /// anonymous pages are freed and read as zero on the next access (a
    /// fault gives a fresh zeroed page); pages of shared objects are
    /// unmapped from the caller only and fault back in with their contents.
    ///
    /// Linux: `madvise(MADV_DONTNEED)`. Areas and pinned pages refuse it
    /// ([`MmError::Busy`]), PFNMAP regions too ([`MmError::InvalidArgument`]:
    /// use [`Mm::zap_vma_ptes`]). Repeating it is harmless.
    pub fn madvise_dontneed(&self, addr: u64, len: u64) -> Result<(), Error> {
        self.done(&Request::Discard { addr, len })
    }

    /// Unmaps `[addr, addr + len)`.
    ///
    /// Linux: `munmap`. Pages of anonymous regions are freed; regions that
    /// straddle the ends are split. Repeating it is harmless.
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), Error> {
        self.done(&Request::Unmap { addr, len })
    }

    /// Changes the protection of every page of `[addr, addr + len)`, which
    /// must be mapped throughout ([`MmError::NotMapped`] otherwise).
    ///
    /// Linux: `mprotect`.
    pub fn mprotect(&self, addr: u64, len: u64, prot: Prot) -> Result<(), Error> {
        self.done(&Request::Protect { addr, len, prot })
    }

    /// Backs and maps every page of `[addr, addr + len)` now, in batches.
    ///
    /// Linux: `mm_populate` (what `MAP_POPULATE` and `madvise(MADV_WILLNEED)`
    /// do); here a request of its own, so a region mapped on demand can be
    /// populated later.
    pub fn mm_populate(&self, addr: u64, len: u64) -> Result<(), Error> {
        self.done(&Request::Populate { addr, len })
    }

    // ----- page allocator --------------------------------------------------

    /// Frees pages from [`Mm::alloc_pages`] (the whole `2^order` block).
    ///
    /// Linux: `free_pages`; [`MmError::NotOwner`] for anything else.
    pub fn free_pages(&self, addr: u64, order: u8) -> Result<(), Error> {
        self.done(&Request::FreePages { addr, order })
    }

    /// Frees pages from [`Mm::alloc_pages_exact`] of the same `size`.
    ///
    /// Linux: `free_pages_exact`.
    pub fn free_pages_exact(&self, addr: u64, size: u64) -> Result<(), Error> {
        let count = exact_count(size)?;
        self.done(&Request::FreePagesExact { addr, count })
    }

    /// Frees `count` frames from [`Mm::alloc_contig_range`] mapped at `addr`.
    ///
    /// Linux: `free_contig_range` (which takes the first frame; here the
    /// address the range was mapped at).
    pub fn free_contig_range(&self, addr: u64, count: u64) -> Result<(), Error> {
        self.done(&Request::FreeContigRange { addr, count })
    }

    // ----- virtually contiguous memory -------------------------------------

    /// Frees a vmalloc area.
    ///
    /// Linux: `vfree`; [`MmError::NotOwner`] for anything else (Linux would BUG).
    pub fn vfree(&self, addr: u64) -> Result<(), Error> {
        self.done(&Request::Vfree { addr })
    }

    /// Unmaps a [`Mm::vmap`] area; the frames stay the caller's.
    ///
    /// Linux: `vunmap`.
    pub fn vunmap(&self, addr: u64) -> Result<(), Error> {
        self.done(&Request::Vunmap { addr })
    }

    /// Unmaps a [`Mm::vm_map_ram`] area of `count` pages.
    ///
    /// Linux: `vm_unmap_ram`.
    pub fn vm_unmap_ram(&self, addr: u64, count: u32) -> Result<(), Error> {
        self.done(&Request::VmUnmapRam { addr, count })
    }

    // ----- mapping into PFNMAP regions -------------------------------------

    /// Maps frame `pfn`, which the caller owns, at `addr` inside a region
    /// mapped with [`MapFlags::PFNMAP`].
    ///
    /// Linux: `vm_insert_page` (which takes a `struct page`; here its frame number).
    pub fn vm_insert_page(&self, addr: u64, pfn: u64) -> Result<(), Error> {
        self.done(&Request::VmInsertPage { addr, pfn })
    }

    /// Maps any frame the caller may map — its own, or device memory its
    /// manifest grants — at `addr` in a PFNMAP region.
    ///
    /// Linux: `vm_insert_pfn` (now `vmf_insert_pfn`).
    pub fn vm_insert_pfn(&self, addr: u64, pfn: u64) -> Result<(), Error> {
        self.done(&Request::VmInsertPfn { addr, pfn })
    }

    /// As [`Mm::vm_insert_pfn`], with a protection.
    ///
    /// Linux: `vm_insert_pfn_prot` (now `vmf_insert_pfn_prot`).
    pub fn vm_insert_pfn_prot(&self, addr: u64, pfn: u64, prot: Prot) -> Result<(), Error> {
        self.done(&Request::VmInsertPfnProt { addr, pfn, prot })
    }

    /// Maps `size` bytes of frames from `pfn` at `addr` in a PFNMAP region.
    ///
    /// Linux: `remap_pfn_range`.
    pub fn remap_pfn_range(&self, addr: u64, pfn: u64, size: u64, prot: Prot) -> Result<(), Error> {
        self.done(&Request::RemapPfnRange {
            addr,
            pfn,
            size,
            prot,
        })
    }

    /// Maps the device range `[phys, phys + len)` at the start of the PFNMAP
    /// region at `addr`, with device attributes.
    ///
    /// Linux: `vm_iomap_memory`.
    pub fn vm_iomap_memory(&self, addr: u64, phys: u64, len: u64) -> Result<(), Error> {
        self.done(&Request::VmIomapMemory { addr, phys, len })
    }

    /// Removes the page-table entries of `[addr, addr + len)` of a PFNMAP
    /// region; the region stays.
    ///
    /// Linux: `zap_vma_ptes`.
    pub fn zap_vma_ptes(&self, addr: u64, len: u64) -> Result<(), Error> {
        self.done(&Request::ZapVmaPtes { addr, len })
    }

    /// Unmaps pages `[first, first + count)` (`count` 0: to the end) of the
    /// shared object `handle` from every client that maps them; they fault
    /// back in on the next access.
    ///
    /// Linux: `unmap_mapping_range` (which takes byte offsets of an
    /// `address_space`; here page indices of a shared object).
    pub fn unmap_mapping_range(&self, handle: u64, first: u64, count: u64) -> Result<(), Error> {
        self.done(&Request::UnmapMappingRange {
            handle,
            first,
            count,
        })
    }

    /// The frame mapped at `addr`.
    ///
    /// Linux: `follow_pfn`.
    pub fn follow_pfn(&self, addr: u64) -> Result<u64, Error> {
        match self.transport.call(&Request::FollowPfn { addr })? {
            Reply::Pfn { pfn } => Ok(pfn),
            _ => Err(BAD),
        }
    }

    // ----- shared memory ---------------------------------------------------

    /// Allows client `to` to map the shared object `handle` with at most `prot`.
    ///
    /// No single Linux counterpart (the nearest is passing a memfd).
    pub fn shm_grant(&self, handle: u64, to: ClientId, prot: Prot) -> Result<(), Error> {
        self.done(&Request::ShmGrant { handle, to, prot })
    }

    /// Destroys a shared object the caller created; it disappears when the
    /// last mapping goes.
    pub fn shm_destroy(&self, handle: u64) -> Result<(), Error> {
        self.done(&Request::ShmDestroy { handle })
    }

    // ----- user memory access ----------------------------------------------

    /// Copies `len` bytes from the caller's `src` to `client`'s `dst`
    /// (`client` may be the caller itself). Returns the bytes **not**
    /// copied: 0 when all were.
    ///
    /// Linux: `copy_to_user`.
    pub fn copy_to_user(
        &self,
        client: ClientId,
        dst: u64,
        src: u64,
        len: u64,
    ) -> Result<u64, Error> {
        self.not_copied(&Request::CopyToUser {
            client,
            dst,
            src,
            len,
        })
    }

    /// Copies `len` bytes from `client`'s `src` to the caller's `dst`.
    /// Returns the bytes not copied.
    ///
    /// Linux: `copy_from_user`.
    pub fn copy_from_user(
        &self,
        client: ClientId,
        dst: u64,
        src: u64,
        len: u64,
    ) -> Result<u64, Error> {
        self.not_copied(&Request::CopyFromUser {
            client,
            dst,
            src,
            len,
        })
    }

    /// Zeroes `len` bytes at `client`'s `addr`. Returns the bytes not cleared.
    ///
    /// Linux: `clear_user`.
    pub fn clear_user(&self, client: ClientId, addr: u64, len: u64) -> Result<u64, Error> {
        self.not_copied(&Request::ClearUser { client, addr, len })
    }

    /// Unpins `count` pages pinned at `addr` by [`Mm::get_user_pages_fast`].
    ///
    /// Linux: `put_page` on each (or `unpin_user_pages`).
    pub fn put_user_pages(&self, addr: u64, count: u32) -> Result<(), Error> {
        self.done(&Request::PutUserPages { addr, count })
    }

    // ----- DMA -------------------------------------------------------------

    /// Sends [`Request::DmaAllocCoherent`] and returns `(addr, bus)`
    /// without a handle (the DMA pools' chunk source uses it): `size`
    /// bytes of physically contiguous DMA32 memory mapped non-cacheable,
    /// both addresses multiples of `align`.
    pub fn dma_alloc_coherent_raw(&self, size: u64, align: Align) -> Result<(u64, u64), Error> {
        match self
            .transport
            .call(&Request::DmaAllocCoherent { size, align })?
        {
            Reply::Dma { addr, bus } => Ok((addr, bus)),
            _ => Err(BAD),
        }
    }

    /// Frees a coherent DMA buffer of `size` bytes at `addr`.
    ///
    /// Linux: `dma_free_coherent`.
    pub fn dma_free_coherent(&self, addr: u64, size: u64) -> Result<(), Error> {
        self.done(&Request::DmaFreeCoherent { addr, size })
    }

    // ----- statistics and lifecycle ----------------------------------------

    /// Free pages per zone and order.
    ///
    /// Linux: what `/proc/buddyinfo` and `nr_free_zone_pages` report.
    pub fn zone_stats(&self) -> Result<List<ZoneInfo, 4>, Error> {
        match self.transport.call(&Request::ZoneStats)? {
            Reply::Zones { zones } => Ok(zones),
            _ => Err(BAD),
        }
    }

    /// The caller's accounting: its id, resident pages, quota, regions, faults.
    ///
    /// Linux: the nearest is `/proc/self/status` (VmRSS and friends).
    pub fn client_stats(&self) -> Result<ClientInfo, Error> {
        match self.transport.call(&Request::ClientStats)? {
            Reply::Client(info) => Ok(info),
            _ => Err(BAD),
        }
    }

    /// Every frame the server manages, by class; the classes add up to the
    /// total ([`MemInfo::conserved`]).
    ///
    /// Linux: `/proc/meminfo`.
    pub fn mem_info(&self) -> Result<MemInfo, Error> {
        match self.transport.call(&Request::MemInfo)? {
            Reply::Mem(info) => Ok(info),
            _ => Err(BAD),
        }
    }

    /// Tells the server the caller is exiting: it releases everything the
    /// caller holds. Handles still alive afterwards release nothing (their
    /// requests are refused).
    ///
    /// Linux: `exit_mmap`.
    pub fn exit(&self) -> Result<(), Error> {
        self.done(&Request::Exit)
    }

    /// From the supervisor only: `client` died; the server releases all it held.
    pub fn client_died(&self, client: ClientId) -> Result<(), Error> {
        self.done(&Request::ClientDied { client })
    }
}

/// The calls that create something and return its RAII handle (which keeps
/// a clone of the connection).
impl<T: Transport + Clone> Mm<T> {
    /// Maps `len` bytes of anonymous memory (a page multiple) with `prot`;
    /// `addr` is a hint (0: anywhere) unless `flags` has
    /// [`MapFlags::FIXED`] or [`MapFlags::FIXED_NOREPLACE`]. Pages are
    /// demand-zero unless [`MapFlags::POPULATE`].
    ///
    /// Linux: `mmap(MAP_ANONYMOUS | MAP_PRIVATE)`. Dropping the
    /// [`Mapping`] unmaps it.
    pub fn mmap(
        &self,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
    ) -> Result<Mapping<T>, Error> {
        self.mmap_aligned(addr, len, prot, flags, Align::PAGE)
    }

    /// As [`Mm::mmap`], placing the region at a multiple of `align` (a
    /// `FIXED` address must be one).
    ///
    /// Linux: `mmap` has no alignment argument; this is one request where
    /// Linux users map more and trim.
    pub fn mmap_aligned(
        &self,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        align: Align,
    ) -> Result<Mapping<T>, Error> {
        let (at, mapped) = self.mapped(&Request::Map {
            addr,
            len,
            prot,
            flags,
            align,
        })?;
        Ok(Mapping::from_raw(self.clone(), at, mapped))
    }

    /// `2^order` physically contiguous frames, mapped into the caller.
    ///
    /// Linux: `alloc_pages` (which returns a `struct page`; here the
    /// address and first frame number). Dropping the [`Pages`] frees them.
    pub fn alloc_pages(&self, order: u8, gfp: Gfp) -> Result<Pages<T>, Error> {
        let (addr, pfn) = self.pages(&Request::AllocPages { order, gfp })?;
        Ok(Pages::from_raw(
            self.clone(),
            addr,
            pfn,
            PagesKind::Order(order),
        ))
    }

    /// Exactly enough contiguous frames for `size` bytes (not rounded up to
    /// a power of two), mapped into the caller.
    ///
    /// Linux: `alloc_pages_exact`. `size` 0 or over 1024 pages is refused
    /// here with [`MmError::InvalidArgument`] before anything is sent.
    pub fn alloc_pages_exact(&self, size: u64, gfp: Gfp) -> Result<Pages<T>, Error> {
        let count = exact_count(size)?;
        let (addr, pfn) = self.pages(&Request::AllocPagesExact { count, gfp })?;
        Ok(Pages::from_raw(
            self.clone(),
            addr,
            pfn,
            PagesKind::Exact(count),
        ))
    }

    /// The frames `[start_pfn, end_pfn)` exactly, mapped into the caller;
    /// [`MmError::Busy`] (and no change) if any is in use.
    ///
    /// Linux: `alloc_contig_range` (which leaves the frames unmapped and
    /// takes a migrate type; here they are mapped, and only clients granted
    /// page access may ask).
    pub fn alloc_contig_range(&self, start_pfn: u64, end_pfn: u64) -> Result<Pages<T>, Error> {
        let (addr, pfn) = self.pages(&Request::AllocContigRange { start_pfn, end_pfn })?;
        let count = end_pfn.saturating_sub(start_pfn);
        Ok(Pages::from_raw(
            self.clone(),
            addr,
            pfn,
            PagesKind::Contig(count),
        ))
    }

    fn vmalloc_kind(&self, size: u64, kind: VmallocKind) -> Result<VmArea<T>, Error> {
        let (addr, _) = self.mapped(&Request::Vmalloc { size, kind })?;
        Ok(VmArea::from_raw(self.clone(), addr, size, VmKind::Vmalloc))
    }

    /// `size` bytes of virtually contiguous memory (the frames need not be
    /// contiguous); contents unspecified.
    ///
    /// Linux: `vmalloc`. Dropping the [`VmArea`] vfrees it.
    pub fn vmalloc(&self, size: u64) -> Result<VmArea<T>, Error> {
        self.vmalloc_kind(size, VmallocKind::Plain)
    }

    /// As [`Mm::vmalloc`], zeroed.
    ///
    /// Linux: `vzalloc`.
    pub fn vzalloc(&self, size: u64) -> Result<VmArea<T>, Error> {
        self.vmalloc_kind(size, VmallocKind::Zeroed)
    }

    /// As [`Mm::vzalloc`], and shareable by handle.
    ///
    /// Linux: `vmalloc_user` (zeroed, for mapping to user space).
    pub fn vmalloc_user(&self, size: u64) -> Result<VmArea<T>, Error> {
        self.vmalloc_kind(size, VmallocKind::User)
    }

    /// As [`Mm::vmalloc`], from frames below 4 GiB physical.
    ///
    /// Linux: `vmalloc_32`.
    pub fn vmalloc_32(&self, size: u64) -> Result<VmArea<T>, Error> {
        self.vmalloc_kind(size, VmallocKind::Dma32)
    }

    /// Maps frames the caller owns (from [`Mm::alloc_pages`]) contiguously.
    ///
    /// Linux: `vmap` (without the `VM_MAP` flags argument). More than
    /// [`MAX_PFNS`] frames, or none, is refused here with
    /// [`MmError::InvalidArgument`] before anything is sent. Dropping the
    /// [`VmArea`] vunmaps it.
    pub fn vmap(&self, pfns: &[u64], prot: Prot) -> Result<VmArea<T>, Error> {
        let list = pfn_list(pfns)?;
        let (addr, _) = self.mapped(&Request::Vmap { pfns: list, prot })?;
        let size = pfns.len() as u64 * PAGE_SIZE;
        Ok(VmArea::from_raw(self.clone(), addr, size, VmKind::Vmap))
    }

    /// As [`Mm::vmap`], read/write; dropping the [`VmArea`] calls vm_unmap_ram.
    ///
    /// Linux: `vm_map_ram` (without the NUMA node).
    pub fn vm_map_ram(&self, pfns: &[u64]) -> Result<VmArea<T>, Error> {
        let list = pfn_list(pfns)?;
        let (addr, _) = self.mapped(&Request::VmMapRam { pfns: list })?;
        let size = pfns.len() as u64 * PAGE_SIZE;
        Ok(VmArea::from_raw(self.clone(), addr, size, VmKind::VmMapRam))
    }

    /// Creates a shared object of `size` bytes; map it with
    /// [`SharedObject::map`], let others map it with [`SharedObject::grant`].
    ///
    /// No single Linux counterpart (the nearest is `memfd_create` +
    /// `ftruncate`). Dropping the [`SharedObject`] destroys it.
    pub fn shm_create(&self, size: u64) -> Result<SharedObject<T>, Error> {
        match self.transport.call(&Request::ShmCreate { size })? {
            Reply::Handle { handle } => Ok(SharedObject::from_raw(self.clone(), handle, size)),
            _ => Err(BAD),
        }
    }

    /// Maps the whole shared object `handle` (one's own, or granted) with
    /// `prot`; `addr` is a placement hint (0: anywhere). The [`Mapping`]'s
    /// length is the object's size rounded up to pages, as the server
    /// reports it, so a client granted an object need not be told its size.
    pub fn shm_map(&self, handle: u64, addr: u64, prot: Prot) -> Result<Mapping<T>, Error> {
        let (at, len) = self.mapped(&Request::ShmMap { handle, addr, prot })?;
        Ok(Mapping::from_raw(self.clone(), at, len))
    }

    /// Copies `len` bytes of `client`'s memory at `src` into new memory of
    /// the caller's.
    ///
    /// Linux: `memdup_user` (which kmallocs the copy; here the server maps
    /// new pages, released by dropping the [`Mapping`]). [`MmError::Fault`]
    /// if not every byte could be read.
    pub fn memdup_user(&self, client: ClientId, src: u64, len: u64) -> Result<Mapping<T>, Error> {
        let (at, bytes) = self.mapped(&Request::MemdupUser { client, src, len })?;
        Ok(Mapping::from_raw(self.clone(), at, bytes))
    }

    /// Faults in and pins `count` pages from `addr` (for writing if
    /// `write`); returns their frames, pinned until the [`Pins`] drops.
    ///
    /// Linux: `get_user_pages_fast` (which returns the number pinned and may
    /// pin fewer; here all or none).
    pub fn get_user_pages_fast(
        &self,
        addr: u64,
        count: u32,
        write: bool,
    ) -> Result<Pins<T>, Error> {
        match self
            .transport
            .call(&Request::GetUserPagesFast { addr, count, write })?
        {
            Reply::Pfns { pfns } => Ok(Pins::from_raw(self.clone(), addr, pfns)),
            _ => Err(BAD),
        }
    }

    /// `size` bytes of physically contiguous DMA32 memory mapped
    /// non-cacheable: its address and its bus address.
    ///
    /// Linux: `dma_alloc_coherent` (without the device argument: the
    /// client's manifest grants DMA). Dropping the [`DmaBuffer`] frees it.
    pub fn dma_alloc_coherent(&self, size: u64) -> Result<DmaBuffer<T>, Error> {
        self.dma_alloc_coherent_aligned(size, Align::PAGE)
    }

    /// As [`Mm::dma_alloc_coherent`], with the virtual and bus addresses
    /// both multiples of `align` (up to [`Align::MAX_DMA`], 4 MiB).
    ///
    /// Linux: `dma_alloc_coherent` aligns to the size's page order; here
    /// the caller may ask for more (what a DMA pool's boundary needs).
    pub fn dma_alloc_coherent_aligned(
        &self,
        size: u64,
        align: Align,
    ) -> Result<DmaBuffer<T>, Error> {
        let (addr, bus) = self.dma_alloc_coherent_raw(size, align)?;
        Ok(DmaBuffer::from_raw(self.clone(), addr, bus, size))
    }

    /// Sends a release request (for the handles' `Drop` and explicit release).
    pub(crate) fn release(&self, r: Release) -> Result<(), Error> {
        self.done(&r.request())
    }
}

/// The page count for `size` bytes of alloc/free_pages_exact.
fn exact_count(size: u64) -> Result<u32, Error> {
    match pages_for(size) {
        Some(n @ 1..=1024) => Ok(n as u32),
        _ => Err(Error::Mm(MmError::InvalidArgument)),
    }
}

/// A frame list for a message.
fn pfn_list(pfns: &[u64]) -> Result<List<u64, MAX_PFNS>, Error> {
    if pfns.is_empty() {
        return Err(Error::Mm(MmError::InvalidArgument));
    }
    List::from_slice(pfns).ok_or(Error::Mm(MmError::InvalidArgument))
}
