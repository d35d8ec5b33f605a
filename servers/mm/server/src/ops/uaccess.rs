//! User memory access: copy_to_user, copy_from_user, clear_user, memdup_user, get_user_pages_fast, put_page.
//!
//! The server reaches a client's memory through the client's page map and
//! its own window onto RAM — never through another client's mapping. A page
//! not yet backed is faulted in as the client's own access would be (so
//! copies obey the client's regions and protections); the first page that
//! cannot be reached ends the copy, and the reply says how many bytes were
//! not copied, as Linux's `copy_to_user` returns.

use alloc::vec;
use alloc::vec::Vec;

use libmm::protocol::{Align, ClientId, List, MAX_PFNS, MapFlags, MmError, Prot, Reply};
use mm_core::addr::PAGE_SIZE;

use super::page_range;
use crate::error::Fail;
use crate::pagemap::Hold;
use crate::server::Server;

/// The most bytes one copy request may name.
pub const MAX_COPY: u64 = 64 << 20;

impl Server {
    /// The client a copy of `len` bytes targets: the caller itself, or
    /// another one if the caller is granted user access; InvalidArgument
    /// for more than [`MAX_COPY`] bytes.
    fn copy_target(&self, ci: u32, client: ClientId, len: u64) -> Result<u32, MmError> {
        let t = self.target(client)?;
        if t != ci && !self.clients[ci as usize].grants.user_access {
            return Err(MmError::PermissionDenied);
        }
        if len > MAX_COPY {
            return Err(MmError::InvalidArgument);
        }
        Ok(t)
    }

    /// Whether `va` of client `c` can be reached with the access: `Some(true)`
    /// if a RAM page is there, `Some(false)` if one would be faulted in,
    /// `None` if the access would fail.
    fn reachable(&self, c: u32, va: u64, write: bool) -> Option<bool> {
        use mm_core::vm::{Prot as P, RegionKind};
        let cl = &self.clients[c as usize];
        let r = cl.regions.find(mm_core::addr::VirtAddr(va))?;
        if r.kind == RegionKind::Guard || r.prot.is_none() || (write && !r.prot.contains(P::WRITE))
        {
            return None;
        }
        match cl.pages.get(va & !(PAGE_SIZE - 1)) {
            Some(p) => (p.hold() != Hold::Dev).then_some(true),
            None => (super::anon::fillable(r) || matches!(r.kind, RegionKind::Shared { .. }))
                .then_some(false),
        }
    }

    /// Checks [`Self::reachable`] for every page from `start` (page
    /// aligned) up to `end`: the number of pages the access would fault
    /// in, or Fault if any page cannot be reached.
    fn reachable_range(&self, c: u32, start: u64, end: u64, write: bool) -> Result<u64, MmError> {
        let mut need = 0;
        let mut v = start;
        while v < end {
            match self.reachable(c, v, write) {
                Some(true) => {}
                Some(false) => need += 1,
                None => return Err(MmError::Fault),
            }
            v += PAGE_SIZE;
        }
        Ok(need)
    }

    /// The RAM frame behind `va` of client `c`, faulted in for the access.
    fn reach(&mut self, c: u32, va: u64, write: bool) -> Option<u64> {
        match self.fault_in(c, va, write, false) {
            Ok(pfn) => {
                let p = self.clients[c as usize].pages.get(va & !(PAGE_SIZE - 1))?;
                // Only RAM is reachable through the window.
                (p.hold() != Hold::Dev && self.phys.is_ram(pfn)).then_some(pfn)
            }
            Err(f) => {
                self.fail(c, f);
                None
            }
        }
    }

    /// Copies up to `len` bytes from `src` in client `from` to `dst` in
    /// client `to`; returns the bytes copied (stopping at the first page
    /// that cannot be reached).
    fn copy_between(&mut self, from: u32, src: u64, to: u32, dst: u64, len: u64) -> u64 {
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        let mut done = 0;
        while done < len {
            let (Some(s), Some(d)) = (src.checked_add(done), dst.checked_add(done)) else {
                break;
            };
            let n = (len - done)
                .min(PAGE_SIZE - s % PAGE_SIZE)
                .min(PAGE_SIZE - d % PAGE_SIZE);
            let Some(sp) = self.reach(from, s, false) else {
                break;
            };
            let Some(dp) = self.reach(to, d, true) else {
                break;
            };
            let chunk = &mut buf[..n as usize];
            if self.phys.read(sp, s % PAGE_SIZE, chunk).is_err()
                || self.phys.write(dp, d % PAGE_SIZE, chunk).is_err()
            {
                break;
            }
            done += n;
        }
        done
    }

    /// copy_to_user (kernel-doc `_copy_to_user`): caller's `src` →
    /// `client`'s `dst`; returns the bytes not copied as Linux does.
    pub(crate) fn copy_to_user(
        &mut self,
        ci: u32,
        client: ClientId,
        dst: u64,
        src: u64,
        len: u64,
    ) -> Result<Reply, Fail> {
        let t = self.copy_target(ci, client, len)?;
        let done = self.copy_between(ci, src, t, dst, len);
        Ok(Reply::NotCopied { bytes: len - done })
    }

    /// copy_from_user (kernel-doc `_copy_from_user`): `client`'s `src` →
    /// caller's `dst`. Unlike Linux the uncopied tail of the destination is
    /// left as it was (not zeroed).
    pub(crate) fn copy_from_user(
        &mut self,
        ci: u32,
        client: ClientId,
        dst: u64,
        src: u64,
        len: u64,
    ) -> Result<Reply, Fail> {
        let t = self.copy_target(ci, client, len)?;
        let done = self.copy_between(t, src, ci, dst, len);
        Ok(Reply::NotCopied { bytes: len - done })
    }

