//! The server: its state, the message loop, dispatch, replies, and the self-check.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use abi::fault::{Fault, FaultLabel, VmFault};
use abi::{Badge, CPtr, MessageInfo, Word};
use libmm::protocol::{
    self, LABEL_ERROR, LABEL_MALFORMED, LABEL_OK, LABEL_REQUEST, MAX_WORDS, MemInfo, MmError,
    Reply, Request,
};
use mm_core::frame::ZoneType;
use mm_core::vm::ReverseMap;

use crate::client::Client;
use crate::config::ServerConfig;
use crate::error::Fail;
use crate::pagemap::{Entry, Hold};
use crate::phys::{Owner, Phys};

/// A shared-memory object.
pub(crate) struct Shm {
    /// Its index in the frame-owner array (`Owner::Shm`).
    pub index: u32,
    /// The client that created it (index), while it lives.
    pub creator: Option<u32>,
    /// Its frames, one per page.
    pub pages: Vec<u64>,
    /// Clients allowed to map it, with the most protection each may use.
    pub grants: BTreeMap<u32, u8>,
    /// Destroyed by its creator (or the creator died): freed when no
    /// region maps it any more.
    pub destroyed: bool,
}

/// Counters of what the server has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Requests handled (including refused ones).
    pub requests: u64,
    /// Requests answered with an `MmError`.
    pub refused: u64,
    /// Messages that could not be decoded.
    pub malformed: u64,
    /// Page faults resolved.
    pub faults: u64,
    /// Faults that killed their client.
    pub fatal_faults: u64,
    /// Clients reclaimed (exit, death, fatal fault).
    pub reclaimed: u64,
    /// Kernel refusals the server did not expect (bugs): must stay 0.
    pub bugs: u64,
}

/// Frame conservation at one moment: every managed frame is in exactly one
/// class of [`MemInfo`] (what `MemInfo` requests report), and the classes
/// add up to the total; plus the per-client detail the self-check uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Every frame by class.
    pub mem: MemInfo,
    /// Per live client (badge): frames charged.
    pub charged: BTreeMap<u64, u64>,
    /// Extra frame caps in use.
    pub extra_caps: u64,
    /// Page tables installed in clients.
    pub client_tables: u64,
}

impl Census {
    /// Whether the classes add up to the total.
    pub fn conserved(&self) -> bool {
        self.mem.conserved()
    }
}

/// What the server does after a message.
// The reply words live on the stack only until they are sent.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reply with this label and these message words.
    Reply {
        /// The label.
        label: Word,
        /// The words (`len` of them are used).
        words: [Word; MAX_WORDS],
        /// How many.
        len: usize,
    },
    /// An empty reply with label 0: the end of a fault, which restarts the
    /// faulting instruction (the same message as a `Reply` with label 0
    /// and no words, without a message-sized array to fill).
    Restart,
    /// No reply (a fatal fault: the client is suspended and reclaimed).
    NoReply,
}

impl Outcome {
    fn label(label: Word) -> Outcome {
        Outcome::Reply {
            label,
            words: [0; MAX_WORDS],
            len: 0,
        }
    }

    /// The reply's label, if any.
    pub fn reply_label(&self) -> Option<Word> {
        match self {
            Outcome::Reply { label, .. } => Some(*label),
            Outcome::Restart => Some(0),
            Outcome::NoReply => None,
        }
    }

    /// The reply decoded as the protocol's result, if it is a protocol reply.
    pub fn decoded(&self) -> Option<Result<Reply, MmError>> {
        match self {
            Outcome::Reply { label, words, len } => match *label {
                LABEL_OK => protocol::decode(&words[..*len]).ok().map(Ok),
                LABEL_ERROR => MmError::from_code(words[0]).map(Err),
                _ => None,
            },
            Outcome::Restart | Outcome::NoReply => None,
        }
    }
}

/// What happened in one step, for a test's hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The sender's badge.
    pub badge: u64,
    /// The message's label.
    pub label: Word,
    /// What the server answered (borrowed: the server replies from it).
    pub outcome: &'a Outcome,
}

