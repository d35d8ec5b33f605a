//! Hostile clients: arbitrary labels, lengths, words, capabilities and well-formed requests with wild arguments.
//!
//! Two fuzzers. The fast one calls the server's dispatch directly (inside a
//! simulated process, so every kernel invocation is real) with thousands of
//! messages from three attackers, checking after each one: all invariants and
//! frame conservation; a refused request changed nothing its sender can see;
//! the victim's state and memory contents never change. The second sends
//! proptest-generated messages through real IPC, with random extra caps, while
//! the victim checks its own memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use abi::fault::VmFault;
use abi::{Badge, CPtr, CapRights, MessageInfo, Word};
use libmm::protocol::{
    self, Align, Gfp, LABEL_ERROR, LABEL_MALFORMED, LABEL_OK, LABEL_REQUEST, List, MAX_WORDS,
    MapFlags, Prot, Reply, Request, VmallocKind,
};
use mm_server::{ClientSpec, Grants, Server, ServerConfig};
use proptest::prelude::*;
use sim::{Sim, SimConfig};
use sim_scenarios::*;

/// A small deterministic generator (xorshift*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// An interesting value: small numbers, addresses in and around the
/// client's regions, values learned from earlier replies, huge values.
fn pick(raw: u64, known: &[u64]) -> u64 {
    match raw % 11 {
        0 => 0,
        1 => raw >> 62,
        2 => (raw >> 8) & 0xff,
        3 => 0x1000_0000 + ((raw >> 8) % 0x400) * PAGE,
        4..=6 if !known.is_empty() => {
            known[((raw >> 8) as usize) % known.len()].wrapping_add(((raw >> 40) % 8) * PAGE)
        }
        7 => u64::MAX - (raw >> 58),
        8 => ((raw >> 8) % 64) * PAGE,
        9 => MIB2 * ((raw >> 8) % 8),
        _ => raw,
    }
}

/// A plausible value: an address learned from a reply (or a fresh one), a
/// small page multiple, a small number.
fn plausible(raw: u64, known: &[u64]) -> u64 {
    match raw % 4 {
        0 | 1 if !known.is_empty() => known[((raw >> 8) as usize) % known.len()],
        2 => ((raw >> 8) % 16 + 1) * PAGE,
        _ => (raw >> 8) % 8,
    }
}

