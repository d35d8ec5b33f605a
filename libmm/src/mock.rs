//! A mock MM server in the same process: for unit tests, benchmarks and examples.
//!
//! [`MockMm`] is both a [`Transport`] and a [`MemoryAccess`]. As a transport
//! it encodes each request into message words exactly as the real transport
//! does ([`encode_request`]), lets a small in-process [`MockServer`] decode
//! and serve it, encodes the reply (or error) into words and labels, and
//! decodes that with [`decode_reply`] — so tests see the real encoding and
//! error mapping. As a memory access it reads and writes the mock's
//! simulated memory: bytes exist only inside regions the mock has mapped
//! (demand-zero, backed page by page when first written), and an access
//! outside them, or a write to a read-only region, fails as it would fault.
//!
//! The server keeps its bookkeeping simply — sorted maps of regions, page
//! blocks, shared objects, pins and inserted frames — and validates each
//! request much as the real server must (alignment, ownership, coverage),
//! so that libmm's error paths can be tested. Every decoded request is
//! logged ([`MockServer::log`]), and tests can inject errors
//! ([`MockServer::fail_next`]), raw replies ([`MockServer::reply_raw`]) and
//! limits ([`MockServer::map_limit`], [`MockServer::quota_pages`]).
//!
//! Frame numbers are invented: blocks from the page allocator get
//! consecutive ones from `0x40000`; a resident anonymous page reports
//! `0x100000 + (addr >> 12)` truncated to 32 bits. A coherent DMA buffer's
//! bus address is congruent to its virtual address modulo 1 GiB, so that
//! `DmaAllocCoherent`'s alignment holds in both. Placement honours `Map`'s
//! and `DmaAllocCoherent`'s alignment; `Discard` drops the resident pages
//! of anonymous regions (the bytes of shared objects stay, as the server's
//! fault would bring them back).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{RefCell, RefMut};

use abi::{MessageInfo, Word};
use mm_core::addr::{PAGE_SIZE, pages_for};
use mm_core::memory::{AccessError, MemoryAccess};

use crate::mm::Mm;
use crate::protocol::{
    self, Align, ClientId, ClientInfo, Gfp, LABEL_ERROR, LABEL_MALFORMED, LABEL_OK, LABEL_REQUEST,
    List, MAX_PFNS, MAX_WORDS, MapFlags, MmError, Prot, Reply, Request, ZoneInfo,
};
use crate::transport::{Error, Transport, decode_reply, encode_request};

/// Where the mock places mappings it chooses the address of.
pub const MOCK_BASE: u64 = 0x10_0000_0000;
/// The mock client's own id (its badge).
pub const MOCK_CLIENT: ClientId = 1;
/// The first frame number the mock's page allocator hands out.
pub const MOCK_FIRST_PFN: u64 = 0x40000;
/// Frames per simulated zone.
const ZONE_FRAMES: u64 = 1 << 18;

/// What a region of the mock is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Anonymous memory (`Map`); a guard region never has bytes.
    Anon {
        /// Mapped with [`MapFlags::GUARD`].
        guard: bool,
    },
    /// A region for inserted frames ([`MapFlags::PFNMAP`]).
    PfnMap,
    /// Pages from the page allocator.
    Pages,
    /// A vmalloc area.
    Vmalloc,
    /// A vmap area.
    Vmap,
    /// A vm_map_ram area.
    VmRam,
    /// A mapping of a shared object.
    Shm(u64),
    /// A coherent DMA buffer.
    Dma,
    /// The copy made by memdup_user.
    Memdup,
}

/// A region of the mock's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockRegion {
    /// Length in bytes.
    pub len: u64,
    /// Protection.
    pub prot: Prot,
    /// What it is.
    pub kind: RegionKind,
}

/// How a block of frames was allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockKind {
    Order(u8),
    Exact(u32),
    Contig(u64),
}

#[derive(Clone, Copy, Debug)]
struct Block {
    pfn: u64,
    pages: u64,
    kind: BlockKind,
}

#[derive(Clone, Debug)]
struct Shm {
    size: u64,
    grants: Vec<(ClientId, Prot)>,
}

/// An error to inject into matching requests.
struct Failure {
    matches: fn(&Request) -> bool,
    error: MmError,
    remaining: usize,
}

/// The mock server's state. Reach it through [`MockMm::server`].
pub struct MockServer {
    /// Every request decoded, in order.
    pub log: Vec<Request>,
    /// Requests that fit the register message registers (≤ 4 words).
    pub register_calls: u64,
    /// Requests that needed the IPC buffer.
    pub buffer_calls: u64,
    /// Mappings are placed at multiples of this (default 64 KiB, so that
    /// the heap's own 4 MiB alignment is exercised).
    pub place_align: u64,
    /// The most bytes of regions the client may have at once (`None`: no
    /// limit); a `Map` beyond it fails with [`MmError::NoMemory`].
    pub map_limit: Option<u64>,
    /// The most resident pages (touched anonymous pages and page blocks).
    pub quota_pages: u64,
    /// Whether the client may use the page allocator.
    pub grant_pages: bool,
    /// Whether the client may allocate DMA memory.
    pub grant_dma: bool,
    /// Device frame ranges `(first_pfn, count)` the client may map.
    pub device: Vec<(u64, u64)>,
    /// Whether the client is the supervisor (may send `ClientDied`).
    pub supervisor: bool,
    regions: BTreeMap<u64, MockRegion>,
    pages: BTreeMap<u64, Box<[u8]>>,
    next_addr: u64,
    mapped_bytes: u64,
    blocks: BTreeMap<u64, Block>,
    next_pfn: u64,
    shm: BTreeMap<u64, Shm>,
    next_handle: u64,
    pins: BTreeMap<u64, u32>,
    inserted: BTreeMap<u64, u64>,
    failures: Vec<Failure>,
    raw: VecDeque<(Word, Vec<Word>)>,
    faults: u64,
}