/// The MM server. See the crate docs.
pub struct Server {
    pub(crate) ep: CPtr,
    pub(crate) config: ServerConfig,
    pub(crate) phys: Phys,
    pub(crate) clients: Vec<Client>,
    pub(crate) by_badge: BTreeMap<u64, u32>,
    pub(crate) shm: BTreeMap<u64, Shm>,
    pub(crate) next_shm: u64,
    pub(crate) rmap: ReverseMap,
    pub(crate) stats: ServerStats,
    /// Clients found dead while serving someone else: reclaimed after the step.
    pub(crate) gone: Vec<u32>,
}

impl Server {
    /// The server's counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Counters of the physical-memory layer.
    pub fn phys_counters(&self) -> crate::phys::PhysCounters {
        self.phys.counters
    }

    /// The badges of the clients still served.
    pub fn live_clients(&self) -> Vec<u64> {
        self.clients
            .iter()
            .filter(|c| c.alive)
            .map(|c| c.badge)
            .collect()
    }

    /// Frames charged to the client with `badge` (None: unknown or dead).
    pub fn charged(&self, badge: u64) -> Option<u64> {
        let c = &self.clients[*self.by_badge.get(&badge)? as usize];
        c.alive.then_some(c.charged)
    }

    /// Serves forever: receive, dispatch, reply; calls `hook` after each
    /// message (tests check invariants there). Idle time refills the zero pool.
    pub fn serve(mut self, hook: &mut dyn FnMut(&Server, &Event)) -> ! {
        let mut mrs = [0; 4];
        // The message words, reused: only the message's length of them is
        // read, so the array is never cleared (copying or clearing a
        // message-sized array per message costs more than the rest of a
        // fault's handling).
        let mut words = [0; MAX_WORDS];
        let (mut info, mut badge) = rt::recv_with_mrs(self.ep, &mut mrs);
        loop {
            // The hook sees the outcome where it was built, and the reply
            // goes from there (no copy of its words).
            let outcome = match vm_fault_in_registers(info, &mrs) {
                // The common message: a page fault, whole in MR0–MR3.
                Some(v) => self.dispatch_vm_fault(badge.0, v),
                None => {
                    let n = gather(info, &mrs, &mut words);
                    self.dispatch(badge.0, info, &words[..n])
                }
            };
            hook(
                &self,
                &Event {
                    badge: badge.0,
                    label: info.label(),
                    outcome: &outcome,
                },
            );
            let reply = match &outcome {
                Outcome::Reply { label, words, len } => Some((*label, &words[..*len])),
                Outcome::Restart => Some((0, &[][..])),
                Outcome::NoReply => None,
            };
            match reply {
                Some((label, words)) => {
                    let tag = scatter(label, words, &mut mrs);
                    if self.phys.zero_pool_wants() {
                        rt::set_mrs(&mrs[..tag.length().min(4)]);
                        rt::reply(tag);
                        (info, badge) = self.idle(&mut mrs);
                    } else {
                        (info, badge) = rt::reply_recv_with_mrs(self.ep, tag, &mut mrs);
                    }
                }
                None => {
                    (info, badge) = if self.phys.zero_pool_wants() {
                        self.idle(&mut mrs)
                    } else {
                        rt::recv_with_mrs(self.ep, &mut mrs)
                    };
                }
            }
        }
    }

    /// Polls for a message, zeroing frames for the pool between polls while
    /// none comes; then waits.
    fn idle(&mut self, mrs: &mut [Word; 4]) -> (MessageInfo, Badge) {
        loop {
            let (info, badge) = rt::nb_recv(self.ep);
            if badge.0 != 0 || info.word() != 0 {
                rt::get_mrs(&mut mrs[..]);
                return (info, badge);
            }
            if !self.phys.zero_pool_wants() || self.phys.refill_zero_pool(32) == 0 {
                return rt::recv_with_mrs(self.ep, mrs);
            }
        }
    }

    /// Handles one message from `badge` (label and message words): the
    /// whole server short of the IPC. Tests call it directly too.
    pub fn dispatch(&mut self, badge: u64, info: MessageInfo, words: &[Word]) -> Outcome {
        let label = info.label();
        let outcome = if label == LABEL_REQUEST {
            self.stats.requests += 1;
            match protocol::decode::<Request>(words) {
                Ok(req) => {
                    let r = self.request(badge, req);
                    self.reply(r)
                }
                Err(_) => {
                    self.stats.malformed += 1;
                    Outcome::label(LABEL_MALFORMED)
                }
            }
        } else if is_fault_label(label)
            && let Some(&ci) = self.by_badge.get(&badge)
        {
            match Fault::from_message(label, words) {
                Some(f) => self.fault(ci, f),
                None => {
                    self.stats.malformed += 1;
                    Outcome::label(LABEL_MALFORMED)
                }
            }
        } else {
            self.stats.malformed += 1;
            Outcome::label(LABEL_MALFORMED)
        };
        self.after_message(badge);
        outcome
    }

