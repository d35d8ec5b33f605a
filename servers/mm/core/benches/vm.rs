//! Benchmarks of the vm module: region lookup, placement, protect, and the reverse map.
//!
//! Figures (criterion group names, per operation):
//!
//! - `vm.region.lookup.ns`: fault-path lookup of a random address in an
//!   address space of 1000 regions.
//! - `vm.region.map_unmap.ns`: place a 4-page region (top-down, one guard
//!   page) and unmap it again, among 1000 regions.
//! - `vm.region.place_deep.ns`: placement that must walk past all 1000
//!   regions (every gap too small but the last): the worst case of the
//!   linear gap walk.
//! - `vm.region.protect_split_merge.ns`: protect the middle of a region
//!   (split in three) and back (merge into one), among 1000 regions.
//! - `vm.rmap.insert_remove.ns`: record and remove a frame's only mapping in
//!   a reverse map holding 100 000 mappings.
//! - `vm.rmap.lookup.ns`: all mappings of a random frame among 100 000.
//! - `vm.rmap.client_death.ns`: per mapping, removing a dying client's 1000
//!   mappings from a reverse map of 100 000.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use mm_core::addr::{PAGE_SIZE, Pfn, VirtAddr};
use mm_core::vm::{
    ClientId, Direction, FilePage, ObjectId, Place, Placement, Prot, RegionMap, RegionSpec,
    ReverseMap, VmConfig,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const P: u64 = PAGE_SIZE;
const REGIONS: u64 = 1000;
const LO: u64 = 0x1000_0000;

fn quick<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(30);
    g
}

/// 1000 regions of 4 pages every 8 pages from `LO`, alternating protection.
fn populated() -> RegionMap {
    let mut m = RegionMap::new(VmConfig::user()).expect("valid window");
    for i in 0..REGIONS {
        let prot = if i % 2 == 0 { Prot::RW } else { Prot::READ };
        m.map_fixed(VirtAddr(LO + i * 8 * P), RegionSpec::anonymous(4 * P, prot))
            .expect("free");
    }
    m
}

fn region_benches(c: &mut Criterion) {
    let m = populated();
    let mut rng = SmallRng::seed_from_u64(1);
    let addrs: Vec<VirtAddr> = (0..1024)
        .map(|_| VirtAddr(LO + rng.random_range(0..REGIONS * 8 * P)))
        .collect();
    let mut g = quick(c, "vm.region.lookup.ns");
    g.throughput(Throughput::Elements(addrs.len() as u64));
    g.bench_function("ours", |b| {
        b.iter(|| {
            let mut hits = 0u64;
            for &va in &addrs {
                if let Some(l) = m.lookup(black_box(va)) {
                    hits += l.index;
                }
            }
            hits
        })
    });
    g.finish();

    let mut m = populated();
    let place = Placement::new().with_guard_pages(1);
    let mut g = quick(c, "vm.region.map_unmap.ns");
    g.bench_function("ours", |b| {
        b.iter(|| {
            let at = m
                .map(RegionSpec::anonymous(4 * P, Prot::RW), black_box(&place))
                .expect("space");
            m.unmap(at, 4 * P).expect("mapped")
        })
    });
    g.finish();

    // Bottom-up with a guard of 3 pages: the 4-page holes between the
    // populated regions are too small, so the walk passes all of them.
    let mut m = populated();
    let deep = Placement::new()
        .with_direction(Direction::BottomUp)
        .with_guard_pages(3);
    let mut g = quick(c, "vm.region.place_deep.ns");
    g.bench_function("ours", |b| {
        b.iter(|| m.find_free(4 * P, black_box(&deep)).expect("space"))
    });
    g.finish();

    let mut g = quick(c, "vm.region.protect_split_merge.ns");
    let mid = VirtAddr(LO + 500 * 8 * P + P);
    g.bench_function("ours", |b| {
        b.iter(|| {
            m.protect(black_box(mid), 2 * P, Prot::READ)
                .expect("mapped");
            m.protect(black_box(mid), 2 * P, Prot::RW).expect("mapped")
        })
    });
    g.finish();
}

const MAPPINGS: u64 = 100_000;

/// 100 clients of 1000 pages each; frames shared by pairs of clients every
/// tenth page, file pages every fifth.
fn rmap() -> ReverseMap {
    let mut rm = ReverseMap::new();
    for n in 0..MAPPINGS {
        let (client, page) = (n / 1000, n % 1000);
        let place = Place {
            client: ClientId(client),
            va: VirtAddr(LO + page * P),
        };
        let pfn = if page % 10 == 0 {
            Pfn(page)
        } else {
            Pfn(1_000_000 + n)
        };
        let file = (page % 5 == 0).then_some(FilePage {
            object: ObjectId(client % 7),
            index: page,
        });
        rm.insert(place, pfn, file).expect("fresh place");
    }
    rm
}

fn rmap_benches(c: &mut Criterion) {
    let mut rm = rmap();
    let place = Place {
        client: ClientId(5000),
        va: VirtAddr(LO),
    };
    let mut g = quick(c, "vm.rmap.insert_remove.ns");
    g.bench_function("ours", |b| {
        b.iter(|| {
            rm.insert(black_box(place), Pfn(7_000_000), None)
                .expect("fresh place");
            rm.remove(black_box(place))
        })
    });
    g.finish();

    let mut rng = SmallRng::seed_from_u64(2);
    let frames: Vec<Pfn> = (0..1024)
        .map(|_| Pfn(1_000_000 + rng.random_range(0..MAPPINGS)))
        .collect();
    let mut g = quick(c, "vm.rmap.lookup.ns");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("ours", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for &pfn in &frames {
                n += rm.mappings(black_box(pfn)).count();
            }
            n
        })
    });
    g.finish();

    let mut g = quick(c, "vm.rmap.client_death.ns");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("ours", |b| {
        b.iter_batched(
            || rm.clone(),
            |mut rm| {
                let gone = rm.remove_client(black_box(ClientId(42)));
                (gone, rm)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, region_benches, rmap_benches);
criterion_main!(benches);
