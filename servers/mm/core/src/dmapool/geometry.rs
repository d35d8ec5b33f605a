//! The layout of a pool's chunks: block size, boundary windows, block offsets, and address → block arithmetic.
//!
//! A chunk of [`Geometry::chunk_size`] bytes is cut into *windows* of
//! `1 << wshift` bytes — the `boundary` when it is smaller than the chunk,
//! otherwise one window spanning the whole chunk — and each window holds
//! [`Geometry::per_window`] blocks packed from its start; the tail of a
//! window too short for a block is left unused. This is exactly the layout
//! of Linux's `pool_initialise_page` (6.3 and later), so a driver sees
//! blocks at the same offsets as under Linux.
//!
//! Blocks are numbered in address order within a chunk (`index =
//! window * per_window + k`); a pool-wide *block id* (gid) is
//! `chunk << bshift | index`, where `1 << bshift` is the number of blocks per
//! chunk rounded up to a power of two, so the chunk of a gid is a shift away.
//!
//! Turning an offset into a block index must not divide on the fast path:
//! [`Geometry::block_at`] multiplies by `recip = ⌈2³² / block⌉` instead. For
//! an offset `r = j · block` (`r < 2³²`), `r · recip / 2³² = j + j·e / 2³²`
//! with `e = recip · block − 2³² < block`, and `j · e < j · block = r < 2³²`,
//! so the quotient is exactly `j`; any other offset is caught by checking
//! `k · block == r`. The slow path's diagnostics divide.

use super::DmaPoolError;
use crate::addr::{PAGE_SIZE, align_up};

/// The smallest block, in bytes (Linux: `sizeof(struct dma_block)` on a
/// 64-bit machine). Smaller sizes are rounded up to it, so the blocks of a
/// pool sit at the same offsets as under Linux.
pub const DMA_POOL_MIN_BLOCK: u64 = 16;

/// The largest block, in bytes: 4 MiB, the largest physically contiguous
/// coherent allocation (Linux: `PAGE_SIZE << MAX_PAGE_ORDER`).
pub const DMA_POOL_MAX_BLOCK: u64 = PAGE_SIZE << 10;

/// Where an offset in a chunk falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// The start of block `index`.
    Block(u32),
    /// Inside the block starting at chunk offset `start`.
    Interior {
        /// The block's offset in the chunk.
        start: u64,
    },
    /// In the unused tail of a window (or of the chunk).
    Gap,
}

/// The geometry of one pool, fixed at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    /// The size asked for at creation.
    pub size: u64,
    /// The block size: `size` rounded up to `align`, at least [`DMA_POOL_MIN_BLOCK`].
    pub block: u64,
    /// The block alignment (1 if 0 was given).
    pub align: u64,
    /// The boundary given at creation (0: none).
    pub boundary: u64,
    /// Bytes per chunk: a page, or the block rounded up to pages.
    pub chunk_size: u64,
    /// The alignment asked of every chunk's virtual and bus addresses.
    pub chunk_align: u64,
    /// log2 of the window size.
    pub wshift: u32,
    /// Blocks per window.
    pub per_window: u32,
    /// Blocks per chunk.
    pub blocks: u32,
    /// log2 of the blocks per chunk rounded up to a power of two.
    pub bshift: u32,
    /// `⌈2³² / block⌉`.
    pub recip: u64,
    /// log2 of the granule by which the pool's chunk table is keyed
    /// (`chunk_align`: no two chunks of a pool share a granule).
    pub gshift: u32,
}

impl Geometry {
    /// The geometry of a pool of `size`-byte blocks aligned to `align`, none
    /// crossing a multiple of `boundary`, with Linux's `dma_pool_create`
    /// rules: `size` non-zero; `align` 0 (meaning 1) or a power of two;
    /// `boundary` 0 (none) or a power of two no smaller than the rounded
    /// block size.
    pub fn new(size: u64, align: u64, boundary: u64) -> Result<Geometry, DmaPoolError> {
        if size == 0 {
            return Err(DmaPoolError::ZeroSize);
        }
        let align = match align {
            0 => 1,
            a if a.is_power_of_two() => a,
            a => return Err(DmaPoolError::BadAlign { align: a }),
        };
        let block = align_up(size, align)
            .ok_or(DmaPoolError::TooLarge { size })?
            .max(DMA_POOL_MIN_BLOCK);
        if block > DMA_POOL_MAX_BLOCK {
            return Err(DmaPoolError::TooLarge { size });
        }
        if boundary != 0 {
            if !boundary.is_power_of_two() {
                return Err(DmaPoolError::BadBoundary { boundary });
            }
            if boundary < block {
                return Err(DmaPoolError::BoundaryTooSmall { boundary, block });
            }
        }
        // `block` ≤ 4 MiB, so none of the following overflows.
        let chunk_size = align_up(block, PAGE_SIZE)
            .unwrap_or(DMA_POOL_MAX_BLOCK)
            .max(PAGE_SIZE);
        let span = chunk_size.next_power_of_two();
        let window = if boundary != 0 && boundary < chunk_size {
            boundary
        } else {
            span
        };
        let per_window = (window.min(chunk_size) / block) as u32;
        let windows = (chunk_size / window).max(1) as u32;
        let blocks = per_window * windows;
        // A boundary no larger than the chunk needs chunks aligned to it (the
        // windows are then the real ones); a larger one is respected by a
        // chunk aligned to its own size rounded up to a power of two, which
        // then lies inside one boundary window.
        let boundary_align = match boundary {
            0 => 1,
            b => b.min(span),
        };
        let chunk_align = PAGE_SIZE.max(align).max(boundary_align);
        Ok(Geometry {
            size,
            block,
            align,
            boundary,
            chunk_size,
            chunk_align,
            wshift: window.trailing_zeros(),
            per_window,
            blocks,
            bshift: blocks.next_power_of_two().trailing_zeros(),
            recip: (1u64 << 32).div_ceil(block),
            gshift: chunk_align.trailing_zeros(),
        })
    }

    /// The offset in its chunk of block `index` (< `blocks`).
    pub fn offset(&self, index: u32) -> u64 {
        let window = (index / self.per_window) as u64;
        let k = (index % self.per_window) as u64;
        (window << self.wshift) + k * self.block
    }

    /// The index of the block starting at chunk offset `off`
    /// (< `chunk_size`), or `None` if no block starts there. No division.
    #[inline(always)]
    pub fn block_at(&self, off: u64) -> Option<u32> {
        let r = off & ((1u64 << self.wshift) - 1);
        let k = (r * self.recip) >> 32;
        if k < self.per_window as u64 && k * self.block == r {
            Some((off >> self.wshift) as u32 * self.per_window + k as u32)
        } else {
            None
        }
    }

    /// Where chunk offset `off` (< `chunk_size`) falls (the slow path's
    /// diagnostics; divides).
    pub fn place(&self, off: u64) -> Place {
        let window = off >> self.wshift;
        let r = off & ((1u64 << self.wshift) - 1);
        let k = r / self.block;
        if k >= self.per_window as u64 {
            return Place::Gap;
        }
        let start = (window << self.wshift) + k * self.block;
        if start == off {
            Place::Block(window as u32 * self.per_window + k as u32)
        } else {
            Place::Interior { start }
        }
    }
}
