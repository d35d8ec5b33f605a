//! The frame allocator's vocabulary: orders, zones, migratetypes, allocation flags, errors.
//!
//! Everything a caller names when it talks to [`super::FrameAllocator`] is
//! defined here, so that the allocator's modules share one set of types and
//! the MM server can map them onto its protocol one to one.

use core::fmt;

use crate::addr::{PAGE_SHIFT, Pfn, PhysAddr};

/// The largest order the buddy allocator hands out: `2^10` pages, 4 MiB
/// (Linux's `MAX_ORDER` as of 6.4, `MAX_PAGE_ORDER` since).
pub const MAX_ORDER: u32 = 10;
/// The number of orders, `0..=MAX_ORDER`.
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;
/// The order of a pageblock (`pageblock_order`): 2 MiB, the aarch64 block size.
pub const PAGEBLOCK_ORDER: u32 = 9;
/// Pages in a pageblock (`pageblock_nr_pages`).
pub const PAGEBLOCK_NR_PAGES: u64 = 1 << PAGEBLOCK_ORDER;

/// The default end of the DMA32 zone: 4 GiB, the reach of 32-bit DMA masters.
pub const DEFAULT_DMA32_END: PhysAddr = PhysAddr(1 << 32);

/// The bits of a pageblock's flags that hold its migratetype
/// (`MIGRATETYPE_MASK`).
pub const PB_MIGRATETYPE_MASK: u8 = 0b0111;
/// The pageblock flag compaction uses to skip a block (`PB_migrate_skip`);
/// kept for callers, the allocator itself does not read it.
pub const PB_MIGRATE_SKIP: u8 = 0b1000;
/// All pageblock flag bits (`NR_PAGEBLOCK_BITS` = 4).
pub const PB_ALL_FLAGS: u8 = PB_MIGRATETYPE_MASK | PB_MIGRATE_SKIP;

/// The memory zones, in the order of Linux's `enum zone_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ZoneType {
    /// Frames below the DMA32 limit (4 GiB by default), for 32-bit DMA masters
    /// and `vmalloc_32`.
    Dma32 = 0,
    /// Every other frame.
    Normal = 1,
}

/// The number of zones.
pub const NR_ZONES: usize = 2;

impl ZoneType {
    /// All zones, lowest first.
    pub const ALL: [ZoneType; NR_ZONES] = [ZoneType::Dma32, ZoneType::Normal];

    /// The zone's index in [`ZoneType::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The zone's name as `/proc/buddyinfo` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            ZoneType::Dma32 => "DMA32",
            ZoneType::Normal => "Normal",
        }
    }
}

/// A pageblock's migratetype: which kind of allocation its free pages serve.
///
/// Grouping pages by mobility keeps long-lived unmovable allocations in a
/// few pageblocks, so that 2 MiB blocks elsewhere stay whole. The values are
/// the ones stored in the pageblock flags (as in Linux's `enum migratetype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum MigrateType {
    /// Pages that stay where they are (server metadata, page tables).
    Unmovable = 0,
    /// Pages whose contents could be moved (client anonymous memory).
    Movable = 1,
    /// Pages that can be freed on demand (caches).
    Reclaimable = 2,
    /// The reserve: pageblocks set aside for high-order atomic allocations
    /// (`MIGRATE_HIGHATOMIC`).
    HighAtomic = 3,
}

/// The number of migratetypes (and of free lists per order).
pub const NR_MIGRATETYPES: usize = 4;
/// The migratetypes that have per-CPU lists (`MIGRATE_PCPTYPES`).
pub const NR_PCPTYPES: usize = 3;

impl MigrateType {
    /// All migratetypes, in flag-value order.
    pub const ALL: [MigrateType; NR_MIGRATETYPES] = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
        MigrateType::HighAtomic,
    ];

    /// The migratetype stored as `bits` in a pageblock's flags, if valid.
    pub const fn from_bits(bits: u8) -> Option<MigrateType> {
        match bits {
            0 => Some(MigrateType::Unmovable),
            1 => Some(MigrateType::Movable),
            2 => Some(MigrateType::Reclaimable),
            3 => Some(MigrateType::HighAtomic),
            _ => None,
        }
    }

    /// The name `/proc/pagetypeinfo` uses.
    pub const fn name(self) -> &'static str {
        match self {
            MigrateType::Unmovable => "Unmovable",
            MigrateType::Movable => "Movable",
            MigrateType::Reclaimable => "Reclaimable",
            MigrateType::HighAtomic => "HighAtomic",
        }
    }
}