    /// [`Server::dispatch`] of a VM fault message (label `VmFault`, its
    /// four words), without decoding it from words: the same outcome.
    pub fn dispatch_vm_fault(&mut self, badge: u64, v: VmFault) -> Outcome {
        let outcome = match self.by_badge.get(&badge) {
            Some(&ci) => self.vm_fault(ci, v),
            None => {
                self.stats.malformed += 1;
                Outcome::label(LABEL_MALFORMED)
            }
        };
        self.after_message(badge);
        outcome
    }

    /// What follows every message: clients found gone are reclaimed, and
    /// in self-checking mode the server's invariants are checked.
    fn after_message(&mut self, badge: u64) {
        while let Some(ci) = self.gone.pop() {
            self.reclaim(ci, "its address space is gone");
        }
        if self.config.self_check
            && let Err(e) = self.check()
        {
            rt::println!("mm: SELF-CHECK FAILED after a message from {badge:#x}: {e}");
            panic!("mm self-check failed: {e}");
        }
    }

    /// The reply for a request's result.
    fn reply(&mut self, r: Result<Reply, Fail>) -> Outcome {
        let r = match r {
            Ok(reply) => Ok(reply),
            Err(Fail::Mm(e)) => Err(e),
            Err(Fail::Gone) => Err(MmError::Fault),
            Err(Fail::Bug(what, e)) => {
                self.bug(what, e);
                Err(MmError::NoMemory)
            }
        };
        match r {
            Ok(reply) => {
                let mut words = [0; MAX_WORDS];
                let len = protocol::encode(&reply, &mut words);
                Outcome::Reply {
                    label: LABEL_OK,
                    words,
                    len,
                }
            }
            Err(e) => {
                self.stats.refused += 1;
                let mut words = [0; MAX_WORDS];
                words[0] = e.code();
                Outcome::Reply {
                    label: LABEL_ERROR,
                    words,
                    len: 1,
                }
            }
        }
    }

    /// Reports a kernel refusal the server did not expect.
    pub(crate) fn bug(&mut self, what: &str, e: abi::ErrorReply) {
        self.stats.bugs += 1;
        rt::println!("mm: internal error: {what}: {e:?}");
    }

    /// The index of the live client with `badge`.
    pub(crate) fn client(&self, badge: u64) -> Result<u32, MmError> {
        match self.by_badge.get(&badge) {
            Some(&i) if self.clients[i as usize].alive => Ok(i),
            Some(_) => Err(MmError::PermissionDenied),
            None => Err(MmError::PermissionDenied),
        }
    }

    /// The live client a request names by badge (`NoSuchHandle` if none).
    pub(crate) fn target(&self, badge: u64) -> Result<u32, MmError> {
        match self.by_badge.get(&badge) {
            Some(&i) if self.clients[i as usize].alive => Ok(i),
            _ => Err(MmError::NoSuchHandle),
        }
    }