/// A request of variant `v` with fields from `raw`: half the time
/// plausible fields, half the time wild ones.
fn request(v: u64, raw: &[u64; 6], known: &[u64], me: u64, clients: &[u64]) -> Request {
    let wild = v & (1 << 32) != 0;
    let f = |i: usize| {
        if wild {
            pick(raw[i], known)
        } else {
            plausible(raw[i], known)
        }
    };
    let small = |i: usize| (raw[i] % 12) as u8;
    let prot = |i: usize| {
        if wild {
            Prot((raw[i] % 9) as u8)
        } else {
            Prot::READ_WRITE
        }
    };
    let client = |i: usize| match raw[i] % 10 {
        0 => raw[i],
        1..=3 => clients[(raw[i] as usize >> 8) % clients.len()],
        _ => me,
    };
    let pfns = |i: usize| {
        let n = (raw[i] % 4) as usize;
        let v: Vec<u64> = (0..n)
            .map(|k| pick(raw[(i + k) % 6].rotate_left(7), known) / PAGE)
            .collect();
        List::from_slice(&v).unwrap()
    };
    // log2 of an alignment: mostly sensible, sometimes past the limits.
    let align = |i: usize| {
        Align(if wild {
            (raw[i] % 70) as u8
        } else {
            [0, 12, 16, 21, 22][(raw[i] % 5) as usize]
        })
    };
    match v % 46 {
        0 => Request::Map {
            addr: f(0),
            len: f(1) % (4 * MIB2 + 1),
            prot: prot(2),
            flags: MapFlags((raw[3] % 128) as u16),
            align: align(4),
        },
        1 => Request::Unmap {
            addr: f(0),
            len: f(1),
        },
        2 => Request::Protect {
            addr: f(0),
            len: f(1),
            prot: prot(2),
        },
        3 => Request::Populate {
            addr: f(0),
            len: f(1) % (4 * MIB2 + 1),
        },
        4 => Request::AllocPages {
            order: small(0),
            gfp: Gfp((raw[1] % 16) as u8),
        },
        5 => Request::FreePages {
            addr: f(0),
            order: small(1),
        },
        6 => Request::AllocPagesExact {
            count: (f(0) % 2000) as u32,
            gfp: Gfp((raw[1] % 8) as u8),
        },
        7 => Request::FreePagesExact {
            addr: f(0),
            count: f(1) as u32,
        },
        8 => Request::AllocContigRange {
            start_pfn: f(0) / PAGE,
            end_pfn: f(1) / PAGE,
        },
        9 => Request::FreeContigRange {
            addr: f(0),
            count: f(1) % 2000,
        },
        10 => Request::Vmalloc {
            size: f(0) % (MIB2 + 1),
            kind: [
                VmallocKind::Plain,
                VmallocKind::Zeroed,
                VmallocKind::User,
                VmallocKind::Dma32,
            ][(raw[1] % 4) as usize],
        },
        11 => Request::Vfree { addr: f(0) },
        12 => Request::Vmap {
            pfns: pfns(0),
            prot: prot(1),
        },
        13 => Request::Vunmap { addr: f(0) },
        14 => Request::VmMapRam { pfns: pfns(0) },
        15 => Request::VmUnmapRam {
            addr: f(0),
            count: f(1) as u32,
        },
        16 => Request::VmInsertPage {
            addr: f(0),
            pfn: f(1) / PAGE,
        },
        17 => Request::VmInsertPfn {
            addr: f(0),
            pfn: f(1) / PAGE,
        },
        18 => Request::VmInsertPfnProt {
            addr: f(0),
            pfn: f(1) / PAGE,
            prot: prot(2),
        },
        19 => Request::RemapPfnRange {
            addr: f(0),
            pfn: f(1) / PAGE,
            size: f(2) % (64 * PAGE + 1),
            prot: prot(3),
        },
        20 => Request::VmIomapMemory {
            addr: f(0),
            phys: f(1),
            len: f(2),
        },
        21 => Request::ZapVmaPtes {
            addr: f(0),
            len: f(1),
        },
        22 => Request::UnmapMappingRange {
            handle: f(0) % 8,
            first: f(1) % 8,
            count: f(2) % 8,
        },
        23 => Request::FollowPfn { addr: f(0) },
        24 => Request::ShmCreate {
            size: f(0) % (MIB2 + 1),
        },
        25 => Request::ShmGrant {
            handle: f(0) % 8,
            to: client(1),
            prot: prot(2),
        },
        26 => Request::ShmMap {
            handle: f(0) % 8,
            addr: f(1),
            prot: prot(2),
        },
        27 => Request::ShmDestroy { handle: f(0) % 8 },
        28 => Request::CopyToUser {
            client: client(0),
            dst: f(1),
            src: f(2),
            len: f(3) % (3 * PAGE),
        },
        29 => Request::CopyFromUser {
            client: client(0),
            dst: f(1),
            src: f(2),
            len: f(3) % (3 * PAGE),
        },
        30 => Request::ClearUser {
            client: client(0),
            addr: f(1),
            len: f(2) % (3 * PAGE),
        },
        31 => Request::MemdupUser {
            client: client(0),
            src: f(1),
            len: f(2) % (3 * PAGE),
        },
        32 => Request::GetUserPagesFast {
            addr: f(0),
            count: (raw[1] % 100) as u32,
            write: raw[2] & 1 == 1,
        },
        33 => Request::PutUserPages {
            addr: f(0),
            count: (raw[1] % 100) as u32,
        },
        34 => Request::DmaAllocCoherent {
            size: f(0) % (MIB2 + 1),
            align: align(1),
        },
        35 => Request::DmaFreeCoherent {
            addr: f(0),
            size: f(1),
        },
        36 => Request::ZoneStats,
        37 => Request::ClientStats,
        38 => Request::ClientDied { client: client(0) },
        // Exit is rare: it ends the attacker.
        39 if raw[0].is_multiple_of(50) => Request::Exit,
        39 => Request::ClientStats,
        40 => Request::Map {
            addr: f(0),
            len: f(1) % (64 * PAGE + 1),
            prot: prot(2),
            flags: MapFlags::POPULATE,
            align: align(3),
        },
        41 => Request::Map {
            addr: 0,
            len: (f(1) % 8 + 1) * MIB2,
            prot: Prot::READ_WRITE,
            flags: MapFlags::HUGE,
            align: Align::default(),
        },
        42 => Request::Discard {
            addr: f(0),
            len: f(1),
        },
        43 => Request::Discard {
            addr: f(0) & !(PAGE - 1),
            len: (f(1) % 64 + 1) * PAGE,
        },
        44 => Request::MemInfo,
        _ => Request::Unmap {
            addr: f(0) & !(MIB2 - 1),
            len: MIB2,
        },
    }
}

