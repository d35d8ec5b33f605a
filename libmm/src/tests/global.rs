//! The `GlobalAlloc` logic against the mock server, and a property test against a model.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::alloc::Layout;

use mm_core::addr::PAGE_SIZE;
use mm_core::memory::MemoryAccess;
use proptest::prelude::*;

use crate::global::{GlobalConfig, GlobalHeap, slab_size};
use crate::heap::HeapConfig;
use crate::mock::MockMm;
use crate::protocol::{MapFlags, MmError, Request};
use crate::transport::{CallError, Error};

const MIB: usize = 1 << 20;

fn config() -> GlobalConfig {
    GlobalConfig {
        heap: HeapConfig {
            first_chunk: 4 << 20,
            max_chunk: 16 << 20,
            retain: 256 << 10,
            checking: false,
        },
        meta_bytes: 4 << 20,
    }
}

fn global() -> (MockMm, GlobalHeap<MockMm, MockMm>) {
    let s = MockMm::new();
    let g = GlobalHeap::with_transport(s.clone(), s.clone(), config()).unwrap();
    (s, g)
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn meta_range(g: &GlobalHeap<MockMm, MockMm>) -> (u64, u64) {
    let m = g.stats().unwrap().meta;
    (m.base, m.base + m.len)
}

#[test]
fn small_allocations_come_from_the_slab_without_ipc() {
    let (s, g) = global();
    // Connecting mapped only the metadata region.
    assert_eq!(s.requests(), 1);
    let a = g.allocate(layout(24, 8)).unwrap();
    let b = g.allocate(layout(24, 8)).unwrap();
    assert_ne!(a, b);
    assert!(g.with_heap(|h| h.owns(a) && h.owns(b)).unwrap());
    let (lo, hi) = meta_range(&g);
    assert!(!(lo..hi).contains(&a));
    let before = s.requests();
    for _ in 0..1000 {
        let x = g.allocate(layout(64, 8)).unwrap();
        g.deallocate(x, layout(64, 8));
    }
    assert_eq!(s.requests(), before);
    g.deallocate(a, layout(24, 8));
    g.deallocate(b, layout(24, 8));
    g.validate().unwrap();
}

#[test]
fn alignments_above_eight_are_honoured() {
    let (_s, g) = global();
    let mut live = Vec::new();
    for &align in &[
        16usize,
        32,
        64,
        128,
        256,
        4096,
        8192,
        65536,
        MIB,
        4 * MIB,
        8 * MIB,
    ] {
        for &size in &[1usize, 24, 96, 100, 192, 3000, 5000, 70_000, 5 * MIB] {
            let l = layout(size, align);
            let a = g.allocate(l).unwrap();
            assert_eq!(a % align as u64, 0, "size {size} align {align}");
            live.push((a, l));
        }
    }
    // Disjoint.
    let mut spans: Vec<(u64, u64)> = live
        .iter()
        .map(|&(a, l)| (a, a + l.size() as u64))
        .collect();
    spans.sort();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0));
    for (a, l) in live {
        g.deallocate(a, l);
    }
    let stats = g.stats().unwrap();
    assert_eq!(stats.direct_maps, 0);
    assert_eq!(stats.bad_frees, 0);
    g.validate().unwrap();
}

#[test]
fn slab_sizes_for_alignments() {
    assert_eq!(slab_size(0, 1), Some(1));
    assert_eq!(slab_size(24, 16), Some(24)); // class 32, aligned 32
    assert_eq!(slab_size(65, 64), Some(128)); // class 96 is only 32-aligned
    assert_eq!(slab_size(100, 4096), Some(4096));
    assert_eq!(slab_size(5000, 8192), Some(8192));
    assert_eq!(slab_size(9000, 65536), Some(65536));
    assert_eq!(slab_size(4 * MIB, 8), Some(4 * MIB));
    assert_eq!(slab_size(4 * MIB + 1, 8), None);
    assert_eq!(slab_size(8, 8 * MIB), None);
}

