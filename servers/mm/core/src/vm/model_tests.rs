//! Property tests: the region map and the reverse map against simple models.
//!
//! The region map is checked against an array with one entry per page of a
//! small window (unmapped, or the page's own backing, protection and flags).
//! The model predicts the result of every call — including which error, and
//! the address a placement picks, found by brute force over every candidate —
//! and the expected regions are derived from the page array: maximal runs of
//! pages whose attributes continue one another (plus, for `NO_MERGE` pages,
//! the cuts made by the calls that split them). After **every** operation the
//! test compares results, removed pieces, regions, per-page lookups and
//! counts, and runs `check_invariants()`.
//!
//! The reverse map is checked against a plain list of (place, frame, object
//! page) tuples, comparing every query over a small universe after every
//! operation.

use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};

const P: u64 = PAGE_SIZE;
/// The window: `N` pages from `LO` (2 MiB-aligned).
const LO: u64 = 0x4000_0000;
const N: u64 = 48;
const HI: u64 = LO + N * P;
/// The highest page address.
const TOP: u64 = !(P - 1);

/// One page's attributes in the model; offsets are the page's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MKind {
    Anon,
    File(u64, u64),
    Device(u64),
    Dma(u64),
    Shared(u64, u64),
    Guard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MPage {
    kind: MKind,
    prot: Prot,
    flags: RegionFlags,
}

/// A run of pages forming one expected region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    first: u64,
    pages: u64,
    head: MPage,
}

#[derive(Clone, Debug)]
struct Model {
    pages: Vec<Option<MPage>>,
    /// `cut[i]`: a region boundary forced between pages `i - 1` and `i`
    /// (only consulted for `NO_MERGE` pages, whose splits never heal).
    cut: Vec<bool>,
    config: VmConfig,
}

fn page_kind(kind: RegionKind, j: u64) -> MKind {
    match kind {
        RegionKind::Anonymous => MKind::Anon,
        RegionKind::FileBacked { object, offset } => MKind::File(object.0, offset + j),
        RegionKind::Device { phys } => MKind::Device((phys.0 / P) + j),
        RegionKind::DmaCoherent { bus } => MKind::Dma((bus.0 / P) + j),
        RegionKind::Shared { id, offset } => MKind::Shared(id.0, offset + j),
        RegionKind::Guard => MKind::Guard,
    }
}

fn region_page(r: &Region, j: u64) -> MPage {
    MPage {
        kind: page_kind(r.kind, j),
        prot: r.prot,
        flags: r.flags,
    }
}

fn continues(a: MKind, b: MKind) -> bool {
    match (a, b) {
        (MKind::Anon, MKind::Anon) | (MKind::Guard, MKind::Guard) => true,
        (MKind::File(o, x), MKind::File(p, y)) | (MKind::Shared(o, x), MKind::Shared(p, y)) => {
            o == p && x + 1 == y
        }
        (MKind::Device(x), MKind::Device(y)) | (MKind::Dma(x), MKind::Dma(y)) => x + 1 == y,
        _ => false,
    }
}

impl Model {
    fn new(config: VmConfig) -> Model {
        Model {
            pages: vec![None; N as usize],
            cut: vec![false; N as usize + 1],
            config,
        }
    }

    /// Whether pages `i - 1` and `i` belong to one region.
    fn joined(&self, i: usize) -> bool {
        match (self.pages[i - 1], self.pages[i]) {
            (Some(a), Some(b)) => {
                a.prot == b.prot
                    && a.flags == b.flags
                    && continues(a.kind, b.kind)
                    && !(a.flags.contains(RegionFlags::NO_MERGE) && self.cut[i])
            }
            _ => false,
        }
    }