/// What an allocation will be used for, which picks its free lists
/// (`__GFP_MOVABLE`, `__GFP_RECLAIMABLE`, neither).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mobility {
    /// Neither movable nor reclaimable (`GFP_KERNEL`).
    Unmovable,
    /// Movable (`__GFP_MOVABLE`, as in `GFP_HIGHUSER_MOVABLE`).
    Movable,
    /// Reclaimable (`__GFP_RECLAIMABLE`).
    Reclaimable,
}

impl Mobility {
    /// The migratetype whose free lists serve this mobility.
    pub const fn migratetype(self) -> MigrateType {
        match self {
            Mobility::Unmovable => MigrateType::Unmovable,
            Mobility::Movable => MigrateType::Movable,
            Mobility::Reclaimable => MigrateType::Reclaimable,
        }
    }
}

/// How far below the watermarks an allocation may dig.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Stops at the low watermark (`GFP_KERNEL`).
    Normal,
    /// May go down to the min watermark and use the high-order atomic
    /// reserve (`GFP_ATOMIC`: `__GFP_HIGH` and `ALLOC_HARDER`). Linux lets
    /// these go a further 5/8 below min; here min is the floor.
    Atomic,
    /// Ignores the watermarks entirely (`__GFP_MEMALLOC`, `ALLOC_NO_WATERMARKS`):
    /// for the allocations that free memory, and for mempool refills.
    Reserve,
}

/// Allocation flags: zone preference, mobility and priority (Linux's
/// `gfp_t`, as a struct so that no combination is invalid).
///
/// Zeroing (`__GFP_ZERO`) is not a flag: it needs a [`crate::memory::MemoryAccess`],
/// so it is asked for by calling the `*_zeroed` functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GfpFlags {
    /// The highest zone the allocation may use; a `Normal` allocation falls
    /// back to `Dma32` as Linux's zonelist does, a `Dma32` one stays there.
    pub zone: ZoneType,
    /// Which free lists to use.
    pub mobility: Mobility,
    /// Which watermark to respect.
    pub priority: Priority,
}

impl GfpFlags {
    /// `GFP_KERNEL`: unmovable, normal priority, any zone.
    pub const KERNEL: GfpFlags = GfpFlags {
        zone: ZoneType::Normal,
        mobility: Mobility::Unmovable,
        priority: Priority::Normal,
    };
    /// `GFP_ATOMIC`: unmovable, may go down to the min watermark.
    pub const ATOMIC: GfpFlags = GfpFlags {
        priority: Priority::Atomic,
        ..GfpFlags::KERNEL
    };
    /// `GFP_HIGHUSER_MOVABLE`: client memory.
    pub const USER_MOVABLE: GfpFlags = GfpFlags {
        mobility: Mobility::Movable,
        ..GfpFlags::KERNEL
    };
    /// `GFP_KERNEL | __GFP_RECLAIMABLE`: caches that can be shrunk.
    pub const RECLAIMABLE: GfpFlags = GfpFlags {
        mobility: Mobility::Reclaimable,
        ..GfpFlags::KERNEL
    };
    /// `GFP_DMA32`: unmovable frames below the DMA32 limit (DMA pools, `vmalloc_32`).
    pub const DMA32: GfpFlags = GfpFlags {
        zone: ZoneType::Dma32,
        ..GfpFlags::KERNEL
    };
    /// `__GFP_MEMALLOC`: unmovable, ignoring watermarks.
    pub const MEMALLOC: GfpFlags = GfpFlags {
        priority: Priority::Reserve,
        ..GfpFlags::KERNEL
    };

    /// The same flags restricted to (or preferring) `zone`.
    pub const fn with_zone(self, zone: ZoneType) -> GfpFlags {
        GfpFlags { zone, ..self }
    }
    /// The same flags with another mobility.
    pub const fn with_mobility(self, mobility: Mobility) -> GfpFlags {
        GfpFlags { mobility, ..self }
    }
    /// The same flags with another priority.
    pub const fn with_priority(self, priority: Priority) -> GfpFlags {
        GfpFlags { priority, ..self }
    }
}

