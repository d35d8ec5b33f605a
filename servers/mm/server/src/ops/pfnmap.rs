//! Mapping frames into PFNMAP regions: vm_insert_page/pfn/pfn_prot, remap_pfn_range, vm_iomap_memory, zap_vma_ptes, follow_pfn.

use alloc::vec::Vec;

use abi::ErrorReply;
use libmm::protocol::{MmError, Reply};
use mm_core::addr::{LARGE_PAGE_SIZE, PAGE_SIZE, VirtAddr};
use mm_core::vm::{Prot, Region};

use super::{page_range, prot};
use crate::client::rflags;
use crate::error::Fail;
use crate::pagemap::Hold;
use crate::phys::Fr;
use crate::server::Server;

impl Server {
    /// The PFNMAP region holding all of `[start, end)` (NotMapped if none,
    /// InvalidArgument if the region is not PFNMAP or the range leaves it).
    fn pfnmap_region(&self, ci: u32, start: u64, end: u64) -> Result<Region, MmError> {
        let r = *self.clients[ci as usize]
            .regions
            .find(VirtAddr(start))
            .ok_or(MmError::NotMapped)?;
        if !r.flags.contains(rflags::PFNMAP) || end > r.end().0 {
            return Err(MmError::InvalidArgument);
        }
        Ok(r)
    }

    /// How the frames `[pfn, pfn + n)` may be mapped by client `ci`: as its
    /// own frames (`Borrow`) or granted device memory (`Dev`).
    fn pfn_hold(&self, ci: u32, pfn: u64, n: u64, device_ok: bool) -> Result<Hold, MmError> {
        if n == 0 {
            return Err(MmError::InvalidArgument);
        }
        let last = pfn.checked_add(n - 1).ok_or(MmError::Overflow)?;
        if self.phys.is_ram(pfn) || self.phys.is_ram(last) {
            if (pfn..=last).all(|p| self.owns(ci, p)) {
                return Ok(Hold::Borrow);
            }
            return Err(MmError::NotOwner);
        }
        if !device_ok {
            return Err(MmError::NotOwner);
        }
        if !self.phys.is_device_range(pfn, n) {
            return Err(MmError::InvalidArgument);
        }
        let bytes = n.checked_mul(PAGE_SIZE).ok_or(MmError::Overflow)?;
        let phys = pfn.checked_mul(PAGE_SIZE).ok_or(MmError::Overflow)?;
        if !self.clients[ci as usize].grants.covers_device(phys, bytes) {
            return Err(MmError::PermissionDenied);
        }
        Ok(Hold::Dev)
    }

    /// Maps `n` frames from `pfn` at `[start, start + n pages)` of the
    /// caller's PFNMAP region with `p` (default: the region's protection).
    fn insert_range(
        &mut self,
        ci: u32,
        start: u64,
        pfn: u64,
        n: u64,
        p: Option<Prot>,
        device_ok: bool,
    ) -> Result<Reply, Fail> {
        let end = start
            .checked_add(n.checked_mul(PAGE_SIZE).ok_or(MmError::Overflow)?)
            .ok_or(MmError::Overflow)?;
        let r = self.pfnmap_region(ci, start, end)?;
        let vprot = p.unwrap_or(r.prot);
        if vprot.is_none() || !r.prot.contains(vprot) {
            return Err(MmError::PermissionDenied.into());
        }
        if !self.clients[ci as usize]
            .pages
            .entries(start, end)
            .is_empty()
        {
            return Err(MmError::AlreadyMapped.into());
        }
        let hold = self.pfn_hold(ci, pfn, n, device_ok)?;
        let frames: Vec<(u64, Hold)> = (pfn..pfn + n).map(|f| (f, hold)).collect();
        let (write, exec) = crate::mapping::page_mode(vprot);
        let exec = exec && hold != Hold::Dev;
        self.map_held(ci, start, &frames, write, exec, false, None)?;
        Ok(Reply::Done)
    }