    fn runs(&self) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for i in 0..N as usize {
            let Some(page) = self.pages[i] else { continue };
            if i > 0 && self.joined(i) {
                if let Some(last) = runs.last_mut() {
                    last.pages += 1;
                }
            } else {
                runs.push(Run {
                    first: i as u64,
                    pages: 1,
                    head: page,
                });
            }
        }
        runs
    }

    /// The model's version of `check_range`: the page range, or the error.
    fn range(start: u64, len: u64) -> Result<(usize, usize), VmError> {
        if len == 0 {
            return Err(VmError::ZeroLength);
        }
        if !start.is_multiple_of(P) || !len.is_multiple_of(P) {
            return Err(VmError::Unaligned);
        }
        let end = start.checked_add(len).ok_or(VmError::Overflow)?;
        if start < LO || end > HI {
            return Err(VmError::OutsideWindow);
        }
        Ok((((start - LO) / P) as usize, ((end - LO) / P) as usize))
    }

    fn validate(spec: &RegionSpec) -> Result<(), VmError> {
        if spec.len == 0 {
            return Err(VmError::ZeroLength);
        }
        if !spec.len.is_multiple_of(P) {
            return Err(VmError::Unaligned);
        }
        if spec.kind == RegionKind::Guard && spec.prot != Prot::NONE {
            return Err(VmError::GuardProtection);
        }
        let pages = spec.len / P;
        let ok = match spec.kind {
            RegionKind::FileBacked { offset, .. } | RegionKind::Shared { offset, .. } => {
                offset.checked_add(pages).is_some()
            }
            RegionKind::Device { phys: b } | RegionKind::DmaCoherent { bus: b } => {
                b.0.is_multiple_of(P) && b.0.checked_add(spec.len).is_some()
            }
            _ => true,
        };
        if !ok {
            return Err(VmError::BadBacking);
        }
        Ok(())
    }

    /// The pieces an unmap of pages `[a, b)` would return.
    fn pieces(&self, a: usize, b: usize) -> Vec<Run> {
        let mut out = Vec::new();
        for run in self.runs() {
            let (s, e) = (run.first as usize, (run.first + run.pages) as usize);
            let (ps, pe) = (s.max(a), e.min(b));
            if ps < pe {
                out.push(Run {
                    first: ps as u64,
                    pages: (pe - ps) as u64,
                    head: self.pages[ps].expect("mapped"),
                });
            }
        }
        out
    }

    fn put(&mut self, a: usize, spec: &RegionSpec) {
        let b = a + (spec.len / P) as usize;
        for i in a..b {
            self.pages[i] = Some(MPage {
                kind: page_kind(spec.kind, (i - a) as u64),
                prot: spec.prot,
                flags: spec.flags,
            });
        }
        for i in a + 1..b {
            self.cut[i] = false;
        }
        self.cut[a] = true;
        self.cut[b] = true;
    }

    /// Applies `f` to a copy; keeps it unless it exceeds the region limit.
    fn commit(&mut self, f: impl FnOnce(&mut Model)) -> Result<(), VmError> {
        let mut next = self.clone();
        f(&mut next);
        if next.runs().len() > self.config.max_regions {
            return Err(VmError::TooManyRegions);
        }
        *self = next;
        Ok(())
    }

    fn map_fixed(
        &mut self,
        start: u64,
        spec: &RegionSpec,
        replace: bool,
    ) -> Result<Vec<Run>, VmError> {
        let (a, b) = Model::range(start, spec.len)?;
        Model::validate(spec)?;
        let pieces = self.pieces(a, b);
        if !replace && !pieces.is_empty() {
            return Err(VmError::Overlap);
        }
        self.commit(|m| m.put(a, spec))?;
        Ok(pieces)
    }

    fn unmap(&mut self, start: u64, len: u64) -> Result<Vec<Run>, VmError> {
        let (a, b) = Model::range(start, len)?;
        let pieces = self.pieces(a, b);
        self.commit(|m| {
            for i in a..b {
                m.pages[i] = None;
            }
            m.cut[a] = true;
            m.cut[b] = true;
        })?;
        Ok(pieces)
    }

    fn protect(&mut self, start: u64, len: u64, prot: Prot) -> Result<(), VmError> {
        let (a, b) = Model::range(start, len)?;
        if self.pages[a..b].iter().any(Option::is_none) {
            return Err(VmError::NotMapped);
        }
        if self.pages[a..b]
            .iter()
            .any(|p| p.is_some_and(|p| p.kind == MKind::Guard))
        {
            return Err(VmError::GuardRegion);
        }
        self.commit(|m| {
            let splits = |p: Option<MPage>| {
                p.is_some_and(|p| p.flags.contains(RegionFlags::NO_MERGE) && p.prot != prot)
            };
            if splits(m.pages[a]) {
                m.cut[a] = true;
            }
            if splits(m.pages[b - 1]) {
                m.cut[b] = true;
            }
            for p in m.pages[a..b].iter_mut().flatten() {
                p.prot = prot;
            }
        })
    }

    /// Whether `len` bytes fit at `at` for this search: aligned, inside
    /// `[lo, hi)`, pages and guard pages (within the window) free.
    fn fits(&self, at: u64, len: u64, align: u64, guard: u64, lo: u64, hi: u64) -> bool {
        if !at.is_multiple_of(align) || at < lo || at.checked_add(len).is_none_or(|e| e > hi) {
            return false;
        }
        let first = at.saturating_sub(guard.saturating_mul(P)).max(LO);
        let last = (at + len).saturating_add(guard.saturating_mul(P)).min(HI);
        (first..last)
            .step_by(P as usize)
            .all(|va| self.pages[((va - LO) / P) as usize].is_none())
    }

    fn place(&self, len: u64, p: &Placement) -> Result<u64, VmError> {
        if len == 0 {
            return Err(VmError::ZeroLength);
        }
        if !len.is_multiple_of(P) {
            return Err(VmError::Unaligned);
        }
        if !p.align.is_power_of_two() || p.align < P {
            return Err(VmError::BadAlignment);
        }
        let (mut lo, mut hi) = (LO, HI);
        if let Some((a, b)) = p.within {
            if !a.0.is_multiple_of(P) || !b.0.is_multiple_of(P) {
                return Err(VmError::Unaligned);
            }
            lo = lo.max(a.0);
            hi = hi.min(b.0);
        }
        if lo >= hi {
            return Err(VmError::NoSpace);
        }
        let guard = p.guard_pages.unwrap_or(self.config.guard_pages);
        if let Some(h) = p.hint
            && self.fits(h.0, len, p.align, guard, lo, hi)
        {
            return Ok(h.0);
        }
        let mut candidates = (0..N)
            .map(|i| LO + i * P)
            .filter(|&at| self.fits(at, len, p.align, guard, lo, hi));
        let found = match p.direction.unwrap_or(self.config.direction) {
            Direction::BottomUp => candidates.next(),
            Direction::TopDown => candidates.next_back(),
        };
        found.ok_or(VmError::NoSpace)
    }

    fn map(&mut self, spec: &RegionSpec, p: &Placement) -> Result<u64, VmError> {
        Model::validate(spec)?;
        let at = self.place(spec.len, p)?;
        let a = ((at - LO) / P) as usize;
        self.commit(|m| m.put(a, spec))?;
        Ok(at)
    }
}

