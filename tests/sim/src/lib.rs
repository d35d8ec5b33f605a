//! Scenarios of the MM server in the simulator: building a machine with the server, clients and a supervisor, and talking to the server.
//!
//! [`Scenario`] builds a simulated machine: the MM server (all free RAM,
//! the MMIO regions asked for, each client's VSpace and TCB caps), clients
//! (each a badged endpoint cap to the server, which is also its fault
//! handler) and optionally a supervisor that tells the server of every
//! client's death (`ClientDied`). The server runs with a hook that checks
//! every invariant and frame conservation after each message and records
//! the census in a [`Log`]; a violation stops the server with a panic,
//! which fails the run. [`Mm`] is a client's minimal request API.

use std::sync::{Arc, Mutex};

use abi::{Badge, CPtr, CapRights, MessageInfo, Word};
use libmm::protocol::{
    self, ClientId, Gfp, LABEL_ERROR, LABEL_MALFORMED, LABEL_OK, LABEL_REQUEST, List, MAX_WORDS,
    MapFlags, MmError, Prot, Reply, Request, VmallocKind,
};
use mm_server::{Census, ClientSpec, Grants, Server, ServerConfig};
use sim::{NotificationHandle, Pid, RunReport, Sim, SimConfig, SimError};

/// The supervisor's badge.
pub const SUPERVISOR: u64 = 0xffff;

/// The badge of the `i`th client.
pub fn badge(i: usize) -> u64 {
    0x100 + i as u64
}

/// What the server's hook recorded.
#[derive(Default, Debug)]
pub struct Log {
    /// The census after start-up and after every message.
    pub census: Vec<Census>,
    /// (badge, label, reply label) of every message.
    pub events: Vec<(u64, Word, Option<Word>)>,
    /// The server's counters after the last message.
    pub stats: mm_server::ServerStats,
    /// The physical-memory counters after the last message.
    pub phys: mm_server::PhysCounters,
}

type Body = Box<dyn FnOnce(Mm) + Send + 'static>;

struct ClientDef {
    name: String,
    grants: Grants,
    quota: u64,
    body: Body,
    daemon: bool,
}

/// A machine to build: see the crate docs. By default: 64 MiB of RAM, the
/// FIFO schedule, a supervisor, the full check after every message.
pub struct Scenario {
    sim: SimConfig,
    config: ServerConfig,
    clients: Vec<ClientDef>,
    devices: Vec<(u64, u64)>,
    supervised: bool,
    check_every: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario::new()
    }
}

impl Scenario {
    /// 64 MiB of RAM, FIFO schedule, no clients yet.
    pub fn new() -> Scenario {
        Scenario {
            sim: SimConfig {
                ram_size: 64 << 20,
                boot_reserve: 4 << 20,
                ..SimConfig::default()
            },
            config: ServerConfig {
                verbose: true,
                ..ServerConfig::default()
            },
            clients: Vec::new(),
            devices: Vec::new(),
            supervised: true,
            check_every: true,
        }
    }

    /// RAM size in bytes.
    pub fn ram(mut self, bytes: u64) -> Scenario {
        self.sim.ram_size = bytes;
        self
    }

    /// A seeded schedule (random interleavings, preemption).
    pub fn seeded(mut self, seed: u64) -> Scenario {
        self.sim = self.sim.seeded(seed);
        self.sim.trace = false;
        self
    }

    /// Changes the server's configuration.
    pub fn config(mut self, f: impl FnOnce(&mut ServerConfig)) -> Scenario {
        f(&mut self.config);
        self
    }

    /// Skips the full check after every message (for big machines and benchmarks).
    pub fn unchecked(mut self) -> Scenario {
        self.check_every = false;
        self
    }

    /// Adds a client (badge [`badge`]`(i)` for the `i`th) running `body`.
    pub fn client(
        mut self,
        name: &str,
        grants: Grants,
        quota: u64,
        body: impl FnOnce(Mm) + Send + 'static,
    ) -> Scenario {
        self.clients.push(ClientDef {
            name: name.into(),
            grants,
            quota,
            body: Box::new(body),
            daemon: false,
        });
        self
    }

    /// Adds a client the run may end without (one the server stops for a
    /// fatal fault, or one that waits forever).
    pub fn daemon_client(
        mut self,
        name: &str,
        grants: Grants,
        quota: u64,
        body: impl FnOnce(Mm) + Send + 'static,
    ) -> Scenario {
        self.clients.push(ClientDef {
            name: name.into(),
            grants,
            quota,
            body: Box::new(body),
            daemon: true,
        });
        self
    }

    /// An MMIO region (plain memory) the server gets as device Untyped.
    pub fn device(mut self, base: u64, size: u64) -> Scenario {
        self.devices.push((base, size));
        self
    }