    /// Handles a decoded request.
    fn request(&mut self, badge: u64, req: Request) -> Result<Reply, Fail> {
        if self.config.supervisor == Some(badge) && badge != 0 {
            // The supervisor is no client: it reports deaths and may read
            // the global statistics, nothing else.
            return match req {
                Request::ClientDied { client } => self.client_died(client),
                Request::ZoneStats => Ok(self.zone_stats()),
                Request::MemInfo => Ok(self.mem_info()),
                _ => Err(MmError::PermissionDenied.into()),
            };
        }
        if let Request::ClientDied { .. } = req {
            return Err(MmError::PermissionDenied.into());
        }
        let ci = self.client(badge)?;
        use Request as R;
        match req {
            R::Map {
                addr,
                len,
                prot,
                flags,
                align,
            } => self.map(ci, addr, len, prot, flags, align),
            R::Discard { addr, len } => self.discard(ci, addr, len),
            R::Unmap { addr, len } => self.unmap(ci, addr, len),
            R::Protect { addr, len, prot } => self.protect(ci, addr, len, prot),
            R::Populate { addr, len } => self.populate(ci, addr, len),
            R::AllocPages { order, gfp } => self.alloc_pages(ci, order, gfp),
            R::FreePages { addr, order } => self.free_pages(ci, addr, order),
            R::AllocPagesExact { count, gfp } => self.alloc_pages_exact(ci, count, gfp),
            R::FreePagesExact { addr, count } => self.free_pages_exact(ci, addr, count),
            R::AllocContigRange { start_pfn, end_pfn } => {
                self.alloc_contig_range(ci, start_pfn, end_pfn)
            }
            R::FreeContigRange { addr, count } => self.free_contig_range(ci, addr, count),
            R::Vmalloc { size, kind } => self.vmalloc(ci, size, kind),
            R::Vfree { addr } => self.vfree(ci, addr),
            R::Vmap { pfns, prot } => self.vmap(ci, pfns.as_slice(), prot, false),
            R::Vunmap { addr } => self.vunmap(ci, addr, None, false),
            R::VmMapRam { pfns } => {
                self.vmap(ci, pfns.as_slice(), libmm::protocol::Prot::READ_WRITE, true)
            }
            R::VmUnmapRam { addr, count } => self.vunmap(ci, addr, Some(count as u64), true),
            R::VmInsertPage { addr, pfn } => self.insert_pfn(ci, addr, pfn, None, true),
            R::VmInsertPfn { addr, pfn } => self.insert_pfn(ci, addr, pfn, None, false),
            R::VmInsertPfnProt { addr, pfn, prot } => {
                self.insert_pfn(ci, addr, pfn, Some(prot), false)
            }
            R::RemapPfnRange {
                addr,
                pfn,
                size,
                prot,
            } => self.remap_pfn_range(ci, addr, pfn, size, prot),
            R::VmIomapMemory { addr, phys, len } => self.vm_iomap_memory(ci, addr, phys, len),
            R::ZapVmaPtes { addr, len } => self.zap_vma_ptes(ci, addr, len),
            R::UnmapMappingRange {
                handle,
                first,
                count,
            } => self.unmap_mapping_range(ci, handle, first, count),
            R::FollowPfn { addr } => self.follow_pfn(ci, addr),
            R::ShmCreate { size } => self.shm_create(ci, size),
            R::ShmGrant { handle, to, prot } => self.shm_grant(ci, handle, to, prot),
            R::ShmMap { handle, addr, prot } => self.shm_map(ci, handle, addr, prot),
            R::ShmDestroy { handle } => self.shm_destroy(ci, handle),
            R::CopyToUser {
                client,
                dst,
                src,
                len,
            } => self.copy_to_user(ci, client, dst, src, len),
            R::CopyFromUser {
                client,
                dst,
                src,
                len,
            } => self.copy_from_user(ci, client, dst, src, len),
            R::ClearUser { client, addr, len } => self.clear_user(ci, client, addr, len),
            R::MemdupUser { client, src, len } => self.memdup_user(ci, client, src, len),
            R::GetUserPagesFast { addr, count, write } => self.gup(ci, addr, count, write),
            R::PutUserPages { addr, count } => self.put_user_pages(ci, addr, count),
            R::DmaAllocCoherent { size, align } => self.dma_alloc(ci, size, align),
            R::DmaFreeCoherent { addr, size } => self.dma_free(ci, addr, size),
            R::ZoneStats => Ok(self.zone_stats()),
            R::ClientStats => Ok(self.client_stats(ci)),
            R::MemInfo => Ok(self.mem_info()),
            R::Exit => {
                self.reclaim(ci, "exit");
                Ok(Reply::Done)
            }
            R::ClientDied { .. } => Err(MmError::PermissionDenied.into()),
        }
    }

    // ----- the census and the self-check --------------------------------------

