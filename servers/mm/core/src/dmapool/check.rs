//! Checking: poison verification and the invariant walk over every pool's metadata.
//!
//! [`invariants`] is what the tests call after every step: it re-derives
//! everything the fast paths rely on from first principles — the layout of
//! each chunk (blocks aligned, inside the chunk, inside one boundary window
//! of the real bus and virtual addresses, not overlapping), the chunk table,
//! the block states against the free stack, the counters, and the
//! registry-wide chunk list against the chunk accounting.

use alloc::vec;
use core::fmt;

use super::{
    DmaChunkSource, DmaPoolError, DmaPools, FREED, LIVE, Life, NEVER, NO_BLOCK, POOL_POISON_FREED,
    PoolId, QUARANTINED,
};
use crate::memory::{AccessError, MemoryAccess};

/// A broken invariant: a bug in this module (or a chunk source that broke
/// its contract behind the pool's back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvariantViolation {
    /// The pool concerned, if one.
    pub pool: Option<PoolId>,
    /// What is wrong.
    pub what: &'static str,
}

impl fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pool {
            Some(p) => write!(f, "pool {}: {}", p.index, self.what),
            None => write!(f, "{}", self.what),
        }
    }
}

/// The first byte of `[start, start + len)` that differs from `expected`.
pub(super) fn mismatch(
    mem: &dyn MemoryAccess,
    start: u64,
    len: u64,
    expected: u8,
) -> Result<Option<(u64, u8)>, AccessError> {
    let mut buf = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        mem.read(start + done, &mut buf[..n])?;
        if let Some(i) = buf[..n].iter().position(|&b| b != expected) {
            return Ok(Some((start + done + i as u64, buf[i])));
        }
        done += n as u64;
    }
    Ok(None)
}

/// Every free block of every live checking pool holds [`POOL_POISON_FREED`].
pub(super) fn poison<S: DmaChunkSource>(
    pools: &DmaPools<S>,
    mem: &dyn MemoryAccess,
) -> Result<(), DmaPoolError> {
    for pool in &pools.pools {
        if pool.life != Life::Alive || !pool.checking {
            continue;
        }
        for e in &pool.free {
            let block = pool.block(e.gid, e.off as u64);
            if let Some((addr, found)) =
                mismatch(mem, block.vaddr, pool.geo.block, POOL_POISON_FREED)?
            {
                return Err(DmaPoolError::Corrupted(super::Corruption {
                    block: block.vaddr,
                    addr,
                    expected: POOL_POISON_FREED,
                    found,
                }));
            }
        }
    }
    Ok(())
}

