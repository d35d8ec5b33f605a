//! Benchmarks of libmm's client-side slab fast paths, side by side with mimalloc.
//!
//! Figures (criterion groups, read by `cargo xtask bench`):
//! - `libmm.kmalloc64.host.ns`: one `Heap::kmalloc(64)` and its `kfree` in
//!   steady state: the slab's magazine fast paths plus libmm's wrapper (the
//!   grow-on-exhaustion check and the trim check), with the mock transport
//!   — which is never called: the bench fails if any request is made.
//! - `libmm.global_alloc64.host.ns`: the same through the `GlobalAlloc`
//!   logic (`GlobalHeap::allocate`/`deallocate`, 64 bytes, align 8): adds
//!   the heap lock and the metadata-region check.
//!
//! The real target, `libmm.kmalloc64.qemu.instructions` (≤ 60), is counted
//! in QEMU.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use libmm::global::{GlobalConfig, GlobalHeap};
use libmm::heap::{Heap, HeapConfig};
use libmm::mock::MockMm;
use mimalloc::MiMalloc;

/// One alloc + free through a `GlobalAlloc`.
fn global_pair(a: &impl GlobalAlloc, layout: Layout) {
    // SAFETY: `layout` has a non-zero size; the block is freed with the
    // same allocator and layout it was allocated with.
    unsafe {
        let p = a.alloc(black_box(layout));
        assert!(!p.is_null());
        a.dealloc(black_box(p), layout);
    }
}

fn kmalloc64(c: &mut Criterion) {
    let mut g = c.benchmark_group("libmm.kmalloc64.host.ns");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    let server = MockMm::new();
    let mut heap = Heap::new(server.mm(), server.clone(), HeapConfig::default());
    // Warm: the first allocation maps the first chunk.
    let first = heap.kmalloc(64).expect("kmalloc");
    heap.kfree(first).expect("kfree");
    let requests = server.requests();
    g.bench_function("ours", |b| {
        b.iter(|| {
            let a = heap.kmalloc(black_box(64)).expect("kmalloc");
            heap.kfree(black_box(a)).expect("kfree");
        })
    });
    assert_eq!(server.requests(), requests, "IPC on the fast path");
    let layout = Layout::from_size_align(64, 8).expect("layout");
    g.bench_function("peer:mimalloc", |b| {
        b.iter(|| global_pair(&MiMalloc, layout))
    });
    g.finish();
}

fn global_alloc64(c: &mut Criterion) {
    let mut g = c.benchmark_group("libmm.global_alloc64.host.ns");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    let server = MockMm::new();
    let heap = GlobalHeap::with_transport(server.clone(), server.clone(), GlobalConfig::DEFAULT)
        .expect("connect");
    let layout = Layout::from_size_align(64, 8).expect("layout");
    let first = heap.allocate(layout).expect("allocate");
    heap.deallocate(first, layout);
    let requests = server.requests();
    g.bench_function("ours", |b| {
        b.iter(|| {
            let a = heap.allocate(black_box(layout)).expect("allocate");
            heap.deallocate(black_box(a), layout);
        })
    });
    assert_eq!(server.requests(), requests, "IPC on the fast path");
    g.bench_function("peer:mimalloc", |b| {
        b.iter(|| global_pair(&MiMalloc, layout))
    });
    g.finish();
}

criterion_group!(benches, kmalloc64, global_alloc64);
criterion_main!(benches);