    /// Counts every frame by class (see [`Census`]).
    pub fn census(&self) -> Census {
        let owners = self.phys.owner_census();
        let get = |o: Owner| owners.get(&o).copied().unwrap_or(0);
        let mut clients = 0;
        let mut shared = 0;
        for (o, n) in &owners {
            match o {
                Owner::Anon(_) | Owner::Block(_) | Owner::Vmalloc(_) | Owner::Dma(_) => {
                    clients += n
                }
                Owner::Shm(_) => shared += n,
                _ => {}
            }
        }
        let mut zero_pool = 0;
        let mut total = 0;
        for z in ZoneType::ALL {
            let s = self.phys.alloc.zone_stats(z);
            zero_pool += s.zeroed;
            total += s.present;
        }
        Census {
            mem: MemInfo {
                total,
                free: get(Owner::Free) - zero_pool.min(get(Owner::Free)),
                zero_pool,
                clients,
                shared,
                page_tables: get(Owner::PageTables),
                reserved: get(Owner::Objects),
            },
            charged: self
                .clients
                .iter()
                .filter(|c| c.alive)
                .map(|c| (c.badge, c.charged))
                .collect(),
            extra_caps: self.phys.extra_used(),
            client_tables: self.clients.iter().map(|c| c.tables.len() as u64).sum(),
        }
    }

    /// Checks every invariant the server keeps (O(frames + mappings)):
    /// the allocator's own invariants; frame conservation (owners agree with
    /// the allocator's free/allocated/reserved counts and add up to the
    /// total); each client's charge equals the frames it holds and stays
    /// within its quota; every page-map entry agrees with its frame's owner,
    /// areas, shared objects and the reverse map; primary and extra caps are
    /// each used by exactly one mapping; page tables are all accounted for.
    pub fn check(&self) -> Result<Census, String> {
        self.phys
            .alloc
            .check_invariants()
            .map_err(|e| format!("frame allocator: {e}"))?;
        self.phys.check()?;
        self.rmap
            .check_invariants()
            .map_err(|e| format!("reverse map: {e}"))?;
        let census = self.census();
        if !census.conserved() {
            return Err(format!("frames not conserved: {census:?}"));
        }
        let mut free = 0;
        let mut allocated = 0;
        let mut reserved = 0;
        for z in ZoneType::ALL {
            let s = self.phys.alloc.zone_stats(z);
            free += s.free;
            allocated += s.allocated;
            reserved += s.reserved;
        }
        let m = &census.mem;
        if free != m.free + m.zero_pool
            || reserved != m.reserved
            || allocated != m.clients + m.shared + m.page_tables
        {
            return Err(format!(
                "owners disagree with the allocator: free {free}, allocated {allocated}, reserved {reserved}; {census:?}"
            ));
        }
        let owners = &self.phys.owner;
        let lay = &self.phys.lay;
        let owner_of = |pfn: u64| lay.index(pfn).map(|k| owners[k as usize]);
        let mut held: BTreeMap<u32, u64> = BTreeMap::new();
        for o in owners {
            if let Owner::Anon(c) | Owner::Block(c) | Owner::Vmalloc(c) | Owner::Dma(c) = o {
                *held.entry(*c).or_insert(0) += 1;
            }
        }
        for s in self.shm.values() {
            if let Some(c) = s.creator {
                *held.entry(c).or_insert(0) += s.pages.len() as u64;
            }
            for &p in &s.pages {
                if owner_of(p) != Some(Owner::Shm(s.index)) {
                    return Err(format!(
                        "shared object {}: frame {p:#x} not its own",
                        s.index
                    ));
                }
            }
        }
        let mut primary = 0u64;
        let mut dev_primary = 0u64;
        let mut extra = 0u64;
        let mut borrowed = 0usize;
        let mut own_frames: BTreeMap<u64, ()> = BTreeMap::new();
        for (i, c) in self.clients.iter().enumerate() {
            let i = i as u32;
            let h = held.get(&i).copied().unwrap_or(0);
            if c.charged != h {
                return Err(format!(
                    "client {:#x}: charged {} but holds {h} frames",
                    c.badge, c.charged
                ));
            }
            if c.charged > c.quota {
                return Err(format!("client {:#x}: over its quota", c.badge));
            }
            if !c.alive
                && (c.pages.pages() != 0
                    || c.tables.len() != 0
                    || !c.areas.is_empty()
                    || !c.pins.is_empty()
                    || !c.regions.is_empty())
            {
                return Err(format!("dead client {:#x} still holds something", c.badge));
            }
            c.regions
                .check_invariants()
                .map_err(|e| format!("client {:#x} regions: {e}", c.badge))?;
            let mut pages = 0;
            for e in c.pages.all() {
                let (va, p, block) = match e {
                    Entry::Page(va, p) => (va, p, false),
                    Entry::Block(va, p) => (va, p, true),
                };
                pages += if block { 512 } else { 1 };
                if c.regions.find(mm_core::addr::VirtAddr(va)).is_none() {
                    return Err(format!(
                        "client {:#x}: page {va:#x} outside its regions",
                        c.badge
                    ));
                }
                match p.tag {
                    0 if p.hold() == Hold::Dev => dev_primary += 1,
                    0 => primary += 1,
                    _ => extra += 1,
                }
                let o = owner_of(p.pfn());
                let ok = match p.hold() {
                    Hold::Own => {
                        if own_frames.insert(p.pfn(), ()).is_some() {
                            return Err(format!("frame {:#x} mapped privately twice", p.pfn()));
                        }
                        o == Some(Owner::Anon(i))
                    }
                    Hold::Area | Hold::Borrow => {
                        if p.hold() == Hold::Borrow {
                            borrowed += 1;
                        }
                        matches!(o, Some(Owner::Block(x) | Owner::Vmalloc(x) | Owner::Dma(x)) if x == i)
                    }
                    Hold::Shm => {
                        borrowed += 1;
                        matches!(o, Some(Owner::Shm(_)))
                    }
                    Hold::Dev => self.phys.dev_index(p.pfn()).is_some(),
                };
                if !ok {
                    return Err(format!(
                        "client {:#x}: page {va:#x} ({:?}) maps frame {:#x} owned by {o:?}",
                        c.badge,
                        p.hold(),
                        p.pfn()
                    ));
                }
                let place = mm_core::vm::Place {
                    client: mm_core::vm::ClientId(c.badge),
                    va: mm_core::addr::VirtAddr(va),
                };
                let in_rmap = self.rmap.translate(place).is_some();
                if in_rmap != matches!(p.hold(), Hold::Shm | Hold::Borrow) {
                    return Err(format!(
                        "client {:#x}: page {va:#x} reverse map mismatch",
                        c.badge
                    ));
                }
            }
            if pages != c.pages.pages() {
                return Err(format!("client {:#x}: page count mismatch", c.badge));
            }
            for &va in c.pins.keys() {
                if c.pages.get(va).is_none() {
                    return Err(format!(
                        "client {:#x}: pinned page {va:#x} not present",
                        c.badge
                    ));
                }
            }
        }
        if self.rmap.len() != borrowed {
            return Err(format!(
                "reverse map holds {} mappings, page maps {borrowed}",
                self.rmap.len()
            ));
        }
        let (busy, dev_busy) = self.phys.busy_counts();
        if busy != primary || dev_busy != dev_primary || self.phys.extra_used() != extra {
            return Err(format!(
                "caps: {busy} primary RAM caps busy for {primary} mappings, {dev_busy} device for {dev_primary}, {} extra for {extra}",
                self.phys.extra_used()
            ));
        }
        let installed: u64 = census.client_tables + self.phys.window_tables();
        if self.phys.counters.page_tables != installed + self.phys.pt_free_count()
            && self.phys.counters.page_tables != 0
        {
            return Err(format!(
                "page tables: {} made, {installed} installed, {} free",
                self.phys.counters.page_tables,
                self.phys.pt_free_count()
            ));
        }
        if self.stats.bugs != 0 {
            return Err(format!("{} internal errors", self.stats.bugs));
        }
        Ok(census)
    }
}