/// The invariant walk (see [`DmaPools::check_invariants`]).
pub(super) fn invariants<S: DmaChunkSource>(pools: &DmaPools<S>) -> Result<(), InvariantViolation> {
    let mut held_total = 0u64;
    let mut dead = 0usize;
    for (pi, pool) in pools.pools.iter().enumerate() {
        let id = PoolId {
            index: pi as u32,
            generation: pool.generation,
        };
        let fail = |what| {
            Err(InvariantViolation {
                pool: Some(id),
                what,
            })
        };
        if pool.life == Life::Dead {
            dead += 1;
            if !pools.dead.contains(&(pi as u32)) {
                return fail("dead pool not on the dead list");
            }
            if !pool.chunks.is_empty() || pool.held != 0 || pool.in_use != 0 {
                return fail("dead pool holds metadata");
            }
            continue;
        }
        if pools.dead.contains(&(pi as u32)) {
            return fail("pool on the dead list");
        }
        let g = pool.geo;
        // The geometry, chunk-independent part.
        if g.blocks == 0 || g.block < super::DMA_POOL_MIN_BLOCK || g.block % g.align != 0 {
            return fail("bad block size");
        }
        if g.chunk_size % crate::addr::PAGE_SIZE != 0 || g.chunk_align % g.align != 0 {
            return fail("bad chunk size or alignment");
        }
        if g.blocks as usize > 1 << g.bshift {
            return fail("block ids overflow their chunk");
        }
        let mut prev_end = 0;
        for i in 0..g.blocks {
            let off = g.offset(i);
            if off < prev_end || off + g.block > g.chunk_size || off % g.align != 0 {
                return fail("blocks overlap, are misaligned or leave the chunk");
            }
            if g.boundary != 0 && off >> g.wshift != (off + g.block - 1) >> g.wshift {
                return fail("a block crosses a window");
            }
            if g.block_at(off) != Some(i) || g.place(off) != super::Place::Block(i) {
                return fail("offset to block arithmetic disagrees");
            }
            prev_end = off + g.block;
        }
        // The chunks.
        let bshift = g.bshift;
        if pool.state.len() != pool.chunks.len() << bshift {
            return fail("state array length");
        }
        let mut held = 0u64;
        let mut live = 0u64;
        let mut corrupted = 0u64;
        for (ci, c) in pool.chunks.iter().enumerate() {
            let states = &pool.state[ci << bshift..(ci + 1) << bshift];
            let (used, unused) = states.split_at(g.blocks as usize);
            if unused.iter().any(|&s| s != NO_BLOCK) || used.contains(&NO_BLOCK) {
                return fail("state of a block id past the chunk's blocks");
            }
            let chunk_live = used.iter().filter(|&&s| s == LIVE).count() as u64;
            live += chunk_live;
            corrupted += used.iter().filter(|&&s| s == QUARANTINED).count() as u64;
            if !c.held {
                if pool.life == Life::Alive || chunk_live != 0 {
                    return fail("a chunk given back still in use");
                }
                continue;
            }
            held += 1;
            if pool.life == Life::Quarantine && chunk_live == 0 {
                return fail("a quarantined chunk with no leaked block");
            }
            if c.vaddr % g.chunk_align != 0 || c.bus % g.chunk_align != 0 {
                return fail("chunk misaligned");
            }
            for i in 0..g.blocks {
                let off = g.offset(i);
                let (v, b) = (c.vaddr + off, c.bus + off);
                let last = g.block - 1;
                if g.boundary != 0
                    && ((b / g.boundary != (b + last) / g.boundary)
                        || (v / g.boundary != (v + last) / g.boundary))
                {
                    return fail("a block crosses a boundary");
                }
            }
            let first = c.vaddr >> g.gshift;
            let granules = g.chunk_size.div_ceil(g.chunk_align);
            for k in 0..granules {
                if pool.table.get(first + k) != Some(ci as u32) {
                    return fail("chunk table does not map the chunk");
                }
            }
            let home = pools.home_of(c.vaddr);
            if home.is_none_or(|h| h.pool as usize != pi || h.end != c.vaddr + g.chunk_size) {
                return fail("chunk missing from the registry's list");
            }
        }
        if held != pool.held || live != pool.in_use || corrupted < pool.corrupted {
            return fail("counters disagree with the block states");
        }
        if pool.life == Life::Alive {
            if corrupted != pool.corrupted {
                return fail("quarantined block count");
            }
            // The table maps exactly the chunks' granules.
            let granules = g.chunk_size.div_ceil(g.chunk_align) as usize;
            if pool.table.len() != pool.chunks.len() * granules
                || pool.table.iter().any(|(k, ci)| {
                    pool.chunks
                        .get(ci as usize)
                        .is_none_or(|c| (k << g.gshift).wrapping_sub(c.vaddr) >= g.chunk_size)
                })
            {
                return fail("chunk table holds strays");
            }
            // Free stack: exactly the free blocks, each once, at its offset.
            let total = pool.chunks.len() as u64 * g.blocks as u64;
            if pool.free.len() as u64 + live + corrupted != total {
                return fail("free + in use + quarantined != total");
            }
            if pool.free.capacity() < total as usize {
                return fail("free stack capacity below the block count");
            }
            let mut seen = vec![false; pool.state.len()];
            for e in &pool.free {
                let gid = e.gid as usize;
                let index = e.gid & ((1 << bshift) - 1);
                if gid >= pool.state.len() || seen[gid] {
                    return fail("free stack entry duplicated or out of range");
                }
                seen[gid] = true;
                if !matches!(pool.state[gid], NEVER | FREED) {
                    return fail("free stack entry not free");
                }
                if index >= g.blocks || g.offset(index) != e.off as u64 {
                    return fail("free stack entry offset");
                }
            }
        } else if !pool.free.is_empty() {
            return fail("a destroyed pool has free blocks");
        }
        held_total += held;
    }
    let fail = |what| Err(InvariantViolation { pool: None, what });
    if dead != pools.dead.len() {
        return fail("dead list length");
    }
    if pools.dead.capacity() < pools.pools.len() {
        return fail("dead list capacity");
    }
    if pools.homes.windows(2).any(|w| w[0].end > w[1].vaddr)
        || pools.homes.iter().any(|h| h.end <= h.vaddr)
    {
        return fail("registry chunk list unsorted or overlapping");
    }
    if pools.homes.len() as u64 != held_total {
        return fail("registry chunk list length");
    }
    if pools.obtained - pools.returned != held_total {
        return fail("chunk conservation: obtained - returned != held");
    }
    Ok(())
}