/// The pieces a real call returned, as runs.
fn as_runs(pieces: &[Region]) -> Vec<Run> {
    pieces
        .iter()
        .map(|r| Run {
            first: (r.start.0 - LO) / P,
            pages: r.pages(),
            head: region_page(r, 0),
        })
        .collect()
}

/// Compares the real map with the model in every way.
fn check_same(real: &RegionMap, model: &Model) -> Result<(), TestCaseError> {
    if let Err(e) = real.check_invariants() {
        return Err(TestCaseError::fail(std::format!("invariant: {e}")));
    }
    let runs = model.runs();
    let got: Vec<Run> = as_runs(&real.iter().copied().collect::<Vec<_>>());
    prop_assert_eq!(&got, &runs, "regions differ");
    prop_assert_eq!(real.len(), runs.len());
    let mapped = model.pages.iter().filter(|p| p.is_some()).count() as u64;
    prop_assert_eq!(real.mapped_pages(), mapped);
    for i in 0..N {
        let va = VirtAddr(LO + i * P + (i * 0x123) % P);
        let want = model.pages[i as usize];
        // The cached lookup agrees with the tree, before and after changes
        // (this check runs after every step).
        prop_assert_eq!(real.region_at(va), real.find(va));
        match real.lookup(va) {
            None => prop_assert!(want.is_none(), "page {} should be mapped", i),
            Some(hit) => {
                let want = want.ok_or_else(|| TestCaseError::fail("page should be unmapped"))?;
                prop_assert_eq!(hit.page, VirtAddr(LO + i * P));
                prop_assert_eq!(region_page(hit.region, hit.index), want);
                let backing = match want.kind {
                    MKind::Anon => Backing::Anonymous,
                    MKind::File(o, p) => Backing::File {
                        object: ObjectId(o),
                        page: p,
                    },
                    MKind::Device(f) => Backing::Device {
                        phys: PhysAddr(f * P),
                    },
                    MKind::Dma(f) => Backing::DmaCoherent {
                        bus: PhysAddr(f * P),
                    },
                    MKind::Shared(s, p) => Backing::Shared {
                        id: SharedId(s),
                        page: p,
                    },
                    MKind::Guard => Backing::Guard,
                };
                prop_assert_eq!(hit.backing, backing);
            }
        }
    }
    Ok(())
}