impl Default for MockServer {
    fn default() -> Self {
        MockServer {
            log: Vec::new(),
            register_calls: 0,
            buffer_calls: 0,
            place_align: 64 << 10,
            map_limit: None,
            quota_pages: u64::MAX,
            grant_pages: true,
            grant_dma: true,
            device: vec![(0x9000, 16)],
            supervisor: false,
            regions: BTreeMap::new(),
            pages: BTreeMap::new(),
            next_addr: MOCK_BASE,
            mapped_bytes: 0,
            blocks: BTreeMap::new(),
            next_pfn: MOCK_FIRST_PFN,
            shm: BTreeMap::new(),
            next_handle: 1,
            pins: BTreeMap::new(),
            inserted: BTreeMap::new(),
            failures: Vec::new(),
            raw: VecDeque::new(),
            faults: 0,
        }
    }
}

/// The result of serving one request.
type Served = Result<Reply, MmError>;

/// Checks that `addr` and `len` are page-aligned, `len` non-zero, and the
/// range inside the user address space.
fn check_range(addr: u64, len: u64) -> Result<(), MmError> {
    if len == 0 {
        return Err(MmError::InvalidArgument);
    }
    if !addr.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(MmError::Unaligned);
    }
    match addr.checked_add(len) {
        Some(end) if end <= abi::vm::USER_VADDR_END => Ok(()),
        _ => Err(MmError::Overflow),
    }
}

/// `bytes` rounded up to pages, as a byte count.
fn page_bytes(bytes: u64) -> Result<u64, MmError> {
    match pages_for(bytes) {
        Some(0) | None => Err(MmError::InvalidArgument),
        Some(p) => p.checked_mul(PAGE_SIZE).ok_or(MmError::Overflow),
    }
}

impl MockServer {
    /// Makes the next `times` requests for which `matches` is true fail with `error`.
    pub fn fail_next(&mut self, matches: fn(&Request) -> bool, error: MmError, times: usize) {
        self.failures.push(Failure {
            matches,
            error,
            remaining: times,
        });
    }

    /// Answers the next request with this raw label and these words,
    /// without serving it.
    pub fn reply_raw(&mut self, label: Word, words: &[Word]) {
        self.raw.push_back((label, words.to_vec()));
    }