    /// No supervisor (by default one sends `ClientDied` for every client
    /// that ends).
    pub fn unsupervised(mut self) -> Scenario {
        self.supervised = false;
        self
    }

    /// Builds the machine (nothing runs until [`World::run`]).
    pub fn build(self) -> World {
        let sim = Sim::new(self.sim);
        let ep = sim.endpoint().expect("endpoint");
        let log = Arc::new(Mutex::new(Log::default()));
        let mut clients = Vec::new();
        let mut config = self.config;
        let ntfn = if self.supervised {
            Some(sim.notification().expect("notification"))
        } else {
            None
        };
        for (i, c) in self.clients.into_iter().enumerate() {
            let b = badge(i);
            let mut p = sim
                .process(&c.name)
                .endpoint("mm", &ep, Badge(b), CapRights::ALL)
                .fault_handler(&ep, Badge(b));
            if c.daemon {
                p = p.daemon();
            }
            let body = c.body;
            let pid = p
                .spawn(move |boot| {
                    let ep = CPtr(boot.find("mm").expect("mm cap").slot);
                    body(Mm { ep, badge: b })
                })
                .expect("spawn client");
            config.clients.push(ClientSpec {
                grants: c.grants,
                ..ClientSpec::new(b, pid.0 as u64, c.quota)
            });
            if let Some(n) = &ntfn {
                sim.watch_exit(pid, n, Badge(1 << i)).expect("watch");
            }
            clients.push((pid, b));
        }
        if let Some(n) = &ntfn {
            config.supervisor = Some(SUPERVISOR);
            let badges: Vec<u64> = clients.iter().map(|c| c.1).collect();
            sim.process("supervisor")
                .endpoint("mm", &ep, Badge(SUPERVISOR), CapRights::ALL)
                .notification("deaths", n, Badge(0), CapRights::ALL)
                .daemon()
                .spawn(move |boot| {
                    let mm = Mm {
                        ep: CPtr(boot.find("mm").expect("mm").slot),
                        badge: SUPERVISOR,
                    };
                    let deaths = CPtr(boot.find("deaths").expect("deaths").slot);
                    loop {
                        let word = rt::wait(deaths).0;
                        for (i, &b) in badges.iter().enumerate() {
                            if word & (1 << i) != 0 {
                                let r = mm.call(&Request::ClientDied { client: b });
                                assert_eq!(r, Answer::Ok(Reply::Done), "ClientDied({b:#x})");
                            }
                        }
                    }
                })
                .expect("spawn supervisor");
        }
        let mut mmios = Vec::new();
        for &(base, size) in &self.devices {
            mmios.push(sim.mmio(base, size, None).expect("mmio"));
        }
        let mut sp = sim
            .process("mm")
            .endpoint("mm", &ep, Badge(0), CapRights::ALL)
            .all_ram("ram")
            .daemon();
        for (pid, _) in &clients {
            sp = sp.process_caps(*pid);
        }
        for m in &mmios {
            sp = sp.mmio("dev", m);
        }
        let l = log.clone();
        let check = self.check_every;
        let server = sp
            .spawn(move |boot| {
                let server = match Server::start(boot, config) {
                    Ok(s) => s,
                    Err(e) => panic!("server start: {e:?}"),
                };
                let first = match server.check() {
                    Ok(c) => c,
                    Err(e) => panic!("after start: {e}"),
                };
                l.lock().unwrap().census.push(first);
                server.serve(&mut |s, ev| {
                    let mut log = l.lock().unwrap();
                    log.events
                        .push((ev.badge, ev.label, ev.outcome.reply_label()));
                    log.stats = s.stats();
                    log.phys = s.phys_counters();
                    if check {
                        match s.check() {
                            Ok(c) => log.census.push(c),
                            Err(e) => {
                                drop(log);
                                panic!(
                                    "after a message from {:#x} (label {:#x}): {e}",
                                    ev.badge, ev.label
                                )
                            }
                        }
                    } else {
                        log.census.push(s.census());
                    }
                })
            })
            .expect("spawn server");
        World {
            sim,
            log,
            clients,
            server,
            _ntfn: ntfn,
        }
    }
}

/// A built machine.
pub struct World {
    /// The simulator.
    pub sim: Sim,
    /// What the server's hook recorded.
    pub log: Arc<Mutex<Log>>,
    /// Each client's pid and badge, in the order added.
    pub clients: Vec<(Pid, u64)>,
    /// The server's pid.
    pub server: Pid,
    _ntfn: Option<NotificationHandle>,
}

impl World {
    /// Runs the machine until nothing can run.
    pub fn run(&self) -> Result<RunReport, SimError> {
        self.sim.run()
    }

