//! Mapping machinery shared by every operation: back and map a range, unmap it, change rights, split blocks.
//!
//! Each function changes a client's page map, its page tables (through
//! batched kernel invocations) and the frames' owners together. The ones
//! that can fail for lack of memory take everything they need first
//! (frames, quota, page tables) and only then map, so a refusal leaves the
//! client as it was.

use alloc::vec::Vec;

use abi::CPtr;
use libmm::protocol::MmError;
use mm_core::addr::{LARGE_PAGE_SIZE, PAGE_SIZE, VirtAddr};
use mm_core::frame::{GfpFlags, Mobility, Priority, ZoneType};
use mm_core::vm::{ClientId, FilePage, ObjectId, Place, Prot, Region, RegionKind};

use crate::client::rflags;
use crate::cspace::CHUNK_FRAMES;
use crate::error::Fail;
use crate::pagemap::{Entry, Hold, Pte};
use crate::phys::{Fr, Owner, batch_fail, map_caps, rights, unmap_caps};
use crate::server::Server;

/// A piece of backing taken for a range: `n` frames from `pfn` for the
/// pages from `va`, or one 2 MiB block.
#[derive(Clone, Copy, Debug)]
struct Piece {
    va: u64,
    pfn: u64,
    n: u64,
    block: bool,
}

/// The allocation flags for a region's anonymous pages.
pub(crate) fn anon_gfp(r: &Region) -> GfpFlags {
    GfpFlags {
        zone: if r.flags.contains(rflags::DMA32) {
            ZoneType::Dma32
        } else {
            ZoneType::Normal
        },
        mobility: Mobility::Movable,
        priority: Priority::Normal,
    }
}

/// The rights, attributes and exec flag a page of a region with `prot` gets.
pub(crate) fn page_mode(prot: Prot) -> (bool, bool) {
    (prot.contains(Prot::WRITE), prot.contains(Prot::EXEC))
}

impl Server {
    /// Records that client `ci` is gone and returns the failure to pass up.
    pub(crate) fn fail(&mut self, ci: u32, f: Fail) -> Fail {
        if f == Fail::Gone && !self.gone.contains(&ci) {
            self.gone.push(ci);
        }
        f
    }

    /// The ranges of `[lo, hi)` with no page-map entry.
    pub(crate) fn missing(&self, ci: u32, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        let c = &self.clients[ci as usize];
        let mut out = Vec::new();
        let mut at = lo;
        for e in c.pages.entries(lo, hi) {
            let (s, len) = match e {
                Entry::Page(va, _) => (va, PAGE_SIZE),
                Entry::Block(va, _) => (va, LARGE_PAGE_SIZE),
            };
            if s > at {
                out.push((at, s.min(hi)));
            }
            at = at.max(s + len);
        }
        if at < hi {
            out.push((at, hi));
        }
        out
    }