/// Cases per property: 512, or `PROPTEST_CASES` when set (for longer runs).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

#[derive(Clone, Debug)]
enum Op {
    MapFixed(u64, RegionSpec),
    Replace(u64, RegionSpec),
    Map(RegionSpec, Placement),
    Unmap(u64, u64),
    Protect(u64, u64, Prot),
}

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        40 => (-2i64..N as i64 + 2).prop_map(|p| (LO as i64 + p * P as i64) as u64),
        1 => Just(TOP),
        1 => (0..N).prop_map(|p| LO + p * P + 0x10),
    ]
}

fn len() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0),
        40 => (1u64..10).prop_map(|n| n * P),
        1 => Just(TOP),
        1 => (1u64..4).prop_map(|n| n * P + 8),
    ]
}

fn prot() -> impl Strategy<Value = Prot> {
    prop_oneof![
        3 => Just(Prot::RW),
        3 => Just(Prot::READ),
        1 => (0u8..8).prop_map(|b| Prot::from_bits(b).unwrap_or(Prot::NONE)),
    ]
}

fn kind() -> impl Strategy<Value = RegionKind> {
    prop_oneof![
        6 => Just(RegionKind::Anonymous),
        3 => (1u64..3, 0u64..6).prop_map(|(o, off)| RegionKind::FileBacked {
            object: ObjectId(o),
            offset: off,
        }),
        1 => Just(RegionKind::FileBacked { object: ObjectId(1), offset: u64::MAX - 2 }),
        2 => (0u64..6).prop_map(|f| RegionKind::Device { phys: PhysAddr(0x900_0000 + f * P) }),
        1 => Just(RegionKind::Device { phys: PhysAddr(0x900_0008) }),
        1 => Just(RegionKind::DmaCoherent { bus: PhysAddr(TOP - P) }),
        2 => (0u64..6).prop_map(|f| RegionKind::DmaCoherent { bus: PhysAddr(0x900_0000 + f * P) }),
        2 => (1u64..3, 0u64..6).prop_map(|(s, off)| RegionKind::Shared {
            id: SharedId(s),
            offset: off,
        }),
        2 => Just(RegionKind::Guard),
    ]
}