    /// The regions, as `(addr, region)` in address order.
    pub fn regions(&self) -> impl Iterator<Item = (u64, &MockRegion)> + '_ {
        self.regions.iter().map(|(&a, r)| (a, r))
    }

    /// The region containing `addr`.
    pub fn region_at(&self, addr: u64) -> Option<(u64, MockRegion)> {
        let (&start, r) = self.regions.range(..=addr).next_back()?;
        (addr - start < r.len).then_some((start, *r))
    }

    /// Bytes of regions mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped_bytes
    }

    /// Resident pages: touched anonymous pages plus page-allocator blocks.
    pub fn resident_pages(&self) -> u64 {
        self.pages.len() as u64 + self.blocks.values().map(|b| b.pages).sum::<u64>()
    }

    /// Resident pages inside DMA regions.
    pub fn dma_pages(&self) -> u64 {
        self.regions
            .iter()
            .filter(|(_, r)| r.kind == RegionKind::Dma)
            .map(|(&a, r)| self.pages.range(a..a + r.len).count() as u64)
            .sum()
    }

    /// Whether the page at `addr` is resident (has been written).
    pub fn is_resident(&self, addr: u64) -> bool {
        self.pages.contains_key(&(addr & !(PAGE_SIZE - 1)))
    }

    /// Requests logged since `from` (an earlier `log.len()`).
    pub fn requests_since(&self, from: usize) -> &[Request] {
        self.log.get(from..).unwrap_or(&[])
    }

    /// Serves one message: the request's tag and words in, the reply's out.
    pub fn serve(&mut self, info: MessageInfo, words: &[Word]) -> (MessageInfo, Vec<Word>) {
        if info.length() <= abi::syscall::FAST_MESSAGE_REGISTERS {
            self.register_calls += 1;
        } else {
            self.buffer_calls += 1;
        }
        if let Some((label, words)) = self.raw.pop_front() {
            return (MessageInfo::new(label, 0, 0, words.len()), words);
        }
        let n = info.length().min(words.len());
        let req = match info.label() {
            LABEL_REQUEST => protocol::decode::<Request>(&words[..n]).ok(),
            _ => None,
        };
        let Some(req) = req else {
            return (MessageInfo::new(LABEL_MALFORMED, 0, 0, 0), Vec::new());
        };
        self.log.push(req.clone());
        let injected = self.failures.iter_mut().find_map(|f| {
            (f.remaining > 0 && (f.matches)(&req)).then(|| {
                f.remaining -= 1;
                f.error
            })
        });
        let result = match injected {
            Some(e) => Err(e),
            None => self.handle(&req),
        };
        match result {
            Ok(reply) => {
                let mut out = [0; MAX_WORDS];
                let n = protocol::encode(&reply, &mut out);
                (MessageInfo::new(LABEL_OK, 0, 0, n), out[..n].to_vec())
            }
            Err(e) => (MessageInfo::new(LABEL_ERROR, 0, 0, 1), vec![e.code()]),
        }
    }

    // ----- regions ---------------------------------------------------------

    /// Whether any region overlaps `[addr, addr + len)`.
    fn overlaps(&self, addr: u64, len: u64) -> bool {
        let end = addr + len;
        self.regions
            .range(..end)
            .next_back()
            .is_some_and(|(&s, r)| s + r.len > addr)
    }

    /// Whether `[addr, addr + len)` is covered by regions without holes.
    fn covered(&self, addr: u64, len: u64) -> bool {
        let end = addr + len;
        let mut at = addr;
        while at < end {
            match self.region_at(at) {
                Some((s, r)) => at = s + r.len,
                None => return false,
            }
        }
        true
    }

    /// Whether a pinned page lies in `[addr, addr + len)`.
    fn pinned_in(&self, addr: u64, len: u64) -> bool {
        self.pins
            .iter()
            .any(|(&a, &c)| a < addr + len && a + c as u64 * PAGE_SIZE > addr)
    }

    /// Splits the region spanning `addr`, if any, at `addr`.
    fn split_at(&mut self, addr: u64) {
        if let Some((start, r)) = self.region_at(addr)
            && start < addr
        {
            let head = addr - start;
            self.regions.insert(start, MockRegion { len: head, ..r });
            self.regions.insert(
                addr,
                MockRegion {
                    len: r.len - head,
                    ..r
                },
            );
        }
    }

    /// The starts of the regions inside `[addr, addr + len)` after
    /// splitting at both ends.
    fn carve(&mut self, addr: u64, len: u64) -> Vec<u64> {
        self.split_at(addr);
        self.split_at(addr + len);
        self.regions
            .range(addr..addr + len)
            .map(|(&s, _)| s)
            .collect()
    }

    /// Drops the resident pages of `[addr, addr + len)`.
    fn drop_pages(&mut self, addr: u64, len: u64) {
        let gone: Vec<u64> = self
            .pages
            .range(addr..addr + len)
            .map(|(&a, _)| a)
            .collect();
        for a in gone {
            self.pages.remove(&a);
        }
    }

    /// Removes every region in `[addr, addr + len)` (splitting those that
    /// straddle its ends) and their pages.
    fn remove_range(&mut self, addr: u64, len: u64) {
        for s in self.carve(addr, len) {
            if let Some(r) = self.regions.remove(&s) {
                self.mapped_bytes -= r.len;
            }
        }
        self.drop_pages(addr, len);
        let gone: Vec<u64> = self
            .inserted
            .range(addr..addr + len)
            .map(|(&a, _)| a)
            .collect();
        for a in gone {
            self.inserted.remove(&a);
        }
    }

    /// Picks an address for `len` bytes aligned to `align`: `hint` if
    /// aligned and free, else the next free place from the bump pointer.
    fn place(&mut self, hint: u64, len: u64, align: u64) -> Result<u64, MmError> {
        if hint != 0
            && hint.is_multiple_of(align)
            && check_range(hint, len).is_ok()
            && !self.overlaps(hint, len)
        {
            return Ok(hint);
        }
        let align = self.place_align.max(PAGE_SIZE).max(align);
        let mut at = self.next_addr;
        loop {
            at = at
                .checked_next_multiple_of(align)
                .ok_or(MmError::NoMemory)?;
            check_range(at, len).map_err(|_| MmError::NoMemory)?;
            // Skip past whatever a fixed mapping put in the way.
            match self.regions.range(..at + len).next_back() {
                Some((&s, r)) if s + r.len > at => at = s + r.len + PAGE_SIZE,
                _ => break,
            }
        }
        // Leave a page between placements so regions never merge by accident.
        self.next_addr = at + len + PAGE_SIZE;
        Ok(at)
    }

    /// Adds a region at `addr` (which must be free).
    fn add_region(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        kind: RegionKind,
    ) -> Result<u64, MmError> {
        if self
            .map_limit
            .is_some_and(|limit| self.mapped_bytes + len > limit)
        {
            return Err(MmError::NoMemory);
        }
        self.regions.insert(addr, MockRegion { len, prot, kind });
        self.mapped_bytes += len;
        Ok(addr)
    }

    /// Places and adds a region.
    fn new_region(
        &mut self,
        hint: u64,
        len: u64,
        prot: Prot,
        kind: RegionKind,
    ) -> Result<u64, MmError> {
        self.new_region_aligned(hint, len, prot, kind, PAGE_SIZE)
    }

    /// Places a region at a multiple of `align` and adds it.
    fn new_region_aligned(
        &mut self,
        hint: u64,
        len: u64,
        prot: Prot,
        kind: RegionKind,
        align: u64,
    ) -> Result<u64, MmError> {
        let at = self.place(hint, len, align)?;
        self.add_region(at, len, prot, kind)
    }

    /// Makes the pages of `[addr, addr + len)` resident (populate, pin).
    fn touch(&mut self, addr: u64, len: u64) -> Result<(), MmError> {
        let mut at = addr & !(PAGE_SIZE - 1);
        let new = (at..addr + len)
            .step_by(PAGE_SIZE as usize)
            .filter(|a| !self.pages.contains_key(a))
            .count() as u64;
        if self.resident_pages() + new > self.quota_pages {
            return Err(MmError::QuotaExceeded);
        }
        while at < addr + len {
            self.pages
                .entry(at)
                .or_insert_with(|| vec![0u8; PAGE_SIZE as usize].into_boxed_slice());
            at += PAGE_SIZE;
        }
        Ok(())
    }

    // ----- memory ----------------------------------------------------------

    /// Whether the byte at `addr` may be accessed (written if `write`).
    fn accessible(&self, addr: u64, write: bool) -> bool {
        match self.region_at(addr) {
            Some((_, r)) => {
                !matches!(r.kind, RegionKind::Anon { guard: true })
                    && r.prot.contains(Prot::READ)
                    && (!write || r.prot.contains(Prot::WRITE))
            }
            None => false,
        }
    }

    /// Reads `buf.len()` bytes at `addr`; returns how many could be read.
    pub fn read_mem(&self, addr: u64, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let at = addr + done as u64;
            if !self.accessible(at, false) {
                return done;
            }
            let off = (at % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - off).min(buf.len() - done);
            match self.pages.get(&(at - off as u64)) {
                Some(page) => buf[done..done + n].copy_from_slice(&page[off..off + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        done
    }

    /// Writes `data` at `addr` (`None`: fill `len` bytes with `byte`);
    /// returns how many bytes were written.
    fn write_mem(&mut self, addr: u64, data: Option<&[u8]>, len: u64, byte: u8) -> u64 {
        let mut done = 0u64;
        while done < len {
            let at = addr + done;
            if !self.accessible(at, true) {
                return done;
            }
            let off = at % PAGE_SIZE;
            let n = (PAGE_SIZE - off).min(len - done);
            let base = at - off;
            if !self.pages.contains_key(&base) {
                if byte == 0 && data.is_none() {
                    // Zeroing an untouched page leaves it untouched.
                    done += n;
                    continue;
                }
                if self.touch(base, PAGE_SIZE).is_err() {
                    return done;
                }
            }
            if let Some(page) = self.pages.get_mut(&base) {
                let dst = &mut page[off as usize..(off + n) as usize];
                match data {
                    Some(d) => dst.copy_from_slice(&d[done as usize..(done + n) as usize]),
                    None => dst.fill(byte),
                }
            }
            done += n;
        }
        done
    }

    // ----- requests --------------------------------------------------------

    fn owns_pfn(&self, pfn: u64) -> bool {
        self.blocks
            .values()
            .any(|b| pfn >= b.pfn && pfn - b.pfn < b.pages)
    }

    fn may_map_pfn(&self, pfn: u64) -> bool {
        self.owns_pfn(pfn)
            || self
                .device
                .iter()
                .any(|&(first, count)| pfn >= first && pfn - first < count)
    }

    /// The PFNMAP region containing `[addr, addr + len)`.
    fn pfnmap(&self, addr: u64, len: u64) -> Result<(), MmError> {
        match self.region_at(addr) {
            Some((s, r)) if r.kind == RegionKind::PfnMap && addr + len <= s + r.len => Ok(()),
            _ => Err(MmError::NotMapped),
        }
    }

    fn anon_pfn(addr: u64) -> u64 {
        0x10_0000 + ((addr >> 12) & 0xffff_ffff)
    }

    fn alloc_block(&mut self, pages: u64, kind: BlockKind, gfp: Gfp) -> Served {
        if !self.grant_pages {
            return Err(MmError::PermissionDenied);
        }
        let _ = gfp;
        if self.resident_pages() + pages > self.quota_pages {
            return Err(MmError::QuotaExceeded);
        }
        let align = pages.next_power_of_two();
        let pfn = self.next_pfn.next_multiple_of(align);
        let addr = self.new_region(0, pages * PAGE_SIZE, Prot::READ_WRITE, RegionKind::Pages)?;
        self.next_pfn = pfn + pages;
        self.blocks.insert(addr, Block { pfn, pages, kind });
        Ok(Reply::Pages { addr, pfn })
    }

    fn free_block(&mut self, addr: u64, kind: BlockKind) -> Served {
        match self.blocks.get(&addr) {
            Some(b) if b.kind == kind => {
                let len = b.pages * PAGE_SIZE;
                self.blocks.remove(&addr);
                self.remove_range(addr, len);
                Ok(Reply::Done)
            }
            _ => Err(MmError::NotOwner),
        }
    }

    fn remove_area(&mut self, addr: u64, kind: RegionKind) -> Served {
        match self.regions.get(&addr) {
            Some(r) if r.kind == kind => {
                let len = r.len;
                self.remove_range(addr, len);
                Ok(Reply::Done)
            }
            _ => Err(MmError::NotOwner),
        }
    }

    fn map_pfns(&mut self, pfns: &[u64], prot: Prot, kind: RegionKind) -> Served {
        if pfns.is_empty() {
            return Err(MmError::InvalidArgument);
        }
        if !pfns.iter().all(|&p| self.owns_pfn(p)) {
            return Err(MmError::NotOwner);
        }
        let len = pfns.len() as u64 * PAGE_SIZE;
        let addr = self.new_region(0, len, prot, kind)?;
        Ok(Reply::Mapped { addr, len })
    }

    fn insert(&mut self, addr: u64, pfn: u64, own_only: bool) -> Served {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(MmError::Unaligned);
        }
        self.pfnmap(addr, PAGE_SIZE)?;
        if self.inserted.contains_key(&addr) {
            return Err(MmError::AlreadyMapped);
        }
        if own_only && !self.owns_pfn(pfn) {
            return Err(MmError::NotOwner);
        }
        if !own_only && !self.may_map_pfn(pfn) {
            return Err(MmError::PermissionDenied);
        }
        self.inserted.insert(addr, pfn);
        Ok(Reply::Done)
    }

    fn insert_range(&mut self, addr: u64, pfn: u64, bytes: u64) -> Served {
        let len = page_bytes(bytes)?;
        check_range(addr, len)?;
        self.pfnmap(addr, len)?;
        let count = len / PAGE_SIZE;
        if !(0..count).all(|i| self.may_map_pfn(pfn + i)) {
            return Err(MmError::PermissionDenied);
        }
        if self.inserted.range(addr..addr + len).next().is_some() {
            return Err(MmError::AlreadyMapped);
        }
        for i in 0..count {
            self.inserted.insert(addr + i * PAGE_SIZE, pfn + i);
        }
        Ok(Reply::Done)
    }

    fn check_client(&self, client: ClientId) -> Result<(), MmError> {
        if client == MOCK_CLIENT {
            Ok(())
        } else {
            Err(MmError::PermissionDenied)
        }
    }

    /// Copies `len` bytes from `src` to `dst`; returns the bytes not copied.
    fn copy_user(&mut self, dst: u64, src: u64, len: u64) -> u64 {
        let mut done = 0;
        let mut buf = [0u8; 256];
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            let read = self.read_mem(src + done, &mut buf[..n]);
            let wrote = self.write_mem(dst + done, Some(&buf[..read]), read as u64, 0);
            done += wrote;
            if wrote < n as u64 {
                break;
            }
        }
        len - done
    }

    fn handle(&mut self, req: &Request) -> Served {
        use Request::*;
        match *req {
            Map {
                addr,
                len,
                prot,
                flags,
                align,
            } => {
                check_range(if addr == 0 { PAGE_SIZE } else { addr }, len)?;
                if !prot.is_valid() || flags.0 & !0x7f != 0 || !align.within(Align::MAX_MAP) {
                    return Err(MmError::InvalidArgument);
                }
                let align = align.bytes().ok_or(MmError::InvalidArgument)?;
                let fixed = flags.contains(MapFlags::FIXED);
                let noreplace = flags.contains(MapFlags::FIXED_NOREPLACE);
                if fixed && noreplace || (fixed || noreplace) && addr == 0 {
                    return Err(MmError::InvalidArgument);
                }
                if (fixed || noreplace) && !addr.is_multiple_of(align) {
                    return Err(MmError::Unaligned);
                }
                let kind = if flags.contains(MapFlags::PFNMAP) {
                    RegionKind::PfnMap
                } else {
                    RegionKind::Anon {
                        guard: flags.contains(MapFlags::GUARD),
                    }
                };
                let at = if fixed {
                    self.remove_range(addr, len);
                    self.add_region(addr, len, prot, kind)?
                } else if noreplace {
                    if self.overlaps(addr, len) {
                        return Err(MmError::AlreadyMapped);
                    }
                    self.add_region(addr, len, prot, kind)?
                } else {
                    self.new_region_aligned(addr, len, prot, kind, align)?
                };
                if flags.contains(MapFlags::POPULATE)
                    && matches!(kind, RegionKind::Anon { guard: false })
                    && let Err(e) = self.touch(at, len)
                {
                    self.remove_range(at, len);
                    return Err(e);
                }
                Ok(Reply::Mapped { addr: at, len })
            }
            Discard { addr, len } => {
                check_range(addr, len)?;
                if !self.covered(addr, len) {
                    return Err(MmError::NotMapped);
                }
                let kinds: Vec<RegionKind> = self
                    .regions
                    .range(..addr + len)
                    .rev()
                    .take_while(|(s, r)| **s + r.len > addr)
                    .map(|(_, r)| r.kind)
                    .collect();
                if kinds.contains(&RegionKind::PfnMap) {
                    return Err(MmError::InvalidArgument);
                }
                let area = |k: &RegionKind| {
                    !matches!(
                        k,
                        RegionKind::Anon { .. } | RegionKind::Shm(_) | RegionKind::Memdup
                    )
                };
                if kinds.iter().any(area) || self.pinned_in(addr, len) {
                    return Err(MmError::Busy);
                }
                // The mock keeps a shared object's bytes at the mapping's
                // addresses: they stay (the server's fault brings them back).
                let anon: Vec<(u64, u64)> = self
                    .regions
                    .range(..addr + len)
                    .filter(|(s, r)| **s + r.len > addr && !matches!(r.kind, RegionKind::Shm(_)))
                    .map(|(&s, r)| (s.max(addr), (s + r.len).min(addr + len)))
                    .collect();
                for (a, b) in anon {
                    self.drop_pages(a, b - a);
                }
                Ok(Reply::Done)
            }
            Unmap { addr, len } => {
                check_range(addr, len)?;
                let fixed_kinds = self
                    .regions
                    .range(..addr + len)
                    .rev()
                    .take_while(|(s, r)| **s + r.len > addr)
                    .any(|(_, r)| {
                        !matches!(
                            r.kind,
                            RegionKind::Anon { .. }
                                | RegionKind::PfnMap
                                | RegionKind::Shm(_)
                                | RegionKind::Memdup
                        )
                    });
                if fixed_kinds {
                    return Err(MmError::InvalidArgument);
                }
                self.remove_range(addr, len);
                Ok(Reply::Done)
            }
            Protect { addr, len, prot } => {
                check_range(addr, len)?;
                if !prot.is_valid() {
                    return Err(MmError::InvalidArgument);
                }
                if !self.covered(addr, len) {
                    return Err(MmError::NotMapped);
                }
                for s in self.carve(addr, len) {
                    if let Some(r) = self.regions.get_mut(&s) {
                        r.prot = prot;
                    }
                }
                Ok(Reply::Done)
            }
            Populate { addr, len } => {
                check_range(addr, len)?;
                if !self.covered(addr, len) {
                    return Err(MmError::NotMapped);
                }
                self.touch(addr, len)?;
                Ok(Reply::Done)
            }
            AllocPages { order, gfp } => {
                if order > 10 {
                    return Err(MmError::InvalidArgument);
                }
                self.alloc_block(1 << order, BlockKind::Order(order), gfp)
            }
            FreePages { addr, order } => self.free_block(addr, BlockKind::Order(order)),
            AllocPagesExact { count, gfp } => {
                if !(1..=1024).contains(&count) {
                    return Err(MmError::InvalidArgument);
                }
                self.alloc_block(count as u64, BlockKind::Exact(count), gfp)
            }
            FreePagesExact { addr, count } => self.free_block(addr, BlockKind::Exact(count)),
            AllocContigRange { start_pfn, end_pfn } => {
                if !self.grant_pages {
                    return Err(MmError::PermissionDenied);
                }
                let count = end_pfn
                    .checked_sub(start_pfn)
                    .ok_or(MmError::InvalidArgument)?;
                if !(1..=1024).contains(&count) {
                    return Err(MmError::InvalidArgument);
                }
                if self
                    .blocks
                    .values()
                    .any(|b| b.pfn < end_pfn && start_pfn < b.pfn + b.pages)
                {
                    return Err(MmError::Busy);
                }
                let addr =
                    self.new_region(0, count * PAGE_SIZE, Prot::READ_WRITE, RegionKind::Pages)?;
                self.blocks.insert(
                    addr,
                    Block {
                        pfn: start_pfn,
                        pages: count,
                        kind: BlockKind::Contig(count),
                    },
                );
                self.next_pfn = self.next_pfn.max(end_pfn);
                Ok(Reply::Pages {
                    addr,
                    pfn: start_pfn,
                })
            }
            FreeContigRange { addr, count } => self.free_block(addr, BlockKind::Contig(count)),
            Vmalloc { size, .. } => {
                let len = page_bytes(size)?;
                let addr = self.new_region(0, len, Prot::READ_WRITE, RegionKind::Vmalloc)?;
                Ok(Reply::Mapped { addr, len })
            }
            Vfree { addr } => self.remove_area(addr, RegionKind::Vmalloc),
            Vmap { ref pfns, prot } => self.map_pfns(pfns.as_slice(), prot, RegionKind::Vmap),
            Vunmap { addr } => self.remove_area(addr, RegionKind::Vmap),
            VmMapRam { ref pfns } => {
                self.map_pfns(pfns.as_slice(), Prot::READ_WRITE, RegionKind::VmRam)
            }
            VmUnmapRam { addr, count } => match self.regions.get(&addr) {
                Some(r) if r.kind == RegionKind::VmRam && r.len == count as u64 * PAGE_SIZE => {
                    self.remove_area(addr, RegionKind::VmRam)
                }
                Some(r) if r.kind == RegionKind::VmRam => Err(MmError::InvalidArgument),
                _ => Err(MmError::NotOwner),
            },
            VmInsertPage { addr, pfn } => self.insert(addr, pfn, true),
            VmInsertPfn { addr, pfn } | VmInsertPfnProt { addr, pfn, .. } => {
                self.insert(addr, pfn, false)
            }
            RemapPfnRange {
                addr, pfn, size, ..
            } => self.insert_range(addr, pfn, size),
            VmIomapMemory { addr, phys, len } => {
                if phys % PAGE_SIZE != 0 {
                    return Err(MmError::Unaligned);
                }
                self.insert_range(addr, phys / PAGE_SIZE, len)
            }
            ZapVmaPtes { addr, len } => {
                check_range(addr, len)?;
                self.pfnmap(addr, len)?;
                let gone: Vec<u64> = self
                    .inserted
                    .range(addr..addr + len)
                    .map(|(&a, _)| a)
                    .collect();
                for a in gone {
                    self.inserted.remove(&a);
                }
                Ok(Reply::Done)
            }
            UnmapMappingRange {
                handle,
                first,
                count,
            } => {
                if !self.shm.contains_key(&handle) {
                    return Err(MmError::NoSuchHandle);
                }
                let maps: Vec<(u64, u64)> = self
                    .regions
                    .iter()
                    .filter(|(_, r)| r.kind == RegionKind::Shm(handle))
                    .map(|(&a, r)| (a, r.len))
                    .collect();
                for (a, len) in maps {
                    let start = first.saturating_mul(PAGE_SIZE).min(len);
                    let end = if count == 0 {
                        len
                    } else {
                        first
                            .saturating_add(count)
                            .saturating_mul(PAGE_SIZE)
                            .min(len)
                    };
                    self.drop_pages(a + start, end - start);
                }
                Ok(Reply::Done)
            }
            FollowPfn { addr } => {
                let page = addr & !(PAGE_SIZE - 1);
                if let Some(&pfn) = self.inserted.get(&page) {
                    return Ok(Reply::Pfn { pfn });
                }
                if let Some((start, r)) = self.region_at(addr) {
                    if let Some(b) = self.blocks.get(&start) {
                        return Ok(Reply::Pfn {
                            pfn: b.pfn + (page - start) / PAGE_SIZE,
                        });
                    }
                    if matches!(r.kind, RegionKind::Anon { .. }) && self.pages.contains_key(&page) {
                        return Ok(Reply::Pfn {
                            pfn: Self::anon_pfn(page),
                        });
                    }
                }
                Err(MmError::NotMapped)
            }
            ShmCreate { size } => {
                page_bytes(size)?;
                let handle = self.next_handle;
                self.next_handle += 1;
                self.shm.insert(
                    handle,
                    Shm {
                        size,
                        grants: Vec::new(),
                    },
                );
                Ok(Reply::Handle { handle })
            }
            ShmGrant { handle, to, prot } => {
                let shm = self.shm.get_mut(&handle).ok_or(MmError::NoSuchHandle)?;
                shm.grants.push((to, prot));
                Ok(Reply::Done)
            }
            ShmMap { handle, addr, prot } => {
                let size = self.shm.get(&handle).ok_or(MmError::NoSuchHandle)?.size;
                let len = page_bytes(size)?;
                let at = self.new_region(addr, len, prot, RegionKind::Shm(handle))?;
                Ok(Reply::Mapped { addr: at, len })
            }
            ShmDestroy { handle } => {
                self.shm.remove(&handle).ok_or(MmError::NoSuchHandle)?;
                Ok(Reply::Done)
            }
            CopyToUser {
                client,
                dst,
                src,
                len,
            }
            | CopyFromUser {
                client,
                dst,
                src,
                len,
            } => {
                self.check_client(client)?;
                Ok(Reply::NotCopied {
                    bytes: self.copy_user(dst, src, len),
                })
            }
            ClearUser { client, addr, len } => {
                self.check_client(client)?;
                let done = self.write_mem(addr, None, len, 0);
                Ok(Reply::NotCopied { bytes: len - done })
            }
            MemdupUser { client, src, len } => {
                self.check_client(client)?;
                let bytes = page_bytes(len)?;
                let mut data = vec![0u8; len as usize];
                if self.read_mem(src, &mut data) < data.len() {
                    return Err(MmError::Fault);
                }
                let addr = self.new_region(0, bytes, Prot::READ_WRITE, RegionKind::Memdup)?;
                self.write_mem(addr, Some(&data), len, 0);
                Ok(Reply::Mapped { addr, len: bytes })
            }
            GetUserPagesFast { addr, count, write } => {
                if count == 0 || count as usize > MAX_PFNS {
                    return Err(MmError::InvalidArgument);
                }
                let len = count as u64 * PAGE_SIZE;
                check_range(addr, len)?;
                if !(0..count as u64).all(|i| self.accessible(addr + i * PAGE_SIZE, write)) {
                    return Err(MmError::Fault);
                }
                if self.pins.contains_key(&addr) {
                    return Err(MmError::Busy);
                }
                self.touch(addr, len)?;
                self.pins.insert(addr, count);
                let pfns: Vec<u64> = (0..count as u64)
                    .map(|i| Self::anon_pfn(addr + i * PAGE_SIZE))
                    .collect();
                Ok(Reply::Pfns {
                    pfns: List::from_slice(&pfns).ok_or(MmError::InvalidArgument)?,
                })
            }
            PutUserPages { addr, count } => match self.pins.get(&addr) {
                Some(&c) if c == count => {
                    self.pins.remove(&addr);
                    Ok(Reply::Done)
                }
                _ => Err(MmError::InvalidArgument),
            },
            DmaAllocCoherent { size, align } => {
                if !self.grant_dma {
                    return Err(MmError::PermissionDenied);
                }
                let len = page_bytes(size)?;
                if len > 1024 * PAGE_SIZE || !align.within(Align::MAX_DMA) {
                    return Err(MmError::InvalidArgument);
                }
                let align = align.bytes().ok_or(MmError::InvalidArgument)?;
                // Bus addresses are congruent to virtual ones modulo 1 GiB
                // (below), so aligning the address aligns both.
                let addr =
                    self.new_region_aligned(0, len, Prot::READ_WRITE, RegionKind::Dma, align)?;
                Ok(Reply::Dma {
                    addr,
                    bus: 0x8000_0000 + (addr - MOCK_BASE) % 0x4000_0000,
                })
            }
            DmaFreeCoherent { addr, size } => match self.regions.get(&addr) {
                Some(r) if r.kind == RegionKind::Dma && Ok(r.len) == page_bytes(size) => {
                    self.remove_area(addr, RegionKind::Dma)
                }
                _ => Err(MmError::NotOwner),
            },
            ZoneStats => {
                let used = self.blocks.values().map(|b| b.pages).sum::<u64>();
                let zones = [
                    ZoneInfo {
                        zone: 0,
                        managed: ZONE_FRAMES,
                        free: ZONE_FRAMES,
                        free_blocks: [0; 11],
                    },
                    ZoneInfo {
                        zone: 1,
                        managed: ZONE_FRAMES,
                        free: ZONE_FRAMES.saturating_sub(used),
                        free_blocks: [0; 11],
                    },
                ];
                Ok(Reply::Zones {
                    zones: List::from_slice(&zones).ok_or(MmError::InvalidArgument)?,
                })
            }
            ClientStats => Ok(Reply::Client(ClientInfo {
                id: MOCK_CLIENT,
                resident_pages: self.resident_pages(),
                quota_pages: self.quota_pages,
                regions: self.regions.len() as u64,
                faults: self.faults,
                dma_pages: self.dma_pages(),
            })),
            MemInfo => {
                let used = self.resident_pages();
                Ok(Reply::Mem(crate::protocol::MemInfo {
                    total: 2 * ZONE_FRAMES,
                    free: 2 * ZONE_FRAMES - used,
                    clients: used,
                    ..Default::default()
                }))
            }
            Exit => {
                let log = core::mem::take(&mut self.log);
                let (reg, buf) = (self.register_calls, self.buffer_calls);
                let limits = (self.place_align, self.map_limit, self.quota_pages);
                *self = MockServer::default();
                self.log = log;
                (self.register_calls, self.buffer_calls) = (reg, buf);
                (self.place_align, self.map_limit, self.quota_pages) = limits;
                Ok(Reply::Done)
            }
            ClientDied { .. } => {
                if self.supervisor {
                    Ok(Reply::Done)
                } else {
                    Err(MmError::PermissionDenied)
                }
            }
        }
    }
}