#[test]
fn zeroed_allocations_are_zero() {
    let (s, g) = global();
    let mut mem = s.clone();
    let l = layout(300, 8);
    let a = g.allocate(l).unwrap();
    mem.fill(a, 300, 0xee).unwrap();
    g.deallocate(a, l);
    // The same object comes back first (the magazine is LIFO per side), or
    // soon; it must be zero whichever it is.
    let mut got = Vec::new();
    for _ in 0..130 {
        let z = g.allocate_zeroed(l).unwrap();
        let mut buf = [1u8; 300];
        mem.read(z, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        got.push(z);
    }
    assert!(got.contains(&a));
    for z in got {
        g.deallocate(z, l);
    }
    // Large zeroed blocks from untouched pages, and direct maps, are not
    // touched at all.
    let big = layout(2 * MIB, 8);
    let b = g.allocate_zeroed(big).unwrap();
    assert!(!s.server().is_resident(b));
    let huge = layout(6 * MIB, 64);
    let h = g.allocate_zeroed(huge).unwrap();
    assert!(!s.server().is_resident(h));
    g.deallocate(b, big);
    g.deallocate(h, huge);
    g.validate().unwrap();
}

#[test]
fn realloc_keeps_contents_across_every_kind_of_block() {
    let (s, g) = global();
    let mut mem = s.clone();
    let pattern: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let l = layout(20, 16);
    let a = g.allocate(l).unwrap();
    mem.write(a, &pattern[..20]).unwrap();
    // Within the class: in place.
    assert_eq!(g.reallocate(a, l, 30), Some(a));
    let l = layout(30, 16);
    // Slab to a bigger class, to a page block, to a direct map, and back.
    let mut addr = a;
    let mut cur = l;
    for &size in &[4000usize, 100_000, 6 * MIB, 9 * MIB, 7 * MIB, 50_000, 10] {
        let keep = cur.size().min(size).min(20);
        let new = g.reallocate(addr, cur, size).unwrap();
        assert_eq!(new % 16, 0);
        let mut buf = vec![0u8; keep];
        mem.read(new, &mut buf).unwrap();
        assert_eq!(&buf[..], &pattern[..keep], "to {size}");
        addr = new;
        cur = layout(size, 16);
    }
    g.deallocate(addr, cur);
    let stats = g.stats().unwrap();
    assert_eq!(
        (stats.direct_maps, stats.direct_bytes, stats.bad_frees),
        (0, 0, 0)
    );
    g.validate().unwrap();
}

#[test]
fn direct_maps_shrink_and_grow_in_place() {
    let (s, g) = global();
    let l = layout(6 * MIB, 8);
    let a = g.allocate(l).unwrap();
    assert_eq!(g.stats().unwrap().direct_bytes, 6 * MIB as u64);
    // Shrink: the tail is unmapped.
    assert_eq!(g.reallocate(a, l, 5 * MIB), Some(a));
    assert_eq!(
        s.last_request(),
        Some(Request::Unmap {
            addr: a + 5 * MIB as u64,
            len: MIB as u64
        })
    );
    // Grow into the free space just after it.
    let l = layout(5 * MIB, 8);
    assert_eq!(g.reallocate(a, l, 7 * MIB), Some(a));
    assert!(matches!(
        s.last_request(),
        Some(Request::Map {
            flags: MapFlags::FIXED_NOREPLACE,
            ..
        })
    ));
    assert_eq!(g.stats().unwrap().direct_bytes, 7 * MIB as u64);
    // Blocked: moves (and unmaps the old mapping).
    let l = layout(7 * MIB, 8);
    let blocker = s
        .mm()
        .mmap(
            a + 7 * MIB as u64,
            PAGE_SIZE,
            crate::protocol::Prot::READ,
            MapFlags::FIXED_NOREPLACE,
        )
        .unwrap();
    let b = g.reallocate(a, l, 8 * MIB).unwrap();
    assert_ne!(a, b);
    assert!(s.server().region_at(a).is_none());
    drop(blocker);
    g.deallocate(b, layout(8 * MIB, 8));
    assert_eq!(g.stats().unwrap().direct_maps, 0);
    assert!(matches!(s.last_request(), Some(Request::Unmap { .. })));
    g.validate().unwrap();
}

#[test]
fn reentrant_allocations_go_to_the_metadata_heap() {
    let (s, g) = global();
    let (lo, hi) = meta_range(&g);
    let l = layout(100, 8);
    // While the main heap is busy (as it is when the slab grows its own
    // metadata), allocations come from the metadata region.
    let inner = g.with_heap(|_| g.allocate(l)).unwrap().unwrap();
    assert!((lo..hi).contains(&inner));
    let zeroed = g.with_heap(|_| g.allocate_zeroed(l)).unwrap().unwrap();
    assert!((lo..hi).contains(&zeroed));
    let mut mem = s.clone();
    mem.write(inner, b"metadata").unwrap();
    // Freed and reallocated by address, whoever calls.
    let grown = g.reallocate(inner, l, 5000).unwrap();
    assert!(
        !(lo..hi).contains(&grown),
        "outside the heap, it moves to the main heap"
    );
    let mut buf = [0u8; 8];
    mem.read(grown, &mut buf).unwrap();
    assert_eq!(&buf, b"metadata");
    g.deallocate(grown, layout(5000, 8));
    g.deallocate(zeroed, l);
    let stats = g.stats().unwrap();
    assert_eq!(stats.meta.used_bytes, 0);
    assert_eq!(stats.bad_frees, 0);
    g.validate().unwrap();
}

#[test]
fn bad_frees_are_counted_and_ignored() {
    let (_s, g) = global();
    let l = layout(64, 8);
    let a = g.allocate(l).unwrap();
    g.deallocate(a, l);
    g.deallocate(a, l);
    g.deallocate(0x7777_0000, l);
    assert_eq!(g.stats().unwrap().bad_frees, 2);
    assert_eq!(g.reallocate(0x7777_0000, l, 10), None);
    g.validate().unwrap();
}

#[test]
fn connection_failures_give_null_not_a_panic() {
    fn no_server() -> Result<(MockMm, MockMm), Error> {
        Err(Error::Call(CallError::NoServer))
    }
    let g = GlobalHeap::new(no_server, config());
    assert_eq!(g.allocate(layout(8, 8)), None);
    assert_eq!(g.allocate_zeroed(layout(8, 8)), None);
    assert_eq!(g.reallocate(0x1000, layout(8, 8), 16), None);
    g.deallocate(0x1000, layout(8, 8));
    assert_eq!(g.connect_error(), Some(Error::Call(CallError::NoServer)));
    assert!(g.stats().is_none());

    // The server refusing the metadata region.
    let s = MockMm::new();
    s.server().map_limit = Some(PAGE_SIZE);
    assert_eq!(
        GlobalHeap::with_transport(s.clone(), s.clone(), config()).err(),
        Some(Error::Mm(MmError::NoMemory))
    );
}

#[test]
fn out_of_memory_is_null() {
    let (s, g) = global();
    let mapped = s.server().mapped_bytes();
    s.server().map_limit = Some(mapped + (4 << 20));
    let l = layout(MIB, 8);
    let mut held = Vec::new();
    while let Some(a) = g.allocate(l) {
        held.push(a);
    }
    assert_eq!(held.len(), 4);
    assert_eq!(g.allocate(layout(5 * MIB, 8)), None);
    for a in held {
        g.deallocate(a, l);
    }
    g.validate().unwrap();
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_log: u32,
        zeroed: bool,
    },
    /// While the main heap is busy (re-entry).
    AllocInner {
        size: usize,
    },
    Free(prop::sample::Index),
    Realloc(prop::sample::Index, usize),
    Trim,
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1usize..=256,
        4 => 257usize..=8192,
        2 => 8193usize..=300_000,
        1 => (4 * MIB - 10)..=(6 * MIB),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (size(), prop_oneof![6 => 0u32..=3, 2 => 4u32..=13, 1 => 20u32..=23], any::<bool>())
            .prop_map(|(size, align_log, zeroed)| Op::Alloc { size, align_log, zeroed }),
        1 => (1usize..2000).prop_map(|size| Op::AllocInner { size }),
        4 => any::<prop::sample::Index>().prop_map(Op::Free),
        2 => (any::<prop::sample::Index>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        1 => Just(Op::Trim),
    ]
}