/// Values a reply teaches the attacker (addresses, frames, handles); the
/// virtual addresses also go to `vas`.
fn learn(reply: &Reply, known: &mut Vec<u64>, vas: &mut Vec<u64>) {
    match reply {
        Reply::Mapped { addr, .. } | Reply::Pages { addr, .. } | Reply::Dma { addr, .. } => {
            if vas.len() < 32 {
                vas.push(*addr);
            } else {
                vas[(*addr as usize >> 12) % 32] = *addr;
            }
        }
        _ => {}
    }
    let mut add = |v: u64| {
        if known.len() < 64 {
            known.push(v);
        } else {
            known[(v as usize) % 64] = v;
        }
    };
    match reply {
        Reply::Mapped { addr, len } => {
            add(*addr);
            add(addr.wrapping_add(len.saturating_sub(PAGE)));
        }
        Reply::Pages { addr, pfn } => {
            add(*addr);
            add(pfn * PAGE);
        }
        Reply::Handle { handle } => add(*handle),
        Reply::Pfn { pfn } => add(pfn * PAGE),
        Reply::Dma { addr, bus } => {
            add(*addr);
            add(*bus);
        }
        Reply::Pfns { pfns } => pfns.as_slice().iter().for_each(|p| add(p * PAGE)),
        _ => {}
    }
}

const VICTIM: u64 = 0x200;
const ATTACKERS: [u64; 3] = [0x301, 0x302, 0x303];
/// The supervisor's badge (a sender, not a client).
const SUP: u64 = 0x3ff;
/// A badge the server does not know.
const STRANGER: u64 = 0x999;

