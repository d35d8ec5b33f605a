//! Virtually contiguous memory: vmalloc and friends, vfree; vmap, vunmap, vm_map_ram, vm_unmap_ram.

use alloc::vec::Vec;

use libmm::protocol::{MmError, Reply, VmallocKind};
use mm_core::addr::{PAGE_SIZE, pages_for};
use mm_core::frame::{GfpFlags, Mobility, Priority, ZoneType};
use mm_core::vm::{Prot, RegionKind};

use super::prot;
use crate::client::AreaKind;
use crate::error::Fail;
use crate::pagemap::{Entry, Hold};
use crate::phys::Owner;
use crate::server::Server;

/// The most pages one vmalloc may take (beyond the quota).
const MAX_VMALLOC_PAGES: u64 = 1 << 20;

impl Server {
    /// vmalloc / vzalloc / vmalloc_user / vmalloc_32 (kernel-doc `vmalloc`
    /// etc.): `size` bytes of virtually contiguous memory from any frames
    /// (DMA32 frames for vmalloc_32), mapped now, behind guard gaps. Every
    /// variant is zeroed: frames never carry another client's data.
    pub(crate) fn vmalloc(&mut self, ci: u32, size: u64, kind: VmallocKind) -> Result<Reply, Fail> {
        let pages = pages_for(size).ok_or(MmError::Overflow)?;
        if pages == 0 || pages > MAX_VMALLOC_PAGES {
            return Err(MmError::InvalidArgument.into());
        }
        if pages > self.clients[ci as usize].headroom() {
            return Err(MmError::QuotaExceeded.into());
        }
        let gfp = GfpFlags {
            zone: if kind == VmallocKind::Dma32 {
                ZoneType::Dma32
            } else {
                ZoneType::Normal
            },
            mobility: Mobility::Movable,
            priority: Priority::Normal,
        };
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let free_all = |s: &mut Server, runs: &[(u64, u64)]| {
            for &(p, n) in runs {
                let _ = s.phys.free_run(p, n);
            }
        };
        let mut left = pages;
        while left > 0 {
            let mut n = left.min(1024);
            let got = loop {
                match self.phys.alloc_run(n, gfp) {
                    Ok(p) => break Some(p),
                    Err(_) if n > 1 => n /= 2,
                    Err(_) => break None,
                }
            };
            match got {
                Some(p) => runs.push((p, n)),
                None => {
                    free_all(self, &runs);
                    return Err(MmError::NoMemory.into());
                }
            }
            left -= n;
        }
        let mut frames = Vec::with_capacity(pages as usize);
        for &(p, n) in &runs {
            if let Err(e) = self.phys.take(p, n, Owner::Vmalloc(ci)) {
                free_all(self, &runs);
                return Err(e);
            }
            frames.extend((p..p + n).map(|f| (f, Hold::Area)));
        }
        match self.make_area(
            ci,
            AreaKind::Vmalloc,
            &frames,
            Prot::RW,
            RegionKind::Anonymous,
            false,
            0,
        ) {
            Ok(addr) => {
                self.clients[ci as usize].charged += pages;
                Ok(Reply::Mapped {
                    addr,
                    len: pages * PAGE_SIZE,
                })
            }
            Err(e) => {
                free_all(self, &runs);
                Err(e)
            }
        }
    }

    /// vfree (kernel-doc `vfree`).
    pub(crate) fn vfree(&mut self, ci: u32, addr: u64) -> Result<Reply, Fail> {
        let a = self.area_at(ci, addr, |k| k == AreaKind::Vmalloc)?;
        if self.area_busy(ci, addr, &a) {
            return Err(MmError::Busy.into());
        }
        let frames: Vec<u64> = self.clients[ci as usize]
            .pages
            .entries(addr, addr + a.pages * PAGE_SIZE)
            .iter()
            .filter_map(|e| match e {
                Entry::Page(_, p) => Some(p.pfn()),
                Entry::Block(..) => None,
            })
            .collect();
        self.drop_area(ci, addr, &a, a.pages)?;
        for p in frames {
            self.phys.free_run(p, 1)?;
        }
        Ok(Reply::Done)
    }

    /// vmap / vm_map_ram (kernel-doc `vmap`, `vm_map_ram`): maps frames the
    /// caller owns (pages of its page blocks or vmalloc areas) contiguously at a
    /// new address. The frames stay the caller's; nothing is charged.
    pub(crate) fn vmap(
        &mut self,
        ci: u32,
        pfns: &[u64],
        p: libmm::protocol::Prot,
        map_ram: bool,
    ) -> Result<Reply, Fail> {
        let vprot = prot(p)?;
        if pfns.is_empty() || vprot.is_none() {
            return Err(MmError::InvalidArgument.into());
        }
        for &pfn in pfns {
            if !self.owns(ci, pfn) {
                return Err(MmError::NotOwner.into());
            }
        }
        let frames: Vec<(u64, Hold)> = pfns.iter().map(|&p| (p, Hold::Borrow)).collect();
        let kind = if map_ram {
            AreaKind::MapRam
        } else {
            AreaKind::Vmap
        };
        let addr = self.make_area(ci, kind, &frames, vprot, RegionKind::Anonymous, false, 0)?;
        Ok(Reply::Mapped {
            addr,
            len: frames.len() as u64 * PAGE_SIZE,
        })
    }

    /// vunmap / vm_unmap_ram: removes the mapping; the frames stay the caller's.
    pub(crate) fn vunmap(
        &mut self,
        ci: u32,
        addr: u64,
        count: Option<u64>,
        map_ram: bool,
    ) -> Result<Reply, Fail> {
        let want = if map_ram {
            AreaKind::MapRam
        } else {
            AreaKind::Vmap
        };
        let a = self.area_at(ci, addr, |k| k == want)?;
        if count.is_some_and(|c| c != a.pages) {
            return Err(MmError::InvalidArgument.into());
        }
        if self.area_busy(ci, addr, &a) {
            return Err(MmError::Busy.into());
        }
        self.drop_area(ci, addr, &a, 0)?;
        Ok(Reply::Done)
    }

    /// Whether frame `pfn` is one the client owns and may map again: a page
    /// of its page blocks or vmalloc areas. (DMA pages are not: they are
    /// mapped non-cacheable, and a cacheable alias would break coherence.)
    pub(crate) fn owns(&self, ci: u32, pfn: u64) -> bool {
        self.phys.lay.index(pfn).is_some_and(|k| {
            matches!(
                self.phys.owner[k as usize],
                Owner::Block(c) | Owner::Vmalloc(c) if c == ci
            )
        })
    }
}
