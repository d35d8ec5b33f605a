//! `populate.anon256m.sim.ns` and `populate.anon256m.2m.sim.ns`: populating 256 MiB of
//! anonymous memory through the MM server in the simulator (Map with POPULATE, then
//! Unmap), beside Linux `mmap(MAP_ANONYMOUS | MAP_POPULATE)` + `munmap` of 256 MiB on
//! this machine. The second group lets the server use 2 MiB blocks (MapFlags::HUGE);
//! Linux's peer is the same 4 KiB-page populate (transparent huge pages are
//! `madvise`-only here). The report tool shows each `ours / peer` ratio.
//!
//! Each sample builds a fresh simulated machine (512 MiB of RAM), lets the client
//! populate and unmap twice untimed, then times `iters` rounds inside the client.
//! The warm-up reaches the steady state: the first round gets frames fresh from
//! the kernel (zero, not zeroed again) and makes their mapping caps; the second
//! zeroes recycled frames for the first time, which is when the host first
//! writes the simulator's RAM (host page faults, an artefact of the simulator's
//! lazily backed RAM); from the third round on, every page is a recycled frame
//! that the server zeroes through its window, as in a long-running system.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use abi::{Badge, CPtr, CapRights, MessageInfo};
use criterion::{Criterion, criterion_group, criterion_main};
use libmm::protocol::{self, LABEL_OK, MAX_WORDS, MapFlags, Prot, Reply, Request};
use mm_server::{ClientSpec, Server, ServerConfig};
use sim::{Sim, SimConfig};

const LEN: u64 = 256 << 20;

fn call(ep: CPtr, req: &Request) -> Reply {
    let mut words = [0; MAX_WORDS];
    let n = protocol::encode(req, &mut words);
    let mut mrs = [0; 4];
    mrs[..n.min(4)].copy_from_slice(&words[..n.min(4)]);
    for (i, &w) in words.iter().enumerate().take(n).skip(4) {
        rt::set_mr(i, w);
    }
    let info = rt::call_with_mrs(
        ep,
        MessageInfo::new(protocol::LABEL_REQUEST, 0, 0, n),
        &mut mrs,
    );
    assert_eq!(info.label(), LABEL_OK, "request {req:?} refused: {mrs:?}");
    let mut out = [0; MAX_WORDS];
    let len = info.length();
    out[..len.min(4)].copy_from_slice(&mrs[..len.min(4)]);
    for (i, o) in out.iter_mut().enumerate().take(len).skip(4) {
        *o = rt::get_mr(i);
    }
    protocol::decode(&out[..len]).expect("reply")
}

/// `iters` rounds of populate + unmap of 256 MiB through the server.
fn ours(iters: u64, flags: MapFlags) -> Duration {
    let sim = Sim::new(SimConfig {
        ram_size: 512 << 20,
        boot_reserve: 16 << 20,
        max_ticks: u64::MAX / 4,
        ..SimConfig::default()
    });
    let ep = sim.endpoint().unwrap();
    let elapsed = Arc::new(AtomicU64::new(0));
    let e = elapsed.clone();
    let client = sim
        .process("client")
        .endpoint("mm", &ep, Badge(1), CapRights::ALL)
        .fault_handler(&ep, Badge(1))
        .spawn(move |boot| {
            let ep = CPtr(boot.find("mm").unwrap().slot);
            let round = || {
                let Reply::Mapped { addr, .. } = call(
                    ep,
                    &Request::Map {
                        addr: 0,
                        len: LEN,
                        prot: Prot::READ_WRITE,
                        flags: flags.union(MapFlags::POPULATE),
                        align: Default::default(),
                    },
                ) else {
                    panic!("not mapped")
                };
                call(ep, &Request::Unmap { addr, len: LEN });
            };
            round();
            round();
            let start = Instant::now();
            for _ in 0..iters {
                round();
            }
            e.store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        })
        .unwrap();
    let config = ServerConfig {
        clients: vec![ClientSpec::new(1, client.0 as u64, LEN / 4096 + 1024)],
        ..ServerConfig::default()
    };
    sim.process("mm")
        .endpoint("mm", &ep, Badge(0), CapRights::ALL)
        .all_ram("ram")
        .process_caps(client)
        .daemon()
        .spawn(move |boot| {
            let server = Server::start(boot, config).expect("start");
            server.serve(&mut |_, _| {})
        })
        .unwrap();
    sim.run().unwrap();
    Duration::from_nanos(elapsed.load(Ordering::Relaxed))
}

/// `iters` rounds of Linux mmap(MAP_POPULATE) + munmap of 256 MiB.
fn linux(iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        // SAFETY: an anonymous private mapping of a fresh range, unmapped
        // again with its own address and length; no Rust reference to it.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                LEN as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            libc::munmap(p, LEN as usize);
        }
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    for (name, flags) in [
        ("populate.anon256m.sim.ns", MapFlags(0)),
        ("populate.anon256m.2m.sim.ns", MapFlags::HUGE),
    ] {
        let mut g = c.benchmark_group(name);
        g.sample_size(10);
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(5));
        g.bench_function("ours", |b| b.iter_custom(|iters| ours(iters, flags)));
        g.bench_function("peer:linux_mmap_populate", |b| b.iter_custom(linux));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