    /// vm_insert_page / vm_insert_pfn / vm_insert_pfn_prot (kernel-doc):
    /// one frame into a PFNMAP region. As in Linux, vm_insert_page takes
    /// only pages (here: the caller's own), vm_insert_pfn also device
    /// frames; unlike Linux the caller's right to the frame is checked.
    pub(crate) fn insert_pfn(
        &mut self,
        ci: u32,
        addr: u64,
        pfn: u64,
        p: Option<libmm::protocol::Prot>,
        page_only: bool,
    ) -> Result<Reply, Fail> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(MmError::Unaligned.into());
        }
        let vprot = match p {
            Some(p) => Some(prot(p)?),
            None => None,
        };
        self.insert_range(ci, addr, pfn, 1, vprot, !page_only)
    }

    /// remap_pfn_range (kernel-doc).
    pub(crate) fn remap_pfn_range(
        &mut self,
        ci: u32,
        addr: u64,
        pfn: u64,
        size: u64,
        p: libmm::protocol::Prot,
    ) -> Result<Reply, Fail> {
        let vprot = prot(p)?;
        let (start, _) = page_range(addr, size)?;
        self.insert_range(ci, start, pfn, size / PAGE_SIZE, Some(vprot), true)
    }

    /// vm_iomap_memory (kernel-doc): maps `[phys, phys + len)` of device
    /// memory over the whole PFNMAP region starting at `addr`, which must not
    /// be larger than the range.
    pub(crate) fn vm_iomap_memory(
        &mut self,
        ci: u32,
        addr: u64,
        phys: u64,
        len: u64,
    ) -> Result<Reply, Fail> {
        page_range(phys, len)?;
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(MmError::Unaligned.into());
        }
        let r = *self.clients[ci as usize]
            .regions
            .find(VirtAddr(addr))
            .ok_or(MmError::NotMapped)?;
        if r.start.0 != addr || !r.flags.contains(rflags::PFNMAP) || r.len > len {
            return Err(MmError::InvalidArgument.into());
        }
        let pfn = phys / PAGE_SIZE;
        if self.phys.is_ram(pfn) {
            return Err(MmError::InvalidArgument.into());
        }
        self.insert_range(ci, addr, pfn, r.len / PAGE_SIZE, None, true)
    }

    /// zap_vma_ptes (kernel-doc): removes the entries of a range of PFNMAP
    /// regions; the regions stay.
    pub(crate) fn zap_vma_ptes(&mut self, ci: u32, addr: u64, len: u64) -> Result<Reply, Fail> {
        let (start, end) = page_range(addr, len)?;
        for r in self.covered(ci, start, end)? {
            if !r.flags.contains(rflags::PFNMAP) {
                return Err(MmError::InvalidArgument.into());
            }
        }
        if self.pinned_in(ci, start, end) {
            return Err(MmError::Busy.into());
        }
        self.zap(ci, start, end)?;
        Ok(Reply::Done)
    }

    /// follow_pfn (kernel-doc): the frame mapped at `addr`, as the kernel
    /// knows it.
    ///
    /// The answer is not the server's own record but the physical address
    /// the kernel's `Page_GetAddress` gives for the very cap that maps the
    /// page in the client (for a 2 MiB block: the block's frame, plus the
    /// page's offset in it). So a client that checks its bus addresses
    /// (DMA) or pinned frames against follow_pfn checks them against the
    /// kernel's truth: a server whose bookkeeping strayed from the caps it
    /// mapped would be caught. Such a disagreement is a server bug: it is
    /// counted (the self-check then fails) and reported, and the kernel's
    /// frame is the answer. Unlike Linux, the caller learns only frames of
    /// its own address space. One kernel invocation per call.
    pub(crate) fn follow_pfn(&mut self, ci: u32, addr: u64) -> Result<Reply, Fail> {
        let page = addr & !(PAGE_SIZE - 1);
        let pages = &self.clients[ci as usize].pages;
        let (cap, recorded, offset) = match pages.block(page) {
            Some(b) => {
                let k0 = self.phys.lay.index(b.pfn()).ok_or(Fail::Bug(
                    "a block outside the frame layout",
                    ErrorReply::IllegalOperation,
                ))?;
                let i = (page % LARGE_PAGE_SIZE) / PAGE_SIZE;
                (self.phys.cap_of(Fr::Ram(k0), 0), b.pfn() + i, i)
            }
            None => {
                let p = pages.get(page).ok_or(MmError::NotMapped)?;
                (self.phys.cap_of(self.fr(p), p.tag), p.pfn(), 0)
            }
        };
        let phys = rt::invoke::page_get_address(cap)
            .map_err(|e| Fail::Bug("Page_GetAddress of a mapped frame", e))?;
        let pfn = phys / PAGE_SIZE + offset;
        if pfn != recorded {
            self.stats.bugs += 1;
            rt::println!(
                "mm: internal error: follow_pfn at {page:#x}: the page map says frame {recorded:#x}, the kernel {pfn:#x}"
            );
        }
        Ok(Reply::Pfn { pfn })
    }
}