/// Why a frame-allocator operation failed. Nothing was changed when an
/// operation returns one of these, unless its documentation says otherwise.
///
/// The discriminants start at 1 so that no error is ever encoded as 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameError {
    /// Not enough free memory above the watermark the allocation must
    /// respect, or no free block of the order asked.
    NoMemory = 1,
    /// An order above [`MAX_ORDER`].
    InvalidOrder = 2,
    /// A page count of zero or above `2^MAX_ORDER` where one block is needed.
    InvalidCount = 3,
    /// An address that is not page aligned, or a frame not aligned to its
    /// block's order.
    Misaligned = 4,
    /// A frame outside managed memory (in a hole, or no zone's).
    NotManaged = 5,
    /// Freeing a frame that is already free: a double free.
    AlreadyFree = 6,
    /// Freeing with an order or count other than the allocation's: the frame
    /// is allocated, but not as the head of a block of that order.
    OrderMismatch = 7,
    /// The frame is reserved; give it back with `free_reserved_range`.
    Reserved = 8,
    /// A frame of a range asked for exactly is in use.
    Busy = 9,
    /// An empty or reversed range, or a range crossing a zone boundary.
    InvalidRange = 10,
    /// A CPU number at or beyond the configured number of CPUs.
    InvalidCpu = 11,
    /// Pageblock flags naming no migratetype.
    InvalidFlags = 12,
    /// An unusable configuration or set of ranges given at creation.
    InvalidConfig = 13,
    /// The memory accessor refused to zero a frame.
    AccessFailed = 14,
}

impl FrameError {
    /// The error's number (never 0).
    pub const fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FrameError::NoMemory => "out of memory",
            FrameError::InvalidOrder => "order above MAX_ORDER",
            FrameError::InvalidCount => "page count zero or too large",
            FrameError::Misaligned => "misaligned address or frame",
            FrameError::NotManaged => "frame not in managed memory",
            FrameError::AlreadyFree => "frame already free (double free)",
            FrameError::OrderMismatch => "frame not allocated with that order or count",
            FrameError::Reserved => "frame is reserved",
            FrameError::Busy => "frame in range is busy",
            FrameError::InvalidRange => "empty range or range crossing zones",
            FrameError::InvalidCpu => "no such CPU",
            FrameError::InvalidFlags => "pageblock flags name no migratetype",
            FrameError::InvalidConfig => "invalid allocator configuration",
            FrameError::AccessFailed => "memory access failed while zeroing",
        };
        f.write_str(s)
    }
}

/// Something that names a frame: a [`Pfn`], or a page-aligned [`PhysAddr`].
pub trait FrameRef: Copy {
    /// The frame, or [`FrameError::Misaligned`] for an address inside a page.
    fn to_pfn(self) -> Result<Pfn, FrameError>;
}

impl FrameRef for Pfn {
    #[inline]
    fn to_pfn(self) -> Result<Pfn, FrameError> {
        Ok(self)
    }
}

impl FrameRef for PhysAddr {
    #[inline]
    fn to_pfn(self) -> Result<Pfn, FrameError> {
        if self.0 & ((1 << PAGE_SHIFT) - 1) != 0 {
            return Err(FrameError::Misaligned);
        }
        Ok(self.pfn())
    }
}

/// The allocator's tunables. [`FrameConfig::default`] gives Linux's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameConfig {
    /// The first physical address above the DMA32 zone (page aligned);
    /// frames below it are DMA32, the rest Normal.
    pub dma32_end: PhysAddr,
    /// `vm.min_free_kbytes`; `None` computes Linux's default,
    /// `sqrt(lowmem_kbytes * 16)` clamped to 128 KiB..=256 MiB.
    pub min_free_kbytes: Option<u64>,
    /// `vm.watermark_scale_factor` in units of 1/10000 of a zone (default 10):
    /// the minimum gap between min, low and high.
    pub watermark_scale_factor: u32,
    /// `lowmem_reserve_ratio` for DMA32 (default 256): DMA32 keeps
    /// `managed(Normal) / ratio` pages away from Normal allocations that fall
    /// back to it. 0 disables the protection.
    pub lowmem_reserve_ratio: u32,
    /// How many per-CPU page lists to keep (at least 1, at most 255).
    pub nr_cpus: usize,
    /// Pages moved between a per-CPU list and the buddy lists at once;
    /// `None` derives it from the zone size as Linux's `zone_batchsize` does.
    pub pcp_batch: Option<u32>,
    /// Pages a per-CPU list may hold before it is drained by a batch;
    /// `None` uses `6 * batch`.
    pub pcp_high: Option<u32>,
    /// How many pre-zeroed frames to keep per zone for each of unmovable,
    /// movable and reclaimable allocations.
    pub zero_pool_high: [u32; NR_PCPTYPES],
}

impl Default for FrameConfig {
    fn default() -> Self {
        FrameConfig {
            dma32_end: DEFAULT_DMA32_END,
            min_free_kbytes: None,
            watermark_scale_factor: 10,
            lowmem_reserve_ratio: 256,
            nr_cpus: 1,
            pcp_batch: None,
            pcp_high: None,
            zero_pool_high: [64, 256, 0],
        }
    }
}