/// Puts the message words of a received message in `words` (MR0–MR3 from
/// registers, the rest from the IPC buffer); returns how many.
fn gather(info: MessageInfo, mrs: &[Word; 4], words: &mut [Word; MAX_WORDS]) -> usize {
    let n = info.length().min(MAX_WORDS);
    words[..n.min(4)].copy_from_slice(&mrs[..n.min(4)]);
    if n > 4 {
        rt::get_mrs(&mut words[..n]);
        words[..4].copy_from_slice(mrs);
    }
    n
}

/// The VM fault a message carries whole in its registers (the kernel's
/// fault message: label `VmFault`, four words), if it is one.
fn vm_fault_in_registers(info: MessageInfo, mrs: &[Word; 4]) -> Option<VmFault> {
    (info.label() == FaultLabel::VmFault as Word && info.length() == 4).then(|| VmFault {
        ip: mrs[0],
        addr: mrs[1],
        instruction: mrs[2] != 0,
        fsr: mrs[3],
    })
}

/// Puts a reply's words in MR0–MR3 and the IPC buffer; returns its tag.
fn scatter(label: Word, words: &[Word], mrs: &mut [Word; 4]) -> MessageInfo {
    let n = words.len();
    mrs[..n.min(4)].copy_from_slice(&words[..n.min(4)]);
    for (i, &w) in words.iter().enumerate().skip(4) {
        rt::set_mr(i, w);
    }
    MessageInfo::new(label, 0, 0, n)
}

