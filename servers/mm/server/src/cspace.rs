//! The server's CSpace: a two-level tree it builds for itself, and where each capability lives.
//!
//! The boot CNode (`2^R0` slots) is too small for two caps per frame of RAM,
//! so at start the server retypes a small root CNode `N` (`2^RN` slots) and
//! `C` second-level CNodes of `2^L` slots (`L = max(R0, 12)`) and makes `N`
//! its CSpace root (`TCB_SetSpace` on its own TCB):
//!
//! ```text
//! CPtr (64 bits) = [ guard: 64-RN-L zero bits | i: RN bits | j: L bits ]
//!   N[0]     = the boot CNode, minted with an (L-R0)-bit zero guard, so
//!              every boot CPtr (< 2^R0) still names the same slot
//!   N[1..=C] = second-level CNodes; CPtr i<<L | j names their slot j
//! ```
//!
//! CPtrs from `2^L` up are one linear space, carved into regions:
//!
//! | region | size            | holds                                                      |
//! |--------|-----------------|------------------------------------------------------------|
//! | W      | frames          | the cap of frame `k` (retyped): mapped in the server's window |
//! | M      | frames          | a copy of it: the frame's mapping in a client              |
//! | U      | 2 MiB chunks    | a 2 MiB Untyped per chunk of RAM, to retype its frames     |
//! | X      | configurable    | extra copies for second mappings (shm, vmap, insertions)   |
//! | D      | device pages    | device frame caps                                          |
//!
//! Frame `k` is physical frame `base_pfn + k`, so a run of physically
//! contiguous frames is a run of consecutive CPtrs in W and in M — exactly
//! what the batched `VSpace_MapFrames` wants. A chunk's Large page or page
//! tables take the W slots of the frames they are made of.

use abi::object::ObjectType;
use abi::{CPtr, CapRights, ErrorReply, Word};

/// Frames per 2 MiB chunk.
pub(crate) const CHUNK_FRAMES: u64 = 512;

/// Where everything is in the CSpace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Radix of the second-level CNodes (`L`).
    pub l2_bits: u32,
    /// Radix of the root (`RN`).
    pub root_bits: u32,
    /// Second-level CNodes (`C`).
    pub l2_count: u64,
    /// The frame number of frame index 0 (chunk aligned).
    pub base_pfn: u64,
    /// Frame indices (a multiple of [`CHUNK_FRAMES`]).
    pub frames: u64,
    /// Chunks.
    pub chunks: u64,
    /// First CPtr of each region.
    pub w_base: Word,
    /// See `w_base`.
    pub m_base: Word,
    /// See `w_base`.
    pub u_base: Word,
    /// See `w_base`.
    pub x_base: Word,
    /// Extra slots.
    pub x_count: u64,
    /// See `w_base`.
    pub d_base: Word,
    /// Device frame slots.
    pub d_count: u64,
    /// The boot-CNode slot holding the (guarded) cap to the root `N`:
    /// every CNode invocation and retype goes through it.
    pub root: CPtr,
}

/// Rounds up to a multiple of `a` (a power of two).
const fn up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

impl Layout {
    /// The layout for RAM frames `[lo_pfn, hi_pfn)`, `x_count` extra slots,
    /// `d_count` device frames and a boot CNode of `2^boot_radix` slots whose
    /// slot `root` will hold the cap to the new root. `None` if it cannot fit
    /// 64-bit CPtrs.
    pub fn new(
        boot_radix: u32,
        lo_pfn: u64,
        hi_pfn: u64,
        x_count: u64,
        d_count: u64,
        root: CPtr,
    ) -> Option<Layout> {
        let l2_bits = boot_radix.max(12);
        if l2_bits > 40 || hi_pfn <= lo_pfn {
            return None;
        }
        let base_pfn = lo_pfn & !(CHUNK_FRAMES - 1);
        let frames = up(hi_pfn, CHUNK_FRAMES) - base_pfn;
        let chunks = frames / CHUNK_FRAMES;
        let node = 1u64 << l2_bits;
        let w_base = node;
        let m_base = w_base + frames;
        let u_base = m_base + frames;
        let x_base = up(u_base + chunks, 64);
        let d_base = x_base + x_count;
        let end = d_base + d_count;
        let l2_count = end.div_ceil(node) - 1;
        let root_bits = (64 - (l2_count + 1).leading_zeros()).max(1);
        if root_bits + l2_bits > 63 {
            return None;
        }
        Some(Layout {
            l2_bits,
            root_bits,
            l2_count,
            base_pfn,
            frames,
            chunks,
            w_base,
            m_base,
            u_base,
            x_base,
            x_count,
            d_base,
            d_count,
            root,
        })
    }

    /// The guard of the root cap: zero bits above the used ones.
    pub fn root_guard_bits(&self) -> u32 {
        64 - self.root_bits - self.l2_bits
    }

    /// Slots per second-level CNode.
    pub fn node_slots(&self) -> u64 {
        1 << self.l2_bits
    }

