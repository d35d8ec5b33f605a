//! `ipc.roundtrip.sim.ns`: a Call/ReplyRecv round trip with a 4-word message
//! between two simulated processes, beside a bare host-thread hand-off round
//! trip (park/unpark ping-pong), the floor any one-thread-at-a-time
//! simulator pays.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rt::{Badge, CapRights, MessageInfo};
use sim::{Sim, SimConfig};

/// Runs `iters` round trips in the simulator; returns their time.
fn sim_round_trips(iters: u64) -> Duration {
    let sim = Sim::new(SimConfig::small());
    let ep = sim.endpoint().unwrap();
    let elapsed = Arc::new(AtomicU64::new(0));
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            let ep = rt::CPtr(boot.find("ep").map(|d| d.slot).unwrap_or(0));
            let mut mrs = [0; 4];
            let (mut info, _) = rt::recv_with_mrs(ep, &mut mrs);
            loop {
                mrs[0] += 1;
                (info, _) = rt::reply_recv_with_mrs(ep, info, &mut mrs);
            }
        })
        .unwrap();
    let e = elapsed.clone();
    sim.process("client")
        .endpoint("ep", &ep, Badge(1), CapRights::ALL)
        .spawn(move |boot| {
            let ep = rt::CPtr(boot.find("ep").map(|d| d.slot).unwrap_or(0));
            let info = MessageInfo::new(1, 0, 0, 4);
            let mut mrs = [1, 2, 3, 4];
            let start = Instant::now();
            for _ in 0..iters {
                rt::call_with_mrs(ep, info, &mut mrs);
            }
            e.store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        })
        .unwrap();
    sim.run().unwrap();
    Duration::from_nanos(elapsed.load(Ordering::Relaxed))
}

/// Two host threads passing a token back and forth with park/unpark.
fn park_round_trips(iters: u64) -> Duration {
    let ping = Arc::new(AtomicBool::new(false));
    let pong = Arc::new(AtomicBool::new(false));
    let main = std::thread::current();
    let (pi, po) = (ping.clone(), pong.clone());
    let other = std::thread::spawn(move || {
        for _ in 0..iters {
            while !pi.swap(false, Ordering::Acquire) {
                std::thread::park();
            }
            po.store(true, Ordering::Release);
            main.unpark();
        }
    });
    let start = Instant::now();
    for _ in 0..iters {
        ping.store(true, Ordering::Release);
        other.thread().unpark();
        while !pong.swap(false, Ordering::Acquire) {
            std::thread::park();
        }
    }
    let t = start.elapsed();
    let _ = other.join();
    t
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ipc.roundtrip.sim.ns");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    g.bench_function("ours", |b| b.iter_custom(sim_round_trips));
    g.bench_function("peer:thread_park_unpark", |b| {
        b.iter_custom(park_round_trips)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