    /// Backs and maps every page of `[lo, hi)` (inside the anonymous region
    /// `r`) that has no entry yet: frames taken in runs from the buddy
    /// allocator, 2 MiB blocks where the region allows them, zeroed through
    /// the window unless known zero, mapped with batched invocations.
    /// All or nothing: on failure nothing changed. Returns the pages added.
    pub(crate) fn fill(&mut self, ci: u32, lo: u64, hi: u64, r: &Region) -> Result<u64, Fail> {
        let holes = self.missing(ci, lo, hi);
        let need: u64 = holes.iter().map(|(a, b)| (b - a) / PAGE_SIZE).sum();
        if need == 0 {
            return Ok(0);
        }
        if need > self.clients[ci as usize].headroom() {
            return Err(MmError::QuotaExceeded.into());
        }
        let gfp = anon_gfp(r);
        let huge = r.flags.contains(rflags::HUGE);
        let mut pieces: Vec<Piece> = Vec::new();
        let result = self.take_pieces(ci, &holes, gfp, huge, &mut pieces);
        if let Err(e) = result {
            self.drop_pieces(&pieces, 0);
            return Err(e);
        }
        // Page tables for every piece.
        for p in &pieces {
            let vs = self.clients[ci as usize].vspace;
            let mut set = core::mem::take(&mut self.clients[ci as usize].tables);
            let mut r = if p.block {
                self.phys
                    .ensure_tables(&mut set, vs, p.va, p.va + LARGE_PAGE_SIZE, 2)
            } else {
                self.phys
                    .ensure_tables(&mut set, vs, p.va, p.va + p.n * PAGE_SIZE, 3)
            };
            if r.is_ok() && p.block {
                r = self.phys.drop_l3(&mut set, p.va);
            }
            self.clients[ci as usize].tables = set;
            if let Err(e) = r {
                self.drop_pieces(&pieces, 0);
                return Err(self.fail(ci, e));
            }
        }
        let (write, exec) = page_mode(r.prot);
        for i in 0..pieces.len() {
            if let Err(e) = self.map_piece(ci, &mut pieces[i], write, exec) {
                // Undo the pieces mapped so far, free the rest.
                for p in &pieces[..i] {
                    let len = if p.block {
                        LARGE_PAGE_SIZE
                    } else {
                        p.n * PAGE_SIZE
                    };
                    let _ = self.zap(ci, p.va, p.va + len);
                }
                self.drop_pieces(&pieces, i);
                return Err(self.fail(ci, e));
            }
        }
        self.clients[ci as usize].charged += need;
        Ok(need)
    }

    /// [`Server::fill`] of the one page at `va` (inside an anonymous region
    /// whose frames come with `gfp` and whose protection is `prot`), known
    /// to have no entry: the fault path's common case, without the general
    /// case's lists. One zeroed frame (from the zero pool when it has one),
    /// its tables, one mapping. All or nothing. Returns the frame.
    pub(crate) fn fill_one(
        &mut self,
        ci: u32,
        va: u64,
        gfp: GfpFlags,
        prot: Prot,
    ) -> Result<u64, Fail> {
        if self.clients[ci as usize].headroom() == 0 {
            return Err(MmError::QuotaExceeded.into());
        }
        let pfn = self.phys.alloc_zeroed_page(gfp)?;
        let piece = Piece {
            va,
            pfn,
            n: 1,
            block: false,
        };
        let Server { phys, clients, .. } = self;
        let c = &mut clients[ci as usize];
        if let Err(e) = phys.ensure_tables(&mut c.tables, c.vspace, va, va + PAGE_SIZE, 3) {
            self.drop_pieces(&[piece], 0);
            return Err(self.fail(ci, e));
        }
        // `map_piece` of one frame: readied, its primary cap mapped.
        let (write, exec) = page_mode(prot);
        let k = match self.phys.take_one(pfn, Owner::Anon(ci)) {
            Ok(k) => k,
            Err(e) => {
                self.drop_pieces(&[piece], 0);
                return Err(self.fail(ci, e));
            }
        };
        let cap = self.phys.acquire_primary_run(k, 1);
        let pte = Pte::new(pfn, Hold::Own, true, write, exec, 0);
        let vs = self.clients[ci as usize].vspace;
        if let Err(e) = rt::invoke::vspace_map_frame(vs, cap, va, rights(write), pte.attr()) {
            self.phys.release_cap(Fr::Ram(k), 0);
            self.phys.untake(pfn, 1);
            self.drop_pieces(&[piece], 0);
            return Err(self.fail(ci, batch_fail("map frames", e)));
        }
        let c = &mut self.clients[ci as usize];
        c.pages.set(va, pte);
        c.charged += 1;
        Ok(pfn)
    }