    /// Runs and panics with the error (naming the seed) if the run fails.
    pub fn run_ok(&self) -> RunReport {
        match self.sim.run() {
            Ok(r) => r,
            Err(e) => panic!("{e}\nserver console:\n{}", self.sim.console_of(self.server)),
        }
    }

    /// The census after start-up.
    pub fn first(&self) -> Census {
        self.log
            .lock()
            .unwrap()
            .census
            .first()
            .cloned()
            .unwrap_or_default()
    }

    /// The census after the last message.
    pub fn last(&self) -> Census {
        self.log
            .lock()
            .unwrap()
            .census
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// The server's counters after the last message.
    pub fn stats(&self) -> mm_server::ServerStats {
        self.log.lock().unwrap().stats
    }

    /// The physical-memory counters after the last message.
    pub fn phys_counters(&self) -> mm_server::PhysCounters {
        self.log.lock().unwrap().phys
    }

    /// The server's console.
    pub fn server_console(&self) -> String {
        self.sim.console_of(self.server)
    }

    /// Asserts that the last census shows nothing held by any client or
    /// shared object, and every frame not in page tables back free.
    pub fn assert_all_returned(&self) {
        let first = self.first();
        let last = self.last();
        assert!(last.conserved(), "{last:?}");
        assert_eq!(last.clients, 0, "client frames left: {last:?}");
        assert_eq!(last.shared, 0, "shared frames left: {last:?}");
        assert_eq!(last.extra_caps, 0, "extra caps left: {last:?}");
        assert_eq!(last.client_tables, 0, "client page tables left: {last:?}");
        assert_eq!(
            last.free + last.zero_pool + (last.page_tables - first.page_tables),
            first.free + first.zero_pool,
            "frames lost: {first:?} -> {last:?}"
        );
    }
}

/// A reply as a client sees it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Label 0 with a decodable reply.
    Ok(Reply),
    /// `LABEL_ERROR` with a known code.
    Err(MmError),
    /// `LABEL_MALFORMED`.
    Malformed,
    /// Anything else: the label and the words.
    Other(Word, Vec<Word>),
}

/// A client's handle on the MM server: its endpoint cap.
#[derive(Clone, Copy, Debug)]
pub struct Mm {
    /// The endpoint cap.
    pub ep: CPtr,
    /// The client's own badge (its id in requests).
    pub badge: u64,
}

/// Sends `label` with `words` on `ep` and returns the reply's label and words.
pub fn raw_call(ep: CPtr, label: Word, words: &[Word]) -> (MessageInfo, Vec<Word>) {
    let n = words.len().min(MAX_WORDS);
    let mut mrs = [0; 4];
    mrs[..n.min(4)].copy_from_slice(&words[..n.min(4)]);
    for (i, &w) in words.iter().enumerate().take(n).skip(4) {
        rt::set_mr(i, w);
    }
    let info = rt::call_with_mrs(ep, MessageInfo::new(label, 0, 0, n), &mut mrs);
    let len = info.length();
    let mut out = vec![0; len];
    out[..len.min(4)].copy_from_slice(&mrs[..len.min(4)]);
    for (i, o) in out.iter_mut().enumerate().skip(4) {
        *o = rt::get_mr(i);
    }
    (info, out)
}

impl Mm {
    /// Sends a request and returns the answer.
    pub fn call(&self, req: &Request) -> Answer {
        let mut words = [0; MAX_WORDS];
        let n = protocol::encode(req, &mut words);
        let (info, out) = raw_call(self.ep, LABEL_REQUEST, &words[..n]);
        match info.label() {
            LABEL_OK => match protocol::decode(&out) {
                Ok(r) => Answer::Ok(r),
                Err(_) => Answer::Other(LABEL_OK, out),
            },
            LABEL_ERROR => match out.first().and_then(|&c| MmError::from_code(c)) {
                Some(e) => Answer::Err(e),
                None => Answer::Other(LABEL_ERROR, out),
            },
            LABEL_MALFORMED => Answer::Malformed,
            l => Answer::Other(l, out),
        }
    }

    /// A request whose success carries no value.
    pub fn done(&self, req: &Request) -> Result<(), MmError> {
        match self.call(req) {
            Answer::Ok(Reply::Done) => Ok(()),
            Answer::Err(e) => Err(e),
            a => panic!("unexpected answer to {req:?}: {a:?}"),
        }
    }

    /// A request answered with `Mapped`.
    pub fn mapped(&self, req: &Request) -> Result<u64, MmError> {
        match self.call(req) {
            Answer::Ok(Reply::Mapped { addr }) => Ok(addr),
            Answer::Err(e) => Err(e),
            a => panic!("unexpected answer to {req:?}: {a:?}"),
        }
    }

    /// mmap.
    pub fn map(&self, addr: u64, len: u64, prot: Prot, flags: MapFlags) -> Result<u64, MmError> {
        self.mapped(&Request::Map {
            addr,
            len,
            prot,
            flags,
        })
    }