/// A live block of the model: its layout and the byte it is filled with
/// (its first and last 32 bytes).
#[derive(Clone, Copy, Debug)]
struct Block {
    layout: Layout,
    tag: u8,
}

const EDGE: usize = 32;

fn write_tags(mem: &mut MockMm, addr: u64, size: usize, tag: u8) {
    let n = size.min(EDGE);
    mem.fill(addr, n as u64, tag).unwrap();
    mem.fill(addr + (size - n) as u64, n as u64, tag).unwrap();
}

/// Checks the first `keep` bytes' edges still hold `tag`.
fn check_tags(mem: &MockMm, addr: u64, keep: usize, tag: u8) -> Result<(), TestCaseError> {
    let n = keep.min(EDGE);
    let mut buf = [0u8; EDGE];
    mem.read(addr, &mut buf[..n]).unwrap();
    prop_assert!(buf[..n].iter().all(|&b| b == tag), "head of {:#x}", addr);
    mem.read(addr + (keep - n) as u64, &mut buf[..n]).unwrap();
    prop_assert!(buf[..n].iter().all(|&b| b == tag), "tail of {:#x}", addr);
    Ok(())
}

fn insert_checked(
    live: &mut BTreeMap<u64, Block>,
    addr: u64,
    block: Block,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(addr % block.layout.align() as u64, 0);
    let end = addr + block.layout.size() as u64;
    if let Some((&a, b)) = live.range(..end).next_back() {
        prop_assert!(
            a + b.layout.size() as u64 <= addr,
            "{:#x} overlaps {:#x}",
            addr,
            a
        );
    }
    if let Some((&a, _)) = live.range(addr..).next() {
        prop_assert!(a >= end);
    }
    live.insert(addr, block);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random allocation sequences through the GlobalAlloc logic against a
    /// model of the live blocks: after every step, blocks are aligned,
    /// disjoint and keep their contents (through realloc too), zeroed
    /// blocks read zero, re-entrant allocations live in the metadata
    /// region, and the heap's bookkeeping validates.
    #[test]
    fn random_sequences_against_a_model(ops in prop::collection::vec(op(), 1..120)) {
        let (s, g) = global();
        let mut mem = s.clone();
        let (lo, hi) = meta_range(&g);
        let mut live: BTreeMap<u64, Block> = BTreeMap::new();
        let mut next_tag = 1u8;
        for op in ops {
            match op {
                Op::Alloc { size, align_log, zeroed } => {
                    let l = layout(size, 1 << align_log);
                    let got = if zeroed { g.allocate_zeroed(l) } else { g.allocate(l) };
                    // The mock has no limit: allocation never fails.
                    let addr = got.unwrap();
                    prop_assert!(!(lo..hi).contains(&addr));
                    if zeroed {
                        check_tags(&mem, addr, size, 0)?;
                    }
                    next_tag = next_tag.wrapping_add(1).max(1);
                    write_tags(&mut mem, addr, size, next_tag);
                    insert_checked(&mut live, addr, Block { layout: l, tag: next_tag })?;
                }
                Op::AllocInner { size } => {
                    let l = layout(size, 8);
                    let addr = g.with_heap(|_| g.allocate(l)).unwrap().unwrap();
                    prop_assert!((lo..hi).contains(&addr));
                    next_tag = next_tag.wrapping_add(1).max(1);
                    write_tags(&mut mem, addr, size, next_tag);
                    insert_checked(&mut live, addr, Block { layout: l, tag: next_tag })?;
                }
                Op::Free(i) if !live.is_empty() => {
                    let (&addr, &b) = live.iter().nth(i.index(live.len())).unwrap();
                    check_tags(&mem, addr, b.layout.size(), b.tag)?;
                    live.remove(&addr);
                    g.deallocate(addr, b.layout);
                }
                Op::Realloc(i, new_size) if !live.is_empty() => {
                    let (&addr, &b) = live.iter().nth(i.index(live.len())).unwrap();
                    live.remove(&addr);
                    let new = g.reallocate(addr, b.layout, new_size).unwrap();
                    let keep = b.layout.size().min(new_size);
                    // The head survives; the old tail too if it still fits.
                    check_tags(&mem, new, keep.min(EDGE), b.tag)?;
                    if new_size >= b.layout.size() {
                        check_tags(&mem, new, b.layout.size(), b.tag)?;
                    }
                    let l = layout(new_size, b.layout.align());
                    write_tags(&mut mem, new, new_size, b.tag);
                    insert_checked(&mut live, new, Block { layout: l, tag: b.tag })?;
                }
                Op::Trim => {
                    prop_assert!(g.with_heap(|h| h.trim(0)).unwrap().is_ok());
                }
                Op::Free(_) | Op::Realloc(..) => {}
            }
            prop_assert_eq!(g.validate(), Ok(()));
            prop_assert_eq!(g.stats().unwrap().bad_frees, 0);
        }
        for (addr, b) in core::mem::take(&mut live) {
            check_tags(&mem, addr, b.layout.size(), b.tag)?;
            g.deallocate(addr, b.layout);
        }
        let stats = g.stats().unwrap();
        prop_assert_eq!(stats.direct_maps, 0);
        prop_assert_eq!(stats.meta.used_bytes, 0);
        prop_assert_eq!(stats.heap.slab.large_allocations, 0);
        prop_assert_eq!(g.validate(), Ok(()));
    }
}

#[test]
fn with_a_thread_id_reentry_is_recognised() {
    fn me() -> usize {
        7
    }
    let s = MockMm::new();
    let g = GlobalHeap::with_transport(s.clone(), s.clone(), config())
        .unwrap()
        .with_thread_id(me);
    let (lo, hi) = meta_range(&g);
    let l = layout(40, 8);
    let inner = g.with_heap(|_| g.allocate(l)).unwrap().unwrap();
    assert!((lo..hi).contains(&inner));
    let outer = g.allocate(l).unwrap();
    assert!(!(lo..hi).contains(&outer));
    g.deallocate(inner, l);
    g.deallocate(outer, l);
    assert_eq!(g.stats().unwrap().meta.used_bytes, 0);
}
