//! The page allocator for clients (alloc_pages and friends) and coherent DMA memory; areas in general.

use alloc::vec::Vec;

use libmm::protocol::{Align, Gfp, MmError, Reply};
use mm_core::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr, pages_for};
use mm_core::frame::{GfpFlags, MAX_ORDER, Mobility, Priority, ZoneType};
use mm_core::vm::{Placement, Prot, RegionFlags, RegionKind, RegionSpec};

use crate::client::{Area, AreaKind, rflags};
use crate::error::{Fail, frame_error, vm_error};
use crate::pagemap::Hold;
use crate::phys::Owner;
use crate::server::Server;

/// The most pages one exact or contiguous request may take.
const MAX_RUN_PAGES: u64 = 1 << MAX_ORDER;

/// The allocation flags for a page-allocator request.
fn gfp_flags(gfp: Gfp) -> Result<GfpFlags, MmError> {
    if gfp.0 & !(Gfp::ZERO.0 | Gfp::DMA32.0 | Gfp::ATOMIC.0) != 0 {
        return Err(MmError::InvalidArgument);
    }
    Ok(GfpFlags {
        zone: if gfp.contains(Gfp::DMA32) {
            ZoneType::Dma32
        } else {
            ZoneType::Normal
        },
        mobility: Mobility::Unmovable,
        priority: if gfp.contains(Gfp::ATOMIC) {
            Priority::Atomic
        } else {
            Priority::Normal
        },
    })
}

/// Where and what a new area is (see [`Server::make_area_at`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AreaAt {
    /// Its kind.
    pub kind: AreaKind,
    /// The kind of its region.
    pub region_kind: RegionKind,
    /// Mapped Normal non-cacheable (DMA).
    pub uncached: bool,
    /// The first frame of a physically contiguous area (0 otherwise).
    pub contiguous_pfn: u64,
    /// The alignment of its start, in bytes (at least a page).
    pub align: u64,
}

