//! Property tests: random operation sequences checked against a model of every frame.
//!
//! The model knows, for each frame of a small machine with holes, unaligned
//! ranges and a zone boundary inside a range, whether it is unmanaged, free,
//! allocated (as a block head, a block tail or a single order-0 frame) or
//! reserved. After every operation the allocator's invariants are checked
//! and its counters compared with the model; operations the model says must
//! fail must fail and change nothing; exact-place operations
//! (`alloc_contig_range`, reserving) must succeed exactly when the model says
//! the frames are free; allocations must respect their zone, alignment and
//! watermark; zeroed allocations must read as zero.

use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::memory::{ArenaMemory, MemoryAccess};

const SPAN: u64 = 12 * MIB;
const FRAMES: u64 = SPAN / 4096;
const DMA_MIB: u64 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum M {
    Unmanaged,
    Free,
    /// Head of a block of this order (order ≥ 1).
    Head(u32),
    Tail,
    /// An order-0 allocation of its own.
    Single,
    Reserved,
}

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        order: u32,
        dma: bool,
        mob: u8,
        prio: u8,
    },
    AllocZeroed {
        order: u32,
        dma: bool,
        mob: u8,
    },
    Free {
        pick: usize,
    },
    FreeWrongOrder {
        pick: usize,
        order: u32,
    },
    FreeAt {
        off: u64,
        order: u32,
    },
    Exact {
        count: u64,
        dma: bool,
        mob: u8,
    },
    FreeRun {
        pick: usize,
        len: u64,
    },
    Contig {
        off: u64,
        len: u64,
    },
    Reserve {
        off: u64,
        len: u64,
    },
    FreeReserved {
        off: u64,
        len: u64,
    },
    Drain {
        cpu: usize,
    },
    DrainAll,
    SetCpu {
        cpu: usize,
    },
    Refill {
        budget: usize,
    },
    DrainZeroed,
    SetMt {
        off: u64,
        mt: u8,
    },
    SetSkip {
        off: u64,
        on: bool,
    },
    SetMinFree {
        kb: u64,
    },
    /// Allocates until refused (memory pressure).
    Fill {
        order: u32,
        dma: bool,
        mob: u8,
        prio: u8,
    },
}

fn order() -> impl Strategy<Value = u32> {
    prop_oneof![6 => Just(0u32), 3 => 1u32..=3, 1 => 4u32..=MAX_ORDER]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (order(), any::<bool>(), 0u8..3, 0u8..3)
            .prop_map(|(order, dma, mob, prio)| Op::Alloc { order, dma, mob, prio }),
        4 => (0u32..=3, any::<bool>(), 0u8..3).prop_map(|(order, dma, mob)| Op::AllocZeroed { order, dma, mob }),
        16 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        2 => (any::<usize>(), 0u32..=11).prop_map(|(pick, order)| Op::FreeWrongOrder { pick, order }),
        2 => (0..FRAMES + 64, 0u32..=11).prop_map(|(off, order)| Op::FreeAt { off, order }),
        5 => (1u64..=70, any::<bool>(), 0u8..3).prop_map(|(count, dma, mob)| Op::Exact { count, dma, mob }),
        5 => (any::<usize>(), 1u64..=40).prop_map(|(pick, len)| Op::FreeRun { pick, len }),
        4 => (0..FRAMES + 64, prop_oneof![1u64..=16, 1u64..=600]).prop_map(|(off, len)| Op::Contig { off, len }),
        2 => (0..FRAMES, 1u64..=64).prop_map(|(off, len)| Op::Reserve { off, len }),
        2 => (0..FRAMES, 1u64..=64).prop_map(|(off, len)| Op::FreeReserved { off, len }),
        1 => (0usize..3).prop_map(|cpu| Op::Drain { cpu }),
        1 => Just(Op::DrainAll),
        1 => (0usize..3).prop_map(|cpu| Op::SetCpu { cpu }),
        2 => (0usize..24).prop_map(|budget| Op::Refill { budget }),
        1 => Just(Op::DrainZeroed),
        2 => (0..FRAMES, 0u8..4).prop_map(|(off, mt)| Op::SetMt { off, mt }),
        1 => (0..FRAMES, any::<bool>()).prop_map(|(off, on)| Op::SetSkip { off, on }),
        1 => prop_oneof![Just(0u64), Just(128), Just(512), Just(2048)].prop_map(|kb| Op::SetMinFree { kb }),
        1 => (0u32..=3, any::<bool>(), 0u8..3, 0u8..3)
            .prop_map(|(order, dma, mob, prio)| Op::Fill { order, dma, mob, prio }),
    ]
}

