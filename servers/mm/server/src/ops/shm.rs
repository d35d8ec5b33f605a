//! Shared memory: create, grant, map, destroy; and unmap_mapping_range over a shared object.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use libmm::protocol::{ClientId, MmError, Reply};
use mm_core::addr::{PAGE_SIZE, VirtAddr, pages_for};
use mm_core::frame::GfpFlags;
use mm_core::vm::{ObjectId, Placement, Prot, Region, RegionKind, RegionSpec, SharedId};

use super::prot;
use crate::error::{Fail, vm_error};
use crate::pagemap::Hold;
use crate::phys::Owner;
use crate::server::{Server, Shm};

/// The most pages one shared object may have (beyond the creator's quota,
/// which usually binds first).
const MAX_SHM_PAGES: u64 = 1 << 20;

impl Server {
    /// Creates a shared object of `size` bytes, zeroed, charged to its creator.
    pub(crate) fn shm_create(&mut self, ci: u32, size: u64) -> Result<Reply, Fail> {
        let pages = pages_for(size).ok_or(MmError::Overflow)?;
        if pages == 0 || pages > MAX_SHM_PAGES {
            return Err(MmError::InvalidArgument.into());
        }
        if pages > self.clients[ci as usize].headroom() {
            return Err(MmError::QuotaExceeded.into());
        }
        if self.next_shm > u32::MAX as u64 {
            return Err(MmError::NoMemory.into());
        }
        let handle = self.next_shm;
        let index = handle as u32;
        // Take the frames in runs; give them all back on failure.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut left = pages;
        while left > 0 {
            let mut n = left.min(1024);
            let pfn = loop {
                match self.phys.alloc_run(n, GfpFlags::USER_MOVABLE) {
                    Ok(p) => break Some(p),
                    Err(_) if n > 1 => n /= 2,
                    Err(_) => break None,
                }
            };
            let Some(pfn) = pfn else {
                for (p, n) in runs {
                    let _ = self.phys.free_run(p, n);
                }
                return Err(MmError::NoMemory.into());
            };
            runs.push((pfn, n));
            left -= n;
        }
        let mut frames = Vec::with_capacity(pages as usize);
        for &(p, n) in &runs {
            if let Err(e) = self.phys.take(p, n, Owner::Shm(index)) {
                for (p, n) in runs {
                    let _ = self.phys.free_run(p, n);
                }
                return Err(e);
            }
            frames.extend(p..p + n);
        }
        self.next_shm += 1;
        self.shm.insert(
            handle,
            Shm {
                index,
                creator: Some(ci),
                pages: frames,
                grants: BTreeMap::new(),
                destroyed: false,
            },
        );
        self.clients[ci as usize].charged += pages;
        Ok(Reply::Handle { handle })
    }

    /// The live object `handle` (NoSuchHandle if none or destroyed).
    fn live_shm(&self, handle: u64) -> Result<&Shm, MmError> {
        match self.shm.get(&handle) {
            Some(s) if !s.destroyed => Ok(s),
            _ => Err(MmError::NoSuchHandle),
        }
    }

    /// Lets client `to` map the object with at most `prot`.
    pub(crate) fn shm_grant(
        &mut self,
        ci: u32,
        handle: u64,
        to: ClientId,
        p: libmm::protocol::Prot,
    ) -> Result<Reply, Fail> {
        let vprot = prot(p)?;
        let s = self.live_shm(handle)?;
        if s.creator != Some(ci) {
            return Err(MmError::PermissionDenied.into());
        }
        let t = self.target(to)?;
        if let Some(s) = self.shm.get_mut(&handle) {
            s.grants.insert(t, vprot.bits());
        }
        Ok(Reply::Done)
    }

    /// Whether client `ci` may map object `id` with `p`.
    pub(crate) fn shm_may(&self, ci: u32, id: u64, p: Prot) -> bool {
        match self.shm.get(&id) {
            Some(s) if s.creator == Some(ci) => true,
            Some(s) => s
                .grants
                .get(&ci)
                .is_some_and(|&g| Prot::from_bits(g).is_some_and(|g| g.contains(p))),
            None => false,
        }
    }

