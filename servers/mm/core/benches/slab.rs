//! Benchmarks of the slab allocator's kmalloc fast paths, side by side with mimalloc and glibc.
//!
//! Figures (criterion groups, read by `cargo xtask bench`):
//! - `slab.kmalloc64.alloc_free.ns`: one 64-byte allocation and its free, in
//!   steady state (the magazine fast path; SLUB's fast path is about 10.5 ns).
//! - `slab.kmalloc64.random_free.ns`: 100,000 64-byte allocations, then their
//!   frees in a random order; per object.
//!
//! Our allocator never touches the memory it hands out (its metadata is out
//! of band, so the bench needs no memory behind the addresses), while
//! mimalloc and glibc keep free lists inside the freed blocks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mimalloc::MiMalloc;
use mm_core::memory::{AccessError, MemoryAccess};
use mm_core::pages::PageSource;
use mm_core::slab::SlabAllocator;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;

/// Where the bench's page source hands out pages.
const BASE: u64 = 0x10_0000_0000;
/// The arena's size: 4 GiB of addresses (none of it backed).
const LEN: u64 = 4 << 30;
/// Objects in the random-free figure.
const OBJECTS: usize = 100_000;

/// A page source over `[BASE, BASE + LEN)`: a bump pointer plus a free list per order.
struct BenchPages {
    next: u64,
    free: Vec<Vec<u64>>,
}

impl BenchPages {
    fn new() -> Self {
        BenchPages {
            next: BASE,
            free: vec![Vec::new(); 16],
        }
    }
}

impl PageSource for BenchPages {
    fn alloc_pages(&mut self, order: u32) -> Option<u64> {
        if let Some(addr) = self.free.get_mut(order as usize)?.pop() {
            return Some(addr);
        }
        let bytes = 4096u64 << order;
        (self.next + bytes <= BASE + LEN).then(|| {
            self.next += bytes;
            self.next - bytes
        })
    }
    fn free_pages(&mut self, addr: u64, order: u32) {
        if let Some(list) = self.free.get_mut(order as usize) {
            list.push(addr);
        }
    }
}

/// Memory access for a bench that must never touch memory.
struct NoMemory;

impl MemoryAccess for NoMemory {
    fn read(&self, addr: u64, _: &mut [u8]) -> Result<(), AccessError> {
        Err(AccessError { addr })
    }
    fn write(&mut self, addr: u64, _: &[u8]) -> Result<(), AccessError> {
        Err(AccessError { addr })
    }
    fn fill(&mut self, addr: u64, _: u64, _: u8) -> Result<(), AccessError> {
        Err(AccessError { addr })
    }
}

fn slab() -> SlabAllocator<BenchPages> {
    let mut slab = SlabAllocator::new(BenchPages::new());
    slab.add_arena(BASE, LEN).expect("arena");
    slab
}

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

/// Allocates `ptrs.len()` blocks, then frees them in the order `perm`.
fn global_random(a: &impl GlobalAlloc, layout: Layout, ptrs: &mut [*mut u8], perm: &[usize]) {
    for p in ptrs.iter_mut() {
        // SAFETY: `layout` has a non-zero size.
        *p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
    }
    for &i in perm {
        // SAFETY: each block was allocated above with this allocator and
        // layout, and `perm` is a permutation, so each is freed once.
        unsafe { a.dealloc(ptrs[i], layout) };
    }
}

fn alloc_free(c: &mut Criterion) {
    let mut g = c.benchmark_group("slab.kmalloc64.alloc_free.ns");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    let mut s = slab();
    let mut mem = NoMemory;
    g.bench_function("ours", |b| {
        b.iter(|| {
            let a = s.kmalloc(&mut mem, black_box(64)).expect("kmalloc");
            s.kfree(&mut mem, black_box(a)).expect("kfree");
        })
    });
    let layout = Layout::from_size_align(64, 8).expect("layout");
    g.bench_function("peer:mimalloc", |b| {
        b.iter(|| global_pair(&MiMalloc, layout))
    });
    g.bench_function("peer:glibc", |b| b.iter(|| global_pair(&System, layout)));
    g.finish();
}

fn random_free(c: &mut Criterion) {
    let mut g = c.benchmark_group("slab.kmalloc64.random_free.ns");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
        .throughput(Throughput::Elements(OBJECTS as u64));
    let mut perm: Vec<usize> = (0..OBJECTS).collect();
    perm.shuffle(&mut SmallRng::seed_from_u64(0x5eed));
    let mut s = slab();
    let mut mem = NoMemory;
    let mut addrs = vec![0u64; OBJECTS];
    g.bench_function("ours", |b| {
        b.iter(|| {
            for a in addrs.iter_mut() {
                *a = s.kmalloc(&mut mem, black_box(64)).expect("kmalloc");
            }
            for &i in &perm {
                s.kfree(&mut mem, addrs[i]).expect("kfree");
            }
        })
    });
    let layout = Layout::from_size_align(64, 8).expect("layout");
    let mut ptrs = vec![std::ptr::null_mut(); OBJECTS];
    g.bench_function("peer:mimalloc", |b| {
        b.iter(|| global_random(&MiMalloc, layout, &mut ptrs, &perm))
    });
    g.bench_function("peer:glibc", |b| {
        b.iter(|| global_random(&System, layout, &mut ptrs, &perm))
    });
    g.finish();
}

criterion_group!(benches, alloc_free, random_free);
criterion_main!(benches);
