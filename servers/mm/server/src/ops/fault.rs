//! Page faults, fatal faults, and the end of a client: exit, death, reclaim.

use alloc::vec::Vec;

use abi::fault::{Fault, VmFault};
use libmm::protocol::{ClientId, MmError, Reply};
use mm_core::addr::{LARGE_PAGE_SIZE, PAGE_SIZE, VirtAddr};
use mm_core::vm::{Prot, RegionKind};

use super::anon::fillable;
use crate::client::{AreaKind, rflags};
use crate::error::Fail;
use crate::mapping::anon_gfp;
use crate::pagemap::{Entry, Hold};
use crate::phys::Owner;
use crate::server::{Outcome, Server};

impl Server {
    /// A fault of client `ci`'s thread (the server is its fault handler).
    pub(crate) fn fault(&mut self, ci: u32, f: Fault) -> Outcome {
        let why = match f {
            Fault::VmFault(v) => return self.vm_fault(ci, v),
            Fault::CapFault(c) => ("capability fault", c.cptr),
            Fault::UnknownSyscall(u) => ("unknown syscall", u.syscall),
            Fault::UserException(u) => ("user exception", u.pc),
        };
        if let Some(o) = self.thread_of_dead_client(ci) {
            return o;
        }
        self.fatal(ci, why.0, why.1)
    }

    /// For a fault of a thread of a client already reclaimed: leaves it
    /// stopped, no reply.
    fn thread_of_dead_client(&mut self, ci: u32) -> Option<Outcome> {
        let c = &self.clients[ci as usize];
        if c.alive {
            return None;
        }
        let _ = rt::invoke::tcb_suspend(c.tcb);
        Some(Outcome::NoReply)
    }

    /// A page fault of client `ci`'s thread: the page made present and
    /// mapped (the thread restarts), or the client ended for it.
    pub(crate) fn vm_fault(&mut self, ci: u32, v: VmFault) -> Outcome {
        if let Some(o) = self.thread_of_dead_client(ci) {
            return o;
        }
        let page = v.addr & !(PAGE_SIZE - 1);
        // A fault again at a page the server just mapped for it, with the
        // access the mapping allows, is not progress: stop the loop.
        if self.clients[ci as usize].last_fault == Some(page) && self.already_ok(ci, page, &v) {
            return self.fatal(ci, "repeated fault on a mapped page", v.addr);
        }
        match self.fault_in(ci, v.addr, v.is_write(), v.instruction) {
            Ok(_) => {
                self.stats.faults += 1;
                let c = &mut self.clients[ci as usize];
                c.faults += 1;
                c.last_fault = Some(page);
                Outcome::Restart
            }
            Err(Fail::Gone) => Outcome::NoReply,
            Err(Fail::Mm(e)) => {
                let why = match e {
                    MmError::NotMapped => "access outside any region",
                    MmError::Fault => "access to a guard region or unbacked page",
                    MmError::PermissionDenied => "access not allowed by the region's protection",
                    MmError::QuotaExceeded => "out of quota on a page fault",
                    _ => "out of memory on a page fault",
                };
                self.fatal(ci, why, v.addr)
            }
            Err(Fail::Bug(w, e)) => {
                self.bug(w, e);
                self.fatal(ci, "internal error on a page fault", v.addr)
            }
        }
    }

    /// Whether the page at `page` is mapped with the access `v` made.
    fn already_ok(&self, ci: u32, page: u64, v: &VmFault) -> bool {
        match self.clients[ci as usize].pages.get(page) {
            Some(p) => {
                p.mapped() && (!v.is_write() || p.writable()) && (!v.instruction || p.exec())
            }
            None => false,
        }
    }

    /// Makes the page at `va` of client `ci` present and mapped for the
    /// access (`write`, `exec`), as a fault would; returns its frame.
    /// Errors: NotMapped (no region), Fault (guard or unbacked page),
    /// PermissionDenied (the region forbids the access), NoMemory,
    /// QuotaExceeded.
    pub(crate) fn fault_in(
        &mut self,
        ci: u32,
        va: u64,
        write: bool,
        exec: bool,
    ) -> Result<u64, Fail> {
        let page = va & !(PAGE_SIZE - 1);
        let c = &self.clients[ci as usize];
        let r = c
            .regions
            .region_at(VirtAddr(va))
            .ok_or(MmError::NotMapped)?;
        if r.kind == RegionKind::Guard {
            return Err(MmError::Fault.into());
        }
        if r.prot.is_none()
            || (write && !r.prot.contains(Prot::WRITE))
            || (exec && !r.prot.contains(Prot::EXEC))
        {
            return Err(MmError::PermissionDenied.into());
        }
        if let Some(p) = c.pages.get(page) {
            if p.mapped() {
                return Ok(p.pfn());
            }
            // Present but not in the page tables: map it back.
            let prot = r.prot;
            self.reprotect(ci, page, page + PAGE_SIZE, prot)?;
            return Ok(p.pfn());
        }
        if fillable(r) {
            let block = page & !(LARGE_PAGE_SIZE - 1);
            if r.flags.contains(rflags::HUGE)
                && block >= r.start.0
                && block + LARGE_PAGE_SIZE <= r.end().0
                && c.pages.leaf_empty(block)
            {
                let r = *r;
                self.fill(ci, block, block + LARGE_PAGE_SIZE, &r)?;
            } else {
                // The common case: one page, which has no entry (above).
                let (gfp, prot) = (anon_gfp(r), r.prot);
                return self.fill_one(ci, page, gfp, prot);
            }
        } else if let RegionKind::Shared { .. } = r.kind {
            let r = *r;
            self.shm_fill(ci, page, page + PAGE_SIZE, &r)?;
        } else {
            return Err(MmError::Fault.into());
        }
        self.clients[ci as usize]
            .pages
            .get(page)
            .map(|p| p.pfn())
            .ok_or(Fail::Bug(
                "fault-in left no page",
                abi::ErrorReply::IllegalOperation,
            ))
    }

