//! Statistics (`/proc/buddyinfo`, `/proc/pagetypeinfo`, zone counters) and the invariant check.
//!
//! [`FrameAllocator::check_invariants`] walks every frame of every zone and
//! every list, and verifies that the lists and the per-frame array agree and
//! that each managed frame is accounted exactly once:
//! free (buddy + per-CPU + zero pool) + allocated + reserved = present.
//! It is O(frames), meant for tests and for a server's self-check.

use alloc::format;
use alloc::string::String;
use core::fmt;

use super::FrameAllocator;
use super::Watermarks;
use super::buddy::mergeable;
use super::list::State;
use super::types::{
    MAX_ORDER, MigrateType, NR_MIGRATETYPES, NR_ORDERS, NR_PCPTYPES, NR_ZONES, PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER, ZoneType,
};
use super::zone::{WMARK_HIGH, WMARK_LOW, WMARK_MIN, Zone};
use crate::addr::Pfn;

/// A zone's counters, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneStats {
    /// Which zone.
    pub zone: ZoneType,
    /// The lowest managed frame (0 for an empty zone).
    pub start_pfn: Pfn,
    /// One past the highest managed frame.
    pub end_pfn: Pfn,
    /// Frames in the zone's span, holes included (`spanned_pages`, rounded
    /// out to 4 MiB blocks).
    pub spanned: u64,
    /// Frames given as free memory at creation (`present_pages`):
    /// `free + allocated + reserved`.
    pub present: u64,
    /// `present - reserved` (`managed_pages`).
    pub managed: u64,
    /// Free pages: `free_buddy + pcp + zeroed`.
    pub free: u64,
    /// Free pages in buddy blocks.
    pub free_buddy: u64,
    /// Free pages on per-CPU lists.
    pub pcp: u64,
    /// Free pre-zeroed pages in the zero pool.
    pub zeroed: u64,
    /// Allocated pages.
    pub allocated: u64,
    /// Reserved pages.
    pub reserved: u64,
    /// Pages in pageblocks of the high-order atomic reserve.
    pub reserved_highatomic: u64,
    /// The watermarks.
    pub watermarks: Watermarks,
    /// Pages kept from allocations whose highest zone is the index.
    pub lowmem_reserve: [u64; NR_ZONES],
    /// Per-CPU list batch size.
    pub pcp_batch: u32,
    /// Per-CPU list high mark.
    pub pcp_high: u32,
}

/// A broken invariant found by [`FrameAllocator::check_invariants`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantError(pub String);

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FrameAllocator {
    /// A zone's counters.
    pub fn zone_stats(&self, zone: ZoneType) -> ZoneStats {
        let z = &self.zones[zone.index()];
        ZoneStats {
            zone,
            start_pfn: Pfn(z.start_pfn),
            end_pfn: Pfn(z.end_pfn),
            spanned: z.buddy.frames.len() as u64,
            present: z.present,
            managed: z.managed(),
            free: z.nr_free(),
            free_buddy: z.buddy.nr_free,
            pcp: z.nr_pcp,
            zeroed: z.nr_zeroed,
            allocated: z.nr_allocated,
            reserved: z.nr_reserved,
            reserved_highatomic: z.buddy.nr_reserved_highatomic,
            watermarks: self.watermarks(zone),
            lowmem_reserve: z.lowmem_reserve,
            pcp_batch: z.pcp_batch,
            pcp_high: z.pcp_high,
        }
    }

    /// Free buddy blocks per order in `zone` (a `/proc/buddyinfo` line).
    pub fn buddyinfo(&self, zone: ZoneType) -> [u64; NR_ORDERS] {
        let b = &self.zones[zone.index()].buddy;
        core::array::from_fn(|o| b.lists[o].iter().map(|l| l.len as u64).sum())
    }

    /// Free buddy blocks per migratetype and order in `zone`
    /// (`/proc/pagetypeinfo`'s first table).
    pub fn pagetypeinfo(&self, zone: ZoneType) -> [[u64; NR_ORDERS]; NR_MIGRATETYPES] {
        let b = &self.zones[zone.index()].buddy;
        core::array::from_fn(|mt| core::array::from_fn(|o| b.lists[o][mt].len as u64))
    }

    /// Pageblocks per migratetype in `zone` (`/proc/pagetypeinfo`'s second
    /// table; pageblocks that are all holes are not counted).
    pub fn pageblock_counts(&self, zone: ZoneType) -> [u64; NR_MIGRATETYPES] {
        let b = &self.zones[zone.index()].buddy;
        let mut counts = [0; NR_MIGRATETYPES];
        for (pb, flags) in b.pageblocks.iter().enumerate() {
            let start = pb << PAGEBLOCK_ORDER;
            let frames = &b.frames[start..start + PAGEBLOCK_NR_PAGES as usize];
            if frames.iter().all(|f| f.state == State::Hole) {
                continue;
            }
            if let Some(mt) = MigrateType::from_bits(flags & super::PB_MIGRATETYPE_MASK) {
                counts[mt as usize] += 1;
            }
        }
        counts
    }

    /// Writes `/proc/buddyinfo`: one line per non-empty zone,
    /// `Node 0, zone   DMA32  n0 n1 ... n10`.
    pub fn write_buddyinfo(&self, out: &mut impl fmt::Write) -> fmt::Result {
        for zone in ZoneType::ALL {
            if self.zones[zone.index()].present == 0 {
                continue;
            }
            write!(out, "Node 0, zone {:>8}", zone.name())?;
            for n in self.buddyinfo(zone) {
                write!(out, " {n:>6}")?;
            }
            writeln!(out)?;
        }
        Ok(())
    }

    /// Checks every structural invariant; see the module docs. O(frames).
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        for (i, z) in self.zones.iter().enumerate() {
            check_zone(z, self.config.nr_cpus, self.dma32_end_pfn, i)
                .map_err(|e| InvariantError(format!("zone {}: {e}", z.kind.name())))?;
        }
        Ok(())
    }
}