/// Fuzzes the dispatch of a server started inside the simulator.
/// Runs the fuzzer with `seed` for `messages` messages; panics on any
/// violation; returns how many requests succeeded.
fn fuzz_dispatch(seed: u64, messages: usize) -> u64 {
    let sim = Sim::new(SimConfig {
        ram_size: 24 << 20,
        boot_reserve: 4 << 20,
        ..SimConfig::default()
    });
    let ep = sim.endpoint().unwrap();
    let dev = sim.mmio(0x0a00_0000, 4 * PAGE, None).unwrap();
    let mut specs = Vec::new();
    let mut pids = Vec::new();
    for (i, b) in [VICTIM].iter().chain(ATTACKERS.iter()).enumerate() {
        let pid = sim
            .process(&format!("c{i}"))
            .endpoint("mm", &ep, Badge(*b), CapRights::ALL)
            .fault_handler(&ep, Badge(*b))
            .daemon()
            // Never runs anything of its own: the server acts on its VSpace.
            .spawn(|_| {
                loop {
                    rt::yield_now();
                }
            })
            .unwrap();
        pids.push(pid);
        // No attacker may reach other clients' memory (user access): the
        // victim must stay untouched.
        let grants = match i {
            1 => Grants {
                pages: true,
                dma: true,
                devices: vec![(0x0a00_0000, 2 * PAGE)],
                ..Grants::default()
            },
            2 => Grants {
                pages: true,
                ..Grants::default()
            },
            _ => Grants::default(),
        };
        specs.push(ClientSpec {
            grants,
            ..ClientSpec::new(*b, pid.0 as u64, 1500)
        });
    }
    let failure = Arc::new(Mutex::new(None::<String>));
    let f2 = failure.clone();
    let succeeded = Arc::new(AtomicU64::new(0));
    let s2 = succeeded.clone();
    let mut sp = sim
        .process("mm")
        .endpoint("mm", &ep, Badge(0), CapRights::ALL)
        .all_ram("ram")
        .mmio("dev", &dev);
    for p in &pids {
        sp = sp.process_caps(*p);
    }
    sp.spawn(move |boot| {
        let config = ServerConfig {
            clients: specs,
            supervisor: Some(SUP),
            verbose: false,
            ..ServerConfig::default()
        };
        let mut s = Server::start(boot, config).expect("start");
        let send = |s: &mut Server, badge: u64, req: &Request| {
            let mut words = [0; MAX_WORDS];
            let n = protocol::encode(req, &mut words);
            s.dispatch(badge, MessageInfo::new(LABEL_REQUEST, 0, 0, n), &words[..n])
        };
        // The victim: memory of every kind, then never touched again.
        for req in [
            Request::Map { addr: 0, len: 8 * PAGE, prot: Prot::READ_WRITE, flags: MapFlags::POPULATE, align: Align::default() },
            Request::Map { addr: 0, len: MIB2, prot: Prot::READ_WRITE, flags: MapFlags::POPULATE.union(MapFlags::HUGE), align: Align::default() },
            Request::Vmalloc { size: 3 * PAGE, kind: VmallocKind::Zeroed },
            Request::ShmCreate { size: 2 * PAGE },
            Request::ShmMap { handle: 1, addr: 0, prot: Prot::READ_WRITE },
        ] {
            let out = send(&mut s, VICTIM, &req);
            assert!(matches!(out.decoded(), Some(Ok(_))), "{req:?}: {out:?}");
        }
        let victim = (
            s.client_fingerprint(VICTIM).unwrap(),
            s.client_memory_fingerprint(VICTIM).unwrap(),
        );
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut known: Vec<u64> = Vec::new();
        let mut vas: Vec<u64> = Vec::new();
        let clients = [VICTIM, ATTACKERS[0], ATTACKERS[1], ATTACKERS[2]];
        let mut verdict = None;
        let mut answered = [0u64; 3];
        for step in 0..messages {
            let who = [ATTACKERS[0], ATTACKERS[0], ATTACKERS[0], ATTACKERS[1], ATTACKERS[1], ATTACKERS[2], SUP, STRANGER]
                [(rng.next() % 8) as usize];
            let fp = |s: &Server| (s.client_fingerprint(who).unwrap_or(0), s.shm_fingerprint());
            let before = fp(&s);
            let kind = rng.next() % 100;
            let raw: [u64; 6] = core::array::from_fn(|_| rng.next());
            let (label, words): (Word, Vec<Word>) = if kind < 85 {
                let mut req = request(rng.next(), &raw, &known, who, &clients);
                if let Request::ClientDied { client } = req
                    && who == SUP
                    && (client == VICTIM || !raw[5].is_multiple_of(8))
                {
                    // The supervisor may end any client: rarely an
                    // attacker, never the victim watched here.
                    req = Request::ZoneStats;
                }
                let mut w = [0; MAX_WORDS];
                let n = protocol::encode(&req, &mut w);
                (LABEL_REQUEST, w[..n].to_vec())
            } else if kind < 97 {
                // Garbage: random words, as a request or under a label no
                // one uses (a fault label from a client is a fault: below).
                let n = (raw[0] % 121) as usize;
                let label = if raw[1].is_multiple_of(2) { LABEL_REQUEST } else { 6 + raw[1] % 0x10_0000 };
                (label, (0..n).map(|i| raw[i % 6].rotate_left(i as u32)).collect())
            } else if kind < 99 || vas.is_empty() {
                // Any label at all but the fault labels.
                (8 + raw[0] % 0x10_0000, vec![raw[1], raw[2]])
            } else {
                // A forged page fault where the attacker has (had) memory,
                // now and then a wild one: a fatal one ends the attacker.
                let fsr = [0x7u64, 0x47, 0xf, 0x4f][(raw[2] % 4) as usize];
                let addr = if raw[3].is_multiple_of(16) {
                    pick(raw[0], &known)
                } else {
                    vas[(raw[0] as usize) % vas.len()] + (raw[1] % 4) * PAGE
                };
                ([5, 5, 5, 1, 2, 3][(raw[4] % 6) as usize], vec![0x40_0000, addr, 0, fsr])
            };
            // A VM fault whole in four words takes the serve loop's road
            // (`dispatch_vm_fault`) half the time, the general one else.
            let out = if label == 5 && words.len() == 4 && raw[5].is_multiple_of(2) {
                let v = VmFault {
                    ip: words[0],
                    addr: words[1],
                    instruction: words[2] != 0,
                    fsr: words[3],
                };
                s.dispatch_vm_fault(who, v)
            } else {
                s.dispatch(who, MessageInfo::new(label, 0, 0, words.len()), &words)
            };
            if let Err(e) = s.check() {
                verdict = Some(format!("step {step}: {e}"));
                break;
            }
            let refused = matches!(out.reply_label(), Some(LABEL_ERROR | LABEL_MALFORMED));
            if refused && fp(&s) != before {
                verdict = Some(format!("step {step}: a refused message from {who:#x} changed its state: label {label:#x} {words:x?} -> {out:?}"));
                break;
            }
            match out.decoded() {
                Some(Ok(r)) => {
                    answered[0] += 1;
                    learn(&r, &mut known, &mut vas);
                }
                Some(Err(_)) => answered[1] += 1,
                None => answered[2] += 1,
            }
            // The victim's contents are read every 32 steps and at the end
            // (a change persists); its state after every step.
            let memory = if step % 32 == 31 || step + 1 == messages {
                s.client_memory_fingerprint(VICTIM).unwrap()
            } else {
                victim.1
            };
            let now = (s.client_fingerprint(VICTIM).unwrap(), memory);
            if now != victim {
                verdict = Some(format!("step {step}: the victim's state changed after {label:#x} {words:x?} from {who:#x}"));
                break;
            }
            let _ = LABEL_OK;
        }
        s2.store(answered[0], Ordering::SeqCst);
        *f2.lock().unwrap() = Some(verdict.unwrap_or_default());
        rt::debug_halt(0);
    })
    .unwrap();
    let r = sim.run();
    let verdict = failure.lock().unwrap().clone();
    match verdict {
        Some(v) if v.is_empty() => succeeded.load(Ordering::SeqCst),
        Some(v) => panic!("seed {seed}: {v}"),
        None => panic!("seed {seed}: the fuzzer did not finish: {r:?}"),
    }
}

