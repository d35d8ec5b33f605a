//! Per-client state, keyed by badge: address space, page map, tables, areas, pins, accounting.

use alloc::collections::BTreeMap;

use abi::CPtr;
use mm_core::vm::{RegionMap, VmConfig};

use crate::config::{ClientSpec, Grants};
use crate::pagemap::PageMap;
use crate::phys::TableSet;

/// What kind of area a region made by a dedicated call is (Linux's
/// special mappings): freed only by its own call, never by `Unmap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AreaKind {
    /// `alloc_pages(order)`: one buddy block.
    Pages {
        /// Its order.
        order: u8,
    },
    /// `alloc_pages_exact`: a run of order-0 frames.
    Exact,
    /// `alloc_contig_range`: exactly the frames asked for.
    Contig,
    /// `vmalloc` and friends: frames anywhere.
    Vmalloc,
    /// `vmap`: frames the client owns, mapped again.
    Vmap,
    /// `vm_map_ram`: as vmap, read/write.
    MapRam,
    /// `dma_alloc_coherent`: contiguous DMA32 frames, uncached.
    Dma,
}

/// An area: where it is and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Area {
    /// Its kind.
    pub kind: AreaKind,
    /// Pages.
    pub pages: u64,
    /// The first frame of a physically contiguous area (0 otherwise).
    pub pfn: u64,
}

/// Region flags the server gives meaning to (the vm module leaves all but
/// bit 31 to its user).
pub(crate) mod rflags {
    use mm_core::vm::RegionFlags;
    /// Anonymous memory that may use 2 MiB blocks.
    pub const HUGE: RegionFlags = RegionFlags(1 << 0);
    /// Anonymous memory from the DMA32 zone.
    pub const DMA32: RegionFlags = RegionFlags(1 << 1);
    /// No anonymous backing: pages only by insertion (VM_MIXEDMAP).
    pub const PFNMAP: RegionFlags = RegionFlags(1 << 2);
    /// An area (see `AreaKind`): all pages mapped at creation.
    pub const AREA: RegionFlags = RegionFlags(1 << 3);
}

/// One client.
pub(crate) struct Client {
    /// Its badge.
    pub badge: u64,
    /// Its VSpace and TCB caps (in the boot CNode).
    pub vspace: CPtr,
    /// See `vspace`.
    pub tcb: CPtr,
    /// What it may do.
    pub grants: Grants,
    /// The most frames it may hold.
    pub quota: u64,
    /// Frames it holds (charged against the quota).
    pub charged: u64,
    /// Its regions.
    pub regions: RegionMap,
    /// What is mapped where.
    pub pages: PageMap,
    /// Its page tables.
    pub tables: TableSet,
    /// Its areas, by start address.
    pub areas: BTreeMap<u64, Area>,
    /// Pinned pages (`get_user_pages_fast`), by address: pin count.
    pub pins: BTreeMap<u64, u32>,
    /// Faults served.
    pub faults: u64,
    /// The last fault address served, to tell a fault loop from progress.
    pub last_fault: Option<u64>,
    /// False once it has exited or died: its requests are refused.
    pub alive: bool,
}

impl Client {
    /// A new client from its spec and caps.
    pub fn new(spec: &ClientSpec, vspace: CPtr, tcb: CPtr) -> Option<Client> {
        let config = VmConfig::new(
            mm_core::addr::VirtAddr(spec.window.0),
            mm_core::addr::VirtAddr(spec.window.1),
        );
        Some(Client {
            badge: spec.badge,
            vspace,
            tcb,
            grants: spec.grants.clone(),
            quota: spec.quota_pages,
            charged: 0,
            regions: RegionMap::new(config).ok()?,
            pages: PageMap::default(),
            tables: TableSet::default(),
            areas: BTreeMap::new(),
            pins: BTreeMap::new(),
            faults: 0,
            last_fault: None,
            alive: true,
        })
    }

    /// Frames it may still take.
    pub fn headroom(&self) -> u64 {
        self.quota.saturating_sub(self.charged)
    }
}