fn check_zone(z: &Zone, nr_cpus: usize, limit: u64, zi: usize) -> Result<(), String> {
    let b = &z.buddy;
    let len = b.frames.len() as u32;
    if !(len as u64).is_multiple_of(1 << MAX_ORDER) || !z.base.is_multiple_of(1 << MAX_ORDER) {
        return Err("span not aligned to MAX_ORDER blocks".into());
    }
    if b.pageblocks.len() as u64 != len as u64 >> PAGEBLOCK_ORDER {
        return Err("pageblock array size".into());
    }
    // Walk the frames block by block.
    let (mut free, mut alloc, mut pcp, mut zeroed, mut reserved) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut free_heads = [[0u32; NR_MIGRATETYPES]; NR_ORDERS];
    let mut idx = 0u32;
    while idx < len {
        let m = b.frames[idx as usize];
        let pfn = z.base + idx as u64;
        if m.state != State::Hole && ((pfn < limit) != (zi == 0)) {
            return Err(format!("frame {pfn:#x} managed in the wrong zone"));
        }
        let size = match m.state {
            State::Hole => 1,
            State::Tail => return Err(format!("frame {pfn:#x}: tail without a head")),
            State::Free | State::Alloc => {
                let o = m.order as u32;
                if o > MAX_ORDER || !idx.is_multiple_of(1 << o) {
                    return Err(format!("frame {pfn:#x}: bad order {o} or misaligned"));
                }
                for t in idx + 1..idx + (1 << o) {
                    if b.frames[t as usize].state != State::Tail {
                        return Err(format!(
                            "frame {pfn:#x}: block of order {o} has a non-tail at +{}",
                            t - idx
                        ));
                    }
                }
                if m.state == State::Free {
                    free += 1 << o;
                    if m.mt as usize >= NR_MIGRATETYPES {
                        return Err(format!("free frame {pfn:#x}: bad type {}", m.mt));
                    }
                    free_heads[o as usize][m.mt as usize] += 1;
                    // On its pageblocks' list.
                    let first = idx >> PAGEBLOCK_ORDER;
                    let last = (idx + (1 << o) - 1) >> PAGEBLOCK_ORDER;
                    for pb in first..=last {
                        if b.pageblocks[pb as usize] & super::PB_MIGRATETYPE_MASK != m.mt {
                            return Err(format!(
                                "free block {pfn:#x} order {o} on list {} but pageblock {pb} is {}",
                                m.mt, b.pageblocks[pb as usize]
                            ));
                        }
                    }
                    // Fully merged.
                    if o < MAX_ORDER {
                        let buddy = idx ^ (1 << o);
                        let bm = b.frames[buddy as usize];
                        if bm.state == State::Free
                            && bm.order as u32 == o
                            && (bm.mt == m.mt
                                || (o < PAGEBLOCK_ORDER && mergeable(bm.mt) && mergeable(m.mt)))
                        {
                            return Err(format!(
                                "free buddies {pfn:#x} and its buddy of order {o} not merged"
                            ));
                        }
                    }
                } else {
                    alloc += 1 << o;
                }
                1 << o
            }
            State::Pcp => {
                if m.aux as usize >= nr_cpus || m.mt as usize >= NR_PCPTYPES {
                    return Err(format!("pcp frame {pfn:#x}: bad cpu/type"));
                }
                pcp += 1;
                1
            }
            State::Zeroed => {
                if m.mt as usize >= NR_PCPTYPES {
                    return Err(format!("zeroed frame {pfn:#x}: bad type"));
                }
                zeroed += 1;
                1
            }
            State::Reserved => {
                reserved += 1;
                1
            }
        };
        idx += size;
    }
    // The lists against the array.
    let mut listed_free = 0u64;
    for (o, (lists, heads)) in b.lists.iter().zip(&free_heads).enumerate() {
        for (mt, (l, &count)) in lists.iter().zip(heads).enumerate() {
            l.check(&b.frames, |i| {
                let m = b.frames[i as usize];
                if m.state != State::Free || m.order as usize != o || m.mt as usize != mt {
                    return Err(format!(
                        "free list [{o}][{mt}] holds {i} in state {:?}/{}/{}",
                        m.state, m.order, m.mt
                    ));
                }
                Ok(())
            })
            .map_err(|e| format!("free list [{o}][{mt}]: {e}"))?;
            if l.len != count {
                return Err(format!(
                    "free list [{o}][{mt}] has {} blocks, array {count}",
                    l.len
                ));
            }
            if ((b.nonempty[mt] >> o) & 1 == 1) == l.is_empty() {
                return Err(format!("non-empty bit of [{o}][{mt}] wrong"));
            }
            listed_free += (l.len as u64) << o;
        }
    }
    for mt in 0..NR_MIGRATETYPES {
        let sum: u64 = (0..NR_ORDERS)
            .map(|o| (b.lists[o][mt].len as u64) << o)
            .sum();
        if sum != b.nr_free_mt[mt] {
            return Err(format!(
                "nr_free_mt[{mt}] {} but lists hold {sum}",
                b.nr_free_mt[mt]
            ));
        }
    }
    if listed_free != free || b.nr_free != free {
        return Err(format!(
            "free pages: array {free}, lists {listed_free}, counter {}",
            b.nr_free
        ));
    }
    let mut listed_pcp = 0u64;
    for (cpu, p) in z.pcp.iter().enumerate() {
        let mut n = 0;
        for (mt, l) in p.lists.iter().enumerate() {
            l.check(&b.frames, |i| {
                let m = b.frames[i as usize];
                if m.state != State::Pcp || m.aux as usize != cpu || m.mt as usize != mt {
                    return Err(format!(
                        "pcp list {cpu}/{mt} holds {i} in state {:?}",
                        m.state
                    ));
                }
                Ok(())
            })?;
            n += l.len;
        }
        if n != p.count {
            return Err(format!("pcp {cpu} count {} but lists hold {n}", p.count));
        }
        listed_pcp += n as u64;
    }
    if listed_pcp != pcp || z.nr_pcp != pcp {
        return Err(format!(
            "pcp pages: array {pcp}, lists {listed_pcp}, counter {}",
            z.nr_pcp
        ));
    }
    let mut listed_zeroed = 0u64;
    for (mt, l) in z.zeroed.iter().enumerate() {
        l.check(&b.frames, |i| {
            let m = b.frames[i as usize];
            if m.state != State::Zeroed || m.mt as usize != mt {
                return Err(format!("zero pool {mt} holds {i} in state {:?}", m.state));
            }
            Ok(())
        })?;
        listed_zeroed += l.len as u64;
    }
    if listed_zeroed != zeroed || z.nr_zeroed != zeroed {
        return Err(format!(
            "zeroed pages: array {zeroed}, lists {listed_zeroed}, counter {}",
            z.nr_zeroed
        ));
    }
    if alloc != z.nr_allocated || reserved != z.nr_reserved {
        return Err(format!(
            "allocated {alloc} / reserved {reserved} in the array, counters {} / {}",
            z.nr_allocated, z.nr_reserved
        ));
    }
    // Conservation.
    if free + pcp + zeroed + alloc + reserved != z.present {
        return Err(format!(
            "conservation: free {free} + pcp {pcp} + zeroed {zeroed} + allocated {alloc} + reserved {reserved} != present {}",
            z.present
        ));
    }
    // Pageblocks and the reserve.
    let mut ha = 0;
    for (pb, f) in b.pageblocks.iter().enumerate() {
        match MigrateType::from_bits(f & super::PB_MIGRATETYPE_MASK) {
            Some(MigrateType::HighAtomic) => ha += PAGEBLOCK_NR_PAGES,
            Some(_) => {}
            None => return Err(format!("pageblock {pb}: bad flags {f:#x}")),
        }
    }
    if ha != b.nr_reserved_highatomic {
        return Err(format!(
            "reserve counter {} but {ha} pages of reserve pageblocks",
            b.nr_reserved_highatomic
        ));
    }
    if !(z.wmark[WMARK_MIN] <= z.wmark[WMARK_LOW] && z.wmark[WMARK_LOW] <= z.wmark[WMARK_HIGH]) {
        return Err("watermarks out of order".into());
    }
    Ok(())
}