struct World {
    a: FrameAllocator,
    m: Vec<M>,
    mem: ArenaMemory,
    base: u64,
    limit: u64,
}

const MOBILITY: [Mobility; 3] = [
    Mobility::Unmovable,
    Mobility::Movable,
    Mobility::Reclaimable,
];
const PRIO: [Priority; 3] = [Priority::Normal, Priority::Atomic, Priority::Reserve];

impl World {
    fn new() -> World {
        let cfg = FrameConfig {
            nr_cpus: 2,
            pcp_batch: Some(4),
            pcp_high: Some(12),
            zero_pool_high: [6, 8, 2],
            min_free_kbytes: Some(256),
            ..config(DMA_MIB)
        };
        let ranges = [
            r(12 << 10, 3 * MIB + (20 << 10)),
            r(3 * MIB + (64 << 10), 9 * MIB),
            r(10 * MIB, 12 * MIB - 4096),
        ];
        let a = FrameAllocator::new(cfg, &ranges).unwrap();
        let base = RAM >> 12;
        let mut m = vec![M::Unmanaged; FRAMES as usize];
        for rg in &ranges {
            for p in rg.start.0.div_ceil(4096)..rg.end.0 / 4096 {
                m[(p - base) as usize] = M::Free;
            }
        }
        let mut mem = ArenaMemory::new(RAM, SPAN as usize);
        mem.fill(RAM, SPAN, 0x5a).unwrap();
        World {
            a,
            m,
            mem,
            base,
            limit: (RAM + DMA_MIB * MIB) >> 12,
        }
    }

    fn get(&self, pfn: u64) -> M {
        pfn.checked_sub(self.base)
            .and_then(|i| self.m.get(i as usize).copied())
            .unwrap_or(M::Unmanaged)
    }

    fn set(&mut self, pfn: u64, v: M) {
        self.m[(pfn - self.base) as usize] = v;
    }

    fn zone(&self, pfn: u64) -> ZoneType {
        if pfn < self.limit {
            ZoneType::Dma32
        } else {
            ZoneType::Normal
        }
    }

    /// Live allocations: (first frame, order or None for a single).
    fn live(&self) -> Vec<(u64, M)> {
        (0..FRAMES)
            .filter_map(|i| match self.m[i as usize] {
                v @ (M::Head(_) | M::Single) => Some((self.base + i, v)),
                _ => None,
            })
            .collect()
    }

    /// Records an allocation of `2^order` at `pfn` and dirties it.
    fn took(&mut self, pfn: u64, order: u32) {
        for i in 0..1u64 << order {
            assert_eq!(
                self.get(pfn + i),
                M::Free,
                "frame {:#x} handed out but not free",
                pfn + i
            );
            self.set(
                pfn + i,
                if i == 0 {
                    if order == 0 {
                        M::Single
                    } else {
                        M::Head(order)
                    }
                } else {
                    M::Tail
                },
            );
            self.mem.fill((pfn + i) << 12, 16, 0xa5).unwrap();
        }
    }

    fn watermark_ok(&self, z: ZoneType, order: u32, prio: Priority, class: ZoneType) -> bool {
        let s = self.a.zone_stats(z);
        if s.present == 0 {
            return false;
        }
        let ha: u64 = self.a.pagetypeinfo(z)[MigrateType::HighAtomic as usize]
            .iter()
            .enumerate()
            .map(|(o, n)| n << o)
            .sum();
        let res = s.lowmem_reserve[class.index()];
        match prio {
            Priority::Reserve => s.free >= 1 << order,
            Priority::Atomic => s.free >= s.watermarks.min + res + (1 << order),
            Priority::Normal => s.free - ha >= s.watermarks.low + res + (1 << order),
        }
    }