/// A handle to a [`MockServer`]: a [`Transport`] and a [`MemoryAccess`].
/// Clones share the server.
#[derive(Clone, Default)]
pub struct MockMm(Rc<RefCell<MockServer>>);

impl core::fmt::Debug for MockMm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MockMm")
    }
}

impl MockMm {
    /// A fresh mock server.
    pub fn new() -> Self {
        MockMm::default()
    }

    /// The server, for set-up and inspection. Do not hold it across a call.
    pub fn server(&self) -> RefMut<'_, MockServer> {
        self.0.borrow_mut()
    }

    /// A connection to this server.
    pub fn mm(&self) -> Mm<MockMm> {
        Mm::new(self.clone())
    }

    /// How many requests have been served (the log's length).
    pub fn requests(&self) -> usize {
        self.0.borrow().log.len()
    }

    /// The last request served.
    pub fn last_request(&self) -> Option<Request> {
        self.0.borrow().log.last().cloned()
    }
}

impl Transport for MockMm {
    fn call(&self, req: &Request) -> Result<Reply, Error> {
        let mut words = [0; MAX_WORDS];
        let info = encode_request(req, &mut words);
        let (reply, out) = self.0.borrow_mut().serve(info, &words[..info.length()]);
        decode_reply(reply, &out)
    }
}

impl MemoryAccess for MockMm {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        let n = self.0.borrow().read_mem(addr, buf);
        if n < buf.len() {
            return Err(AccessError {
                addr: addr + n as u64,
            });
        }
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        let n = self
            .0
            .borrow_mut()
            .write_mem(addr, Some(data), data.len() as u64, 0);
        if n < data.len() as u64 {
            return Err(AccessError { addr: addr + n });
        }
        Ok(())
    }

    fn fill(&mut self, addr: u64, len: u64, byte: u8) -> Result<(), AccessError> {
        let n = self.0.borrow_mut().write_mem(addr, None, len, byte);
        if n < len {
            return Err(AccessError { addr: addr + n });
        }
        Ok(())
    }
}