impl Server {
    /// Places a new area of `frames` (each `(pfn, hold)`) in client `ci`:
    /// a region of its own (never merged), every page mapped now. The
    /// frames must already be taken. Returns its address.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn make_area(
        &mut self,
        ci: u32,
        kind: AreaKind,
        frames: &[(u64, Hold)],
        prot: Prot,
        region_kind: RegionKind,
        uncached: bool,
        contiguous_pfn: u64,
    ) -> Result<u64, Fail> {
        let at = AreaAt {
            kind,
            region_kind,
            uncached,
            contiguous_pfn,
            align: PAGE_SIZE,
        };
        self.make_area_at(ci, &at, frames, prot)
    }

    /// [`Server::make_area`] with the start at a multiple of `at.align`.
    pub(crate) fn make_area_at(
        &mut self,
        ci: u32,
        at: &AreaAt,
        frames: &[(u64, Hold)],
        prot: Prot,
    ) -> Result<u64, Fail> {
        let AreaAt {
            kind,
            region_kind,
            uncached,
            contiguous_pfn,
            align,
        } = *at;
        let pages = frames.len() as u64;
        let len = pages * PAGE_SIZE;
        let spec = RegionSpec {
            len,
            prot,
            flags: rflags::AREA | RegionFlags::NO_MERGE,
            kind: region_kind,
        };
        let c = &mut self.clients[ci as usize];
        let start = c
            .regions
            .find_free(len, &Placement::new().with_align(align))
            .map_err(vm_error)?;
        c.regions.map_fixed(start, spec).map_err(vm_error)?;
        let (write, exec) = crate::mapping::page_mode(prot);
        if let Err(e) = self.map_held(ci, start.0, frames, write, exec, uncached, None) {
            let _ = self.clients[ci as usize].regions.unmap(start, len);
            return Err(e);
        }
        self.clients[ci as usize].areas.insert(
            start.0,
            Area {
                kind,
                pages,
                pfn: contiguous_pfn,
            },
        );
        Ok(start.0)
    }

    /// The area at `addr` if it is of a kind `want` accepts (NotOwner otherwise).
    pub(crate) fn area_at(
        &self,
        ci: u32,
        addr: u64,
        want: impl Fn(AreaKind) -> bool,
    ) -> Result<Area, MmError> {
        match self.clients[ci as usize].areas.get(&addr) {
            Some(a) if want(a.kind) => Ok(*a),
            _ => Err(MmError::NotOwner),
        }
    }

    /// Whether any page of the area at `addr` is pinned, or (for areas that
    /// own their frames) mapped a second time (vmap, insertions).
    pub(crate) fn area_busy(&self, ci: u32, addr: u64, a: &Area) -> bool {
        let end = addr + a.pages * PAGE_SIZE;
        if self.pinned_in(ci, addr, end) {
            return true;
        }
        if matches!(a.kind, AreaKind::Vmap | AreaKind::MapRam) {
            return false;
        }
        self.clients[ci as usize]
            .pages
            .entries(addr, end)
            .iter()
            .any(|e| match e {
                crate::pagemap::Entry::Page(_, p) => self.rmap.map_count(Pfn(p.pfn())) > 0,
                crate::pagemap::Entry::Block(..) => false,
            })
    }

    /// Removes the area at `addr` from the client's address space (its
    /// frames are the caller's to free) and uncharges `charge` frames.
    pub(crate) fn drop_area(
        &mut self,
        ci: u32,
        addr: u64,
        a: &Area,
        charge: u64,
    ) -> Result<(), Fail> {
        let len = a.pages * PAGE_SIZE;
        self.zap(ci, addr, addr + len)?;
        let _ = self.clients[ci as usize].regions.unmap(VirtAddr(addr), len);
        let c = &mut self.clients[ci as usize];
        c.areas.remove(&addr);
        c.charged = c.charged.saturating_sub(charge);
        Ok(())
    }

    /// Checks the page-allocator grant and the quota for `pages`.
    fn may_take_pages(&self, ci: u32, pages: u64) -> Result<(), MmError> {
        let c = &self.clients[ci as usize];
        if !c.grants.pages {
            return Err(MmError::PermissionDenied);
        }
        if pages > c.headroom() {
            return Err(MmError::QuotaExceeded);
        }
        Ok(())
    }

    /// Takes, maps and records a contiguous area (at a multiple of `align`
    /// bytes); frees the frames on failure.
    #[allow(clippy::too_many_arguments)]
    fn contiguous_area(
        &mut self,
        ci: u32,
        kind: AreaKind,
        pfn: u64,
        pages: u64,
        owner: Owner,
        dma: bool,
        align: u64,
    ) -> Result<u64, Fail> {
        let give_back = |s: &mut Server| match kind {
            AreaKind::Pages { order } => s.phys.free_block(pfn, order as u32),
            _ => s.phys.free_run(pfn, pages),
        };
        if let Err(e) = self.phys.take(pfn, pages, owner) {
            let _ = give_back(self);
            return Err(e);
        }
        let frames: Vec<(u64, Hold)> = (pfn..pfn + pages).map(|p| (p, Hold::Area)).collect();
        let rk = if dma {
            RegionKind::DmaCoherent {
                bus: PhysAddr(pfn * PAGE_SIZE),
            }
        } else {
            RegionKind::Anonymous
        };
        let at = AreaAt {
            kind,
            region_kind: rk,
            uncached: dma,
            contiguous_pfn: pfn,
            align,
        };
        match self.make_area_at(ci, &at, &frames, Prot::RW) {
            Ok(va) => {
                self.clients[ci as usize].charged += pages;
                Ok(va)
            }
            Err(e) => {
                let _ = give_back(self);
                Err(e)
            }
        }
    }

    /// alloc_pages (kernel-doc `alloc_pages`): a block of `2^order` frames,
    /// always zeroed (frames are never handed out with another client's data).
    pub(crate) fn alloc_pages(&mut self, ci: u32, order: u8, gfp: Gfp) -> Result<Reply, Fail> {
        let flags = gfp_flags(gfp)?;
        if order as u32 > MAX_ORDER {
            return Err(MmError::InvalidArgument.into());
        }
        let pages = 1u64 << order;
        self.may_take_pages(ci, pages)?;
        let pfn = self
            .phys
            .alloc
            .alloc_pages(order as u32, flags)
            .map_err(frame_error)?
            .0;
        let addr = self.contiguous_area(
            ci,
            AreaKind::Pages { order },
            pfn,
            pages,
            Owner::Block(ci),
            false,
            PAGE_SIZE,
        )?;
        Ok(Reply::Pages { addr, pfn })
    }

    /// free_pages (kernel-doc `__free_pages`).
    pub(crate) fn free_pages(&mut self, ci: u32, addr: u64, order: u8) -> Result<Reply, Fail> {
        let a = self.area_at(ci, addr, |k| k == AreaKind::Pages { order })?;
        if self.area_busy(ci, addr, &a) {
            return Err(MmError::Busy.into());
        }
        self.drop_area(ci, addr, &a, a.pages)?;
        self.phys.free_block(a.pfn, order as u32)?;
        Ok(Reply::Done)
    }

    /// alloc_pages_exact (kernel-doc `alloc_pages_exact_nid`, counting pages).
    pub(crate) fn alloc_pages_exact(
        &mut self,
        ci: u32,
        count: u32,
        gfp: Gfp,
    ) -> Result<Reply, Fail> {
        let flags = gfp_flags(gfp)?;
        let pages = count as u64;
        if pages == 0 || pages > MAX_RUN_PAGES {
            return Err(MmError::InvalidArgument.into());
        }
        self.may_take_pages(ci, pages)?;
        let pfn = self
            .phys
            .alloc
            .alloc_pages_exact(pages, flags)
            .map_err(frame_error)?
            .0;
        let addr = self.contiguous_area(
            ci,
            AreaKind::Exact,
            pfn,
            pages,
            Owner::Block(ci),
            false,
            PAGE_SIZE,
        )?;
        Ok(Reply::Pages { addr, pfn })
    }

    /// free_pages_exact.
    pub(crate) fn free_pages_exact(
        &mut self,
        ci: u32,
        addr: u64,
        count: u32,
    ) -> Result<Reply, Fail> {
        let a = self.area_at(ci, addr, |k| k == AreaKind::Exact)?;
        if a.pages != count as u64 {
            return Err(MmError::InvalidArgument.into());
        }
        if self.area_busy(ci, addr, &a) {
            return Err(MmError::Busy.into());
        }
        self.drop_area(ci, addr, &a, a.pages)?;
        self.phys.free_run(a.pfn, a.pages)?;
        Ok(Reply::Done)
    }

    /// alloc_contig_range (kernel-doc; no migration: every frame must be free).
    pub(crate) fn alloc_contig_range(
        &mut self,
        ci: u32,
        start: u64,
        end: u64,
    ) -> Result<Reply, Fail> {
        if end <= start {
            return Err(MmError::InvalidArgument.into());
        }
        let pages = end - start;
        if pages > MAX_RUN_PAGES {
            return Err(MmError::InvalidArgument.into());
        }
        self.may_take_pages(ci, pages)?;
        if !(start..end).all(|p| self.phys.is_ram(p)) {
            return Err(MmError::InvalidArgument.into());
        }
        self.phys
            .alloc
            .alloc_contig_range(Pfn(start), Pfn(end))
            .map_err(frame_error)?;
        let addr = self.contiguous_area(
            ci,
            AreaKind::Contig,
            start,
            pages,
            Owner::Block(ci),
            false,
            PAGE_SIZE,
        )?;
        Ok(Reply::Pages { addr, pfn: start })
    }

    /// free_contig_range.
    pub(crate) fn free_contig_range(
        &mut self,
        ci: u32,
        addr: u64,
        count: u64,
    ) -> Result<Reply, Fail> {
        let a = self.area_at(ci, addr, |k| k == AreaKind::Contig)?;
        if a.pages != count {
            return Err(MmError::InvalidArgument.into());
        }
        if self.area_busy(ci, addr, &a) {
            return Err(MmError::Busy.into());
        }
        self.drop_area(ci, addr, &a, a.pages)?;
        self.phys.free_run(a.pfn, a.pages)?;
        Ok(Reply::Done)
    }

    /// dma_alloc_coherent (kernel-doc `dma_alloc_coherent`): contiguous
    /// DMA32 frames, zeroed, mapped Normal non-cacheable, both addresses
    /// multiples of `align`; the bus address is the physical address (QEMU
    /// virt has no IOMMU). The run comes from the buddy allocator as an
    /// exact run, aligned to its size rounded up to a power of two; a larger
    /// alignment takes a run of that many frames and gives the tail back.
    pub(crate) fn dma_alloc(&mut self, ci: u32, size: u64, align: Align) -> Result<Reply, Fail> {
        if !self.clients[ci as usize].grants.dma {
            return Err(MmError::PermissionDenied.into());
        }
        let pages = pages_for(size).ok_or(MmError::Overflow)?;
        let align_bytes = match align.bytes() {
            Some(a) if align.within(Align::MAX_DMA) => a,
            _ => return Err(MmError::InvalidArgument.into()),
        };
        if pages == 0 || pages > MAX_RUN_PAGES {
            return Err(MmError::InvalidArgument.into());
        }
        if pages > self.clients[ci as usize].headroom() {
            return Err(MmError::QuotaExceeded.into());
        }
        let align_pages = align_bytes / PAGE_SIZE;
        let pfn = if align_pages > pages.next_power_of_two() {
            // A power of two: one naturally aligned buddy block.
            let pfn = self.phys.alloc_run(align_pages, GfpFlags::DMA32)?;
            if let Err(e) = self.phys.free_run(pfn + pages, align_pages - pages) {
                let _ = self.phys.free_run(pfn, pages);
                return Err(e);
            }
            pfn
        } else {
            self.phys
                .alloc
                .alloc_pages_exact(pages, GfpFlags::DMA32)
                .map_err(frame_error)?
                .0
        };
        let addr = self.contiguous_area(
            ci,
            AreaKind::Dma,
            pfn,
            pages,
            Owner::Dma(ci),
            true,
            align_bytes,
        )?;
        Ok(Reply::Dma {
            addr,
            bus: pfn * PAGE_SIZE,
        })
    }

    /// dma_free_coherent.
    pub(crate) fn dma_free(&mut self, ci: u32, addr: u64, size: u64) -> Result<Reply, Fail> {
        let a = self.area_at(ci, addr, |k| k == AreaKind::Dma)?;
        if pages_for(size) != Some(a.pages) {
            return Err(MmError::InvalidArgument.into());
        }
        if self.area_busy(ci, addr, &a) {
            return Err(MmError::Busy.into());
        }
        self.drop_area(ci, addr, &a, a.pages)?;
        self.phys.free_run(a.pfn, a.pages)?;
        Ok(Reply::Done)
    }
}