    /// munmap.
    pub fn unmap(&self, addr: u64, len: u64) -> Result<(), MmError> {
        self.done(&Request::Unmap { addr, len })
    }

    /// mprotect.
    pub fn protect(&self, addr: u64, len: u64, prot: Prot) -> Result<(), MmError> {
        self.done(&Request::Protect { addr, len, prot })
    }

    /// Populate.
    pub fn populate(&self, addr: u64, len: u64) -> Result<(), MmError> {
        self.done(&Request::Populate { addr, len })
    }

    /// A request answered with `Pages`.
    pub fn pages(&self, req: &Request) -> Result<(u64, u64), MmError> {
        match self.call(req) {
            Answer::Ok(Reply::Pages { addr, pfn }) => Ok((addr, pfn)),
            Answer::Err(e) => Err(e),
            a => panic!("unexpected answer to {req:?}: {a:?}"),
        }
    }

    /// alloc_pages.
    pub fn alloc_pages(&self, order: u8, gfp: Gfp) -> Result<(u64, u64), MmError> {
        self.pages(&Request::AllocPages { order, gfp })
    }

    /// vmalloc.
    pub fn vmalloc(&self, size: u64, kind: VmallocKind) -> Result<u64, MmError> {
        self.mapped(&Request::Vmalloc { size, kind })
    }

    /// vmap.
    pub fn vmap(&self, pfns: &[u64], prot: Prot) -> Result<u64, MmError> {
        self.mapped(&Request::Vmap {
            pfns: List::from_slice(pfns).expect("at most 90 frames"),
            prot,
        })
    }

    /// ShmCreate.
    pub fn shm_create(&self, size: u64) -> Result<u64, MmError> {
        match self.call(&Request::ShmCreate { size }) {
            Answer::Ok(Reply::Handle { handle }) => Ok(handle),
            Answer::Err(e) => Err(e),
            a => panic!("unexpected answer: {a:?}"),
        }
    }

    /// A copy request: the bytes not copied.
    pub fn not_copied(&self, req: &Request) -> Result<u64, MmError> {
        match self.call(req) {
            Answer::Ok(Reply::NotCopied { bytes }) => Ok(bytes),
            Answer::Err(e) => Err(e),
            a => panic!("unexpected answer to {req:?}: {a:?}"),
        }
    }

    /// copy_to_user.
    pub fn copy_to_user(
        &self,
        client: ClientId,
        dst: u64,
        src: u64,
        len: u64,
    ) -> Result<u64, MmError> {
        self.not_copied(&Request::CopyToUser {
            client,
            dst,
            src,
            len,
        })
    }

    /// copy_from_user.
    pub fn copy_from_user(
        &self,
        client: ClientId,
        dst: u64,
        src: u64,
        len: u64,
    ) -> Result<u64, MmError> {
        self.not_copied(&Request::CopyFromUser {
            client,
            dst,
            src,
            len,
        })
    }

    /// FollowPfn.
    pub fn follow_pfn(&self, addr: u64) -> Result<u64, MmError> {
        match self.call(&Request::FollowPfn { addr }) {
            Answer::Ok(Reply::Pfn { pfn }) => Ok(pfn),
            Answer::Err(e) => Err(e),
            a => panic!("unexpected answer: {a:?}"),
        }
    }

    /// The caller's accounting.
    pub fn stats(&self) -> libmm::protocol::ClientInfo {
        match self.call(&Request::ClientStats) {
            Answer::Ok(Reply::Client(c)) => c,
            a => panic!("unexpected answer: {a:?}"),
        }
    }

    /// Zone statistics.
    pub fn zones(&self) -> Vec<libmm::protocol::ZoneInfo> {
        match self.call(&Request::ZoneStats) {
            Answer::Ok(Reply::Zones { zones }) => zones.as_slice().to_vec(),
            a => panic!("unexpected answer: {a:?}"),
        }
    }

    /// Exit.
    pub fn exit(&self) {
        assert_eq!(self.done(&Request::Exit), Ok(()));
    }
}

/// Reads a `u64` of the calling process's memory (faults go to the server).
pub fn peek(va: u64) -> u64 {
    rt::mem::read_u64(va).expect("read")
}

/// Writes a `u64` of the calling process's memory.
pub fn poke(va: u64, v: u64) {
    rt::mem::write_u64(va, v).expect("write")
}

/// Read and write.
pub const RW: Prot = Prot::READ_WRITE;
/// Nothing.
pub const NOFLAGS: MapFlags = MapFlags(0);
/// A page.
pub const PAGE: u64 = 4096;
/// 2 MiB.
pub const MIB2: u64 = 2 << 20;