    /// Allocates the frames for `holes`.
    fn take_pieces(
        &mut self,
        _ci: u32,
        holes: &[(u64, u64)],
        gfp: GfpFlags,
        huge: bool,
        pieces: &mut Vec<Piece>,
    ) -> Result<(), Fail> {
        for &(a, b) in holes {
            let mut va = a;
            while va < b {
                let aligned = va.is_multiple_of(LARGE_PAGE_SIZE) && va + LARGE_PAGE_SIZE <= b;
                if huge && aligned {
                    // An exact run of 512 is one order-9 buddy block,
                    // 2 MiB aligned, whose frames can also be freed singly.
                    if let Ok(pfn) = self.phys.alloc_run(CHUNK_FRAMES, gfp) {
                        pieces.push(Piece {
                            va,
                            pfn,
                            n: CHUNK_FRAMES,
                            block: pfn.is_multiple_of(CHUNK_FRAMES),
                        });
                        va += LARGE_PAGE_SIZE;
                        continue;
                    }
                }
                let mut n = ((b - va) / PAGE_SIZE).min(1024);
                if huge && !aligned {
                    // Stop at the next 2 MiB boundary so the rest can be a block.
                    let to_boundary = (LARGE_PAGE_SIZE - va % LARGE_PAGE_SIZE) / PAGE_SIZE;
                    n = n.min(to_boundary);
                }
                let pfn = loop {
                    let r = if n == 1 {
                        self.phys.alloc_zeroed_page(gfp)
                    } else {
                        self.phys.alloc_run(n, gfp)
                    };
                    match r {
                        Ok(p) => break p,
                        Err(_) if n > 1 => n /= 2,
                        Err(e) => return Err(e.into()),
                    }
                };
                pieces.push(Piece {
                    va,
                    pfn,
                    n,
                    block: false,
                });
                va += n * PAGE_SIZE;
            }
        }
        Ok(())
    }

    /// Frees the frames of `pieces[from..]` (not mapped).
    fn drop_pieces(&mut self, pieces: &[Piece], from: usize) {
        for p in &pieces[from..] {
            if let Err(Fail::Bug(w, e)) = self.phys.free_run(p.pfn, p.n) {
                self.bug(w, e);
            }
        }
    }

    /// Readies and maps one piece, recording its entries.
    fn map_piece(&mut self, ci: u32, p: &mut Piece, write: bool, exec: bool) -> Result<(), Fail> {
        let owner = Owner::Anon(ci);
        if p.block {
            if self.phys.take_huge(p.pfn, owner)? {
                let k0 = self.phys.lay.index(p.pfn).unwrap_or(0);
                let cap = self.phys.acquire_primary_run(k0, 1);
                let pte = Pte::new(p.pfn, Hold::Own, true, write, exec, 0);
                let vs = self.clients[ci as usize].vspace;
                if let Err(e) = rt::invoke::page_map(cap, vs, p.va, rights(write), pte.attr()) {
                    self.phys.release_cap(Fr::Ram(k0), 0);
                    self.phys.untake(p.pfn, CHUNK_FRAMES);
                    return Err(match e {
                        abi::ErrorReply::InvalidCapability { .. } => Fail::Gone,
                        e => Fail::Bug("map a 2 MiB block", e),
                    });
                }
                self.clients[ci as usize].pages.set_block(p.va, pte);
                return Ok(());
            }
            // Not convertible (frames from smaller Untypeds): map the run
            // as small pages.
            p.block = false;
            // Its level-3 table.
            let vs = self.clients[ci as usize].vspace;
            let mut set = core::mem::take(&mut self.clients[ci as usize].tables);
            let r = self
                .phys
                .ensure_tables(&mut set, vs, p.va, p.va + LARGE_PAGE_SIZE, 3);
            self.clients[ci as usize].tables = set;
            r?;
        }
        let k = if p.n == 1 {
            self.phys.take_one(p.pfn, owner)?
        } else {
            self.phys.take(p.pfn, p.n, owner)?;
            self.phys.lay.index(p.pfn).unwrap_or(0)
        };
        let first = self.phys.acquire_primary_run(k, p.n);
        let pte0 = Pte::new(p.pfn, Hold::Own, true, write, exec, 0);
        let vs = self.clients[ci as usize].vspace;
        if let Err(e) = map_caps(vs, first, p.n, p.va, rights(write), pte0.attr()) {
            for i in 0..p.n {
                self.phys.release_cap(Fr::Ram(k + i), 0);
            }
            self.phys.untake(p.pfn, p.n);
            return Err(e);
        }
        let pfn = p.pfn;
        let pages = &mut self.clients[ci as usize].pages;
        if p.n == 1 {
            pages.set(p.va, Pte::new(pfn, Hold::Own, true, write, exec, 0));
        } else {
            pages.set_run(p.va, p.n, |i| {
                Pte::new(pfn + i, Hold::Own, true, write, exec, 0)
            });
        }
        Ok(())
    }