    /// Maps the whole object in the caller.
    pub(crate) fn shm_map(
        &mut self,
        ci: u32,
        handle: u64,
        addr: u64,
        p: libmm::protocol::Prot,
    ) -> Result<Reply, Fail> {
        let vprot = prot(p)?;
        let pages = self.live_shm(handle)?.pages.len() as u64;
        if !self.shm_may(ci, handle, vprot) {
            return Err(MmError::PermissionDenied.into());
        }
        let len = pages * PAGE_SIZE;
        let mut pl = Placement::new();
        if addr != 0 && addr.is_multiple_of(PAGE_SIZE) {
            pl = pl.with_hint(VirtAddr(addr));
        }
        let spec = RegionSpec::shared(SharedId(handle), 0, len, vprot);
        let start = self.clients[ci as usize]
            .regions
            .find_free(len, &pl)
            .map_err(vm_error)?;
        self.clients[ci as usize]
            .regions
            .map_fixed(start, spec)
            .map_err(vm_error)?;
        if !vprot.is_none() {
            let region = Region {
                start,
                len,
                prot: vprot,
                flags: spec.flags,
                kind: spec.kind,
            };
            if let Err(e) = self.shm_fill(ci, start.0, start.0 + len, &region) {
                let _ = self.zap(ci, start.0, start.0 + len);
                let _ = self.clients[ci as usize].regions.unmap(start, len);
                return Err(e);
            }
        }
        Ok(Reply::Mapped { addr: start.0, len })
    }

    /// Maps the object pages of the shared region `r` in `[lo, hi)` that
    /// have no entry.
    pub(crate) fn shm_fill(&mut self, ci: u32, lo: u64, hi: u64, r: &Region) -> Result<(), Fail> {
        let RegionKind::Shared { id, offset } = r.kind else {
            return Ok(());
        };
        let holes = self.missing(ci, lo, hi);
        let (write, exec) = crate::mapping::page_mode(r.prot);
        let mut mapped: Vec<(u64, u64)> = Vec::new();
        for (a, b) in holes {
            let first = offset + (a - r.start.0) / PAGE_SIZE;
            let n = ((b - a) / PAGE_SIZE) as usize;
            let frames: Vec<(u64, Hold)> = match self.shm.get(&id.0) {
                Some(s) => s
                    .pages
                    .get(first as usize..first as usize + n)
                    .ok_or(Fail::Mm(MmError::Fault))?
                    .iter()
                    .map(|&p| (p, Hold::Shm))
                    .collect(),
                None => return Err(MmError::Fault.into()),
            };
            if let Err(e) = self.map_held(ci, a, &frames, write, exec, false, Some((id.0, first))) {
                for (x, y) in mapped {
                    let _ = self.zap(ci, x, y);
                }
                return Err(e);
            }
            mapped.push((a, b));
        }
        Ok(())
    }

    /// Destroys an object: it goes when no region maps it.
    pub(crate) fn shm_destroy(&mut self, ci: u32, handle: u64) -> Result<Reply, Fail> {
        let s = self.live_shm(handle)?;
        if s.creator != Some(ci) {
            return Err(MmError::PermissionDenied.into());
        }
        if let Some(s) = self.shm.get_mut(&handle) {
            s.destroyed = true;
        }
        self.maybe_free_shm(handle);
        Ok(Reply::Done)
    }

    /// Frees object `id` if it is destroyed and no region maps it.
    pub(crate) fn maybe_free_shm(&mut self, id: u64) {
        let free = self.shm.get(&id).is_some_and(|s| s.destroyed) && !self.shm_in_use(id);
        if !free {
            return;
        }
        let Some(s) = self.shm.remove(&id) else {
            return;
        };
        if let Some(c) = s.creator {
            let c = &mut self.clients[c as usize];
            c.charged = c.charged.saturating_sub(s.pages.len() as u64);
        }
        for p in s.pages {
            if let Err(Fail::Bug(w, e)) = self.phys.free_run(p, 1) {
                self.bug(w, e);
            }
        }
    }

    /// unmap_mapping_range (kernel-doc): unmaps pages `[first, first +
    /// count)` of a shared object from every client (they fault back in).
    /// Unlike Linux, pinned pages stay mapped until put.
    pub(crate) fn unmap_mapping_range(
        &mut self,
        ci: u32,
        handle: u64,
        first: u64,
        count: u64,
    ) -> Result<Reply, Fail> {
        let s = self.live_shm(handle)?;
        if s.creator != Some(ci) {
            return Err(MmError::PermissionDenied.into());
        }
        if first >= s.pages.len() as u64 {
            return Err(MmError::InvalidArgument.into());
        }
        let count = if count == 0 { u64::MAX } else { count };
        let places: Vec<(u64, u64)> = self
            .rmap
            .file_mappings(ObjectId(handle), first, count)
            .map(|(_, p)| (p.client.0, p.va.0))
            .collect();
        for (badge, va) in places {
            if let Some(&c) = self.by_badge.get(&badge) {
                // A pinned page stays mapped until it is put.
                if !self.clients[c as usize].pins.contains_key(&va) {
                    self.zap(c, va, va + PAGE_SIZE)?;
                }
            }
        }
        Ok(Reply::Done)
    }
}
