//! Benchmarks of the frame allocator, side by side with `buddy_system_allocator`'s `FrameAllocator`.
//!
//! Figures (criterion groups, read by `cargo xtask bench`):
//! - `frame.order0.alloc_free.ns`: one order-0 allocation and its free, on a
//!   1 GiB zone half of whose frames were allocated in scattered order.
//! - `frame.order0.random_free.ns`: allocating 65,536 frames and freeing
//!   them in random order, per frame.
//! - `frame.order9.alloc_free.ns`: one 2 MiB block allocated and freed, on a
//!   1 GiB zone half allocated in 2 MiB blocks.
//! - `frame.contig_2m.fragmented.ns`: `alloc_contig_range` of 2 MiB that is
//!   free but scattered over per-CPU lists and buddy blocks of every order,
//!   in a zone fragmented by random order-0 allocations.

use std::hint::black_box;
use std::time::{Duration, Instant};

use buddy_system_allocator::FrameAllocator as PeerAllocator;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mm_core::addr::{Pfn, PhysAddr};
use mm_core::frame::{FrameAllocator, FrameConfig, GfpFlags, Mobility, PAGEBLOCK_ORDER};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// QEMU virt's RAM base.
const RAM: u64 = 0x4000_0000;
/// Frames in 1 GiB.
const FRAMES: usize = 262_144;
/// The peer's type: orders 0..=10, like ours.
type Peer = PeerAllocator<11>;

fn ours_1g() -> FrameAllocator {
    FrameAllocator::new(
        FrameConfig::default(),
        &[PhysAddr(RAM)..PhysAddr(RAM + (FRAMES as u64) * 4096)],
    )
    .expect("a valid configuration")
}

fn peer_1g() -> Peer {
    let mut p = Peer::new();
    let base = (RAM >> 12) as usize;
    p.add_frame(base, base + FRAMES);
    p
}

/// The indices of a random half of `n` items.
fn random_half(n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut SmallRng::seed_from_u64(seed));
    idx.truncate(n / 2);
    idx
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(30);
    g
}

fn order0_alloc_free(c: &mut Criterion) {
    let mut g = group(c, "frame.order0.alloc_free.ns");
    // Ours: allocate everything, free a random half.
    let mut a = ours_1g();
    let all: Vec<Pfn> = (0..FRAMES)
        .map(|_| a.alloc_pages(0, GfpFlags::MEMALLOC).expect("free frame"))
        .collect();
    for i in random_half(FRAMES, 1) {
        a.free_pages(all[i], 0).expect("allocated frame");
    }
    a.drain_all_pages();
    g.bench_function("ours", |b| {
        b.iter(|| {
            let p = a
                .alloc_pages(0, black_box(GfpFlags::KERNEL))
                .expect("half the zone is free");
            a.free_pages(black_box(p), 0).expect("just allocated");
        })
    });
    let mut p = peer_1g();
    let all: Vec<usize> = (0..FRAMES)
        .map(|_| p.alloc(1).expect("free frame"))
        .collect();
    for i in random_half(FRAMES, 1) {
        p.dealloc(all[i], 1);
    }
    g.bench_function("peer:buddy_system_allocator", |b| {
        b.iter(|| {
            let f = p.alloc(black_box(1)).expect("half the zone is free");
            p.dealloc(black_box(f), 1);
        })
    });
    g.finish();
}

const RANDOM_N: usize = 65_536;