    /// clear_user (kernel-doc): zeroes `client`'s `[addr, addr + len)`.
    pub(crate) fn clear_user(
        &mut self,
        ci: u32,
        client: ClientId,
        addr: u64,
        len: u64,
    ) -> Result<Reply, Fail> {
        let t = self.copy_target(ci, client, len)?;
        let mut done = 0;
        while done < len {
            let Some(a) = addr.checked_add(done) else {
                break;
            };
            let n = (len - done).min(PAGE_SIZE - a % PAGE_SIZE);
            let Some(p) = self.reach(t, a, true) else {
                break;
            };
            if self.phys.zero(p, a % PAGE_SIZE, n).is_err() {
                break;
            }
            done += n;
        }
        Ok(Reply::NotCopied { bytes: len - done })
    }

    /// memdup_user (kernel-doc): new memory in the caller holding a copy of `client`'s
    /// `[src, src + len)`; Fault (and nothing changed) if not all of it can
    /// be read: every source page is checked before anything is mapped or
    /// faulted in.
    pub(crate) fn memdup_user(
        &mut self,
        ci: u32,
        client: ClientId,
        src: u64,
        len: u64,
    ) -> Result<Reply, Fail> {
        let t = self.copy_target(ci, client, len)?;
        if len == 0 {
            return Err(MmError::InvalidArgument.into());
        }
        let size = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        // Every source page must be readable before anything changes: a
        // copy that stopped half-way would leave pages of the source
        // faulted in (and charged) behind a refusal.
        let end = src.checked_add(len).ok_or(MmError::Overflow)?;
        let need = self.reachable_range(t, src & !(PAGE_SIZE - 1), end, false)?;
        let own = if t == ci { size / PAGE_SIZE } else { 0 };
        if need + own > self.clients[t as usize].headroom() {
            return Err(if t == ci {
                MmError::QuotaExceeded
            } else {
                MmError::Fault
            }
            .into());
        }
        let Reply::Mapped { addr, .. } = self.map(
            ci,
            0,
            size,
            Prot::READ_WRITE,
            MapFlags::POPULATE,
            Align::PAGE,
        )?
        else {
            return Err(MmError::NoMemory.into());
        };
        let done = self.copy_between(t, src, ci, addr, len);
        if done < len {
            let _ = self.unmap(ci, addr, size);
            return Err(MmError::Fault.into());
        }
        Ok(Reply::Mapped { addr, len: size })
    }

    /// get_user_pages_fast (kernel-doc): faults in and pins `count` pages from `addr`;
    /// returns their frames. A pinned page's frame stays where it is until
    /// put: its range cannot be unmapped (Busy) meanwhile.
    pub(crate) fn gup(
        &mut self,
        ci: u32,
        addr: u64,
        count: u32,
        write: bool,
    ) -> Result<Reply, Fail> {
        let n = count as u64;
        if n == 0 || n > MAX_PFNS as u64 {
            return Err(MmError::InvalidArgument.into());
        }
        let (start, end) = page_range(addr, n * PAGE_SIZE)?;
        self.covered(ci, start, end)?;
        // Every page must be reachable before anything is faulted in.
        let need = self.reachable_range(ci, start, end, write)?;
        if need > self.clients[ci as usize].headroom() {
            return Err(MmError::QuotaExceeded.into());
        }
        // Pinned frames must never move: no 2 MiB block under a pin (a later
        // split would copy it elsewhere).
        let mut va = start & !((2 << 20) - 1);
        while va < end {
            if self.clients[ci as usize].pages.block(va).is_some() {
                self.split_block(ci, va)?;
            }
            va += 2 << 20;
        }
        let mut pfns: Vec<u64> = Vec::with_capacity(n as usize);
        for i in 0..n {
            let v = start + i * PAGE_SIZE;
            let pfn = self.fault_in(ci, v, write, false).map_err(|f| match f {
                Fail::Mm(MmError::NotMapped | MmError::PermissionDenied) => {
                    Fail::Mm(MmError::Fault)
                }
                f => f,
            })?;
            let p = self.clients[ci as usize]
                .pages
                .get(v)
                .ok_or(MmError::Fault)?;
            if p.hold() == Hold::Dev {
                return Err(MmError::Fault.into());
            }
            pfns.push(pfn);
        }
        let pins = &mut self.clients[ci as usize].pins;
        for i in 0..n {
            *pins.entry(start + i * PAGE_SIZE).or_insert(0) += 1;
        }
        Ok(Reply::Pfns {
            pfns: List::from_slice(&pfns).ok_or(MmError::InvalidArgument)?,
        })
    }

    /// put_page (kernel-doc) for each of `count` pinned pages from `addr`.
    pub(crate) fn put_user_pages(&mut self, ci: u32, addr: u64, count: u32) -> Result<Reply, Fail> {
        let n = count as u64;
        if n == 0 || n > MAX_PFNS as u64 {
            return Err(MmError::InvalidArgument.into());
        }
        let (start, _) = page_range(addr, n * PAGE_SIZE)?;
        let pins = &mut self.clients[ci as usize].pins;
        if (0..n).any(|i| !pins.contains_key(&(start + i * PAGE_SIZE))) {
            return Err(MmError::InvalidArgument.into());
        }
        for i in 0..n {
            let va = start + i * PAGE_SIZE;
            if let Some(c) = pins.get_mut(&va) {
                *c -= 1;
                if *c == 0 {
                    pins.remove(&va);
                }
            }
        }
        Ok(Reply::Done)
    }
}