    /// Maps frames already held elsewhere (an area's, a shared object's, the
    /// client's own blocks, device frames) at `va..` in client `ci`: each
    /// entry in `frames` is (frame number, how it is held). Uses primary caps
    /// where free (batched), extra copies otherwise. Reverse-map entries are
    /// recorded for `Shm` (object page `(object, first_index + i)`) and
    /// `Borrow`. All or nothing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn map_held(
        &mut self,
        ci: u32,
        va: u64,
        frames: &[(u64, Hold)],
        write: bool,
        exec: bool,
        uncached: bool,
        object: Option<(u64, u64)>,
    ) -> Result<(), Fail> {
        if frames.is_empty() {
            return Ok(());
        }
        let vs = self.clients[ci as usize].vspace;
        let hi = va + frames.len() as u64 * PAGE_SIZE;
        let mut set = core::mem::take(&mut self.clients[ci as usize].tables);
        let r = self.phys.ensure_tables(&mut set, vs, va, hi, 3);
        self.clients[ci as usize].tables = set;
        if let Err(e) = r {
            return Err(self.fail(ci, e));
        }
        // Take a cap for each frame.
        let mut caps: Vec<(Fr, CPtr, u32)> = Vec::with_capacity(frames.len());
        for &(pfn, hold) in frames {
            let fr = match hold {
                Hold::Dev => Fr::Dev(self.phys.dev_index(pfn).unwrap_or(u64::MAX)),
                _ => Fr::Ram(self.phys.lay.index(pfn).unwrap_or(u64::MAX)),
            };
            match self.phys.acquire_cap(fr) {
                Ok((cap, tag)) => caps.push((fr, cap, tag)),
                Err(e) => {
                    for &(fr, _, tag) in &caps {
                        self.phys.release_cap(fr, tag);
                    }
                    return Err(e);
                }
            }
        }
        let mut pte0 = Pte::new(0, frames[0].1, true, write, exec, 0);
        if uncached {
            pte0 = pte0.with_uncached();
        }
        let attr = pte0.attr();
        // Map runs of consecutive caps at consecutive addresses.
        let mut i = 0;
        let mut failed = None;
        while i < caps.len() {
            let s = i;
            while i + 1 < caps.len() && caps[i + 1].1.0 == caps[i].1.0 + 1 {
                i += 1;
            }
            i += 1;
            if let Err(e) = map_caps(
                vs,
                caps[s].1,
                (i - s) as u64,
                va + s as u64 * PAGE_SIZE,
                rights(write),
                attr,
            ) {
                failed = Some((s, e));
                break;
            }
        }
        if let Some((done, e)) = failed {
            // Unmap what was mapped, give every cap back.
            let mut j = 0;
            while j < done {
                let _ = unmap_caps(vs, caps[j].1, 1);
                j += 1;
            }
            for &(fr, _, tag) in &caps {
                self.phys.release_cap(fr, tag);
            }
            return Err(self.fail(ci, e));
        }
        let badge = self.clients[ci as usize].badge;
        for (n, (&(pfn, hold), &(_, _, tag))) in frames.iter().zip(caps.iter()).enumerate() {
            let at = va + n as u64 * PAGE_SIZE;
            let mut pte = Pte::new(pfn, hold, true, write, exec, tag);
            if uncached {
                pte = pte.with_uncached();
            }
            self.clients[ci as usize].pages.set(at, pte);
            if matches!(hold, Hold::Shm | Hold::Borrow) {
                let file = object.map(|(obj, first)| FilePage {
                    object: ObjectId(obj),
                    index: first + n as u64,
                });
                let _ = self.rmap.insert(
                    Place {
                        client: ClientId(badge),
                        va: VirtAddr(at),
                    },
                    mm_core::addr::Pfn(pfn),
                    file,
                );
            }
        }
        Ok(())
    }

    /// Removes every entry of client `ci` in `[lo, hi)` (blocks overlapping
    /// it must lie inside it — split them first): unmaps them in batches,
    /// gives caps back, frees the client's own anonymous frames (uncharging
    /// them), drops reverse-map entries, and frees level-3 tables left empty.
    pub(crate) fn zap(&mut self, ci: u32, lo: u64, hi: u64) -> Result<(), Fail> {
        let entries = self.clients[ci as usize].pages.entries(lo, hi);
        let r = self.zap_entries(ci, entries);
        self.drop_empty_tables(ci, lo, hi);
        r
    }

    /// Removes these entries of client `ci` (see [`Server::zap`]).
    pub(crate) fn zap_entries(&mut self, ci: u32, entries: Vec<Entry>) -> Result<(), Fail> {
        if entries.is_empty() {
            return Ok(());
        }
        let vs = self.clients[ci as usize].vspace;
        let badge = self.clients[ci as usize].badge;
        // 1. Unmap: runs of primary caps in one batch each; extras go with
        //    their caps below; blocks one by one.
        let mut run: Option<(CPtr, u64, u64)> = None; // (first cap, count, last va)
        let flush = |run: &mut Option<(CPtr, u64, u64)>| -> Result<(), Fail> {
            if let Some((first, n, _)) = run.take() {
                unmap_caps(vs, first, n)?;
            }
            Ok(())
        };
        for e in &entries {
            match *e {
                Entry::Page(va, p) if p.tag == 0 => {
                    let fr = self.fr(p);
                    let cap = self.phys.cap_of(fr, 0);
                    match &mut run {
                        Some((first, n, last))
                            if first.0 + *n == cap.0 && *last + PAGE_SIZE == va =>
                        {
                            *n += 1;
                            *last = va;
                        }
                        _ => {
                            flush(&mut run)?;
                            run = Some((cap, 1, va));
                        }
                    }
                }
                Entry::Block(_, p) => {
                    flush(&mut run)?;
                    let k0 = self.phys.lay.index(p.pfn()).unwrap_or(0);
                    unmap_caps(vs, self.phys.lay.m(k0), 1)?;
                }
                Entry::Page(..) => {}
            }
        }
        flush(&mut run)?;
        // 2. Bookkeeping, caps, frames.
        let mut freed = 0u64;
        let mut own_run: Option<(u64, u64)> = None; // (first pfn, count)
        for e in entries {
            match e {
                Entry::Page(va, p) => {
                    self.clients[ci as usize].pages.remove(va);
                    let fr = self.fr(p);
                    self.phys.release_cap(fr, p.tag);
                    match p.hold() {
                        Hold::Own => {
                            freed += 1;
                            match &mut own_run {
                                Some((s, n)) if *s + *n == p.pfn() => *n += 1,
                                _ => {
                                    if let Some((s, n)) = own_run.take() {
                                        self.phys.free_run(s, n)?;
                                    }
                                    own_run = Some((p.pfn(), 1));
                                }
                            }
                        }
                        Hold::Shm | Hold::Borrow => {
                            self.rmap.remove(Place {
                                client: ClientId(badge),
                                va: VirtAddr(va),
                            });
                        }
                        Hold::Area | Hold::Dev => {}
                    }
                }
                Entry::Block(va, p) => {
                    self.clients[ci as usize].pages.remove_block(va);
                    let k0 = self.phys.lay.index(p.pfn()).unwrap_or(0);
                    self.phys.release_cap(Fr::Ram(k0), 0);
                    if p.hold() == Hold::Own {
                        freed += CHUNK_FRAMES;
                        self.phys.free_run(p.pfn(), CHUNK_FRAMES)?;
                    }
                }
            }
        }
        if let Some((s, n)) = own_run {
            self.phys.free_run(s, n)?;
        }
        let c = &mut self.clients[ci as usize];
        c.charged = c.charged.saturating_sub(freed);
        Ok(())
    }

    /// Frees the level-3 tables of `[lo, hi)` whose 2 MiB has no entry.
    fn drop_empty_tables(&mut self, ci: u32, lo: u64, hi: u64) {
        if hi <= lo {
            return;
        }
        let mut va = lo & !(LARGE_PAGE_SIZE - 1);
        while va < hi {
            let c = &self.clients[ci as usize];
            if c.pages.leaf_empty(va) && c.tables.has(3, va) {
                let mut set = core::mem::take(&mut self.clients[ci as usize].tables);
                if let Err(Fail::Bug(w, e)) = self.phys.drop_l3(&mut set, va) {
                    self.bug(w, e);
                }
                self.clients[ci as usize].tables = set;
            }
            va = match va.checked_add(LARGE_PAGE_SIZE) {
                Some(v) => v,
                None => break,
            };
        }
    }

    /// The cap-scheme view of an entry's frame.
    pub(crate) fn fr(&self, p: Pte) -> Fr {
        match p.hold() {
            Hold::Dev => Fr::Dev(self.phys.dev_index(p.pfn()).unwrap_or(u64::MAX)),
            _ => Fr::Ram(self.phys.lay.index(p.pfn()).unwrap_or(u64::MAX)),
        }
    }

    /// Turns the 2 MiB blocks overlapping `[lo, hi)` but not inside it into
    /// 512 small pages each (copying their contents), so that the range can
    /// be unmapped or re-protected page by page.
    pub(crate) fn split_blocks_at_edges(&mut self, ci: u32, lo: u64, hi: u64) -> Result<(), Fail> {
        for edge in [lo, hi] {
            let base = edge & !(LARGE_PAGE_SIZE - 1);
            if base != edge && self.clients[ci as usize].pages.block(base).is_some() {
                self.split_block(ci, base)?;
            }
        }
        Ok(())
    }

    /// Splits the block at `va` into small pages with the same contents.
    pub(crate) fn split_block(&mut self, ci: u32, va: u64) -> Result<(), Fail> {
        let Some(p) = self.clients[ci as usize].pages.block(va) else {
            return Ok(());
        };
        let gfp = GfpFlags::USER_MOVABLE;
        let new = self.phys.alloc_run(CHUNK_FRAMES, gfp)?;
        if let Err(e) = self.phys.take(new, CHUNK_FRAMES, Owner::Anon(ci)) {
            let _ = self.phys.free_run(new, CHUNK_FRAMES);
            return Err(e);
        }
        // Copy 2 MiB through the window in 64 KiB pieces.
        let mut buf = alloc::vec![0u8; 64 << 10];
        let mut off = 0;
        while off < LARGE_PAGE_SIZE {
            self.phys.read(p.pfn(), off, &mut buf)?;
            self.phys.write(new, off, &buf)?;
            off += buf.len() as u64;
        }
        let vs = self.clients[ci as usize].vspace;
        let k0 = self.phys.lay.index(p.pfn()).unwrap_or(0);
        unmap_caps(vs, self.phys.lay.m(k0), 1)?;
        self.phys.release_cap(Fr::Ram(k0), 0);
        self.clients[ci as usize].pages.remove_block(va);
        self.phys.free_run(p.pfn(), CHUNK_FRAMES)?;
        let mut set = core::mem::take(&mut self.clients[ci as usize].tables);
        let r = self
            .phys
            .ensure_tables(&mut set, vs, va, va + LARGE_PAGE_SIZE, 3);
        self.clients[ci as usize].tables = set;
        r.map_err(|e| self.fail(ci, e))?;
        let k = self.phys.lay.index(new).unwrap_or(0);
        let first = self.phys.acquire_primary_run(k, CHUNK_FRAMES);
        if p.mapped() {
            map_caps(vs, first, CHUNK_FRAMES, va, rights(p.writable()), p.attr())
                .map_err(|e| self.fail(ci, e))?;
        }
        let pages = &mut self.clients[ci as usize].pages;
        for i in 0..CHUNK_FRAMES {
            pages.set(
                va + i * PAGE_SIZE,
                Pte::new(new + i, Hold::Own, p.mapped(), p.writable(), p.exec(), 0),
            );
        }
        Ok(())
    }

    /// Changes the mapping of every entry in `[lo, hi)` to `prot` (blocks
    /// inside the range whole; split the edges first): unmapped for
    /// PROT_NONE, else (re)mapped with the new rights, in batches.
    pub(crate) fn reprotect(&mut self, ci: u32, lo: u64, hi: u64, prot: Prot) -> Result<(), Fail> {
        let visible = !prot.is_none();
        let (write, exec) = page_mode(prot);
        let vs = self.clients[ci as usize].vspace;
        let entries = self.clients[ci as usize].pages.entries(lo, hi);
        let mut i = 0;
        while i < entries.len() {
            match entries[i] {
                Entry::Block(va, p) => {
                    let k0 = self.phys.lay.index(p.pfn()).unwrap_or(0);
                    let cap = self.phys.lay.m(k0);
                    let q = p.with_mapping(visible, visible && write, visible && exec);
                    if visible {
                        rt::invoke::page_map(cap, vs, va, rights(write), q.attr()).map_err(
                            |e| {
                                let f = match e {
                                    abi::ErrorReply::InvalidCapability { .. } => Fail::Gone,
                                    e => Fail::Bug("re-map a block", e),
                                };
                                self.fail(ci, f)
                            },
                        )?;
                    } else {
                        unmap_caps(vs, cap, 1)?;
                    }
                    self.clients[ci as usize].pages.update_block(va, q);
                    i += 1;
                }
                Entry::Page(va0, p0) => {
                    // A run of entries with consecutive caps at consecutive addresses.
                    let cap0 = self.phys.cap_of(self.fr(p0), p0.tag);
                    let mut j = i + 1;
                    while j < entries.len() {
                        match entries[j] {
                            Entry::Page(va, p)
                                if va == va0 + (j - i) as u64 * PAGE_SIZE
                                    && self.phys.cap_of(self.fr(p), p.tag).0
                                        == cap0.0 + (j - i) as u64
                                    && p.attr() == p0.attr()
                                    && p.uncached() == p0.uncached() =>
                            {
                                j += 1
                            }
                            _ => break,
                        }
                    }
                    let n = (j - i) as u64;
                    let q0 = p0.with_mapping(visible, write, exec);
                    if visible {
                        map_caps(vs, cap0, n, va0, rights(write), q0.attr())
                            .map_err(|e| self.fail(ci, e))?;
                    } else {
                        unmap_caps(vs, cap0, n)?;
                    }
                    for e in &entries[i..j] {
                        if let Entry::Page(va, p) = *e {
                            self.clients[ci as usize]
                                .pages
                                .set(va, p.with_mapping(visible, write, exec));
                        }
                    }
                    i = j;
                }
            }
        }
        Ok(())
    }

    /// Whether any page of `[lo, hi)` is pinned.
    pub(crate) fn pinned_in(&self, ci: u32, lo: u64, hi: u64) -> bool {
        self.clients[ci as usize]
            .pins
            .range(lo..hi)
            .next()
            .is_some()
    }

    /// Whether any area overlaps `[lo, hi)`.
    pub(crate) fn area_in(&self, ci: u32, lo: u64, hi: u64) -> bool {
        let c = &self.clients[ci as usize];
        if let Some((&s, a)) = c.areas.range(..hi).next_back()
            && s + a.pages * PAGE_SIZE > lo
        {
            return true;
        }
        false
    }

    /// The regions of `[lo, hi)`, in order (copies).
    pub(crate) fn regions_in(&self, ci: u32, lo: u64, hi: u64) -> Vec<Region> {
        self.clients[ci as usize]
            .regions
            .overlapping(VirtAddr(lo), hi - lo)
            .copied()
            .collect()
    }

    /// Shared objects some region of any client maps.
    pub(crate) fn shm_in_use(&self, id: u64) -> bool {
        self.clients.iter().any(|c| {
            c.regions
                .iter()
                .any(|r| matches!(r.kind, RegionKind::Shared { id: s, .. } if s.0 == id))
        })
    }
}