    /// The frame's cap (window mapping) of frame index `k`.
    #[inline]
    pub fn w(&self, k: u64) -> CPtr {
        CPtr(self.w_base + k)
    }
    /// The frame's client-mapping cap.
    #[inline]
    pub fn m(&self, k: u64) -> CPtr {
        CPtr(self.m_base + k)
    }
    /// The 2 MiB Untyped of chunk `c`.
    #[inline]
    pub fn u(&self, c: u64) -> CPtr {
        CPtr(self.u_base + c)
    }
    /// Extra slot `i`.
    #[inline]
    pub fn x(&self, i: u64) -> CPtr {
        CPtr(self.x_base + i)
    }
    /// Device frame `d`.
    #[inline]
    pub fn d(&self, i: u64) -> CPtr {
        CPtr(self.d_base + i)
    }

    /// Frame index of a frame number, if it is inside the layout.
    #[inline]
    pub fn index(&self, pfn: u64) -> Option<u64> {
        let k = pfn.checked_sub(self.base_pfn)?;
        (k < self.frames).then_some(k)
    }

    /// Frame number of frame index `k`.
    #[inline]
    pub fn pfn(&self, k: u64) -> u64 {
        self.base_pfn + k
    }

    /// Retypes `count` objects from `ut` into the CPtrs `first..first+count`
    /// (split at second-level CNode boundaries and the 256-object limit).
    pub fn retype(
        &self,
        ut: CPtr,
        ty: ObjectType,
        size_bits: Word,
        first: Word,
        count: u64,
    ) -> Result<(), ErrorReply> {
        let mut done = 0;
        while done < count {
            let at = first + done;
            let in_node = self.node_slots() - (at & (self.node_slots() - 1));
            let n = (count - done)
                .min(in_node)
                .min(abi::object::MAX_RETYPE_COUNT);
            rt::invoke::untyped_retype(
                ut,
                ty,
                size_bits,
                self.root,
                at >> self.l2_bits,
                (64 - self.l2_bits) as Word,
                at & (self.node_slots() - 1),
                n,
            )?;
            done += n;
        }
        Ok(())
    }

    /// Copies the cap at `src` into the empty slot `dest` (full rights).
    pub fn copy(&self, dest: CPtr, src: CPtr) -> Result<(), ErrorReply> {
        rt::invoke::cnode_copy(self.root, dest.0, 64, self.root, src.0, 64, CapRights::ALL)
    }

    /// Copies `count` caps from `src..` into the empty slots `dest..` (full
    /// rights) with the batched `CNode_CopyRun`, one invocation per part
    /// that stays inside one second-level CNode (and within
    /// [`MAX_COPY_RUN`](abi::invocation::MAX_COPY_RUN)). Each part is all or
    /// nothing; on an error the parts before it stay copied.
    pub fn copy_run(&self, dest: CPtr, src: CPtr, count: u64) -> Result<(), ErrorReply> {
        let mut done = 0;
        while done < count {
            let at = dest.0 + done;
            let in_node = self.node_slots() - (at & (self.node_slots() - 1));
            let n = (count - done)
                .min(in_node)
                .min(abi::invocation::MAX_COPY_RUN);
            rt::invoke::cnode_copy_run(
                self.root,
                at,
                64,
                self.root,
                src.0 + done,
                64,
                n,
                CapRights::ALL,
            )
            .map_err(|e| e.error)?;
            done += n;
        }
        Ok(())
    }

    /// Deletes the cap in `slot` (unmapping it if it is a mapped frame).
    pub fn delete(&self, slot: CPtr) -> Result<(), ErrorReply> {
        rt::invoke::cnode_delete(self.root, slot.0, 64)
    }

    /// Deletes every cap derived from the one in `slot`.
    pub fn revoke(&self, slot: CPtr) -> Result<(), ErrorReply> {
        rt::invoke::cnode_revoke(self.root, slot.0, 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_do_not_overlap_and_fit() {
        let l = Layout::new(12, 0x40400, 0x44000, 2048, 16, CPtr(20)).unwrap();
        assert_eq!(l.base_pfn, 0x40400);
        assert_eq!(l.frames % CHUNK_FRAMES, 0);
        assert!(l.w_base >= 1 << 12);
        assert_eq!(l.m_base, l.w_base + l.frames);
        assert!(l.u_base + l.chunks <= l.x_base);
        assert!(l.d_base + l.d_count <= (l.l2_count + 1) << l.l2_bits);
        assert!(l.l2_count < 1 << l.root_bits);
        assert_eq!(l.index(0x40400), Some(0));
        assert_eq!(l.index(0x403ff), None);
        assert_eq!(l.pfn(5), 0x40405);
    }

    #[test]
    fn big_machines_fit() {
        // 64 GiB of RAM.
        let l = Layout::new(12, 0x40000, 0x40000 + (16 << 20), 1 << 20, 0, CPtr(20)).unwrap();
        assert!(l.root_bits + l.l2_bits <= 63);
        assert!(Layout::new(12, 5, 5, 0, 0, CPtr(20)).is_none());
    }
}