    /// Ends client `ci` for a fault it cannot survive: reports it, stops its
    /// thread, reclaims everything; no reply.
    pub(crate) fn fatal(&mut self, ci: u32, why: &str, addr: u64) -> Outcome {
        self.stats.fatal_faults += 1;
        let c = &self.clients[ci as usize];
        if self.config.verbose {
            rt::println!("mm: client {:#x} killed: {why} at {addr:#x}", c.badge);
        }
        let _ = rt::invoke::tcb_suspend(c.tcb);
        self.reclaim(ci, why);
        Outcome::NoReply
    }

    /// `ClientDied` from the supervisor.
    pub(crate) fn client_died(&mut self, client: ClientId) -> Result<Reply, Fail> {
        let &ci = self.by_badge.get(&client).ok_or(MmError::NoSuchHandle)?;
        let c = &self.clients[ci as usize];
        if c.alive {
            // Reported dead, perhaps still running: it runs no more.
            let _ = rt::invoke::tcb_suspend(c.tcb);
        }
        self.reclaim(ci, "died");
        Ok(Reply::Done)
    }

    /// Takes back everything client `ci` holds: every mapping (unmapped in
    /// batches, or cap by cap if its VSpace is already gone), every frame,
    /// area, pin, page table, shared-object reference and grant. Idempotent.
    pub(crate) fn reclaim(&mut self, ci: u32, why: &str) {
        if !self.clients[ci as usize].alive {
            return;
        }
        self.stats.reclaimed += 1;
        let _ = why;
        // Frames of vmalloc areas are scattered: note them before the page
        // map goes.
        let mut vmalloc_frames: Vec<u64> = Vec::new();
        for e in self.clients[ci as usize].pages.all() {
            if let Entry::Page(_, p) = e
                && p.hold() == Hold::Area
                && self
                    .phys
                    .lay
                    .index(p.pfn())
                    .is_some_and(|k| self.phys.owner[k as usize] == Owner::Vmalloc(ci))
            {
                vmalloc_frames.push(p.pfn());
            }
        }
        let entries = self.clients[ci as usize].pages.all();
        if let Err(Fail::Bug(w, e)) = self.zap_entries(ci, entries) {
            self.bug(w, e);
        }
        let areas = core::mem::take(&mut self.clients[ci as usize].areas);
        for (_, a) in areas {
            let r = match a.kind {
                AreaKind::Pages { order } => self.phys.free_block(a.pfn, order as u32),
                AreaKind::Exact | AreaKind::Contig | AreaKind::Dma => {
                    self.phys.free_run(a.pfn, a.pages)
                }
                AreaKind::Vmalloc | AreaKind::Vmap | AreaKind::MapRam => Ok(()),
            };
            if let Err(Fail::Bug(w, e)) = r {
                self.bug(w, e);
            }
        }
        for pfn in vmalloc_frames {
            if let Err(Fail::Bug(w, e)) = self.phys.free_run(pfn, 1) {
                self.bug(w, e);
            }
        }
        let mut tables = core::mem::take(&mut self.clients[ci as usize].tables);
        if let Err(Fail::Bug(w, e)) = self.phys.release_tables(&mut tables) {
            self.bug(w, e);
        }
        let removed = self.clients[ci as usize].regions.unmap_all();
        {
            let c = &mut self.clients[ci as usize];
            c.pins.clear();
            c.alive = false;
        }
        // Shared objects: those it created are destroyed; grants to it go.
        let ids: Vec<u64> = self.shm.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.shm.get_mut(&id) {
                s.grants.remove(&ci);
                if s.creator == Some(ci) {
                    s.creator = None;
                    s.destroyed = true;
                }
            }
            self.maybe_free_shm(id);
        }
        self.release_shm_of(&removed);
        self.clients[ci as usize].charged = 0;
    }
}