fn spec() -> impl Strategy<Value = RegionSpec> {
    let flags = prop_oneof![
        4 => Just(RegionFlags::NONE),
        1 => Just(RegionFlags(1)),
        2 => Just(RegionFlags::NO_MERGE),
    ];
    (len(), prot(), flags, kind()).prop_map(|(len, prot, flags, kind)| {
        // Guards are mostly well-formed, so that they get mapped.
        let prot = if kind == RegionKind::Guard && prot == Prot::RW {
            Prot::NONE
        } else {
            prot
        };
        RegionSpec {
            len,
            prot,
            flags,
            kind,
        }
    })
}

fn placement() -> impl Strategy<Value = Placement> {
    let align = prop_oneof![
        6 => Just(P),
        2 => Just(2 * P),
        2 => Just(4 * P),
        1 => Just(16 * P),
        1 => Just(3 * P),
        1 => Just(P / 2),
    ];
    let direction = prop_oneof![
        Just(None),
        Just(Some(Direction::TopDown)),
        Just(Some(Direction::BottomUp))
    ];
    let guard =
        prop_oneof![3 => Just(None), 1 => (0u64..3).prop_map(Some), 1 => Just(Some(u64::MAX))];
    let hint = prop_oneof![3 => Just(None), 1 => addr().prop_map(|a| Some(VirtAddr(a)))];
    let within = prop_oneof![
        4 => Just(None),
        1 => (addr(), addr()).prop_map(|(a, b)| Some((VirtAddr(a), VirtAddr(b)))),
    ];
    (align, direction, guard, hint, within).prop_map(
        |(align, direction, guard_pages, hint, within)| Placement {
            align,
            direction,
            guard_pages,
            hint,
            within,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (addr(), spec()).prop_map(|(a, s)| Op::MapFixed(a, s)),
        2 => (addr(), spec()).prop_map(|(a, s)| Op::Replace(a, s)),
        4 => (spec(), placement()).prop_map(|(s, p)| Op::Map(s, p)),
        3 => (addr(), len()).prop_map(|(a, l)| Op::Unmap(a, l)),
        2 => (addr(), len(), prot()).prop_map(|(a, l, p)| Op::Protect(a, l, p)),
        4 => (addr(), 1u64..4, prot()).prop_map(|(a, n, p)| Op::Protect(a, n * P, p)),
    ]
}

fn config() -> impl Strategy<Value = VmConfig> {
    let direction = prop_oneof![Just(Direction::TopDown), Just(Direction::BottomUp)];
    let max = prop_oneof![1 => Just(4usize), 1 => Just(12), 2 => Just(1000)];
    (0u64..3, direction, max).prop_map(|(guard_pages, direction, max_regions)| VmConfig {
        lower: VirtAddr(LO),
        upper: VirtAddr(HI),
        guard_pages,
        direction,
        max_regions,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn region_map_matches_page_model(
        config in config(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut real = RegionMap::new(config)
            .map_err(|e| TestCaseError::fail(std::format!("{e}")))?;
        let mut model = Model::new(config);
        for op in ops {
            match op {
                Op::MapFixed(a, s) => {
                    let want = model.map_fixed(a, &s, false).map(|_| ());
                    prop_assert_eq!(real.map_fixed(VirtAddr(a), s), want, "{:?}", op);
                }
                Op::Replace(a, s) => {
                    let want = model.map_fixed(a, &s, true);
                    let got = real.map_fixed_replace(VirtAddr(a), s).map(|p| as_runs(&p));
                    prop_assert_eq!(got, want, "{:?}", op);
                }
                Op::Map(s, p) => {
                    let want = model.map(&s, &p).map(VirtAddr);
                    prop_assert_eq!(real.map(s, &p), want, "{:?}", op);
                }
                Op::Unmap(a, l) => {
                    let want = model.unmap(a, l);
                    let got = real.unmap(VirtAddr(a), l).map(|p| as_runs(&p));
                    prop_assert_eq!(got, want, "{:?}", op);
                }
                Op::Protect(a, l, p) => {
                    let want = model.protect(a, l, p);
                    prop_assert_eq!(real.protect(VirtAddr(a), l, p), want, "{:?}", op);
                }
            }
            check_same(&real, &model)?;
        }
        let all = real.unmap_all();
        prop_assert_eq!(as_runs(&all), model.runs());
        prop_assert!(real.is_empty());
        prop_assert!(real.check_invariants().is_ok());
    }
}

// ---------------------------------------------------------------------------
// The reverse map against a list of tuples.

/// The addresses the rmap test uses: a few low pages and the very last page.
fn rva(i: u8) -> VirtAddr {
    match i {
        0..=5 => VirtAddr(0x10_0000 + u64::from(i) * P),
        6 => VirtAddr(TOP),
        _ => VirtAddr(0x10_0000 + 8), // unaligned
    }
}

#[derive(Clone, Debug)]
enum ROp {
    Insert(u64, u8, u64, Option<(u64, u64)>),
    Remove(u64, u8),
    RemoveRange(u64, u8, u64),
    RemoveClient(u64),
    UnmapMappingRange(u64, u64, u64),
}

fn rop() -> impl Strategy<Value = ROp> {
    let file = prop_oneof![2 => Just(None), 3 => (1u64..3, 0u64..4).prop_map(Some)];
    prop_oneof![
        8 => (0u64..3, 0u8..8, 0u64..5, file).prop_map(|(c, v, f, fp)| ROp::Insert(c, v, f, fp)),
        3 => (0u64..3, 0u8..7).prop_map(|(c, v)| ROp::Remove(c, v)),
        1 => (0u64..3, 0u8..7, prop_oneof![0u64..4, Just(u64::MAX)])
            .prop_map(|(c, v, n)| ROp::RemoveRange(c, v, n.saturating_mul(P))),
        1 => (0u64..3).prop_map(ROp::RemoveClient),
        1 => (1u64..3, 0u64..4, prop_oneof![0u64..3, Just(u64::MAX)])
            .prop_map(|(o, f, n)| ROp::UnmapMappingRange(o, f, n)),
    ]
}

type Tuple = (Place, Pfn, Option<FilePage>);

fn place(client: u64, va: VirtAddr) -> Place {
    Place {
        client: ClientId(client),
        va,
    }
}

fn check_rmap(real: &ReverseMap, model: &[Tuple]) -> Result<(), TestCaseError> {
    if let Err(e) = real.check_invariants() {
        return Err(TestCaseError::fail(std::format!("invariant: {e}")));
    }
    prop_assert_eq!(real.len(), model.len());
    let mut frames: Vec<Pfn> = model.iter().map(|t| t.1).collect();
    frames.sort();
    frames.dedup();
    prop_assert_eq!(real.frames(), frames.len());
    for client in 0..3u64 {
        for i in 0..7u8 {
            let p = place(client, rva(i));
            let want = model.iter().find(|t| t.0 == p).map(|t| RmapEntry {
                pfn: t.1,
                file: t.2,
            });
            prop_assert_eq!(real.translate(p), want);
        }
        let mut want: Vec<(VirtAddr, RmapEntry)> = model
            .iter()
            .filter(|t| t.0.client.0 == client)
            .map(|t| {
                (
                    t.0.va,
                    RmapEntry {
                        pfn: t.1,
                        file: t.2,
                    },
                )
            })
            .collect();
        want.sort_by_key(|w| w.0);
        let got: Vec<_> = real
            .client_mappings(ClientId(client), VirtAddr(0), u64::MAX)
            .collect();
        prop_assert_eq!(got, want);
    }
    for pfn in (0..5).map(Pfn) {
        let mut want: Vec<Place> = model.iter().filter(|t| t.1 == pfn).map(|t| t.0).collect();
        want.sort();
        let got: Vec<Place> = real.mappings(pfn).collect();
        prop_assert_eq!(real.mappings(pfn).len(), want.len());
        prop_assert_eq!(real.map_count(pfn), want.len());
        prop_assert_eq!(got, want);
    }
    for object in 1..3u64 {
        for first in 0..4u64 {
            for count in [1u64, 2, u64::MAX] {
                let mut want: Vec<(FilePage, Place)> = model
                    .iter()
                    .filter_map(|t| Some((t.2?, t.0)))
                    .filter(|(fp, _)| {
                        fp.object.0 == object && fp.index >= first && fp.index - first < count
                    })
                    .collect();
                want.sort();
                let got: Vec<_> = real.file_mappings(ObjectId(object), first, count).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn reverse_map_matches_tuple_model(ops in prop::collection::vec(rop(), 1..100)) {
        let mut real = ReverseMap::new();
        let mut model: Vec<Tuple> = Vec::new();
        for op in ops {
            match op {
                ROp::Insert(c, v, f, fp) => {
                    let p = place(c, rva(v));
                    let file = fp.map(|(o, i)| FilePage { object: ObjectId(o), index: i });
                    let want = if v == 7 {
                        Err(VmError::Unaligned)
                    } else if model.iter().any(|t| t.0 == p) {
                        Err(VmError::AlreadyMapped)
                    } else {
                        model.push((p, Pfn(f), file));
                        Ok(())
                    };
                    prop_assert_eq!(real.insert(p, Pfn(f), file), want);
                }
                ROp::Remove(c, v) => {
                    let p = place(c, rva(v));
                    let want = model
                        .iter()
                        .position(|t| t.0 == p)
                        .map(|i| model.remove(i))
                        .map(|t| RmapEntry { pfn: t.1, file: t.2 });
                    prop_assert_eq!(real.remove(p), want);
                }
                ROp::RemoveRange(c, v, len) => {
                    let (start, end) = (rva(v).0, rva(v).0.saturating_add(len));
                    let inside = |t: &Tuple| {
                        t.0.client.0 == c && t.0.va.0 >= start && t.0.va.0 < end
                    };
                    let mut want: Vec<(VirtAddr, RmapEntry)> = model
                        .iter()
                        .filter(|t| inside(t))
                        .map(|t| (t.0.va, RmapEntry { pfn: t.1, file: t.2 }))
                        .collect();
                    want.sort_by_key(|w| w.0);
                    model.retain(|t| !inside(t));
                    prop_assert_eq!(real.remove_range(ClientId(c), rva(v), len), want);
                }
                ROp::RemoveClient(c) => {
                    let mut want: Vec<(VirtAddr, RmapEntry)> = model
                        .iter()
                        .filter(|t| t.0.client.0 == c)
                        .map(|t| (t.0.va, RmapEntry { pfn: t.1, file: t.2 }))
                        .collect();
                    want.sort_by_key(|w| w.0);
                    model.retain(|t| t.0.client.0 != c);
                    prop_assert_eq!(real.remove_client(ClientId(c)), want);
                }
                ROp::UnmapMappingRange(o, first, count) => {
                    let count = if count == 0 { u64::MAX } else { count };
                    let hit = |t: &Tuple| {
                        t.2.is_some_and(|fp| {
                            fp.object.0 == o && fp.index >= first && fp.index - first < count
                        })
                    };
                    let mut want: Vec<(FilePage, Place, Pfn)> = model
                        .iter()
                        .filter(|t| hit(t))
                        .filter_map(|t| Some((t.2?, t.0, t.1)))
                        .collect();
                    want.sort();
                    model.retain(|t| !hit(t));
                    let arg = if count == u64::MAX { 0 } else { count };
                    prop_assert_eq!(real.unmap_mapping_range(ObjectId(o), first, arg), want);
                }
            }
            check_rmap(&real, &model)?;
        }
    }
}
