//! Scenarios of the MM server in the simulator: building a machine with the server, clients and a supervisor, and talking to the server.
//!
//! [`Scenario`] builds a simulated machine: the MM server (all free RAM,
//! the MMIO regions asked for, each client's VSpace and TCB caps), clients
//! (each a badged endpoint cap to the server, which is also its fault
//! handler) and optionally a supervisor that tells the server of every
//! client's death (`ClientDied`). The server runs with a hook that checks
//! every invariant and frame conservation after each message and records
//! the census in a [`Log`]; a violation stops the server with a panic,
//! which fails the run.
//!
//! A client's body gets a [`Client`]: libmm's typed calls ([`libmm::Mm`]
//! over the real transport, `RtTransport`, so scenarios drive the real
//! server through the real client library) plus its badge. Hostile tests
//! that need exact words and labels use the raw helpers ([`raw_call`],
//! [`Client::call`]).

use std::sync::{Arc, Mutex};

use std::ops::Deref;

use abi::{Badge, CPtr, CapRights, MessageInfo, Word};
pub use libmm::Error;
use libmm::RtTransport;
use libmm::protocol::{
    self, LABEL_ERROR, LABEL_MALFORMED, LABEL_OK, LABEL_REQUEST, MAX_WORDS, MapFlags, MmError,
    Prot, Reply, Request,
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

type Body = Box<dyn FnOnce(Client) + Send + 'static>;

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
        body: impl FnOnce(Client) + Send + 'static,
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
    /// fatal fault, or one that waits forever: see [`park`]).
    pub fn daemon_client(
        mut self,
        name: &str,
        grants: Grants,
        quota: u64,
        body: impl FnOnce(Client) + Send + 'static,
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
        // Never signalled: where a daemon client parks for good.
        let parking = sim.notification().expect("notification");
        for (i, c) in self.clients.into_iter().enumerate() {
            let b = badge(i);
            let mut p = sim
                .process(&c.name)
                .endpoint("mm", &ep, Badge(b), CapRights::ALL)
                .notification(PARK, &parking, Badge(0), CapRights::ALL)
                .fault_handler(&ep, Badge(b));
            if c.daemon {
                p = p.daemon();
            }
            let body = c.body;
            let client_log = log.clone();
            let pid = p
                .spawn(move |boot| {
                    let mm = libmm::Mm::from_boot_info(boot).expect("mm cap");
                    body(Client {
                        mm,
                        badge: b,
                        log: client_log,
                    })
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
                    let mm = libmm::Mm::from_boot_info(boot).expect("mm");
                    let deaths = CPtr(boot.find("deaths").expect("deaths").slot);
                    loop {
                        let word = rt::wait(deaths).0;
                        for (i, &b) in badges.iter().enumerate() {
                            if word & (1 << i) != 0 {
                                assert_eq!(mm.client_died(b), Ok(()), "ClientDied({b:#x})");
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
            _parking: parking,
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
    _parking: NotificationHandle,
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

    /// How many syscalls the first client made (after a run).
    pub fn first_client_syscalls(&self) -> u64 {
        self.sim.syscall_count(self.clients[0].0)
    }

    /// Runs a machine whose first client was told to die at its `n`th
    /// syscall ([`Sim::kill_at_syscall`]), and checks that it did (`seed`
    /// names the run in failures) and that everything came back — the
    /// server having checked every invariant after each message.
    pub fn run_killed(&self, n: u64, seed: u64) {
        self.run_ok();
        assert_eq!(
            self.sim.status(self.clients[0].0),
            Some(sim::ExitReason::KilledAtSyscall(n)),
            "seed {seed}"
        );
        self.assert_all_returned();
    }

    /// Asserts that the last census shows nothing held by any client or
    /// shared object, and every frame not in page tables back free.
    pub fn assert_all_returned(&self) {
        let first = self.first();
        let last = self.last();
        assert!(last.conserved(), "{last:?}");
        assert_eq!(last.mem.clients, 0, "client frames left: {last:?}");
        assert_eq!(last.mem.shared, 0, "shared frames left: {last:?}");
        assert_eq!(last.extra_caps, 0, "extra caps left: {last:?}");
        assert_eq!(last.client_tables, 0, "client page tables left: {last:?}");
        assert_eq!(
            last.mem.free + last.mem.zero_pool + (last.mem.page_tables - first.mem.page_tables),
            first.mem.free + first.mem.zero_pool,
            "frames lost: {first:?} -> {last:?}"
        );
    }
}

/// A reply as a client sees it, from the raw words and label.
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

/// A client's connection to the MM server: libmm's typed calls (through
/// `Deref`) over the real transport, its badge, and a view of the server's
/// log (to count the requests it made).
#[derive(Clone, Debug)]
pub struct Client {
    /// libmm's connection.
    pub mm: libmm::Mm<RtTransport>,
    /// The client's own badge (its id in requests).
    pub badge: u64,
    log: Arc<Mutex<Log>>,
}

impl Deref for Client {
    type Target = libmm::Mm<RtTransport>;
    fn deref(&self) -> &Self::Target {
        &self.mm
    }
}

impl Client {
    /// The endpoint cap to the server.
    pub fn ep(&self) -> CPtr {
        self.mm.transport().endpoint()
    }

    /// Sends a request with the raw IPC helpers (not libmm's transport)
    /// and returns the answer exactly as the words and label say.
    pub fn call(&self, req: &Request) -> Answer {
        let mut words = [0; MAX_WORDS];
        let n = protocol::encode(req, &mut words);
        let (info, out) = raw_call(self.ep(), LABEL_REQUEST, &words[..n]);
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

    /// How many requests (not faults) from this client the server has
    /// handled so far: a client counts its own IPC with it. (The server
    /// logs a message before it replies, so a call that returned is
    /// counted.)
    pub fn requests_made(&self) -> usize {
        let log = self.log.lock().expect("log");
        log.events
            .iter()
            .filter(|e| e.0 == self.badge && e.1 == LABEL_REQUEST)
            .count()
    }

    /// The caller's resident pages (its accounting, which must be there).
    pub fn resident(&self) -> u64 {
        self.mm.client_stats().expect("client stats").resident_pages
    }
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

/// The syscall at which to kill a client for `seed`, among the `total` it
/// makes when left alone: spread over the whole run as seeds go.
pub fn kill_point(seed: u64, total: u64) -> u64 {
    1 + seed.wrapping_mul(7919).wrapping_add(13) % total.max(1)
}

/// What a refused request returns: `Err(Error::Mm(e))`.
pub fn refused<T>(e: MmError) -> Result<T, Error> {
    Err(Error::Mm(e))
}

/// The refusal of a call that must be refused (for calls returning RAII
/// handles, which cannot be compared); panics if it succeeded or the
/// transport failed.
pub fn refusal<T>(r: Result<T, Error>) -> MmError {
    match r {
        Err(Error::Mm(e)) => e,
        Err(e) => panic!("the transport failed: {e}"),
        Ok(_) => panic!("expected a refusal, got success"),
    }
}

/// The name of the notification every client holds and no one signals.
pub const PARK: &str = "park";

/// Waits forever (a daemon client keeping what it holds to the end of the
/// run, so the harness can inspect it afterwards).
pub fn park() -> ! {
    let ntfn = CPtr(rt::boot_info().find(PARK).expect("park cap").slot);
    loop {
        rt::wait(ntfn);
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