fn order0_random_free(c: &mut Criterion) {
    let mut g = group(c, "frame.order0.random_free.ns");
    g.throughput(Throughput::Elements(RANDOM_N as u64));
    g.sample_size(20);
    let mut order: Vec<usize> = (0..RANDOM_N).collect();
    order.shuffle(&mut SmallRng::seed_from_u64(2));
    let mut a = ours_1g();
    let mut held = vec![Pfn(0); RANDOM_N];
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                for h in held.iter_mut() {
                    *h = a.alloc_pages(0, GfpFlags::KERNEL).expect("1 GiB is free");
                }
                for &i in &order {
                    a.free_pages(held[i], 0).expect("allocated");
                }
                total += t.elapsed();
            }
            total
        })
    });
    let mut p = peer_1g();
    let mut held = vec![0usize; RANDOM_N];
    g.bench_function("peer:buddy_system_allocator", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                for h in held.iter_mut() {
                    *h = p.alloc(1).expect("1 GiB is free");
                }
                for &i in &order {
                    p.dealloc(held[i], 1);
                }
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn order9_alloc_free(c: &mut Criterion) {
    let mut g = group(c, "frame.order9.alloc_free.ns");
    let blocks = FRAMES >> PAGEBLOCK_ORDER;
    // Half the zone allocated in 2 MiB blocks, a random half of them kept.
    let movable_memalloc = GfpFlags::MEMALLOC.with_mobility(Mobility::Movable);
    let mut a = ours_1g();
    let all: Vec<Pfn> = (0..blocks)
        .map(|_| {
            a.alloc_pages(PAGEBLOCK_ORDER, movable_memalloc)
                .expect("free block")
        })
        .collect();
    for i in random_half(blocks, 3) {
        a.free_pages(all[i], PAGEBLOCK_ORDER)
            .expect("allocated block");
    }
    g.bench_function("ours", |b| {
        b.iter(|| {
            let p = a
                .alloc_pages(PAGEBLOCK_ORDER, black_box(GfpFlags::USER_MOVABLE))
                .expect("free 2 MiB");
            a.free_pages(black_box(p), PAGEBLOCK_ORDER)
                .expect("just allocated");
        })
    });
    let mut p = peer_1g();
    let n = 1 << PAGEBLOCK_ORDER;
    let all: Vec<usize> = (0..blocks)
        .map(|_| p.alloc(n).expect("free block"))
        .collect();
    for i in random_half(blocks, 3) {
        p.dealloc(all[i], n);
    }
    g.bench_function("peer:buddy_system_allocator", |b| {
        b.iter(|| {
            let f = p.alloc(black_box(n)).expect("free 2 MiB");
            p.dealloc(black_box(f), n);
        })
    });
    g.finish();
}

fn contig_2m_fragmented(c: &mut Criterion) {
    let mut g = group(c, "frame.contig_2m.fragmented.ns");
    let mut rng = SmallRng::seed_from_u64(4);
    // Random order-0 allocations over the whole zone: everything allocated,
    // then a random half freed.
    let mut a = ours_1g();
    let all: Vec<Pfn> = (0..FRAMES)
        .map(|_| a.alloc_pages(0, GfpFlags::MEMALLOC).expect("free frame"))
        .collect();
    let mut allocated = vec![true; FRAMES];
    for i in random_half(FRAMES, 5) {
        a.free_pages(all[i], 0).expect("allocated");
        allocated[(all[i].0 - (RAM >> 12)) as usize] = false;
    }
    // An unaligned 2 MiB window whose frames are then freed in random order:
    // free, but spread over per-CPU lists and blocks of every order, which
    // merge with free neighbours outside the window.
    let start = (RAM >> 12) + 300 * 512 + 77;
    let mut window: Vec<u64> = (start..start + 512)
        .filter(|&f| allocated[(f - (RAM >> 12)) as usize])
        .collect();
    window.shuffle(&mut rng);
    for f in window {
        a.free_pages(Pfn(f), 0).expect("allocated");
    }
    let _ = rng.random::<u8>();
    g.bench_function("ours", |b| {
        b.iter_batched_ref(
            || a.clone(),
            |a| {
                a.alloc_contig_range(Pfn(start), Pfn(start + 512))
                    .expect("the window is free")
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    order0_alloc_free,
    order0_random_free,
    order9_alloc_free,
    contig_2m_fragmented
);
criterion_main!(benches);
