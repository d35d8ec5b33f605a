//! Benchmark of libmm's DMA pools: a block allocated and freed in a client.
//!
//! Figure (a criterion group, read by `cargo xtask bench`):
//! - `libmm.dmapool.alloc_free.64.host.ns`: one `DmaPools::dma_pool_alloc`
//!   and its `dma_pool_free` on a pool of 64-byte blocks aligned to 64, in
//!   steady state with eight blocks held (as a driver holds descriptors):
//!   mm-core's pool fast paths plus libmm's wrapper (the error mapping),
//!   over the mock server as chunk source — which is called for the first
//!   chunk only: the bench fails if any request is made while measuring.
//!   Side by side, `peer:mm-core` is the same pair on mm-core's
//!   `DmaPools` directly, so the wrapper's cost is the difference.
//!
//! The pool logic alone is `dmapool.alloc_free.{16,64,256,4096}.ns` in
//! mm-core's benches; the QEMU figure `dmapool.alloc_free.64.qemu.instructions`
//! is counted in QEMU around `DmaPools::alloc_free_pairs`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use libmm::dmapool::{CoherentChunks, DmaPools};
use libmm::mock::MockMm;

fn alloc_free_64(c: &mut Criterion) {
    let mut g = c.benchmark_group("libmm.dmapool.alloc_free.64.host.ns");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    let server = MockMm::new();
    let mut pools = DmaPools::new(server.mm(), server.clone());
    let pool = pools.dma_pool_create("bench", 64, 64, 0).expect("create");
    let held: Vec<_> = (0..8)
        .map(|_| pools.dma_pool_alloc(pool).expect("alloc"))
        .collect();
    let requests = server.requests();
    g.bench_function("ours", |b| {
        b.iter(|| {
            let blk = pools.dma_pool_alloc(black_box(pool)).expect("alloc");
            pools
                .dma_pool_free(black_box(pool), black_box(blk.vaddr), blk.bus)
                .expect("free");
        })
    });
    assert_eq!(server.requests(), requests, "IPC per block");
    for b in held {
        pools.dma_pool_free(pool, b.vaddr, b.bus).expect("free");
    }
    // The same pair on mm-core's registry, over the same chunk source.
    let core_server = MockMm::new();
    let mut mem = core_server.clone();
    let mut core = mm_core::dmapool::DmaPools::new(CoherentChunks::new(core_server.mm()));
    let id = core.dma_pool_create("bench", 64, 64, 0).expect("create");
    let held: Vec<_> = (0..8)
        .map(|_| core.dma_pool_alloc(&mut mem, id).expect("alloc"))
        .collect();
    g.bench_function("peer:mm-core", |b| {
        b.iter(|| {
            let blk = core.dma_pool_alloc(&mut mem, black_box(id)).expect("alloc");
            core.dma_pool_free(&mut mem, black_box(id), black_box(blk.vaddr), blk.bus)
                .expect("free");
        })
    });
    for b in held {
        core.dma_pool_free(&mut mem, id, b.vaddr, b.bus)
            .expect("free");
    }
    g.finish();
}

criterion_group!(benches, alloc_free_64);
criterion_main!(benches);