#[test]
fn dispatch_survives_hostile_messages() {
    // More seeds for a longer hunt: MM_FUZZ_SEEDS=200 cargo test ...
    let seeds = std::env::var("MM_FUZZ_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6u64);
    const MESSAGES: usize = 700;
    let mut succeeded = 0;
    for seed in 0..seeds {
        succeeded += fuzz_dispatch(seed, MESSAGES);
    }
    // Enough requests got through to reach the server's deeper states (a
    // seed of mostly malformed messages is weak, not wrong; the run as a
    // whole must not be).
    let floor = seeds * MESSAGES as u64 / 25;
    assert!(
        succeeded >= floor,
        "too few requests succeeded to mean much: {succeeded} of {}",
        seeds * MESSAGES as u64
    );
}

/// One message as proptest generates it.
#[derive(Clone, Debug)]
struct Msg {
    label: u8,
    words: Vec<u64>,
    caps: u8,
    cptrs: [u64; 3],
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        0u8..6,
        prop::collection::vec(any::<u64>(), 0..=120),
        0u8..4,
        prop::array::uniform3(prop_oneof![0u64..64, any::<u64>()]),
    )
        .prop_map(|(label, words, caps, cptrs)| Msg {
            label,
            words,
            caps,
            cptrs,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Arbitrary messages through real IPC, with arbitrary extra caps: the
    /// server answers each (or stops a faulting sender), its invariants hold
    /// after each, and the victim's memory and accounting never change.
    #[test]
    fn ipc_survives_hostile_messages(msgs in prop::collection::vec(msg(), 1..60), seed in any::<u64>()) {
        let done = Arc::new(Mutex::new(false));
        let d2 = done.clone();
        let d3 = done.clone();
        let w = Scenario::new()
            .ram(24 << 20)
            .seeded(seed)
            .client("victim", Grants::default(), 1000, move |mm| {
                let a = mm.mmap_raw(0, 4 * PAGE, RW, MapFlags::POPULATE).unwrap();
                for i in 0..4 {
                    poke(a + i * PAGE + 8, 0x5eed + i);
                }
                let before = mm.client_stats().unwrap();
                // Until the attacker is done (or was stopped by a forged fault).
                for _ in 0..5000 {
                    if *d2.lock().unwrap() {
                        break;
                    }
                    rt::yield_now();
                }
                for i in 0..4 {
                    assert_eq!(peek(a + i * PAGE + 8), 0x5eed + i);
                }
                let after = mm.client_stats().unwrap();
                assert_eq!((before.resident_pages, before.regions), (after.resident_pages, after.regions));
                mm.munmap(a, 4 * PAGE).unwrap();
            })
            .daemon_client("attacker", Grants::all(), 1000, move |mm| {
                for m in msgs {
                    let label = match m.label {
                        0..=2 => LABEL_REQUEST,
                        3 => 5,
                        4 => 1,
                        _ => m.words.first().copied().unwrap_or(0) & 0xfffff,
                    };
                    let n = m.words.len();
                    let mut mrs = [0; 4];
                    mrs[..n.min(4)].copy_from_slice(&m.words[..n.min(4)]);
                    for (i, &w) in m.words.iter().enumerate().skip(4) {
                        rt::set_mr(i, w);
                    }
                    for (i, &c) in m.cptrs.iter().enumerate() {
                        rt::set_cap(i, CPtr(c));
                    }
                    let info = MessageInfo::new(label, 0, m.caps as usize, n);
                    let _ = rt::call_with_mrs(mm.ep(), info, &mut mrs);
                }
                *d3.lock().unwrap() = true;
            })
            .build();
        let r = w.run();
        prop_assert!(r.is_ok(), "{:?}\n{}", r, w.server_console());
        prop_assert!(w.last().conserved());
        let _ = done;
    }
}