/// Whether a fault label is one of seL4's.
pub(crate) fn is_fault_label(label: Word) -> bool {
    [
        FaultLabel::CapFault,
        FaultLabel::UnknownSyscall,
        FaultLabel::UserException,
        FaultLabel::VmFault,
    ]
    .iter()
    .any(|l| *l as Word == label)
}

/// FNV-1a over words: a stable fingerprint without `std`.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Server {
    /// A fingerprint of everything a client can observe of its own state:
    /// whether it is served, its regions, what is mapped where (frame, how
    /// held, rights), its areas, pins, charge and quota. Equal before and
    /// after a request means the request changed nothing the client can see
    /// (tests use it to check that refused requests change nothing). `None`
    /// for an unknown badge.
    pub fn client_fingerprint(&self, badge: u64) -> Option<u64> {
        let c = &self.clients[*self.by_badge.get(&badge)? as usize];
        let mut h = Fnv::new();
        h.word(c.alive as u64);
        h.word(c.charged);
        h.word(c.quota);
        for r in c.regions.iter() {
            h.word(r.start.0);
            h.word(r.len);
            h.word(r.prot.bits() as u64);
            h.word(r.flags.0 as u64);
            let kind = match r.kind {
                mm_core::vm::RegionKind::Anonymous => [1, 0],
                mm_core::vm::RegionKind::FileBacked { object, offset } => {
                    [2 ^ object.0 << 8, offset]
                }
                mm_core::vm::RegionKind::Device { phys } => [3, phys.0],
                mm_core::vm::RegionKind::DmaCoherent { bus } => [4, bus.0],
                mm_core::vm::RegionKind::Shared { id, offset } => [5 ^ id.0 << 8, offset],
                mm_core::vm::RegionKind::Guard => [6, 0],
            };
            h.word(kind[0]);
            h.word(kind[1]);
        }
        for e in c.pages.all() {
            let (va, p, block) = match e {
                Entry::Page(va, p) => (va, p, 0),
                Entry::Block(va, p) => (va, p, 1),
            };
            h.word(va);
            h.word(block);
            h.word(p.pfn());
            h.word(p.hold() as u64);
            h.word(p.mapped() as u64 | (p.writable() as u64) << 1 | (p.exec() as u64) << 2);
        }
        for (va, a) in &c.areas {
            h.word(*va);
            h.word(a.pages);
            h.word(a.pfn);
        }
        for (va, n) in &c.pins {
            h.word(*va);
            h.word(*n as u64);
        }
        Some(h.0)
    }

    /// A fingerprint of the contents of every RAM page mapped in a client,
    /// read through the window (tests: another client's requests must never
    /// change it).
    pub fn client_memory_fingerprint(&self, badge: u64) -> Option<u64> {
        let c = &self.clients[*self.by_badge.get(&badge)? as usize];
        let mut h = Fnv::new();
        let mut buf = alloc::vec![0u8; 4096];
        for e in c.pages.all() {
            let (va, first, n) = match e {
                Entry::Page(va, p) => (va, p.pfn(), 1),
                Entry::Block(va, p) => (va, p.pfn(), 512),
            };
            for i in 0..n {
                if !self.phys.is_ram(first + i) {
                    continue;
                }
                if self.phys.read(first + i, 0, &mut buf).is_err() {
                    return None;
                }
                h.word(va + i * 4096);
                for chunk in buf.chunks(8) {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(chunk);
                    h.word(u64::from_le_bytes(w));
                }
            }
        }
        Some(h.0)
    }

    /// A fingerprint of the shared objects: handle, creator, frames, grants.
    pub fn shm_fingerprint(&self) -> u64 {
        let mut h = Fnv::new();
        for (handle, s) in &self.shm {
            h.word(*handle);
            h.word(s.creator.map_or(u64::MAX, |c| c as u64));
            h.word(s.destroyed as u64);
            for &p in &s.pages {
                h.word(p);
            }
            for (c, g) in &s.grants {
                h.word(*c as u64);
                h.word(*g as u64);
            }
        }
        h.0
    }
}