    /// Whether the model has an aligned free run of `2^order` in an allowed zone.
    fn has_free_block(&self, order: u32, class: ZoneType) -> bool {
        let n = 1u64 << order;
        let first = self.base.div_ceil(n) * n;
        (first..self.base + FRAMES).step_by(n as usize).any(|p| {
            self.zone(p) <= class
                && (p..p + n).all(|q| self.get(q) == M::Free && self.zone(q) == self.zone(p))
        })
    }

    fn check_model(&self) {
        check(&self.a);
        for z in ZoneType::ALL {
            let s = self.a.zone_stats(z);
            let in_zone = |v: &dyn Fn(M) -> bool| {
                (0..FRAMES)
                    .filter(|&i| self.zone(self.base + i) == z && v(self.m[i as usize]))
                    .count() as u64
            };
            assert_eq!(s.present, in_zone(&|v| v != M::Unmanaged), "{z:?} present");
            assert_eq!(
                s.allocated,
                in_zone(&|v| matches!(v, M::Head(_) | M::Tail | M::Single)),
                "{z:?} allocated"
            );
            assert_eq!(s.reserved, in_zone(&|v| v == M::Reserved), "{z:?} reserved");
        }
    }

    /// Runs a free-like operation the model says is `ok`; a refused one must change nothing.
    fn expect(
        &mut self,
        ok: bool,
        f: impl FnOnce(&mut FrameAllocator) -> Result<(), FrameError>,
    ) -> bool {
        let before = self.a.clone();
        let r = f(&mut self.a);
        assert_eq!(r.is_ok(), ok, "model expected ok={ok}, got {r:?}");
        if !ok {
            assert!(
                self.a == before,
                "a refused operation changed the allocator"
            );
        }
        ok
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Alloc {
                order,
                dma,
                mob,
                prio,
            } => {
                let class = if dma {
                    ZoneType::Dma32
                } else {
                    ZoneType::Normal
                };
                let flags = GfpFlags {
                    zone: class,
                    mobility: MOBILITY[mob as usize],
                    priority: PRIO[prio as usize],
                };
                match self.a.alloc_pages(order, flags) {
                    Ok(p) => {
                        assert_eq!(p.0 % (1 << order), 0, "aligned");
                        let z = self.zone(p.0);
                        assert!(z <= class, "zone {z:?} not allowed by {class:?}");
                        self.took(p.0, order);
                        let s = self.a.zone_stats(z);
                        let res = s.lowmem_reserve[class.index()];
                        match flags.priority {
                            Priority::Normal => {
                                assert!(s.free >= s.watermarks.low + res, "below low: {s:?}")
                            }
                            Priority::Atomic => {
                                assert!(s.free >= s.watermarks.min + res, "below min: {s:?}")
                            }
                            Priority::Reserve => {}
                        }
                    }
                    Err(e) => {
                        assert_eq!(e, FrameError::NoMemory);
                        // Watermark checks are exact for order 0; a reserve
                        // allocation fails only if no aligned free run exists.
                        for z in ZoneType::ALL.into_iter().filter(|&z| z <= class) {
                            if order == 0 {
                                assert!(
                                    !self.watermark_ok(z, 0, flags.priority, class),
                                    "order-0 failure in {z:?} above its watermark"
                                );
                            }
                        }
                        if flags.priority == Priority::Reserve && order <= PAGEBLOCK_ORDER {
                            assert!(
                                !self.has_free_block(order, class),
                                "reserve order-{order} failure with a free run"
                            );
                        }
                    }
                }
            }
            Op::AllocZeroed { order, dma, mob } => {
                let class = if dma {
                    ZoneType::Dma32
                } else {
                    ZoneType::Normal
                };
                let flags = GfpFlags::KERNEL
                    .with_zone(class)
                    .with_mobility(MOBILITY[mob as usize]);
                if let Ok(p) = self.a.alloc_zeroed(order, flags, &mut self.mem) {
                    let mut buf = vec![0xffu8; 4096 << order];
                    self.mem.read(p.addr().0, &mut buf).unwrap();
                    assert!(buf.iter().all(|&b| b == 0), "zeroed allocation not zero");
                    self.took(p.0, order);
                }
            }
            Op::Free { pick } => {
                let live = self.live();
                if live.is_empty() {
                    return;
                }
                let (p, v) = live[pick % live.len()];
                let order = if let M::Head(o) = v { o } else { 0 };
                // Half the time by address.
                let r = if pick % 2 == 0 {
                    self.a.free_pages(Pfn(p), order)
                } else {
                    self.a.free_pages(Pfn(p).addr(), order)
                };
                assert_eq!(r, Ok(()));
                for i in 0..1 << order {
                    self.set(p + i, M::Free);
                }
            }
            Op::FreeWrongOrder { pick, order } => {
                let live = self.live();
                if live.is_empty() {
                    return;
                }
                let (p, v) = live[pick % live.len()];
                let right = if let M::Head(o) = v { o } else { 0 };
                if order != right {
                    self.expect(false, |a| a.free_pages(Pfn(p), order));
                }
            }
            Op::FreeAt { off, order } => {
                let p = self.base + off;
                let ok = order <= MAX_ORDER
                    && match self.get(p) {
                        M::Head(o) => o == order,
                        M::Single => order == 0,
                        _ => false,
                    };
                if self.expect(ok, |a| a.free_pages(Pfn(p), order)) {
                    for i in 0..1 << order {
                        self.set(p + i, M::Free);
                    }
                }
            }
            Op::Exact { count, dma, mob } => {
                let class = if dma {
                    ZoneType::Dma32
                } else {
                    ZoneType::Normal
                };
                let flags = GfpFlags::KERNEL
                    .with_zone(class)
                    .with_mobility(MOBILITY[mob as usize]);
                if let Ok(p) = self.a.alloc_pages_exact(count, flags) {
                    assert_eq!(p.0 % count.next_power_of_two(), 0);
                    assert!(self.zone(p.0) <= class);
                    for i in 0..count {
                        self.took(p.0 + i, 0);
                    }
                }
            }
            Op::FreeRun { pick, len } => {
                let live: Vec<u64> = self
                    .live()
                    .into_iter()
                    .filter(|&(_, v)| v == M::Single)
                    .map(|(p, _)| p)
                    .collect();
                if live.is_empty() {
                    return;
                }
                let p = live[pick % live.len()];
                let ok = (0..len).all(|i| self.get(p + i) == M::Single)
                    && self.zone(p) == self.zone(p + len - 1);
                if self.expect(ok, |a| a.free_pages_exact(Pfn(p), len)) {
                    for i in 0..len {
                        self.set(p + i, M::Free);
                    }
                }
            }
            Op::Contig { off, len } | Op::Reserve { off, len } => {
                let reserve = matches!(op, Op::Reserve { .. });
                let (s, e) = (self.base + off, self.base + off + len);
                let all_free = (s..e).all(|q| self.get(q) == M::Free);
                let ok = all_free && self.zone(s) == self.zone(e - 1);
                let before = self.a.clone();
                let r = if reserve {
                    self.a.reserve_range(Pfn(s), Pfn(e))
                } else {
                    self.a.alloc_contig_range(Pfn(s), Pfn(e))
                };
                if ok {
                    assert_eq!(r, Ok(()), "range {s:#x}..{e:#x} is free");
                    for q in s..e {
                        self.set(q, if reserve { M::Reserved } else { M::Single });
                    }
                } else {
                    let err = r.expect_err("range is not all free");
                    assert!(
                        matches!(
                            err,
                            FrameError::Busy | FrameError::NotManaged | FrameError::InvalidRange
                        ),
                        "{err:?}"
                    );
                    let busy_only = (s..e).all(|q| self.get(q) != M::Unmanaged)
                        && self.zone(s) == self.zone(e - 1);
                    if busy_only {
                        assert_eq!(err, FrameError::Busy);
                    }
                    assert!(
                        self.a == before,
                        "a failed contig allocation changed the allocator"
                    );
                }
            }
            Op::FreeReserved { off, len } => {
                let (s, e) = (self.base + off, self.base + off + len);
                let ok =
                    (s..e).all(|q| self.get(q) == M::Reserved) && self.zone(s) == self.zone(e - 1);
                if self.expect(ok, |a| a.free_reserved_range(Pfn(s), Pfn(e))) {
                    for q in s..e {
                        self.set(q, M::Free);
                    }
                }
            }
            Op::Drain { cpu } => {
                assert_eq!(self.a.drain_pages(cpu).is_ok(), cpu < 2);
                if cpu < 2 {
                    for z in ZoneType::ALL {
                        let _ = z;
                    }
                }
            }
            Op::DrainAll => {
                self.a.drain_all_pages();
                for z in ZoneType::ALL {
                    assert_eq!(self.a.zone_stats(z).pcp, 0);
                }
            }
            Op::SetCpu { cpu } => assert_eq!(self.a.set_cpu(cpu).is_ok(), cpu < 2),
            Op::Refill { budget } => {
                let n = self.a.refill_zeroed(&mut self.mem, budget).unwrap();
                assert!(n <= budget);
            }
            Op::DrainZeroed => {
                self.a.drain_zeroed();
                for z in ZoneType::ALL {
                    assert_eq!(self.a.zone_stats(z).zeroed, 0);
                }
            }
            Op::SetMt { off, mt } => {
                let p = Pfn(self.base + off);
                let mt = MigrateType::from_bits(mt).unwrap();
                if self.a.set_pageblock_migratetype(p, mt).is_ok() {
                    assert_eq!(self.a.get_pageblock_migratetype(p), Ok(mt));
                }
            }
            Op::SetSkip { off, on } => {
                let p = Pfn(self.base + off);
                let mt = self.a.get_pfnblock_flags_mask(p, PB_MIGRATETYPE_MASK);
                if self
                    .a
                    .set_pfnblock_flags_mask(
                        p,
                        if on { PB_MIGRATE_SKIP } else { 0 },
                        PB_MIGRATE_SKIP,
                    )
                    .is_ok()
                {
                    assert_eq!(
                        self.a.get_pfnblock_flags_mask(p, PB_MIGRATE_SKIP),
                        Ok(if on { PB_MIGRATE_SKIP } else { 0 })
                    );
                    assert_eq!(self.a.get_pfnblock_flags_mask(p, PB_MIGRATETYPE_MASK), mt);
                }
            }
            Op::SetMinFree { kb } => self.a.set_min_free_kbytes(Some(kb)),
            Op::Fill {
                order,
                dma,
                mob,
                prio,
            } => {
                for _ in 0..FRAMES {
                    let before = self.a.nr_free_pages();
                    self.step(&Op::Alloc {
                        order,
                        dma,
                        mob,
                        prio,
                    });
                    if self.a.nr_free_pages() == before {
                        break; // refused
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(ops in proptest::collection::vec(op(), 1..250)) {
        let mut w = World::new();
        w.check_model();
        for op in &ops {
            w.step(op);
            w.check_model();
        }
        // Everything given back merges to the initial free lists.
        for (p, v) in w.live() {
            let order = if let M::Head(o) = v { o } else { 0 };
            w.a.free_pages(Pfn(p), order).unwrap();
        }
        let reserved: Vec<u64> = (0..FRAMES).filter(|&i| w.m[i as usize] == M::Reserved).map(|i| w.base + i).collect();
        for q in reserved {
            w.a.free_reserved_range(Pfn(q), Pfn(q + 1)).unwrap();
        }
        w.a.drain_all_pages();
        w.a.drain_zeroed();
        check(&w.a);
        let fresh = World::new();
        for z in ZoneType::ALL {
            prop_assert_eq!(w.a.zone_stats(z).free, fresh.a.zone_stats(z).free);
            prop_assert_eq!(w.a.buddyinfo(z), fresh.a.buddyinfo(z));
        }
    }
}
