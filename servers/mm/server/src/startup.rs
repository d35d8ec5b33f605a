//! Start-up: the two-level CSpace, RAM into chunks and frames, the frame allocator, page tables, the window, devices, clients.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use abi::boot::{BootInfo, CapKind, SLOT_CNODE, SLOT_TCB, SLOT_VSPACE};
use abi::object::{ObjectType, retype_offset};
use abi::{Badge, CPtr, CapRights, ErrorReply, Word};
use mm_core::addr::{PAGE_SIZE, Pfn, PhysAddr};
use mm_core::frame::{DEFAULT_DMA32_END, FrameAllocator, FrameConfig, FrameError};
use mm_core::vm::ReverseMap;

use crate::client::Client;
use crate::config::{ENDPOINT_NAME, ServerConfig};
use crate::cspace::{CHUNK_FRAMES, Layout};
use crate::error::Fail;
use crate::phys::{Phys, PhysInit, Role};
use crate::server::{Server, ServerStats};
use crate::util::BitSet;

/// Why the server could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// No endpoint cap named [`ENDPOINT_NAME`].
    NoEndpoint,
    /// No RAM Untyped in the boot info.
    NoRam,
    /// The layout does not fit the boot CNode or 64-bit CPtrs.
    Layout,
    /// The largest Untyped cannot hold the server's CNodes.
    ObjectsDoNotFit,
    /// No 2 MiB chunk to make page tables from.
    NoPageTables,
    /// A kernel invocation failed.
    Kernel(&'static str, ErrorReply),
    /// The frame allocator refused the RAM ranges.
    Allocator(FrameError),
    /// A client's badge is 0, repeated, or the supervisor's.
    BadClient(u64),
    /// A client's VSpace or TCB cap (value: its process index) is missing.
    ClientCaps(u64),
}

/// One RAM or device Untyped.
#[derive(Clone, Copy, Debug)]
struct Ut {
    cap: CPtr,
    paddr: u64,
    bits: u32,
}

const fn up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

fn kernel(what: &'static str) -> impl Fn(ErrorReply) -> StartError {
    move |e| StartError::Kernel(what, e)
}

fn fail(f: Fail) -> StartError {
    match f {
        Fail::Bug(w, e) => StartError::Kernel(w, e),
        Fail::Mm(_) => StartError::NoPageTables,
        Fail::Gone => StartError::Kernel("own VSpace gone", ErrorReply::IllegalOperation),
    }
}

impl Server {
    /// Starts the server from its boot info and configuration: builds its
    /// CSpace, retypes RAM, creates the frame allocator, the page-table
    /// pool and the window, retypes device memory and finds its clients'
    /// caps. See the crate docs for the design.
    pub fn start(boot: &BootInfo, config: ServerConfig) -> Result<Server, StartError> {
        let ep = boot
            .caps()
            .find(|d| d.kind == CapKind::Endpoint && d.name() == ENDPOINT_NAME)
            .map(|d| CPtr(d.slot))
            .ok_or(StartError::NoEndpoint)?;
        let mut rams: Vec<Ut> = boot
            .caps()
            .filter(|d| d.kind == CapKind::Untyped && d.size_bits >= 12 && d.size_bits < 48)
            .map(|d| Ut {
                cap: CPtr(d.slot),
                paddr: d.value,
                bits: d.size_bits as u32,
            })
            .filter(|u| u.paddr.is_multiple_of(1 << u.bits))
            .collect();
        rams.sort_by_key(|u| u.paddr);
        let mut devs: Vec<Ut> = boot
            .caps()
            .filter(|d| d.kind == CapKind::DeviceUntyped && d.size_bits >= 12 && d.size_bits < 48)
            .map(|d| Ut {
                cap: CPtr(d.slot),
                paddr: d.value,
                bits: d.size_bits as u32,
            })
            .collect();
        devs.sort_by_key(|u| u.paddr);
        let first = rams.first().ok_or(StartError::NoRam)?;
        let lo = first.paddr / PAGE_SIZE;
        let hi = rams
            .iter()
            .map(|u| (u.paddr + (1 << u.bits)) / PAGE_SIZE)
            .max()
            .unwrap_or(lo);
        let x_count = config.extra_caps.unwrap_or(((hi - lo) / 8).max(1024));
        let d_count: u64 = devs.iter().map(|d| (1u64 << d.bits) / PAGE_SIZE).sum();
        let r0 = boot.cnode_radix as u32;
        let f = boot.first_free_slot;
        if r0 >= 64 || f + 1 >= (1 << r0) {
            return Err(StartError::Layout);
        }
        let lay =
            Layout::new(r0, lo, hi, x_count, d_count, CPtr(f + 1)).ok_or(StartError::Layout)?;

        // ----- the CSpace: root N and the second-level CNodes, from U0 -----
        let u0 = *rams
            .iter()
            .max_by_key(|u| (u.bits, u64::MAX - u.paddr))
            .ok_or(StartError::NoRam)?;
        let rn = lay.root_bits;
        let l = lay.l2_bits;
        let off_n = retype_offset(u0.bits, 0, rn + 5, 1).ok_or(StartError::ObjectsDoNotFit)?;
        let wm = off_n + (1 << (rn + 5));
        let off_l2 =
            retype_offset(u0.bits, wm, l + 5, lay.l2_count).ok_or(StartError::ObjectsDoNotFit)?;
        let wm = up(off_l2 + (lay.l2_count << (l + 5)), PAGE_SIZE);
        let boot_root = CPtr(SLOT_CNODE);
        rt::invoke::untyped_retype(u0.cap, ObjectType::CNode, rn as Word, boot_root, 0, 0, f, 1)
            .map_err(kernel("retype the root CNode"))?;
        rt::invoke::cnode_mint(
            boot_root,
            f + 1,
            64,
            boot_root,
            f,
            64,
            CapRights::ALL,
            Badge(lay.root_guard_bits() as Word),
        )
        .map_err(kernel("guard the root CNode"))?;
        let mut made = 0;
        while made < lay.l2_count {
            let n = (lay.l2_count - made).min(abi::object::MAX_RETYPE_COUNT);
            rt::invoke::untyped_retype(
                u0.cap,
                ObjectType::CNode,
                l as Word,
                lay.root,
                0,
                0,
                1 + made,
                n,
            )
            .map_err(kernel("retype second-level CNodes"))?;
            made += n;
        }
        rt::invoke::cnode_mint(
            lay.root,
            0,
            (64 - l) as Word,
            boot_root,
            SLOT_CNODE,
            64,
            CapRights::ALL,
            Badge((l - r0) as Word),
        )
        .map_err(kernel("put the boot CNode under the root"))?;
        rt::invoke::tcb_set_space(CPtr(SLOT_TCB), CPtr(0), lay.root, 0, CPtr(SLOT_VSPACE), 0)
            .map_err(kernel("switch to the two-level CSpace"))?;

        // ----- RAM: chunk Untypeds and small frames -----
        let mut has_cap = BitSet::new(lay.frames);
        let mut convertible = BitSet::new(lay.chunks);
        let k_of = |paddr: u64| paddr / PAGE_SIZE - lay.base_pfn;
        const CHUNK: u64 = CHUNK_FRAMES * PAGE_SIZE;
        for u in &rams {
            let size = 1u64 << u.bits;
            let start = if u.cap == u0.cap { wm } else { 0 };
            if start >= size {
                continue;
            }
            let chunk_off = if u.bits >= 21 { up(start, CHUNK) } else { size };
            let frames = (chunk_off - start) / PAGE_SIZE;
            if frames > 0 {
                let k = k_of(u.paddr + start);
                lay.retype(u.cap, ObjectType::SmallPage, 0, lay.w(k).0, frames)
                    .map_err(kernel("retype small frames"))?;
                has_cap.set_range(k, k + frames, true);
            }
            if chunk_off < size {
                let c = k_of(u.paddr + chunk_off) / CHUNK_FRAMES;
                let n = (size - chunk_off) / CHUNK;
                lay.retype(u.cap, ObjectType::Untyped, 21, lay.u(c).0, n)
                    .map_err(kernel("retype chunk Untypeds"))?;
                convertible.set_range(c, c + n, true);
                for cc in c..c + n {
                    let k0 = cc * CHUNK_FRAMES;
                    lay.retype(
                        lay.u(cc),
                        ObjectType::SmallPage,
                        0,
                        lay.w(k0).0,
                        CHUNK_FRAMES,
                    )
                    .map_err(kernel("retype a chunk's frames"))?;
                    has_cap.set_range(k0, k0 + CHUNK_FRAMES, true);
                }
            }
        }

        // ----- the frame allocator -----
        let mut fc = FrameConfig::default();
        if let Some(end) = config.dma32_end {
            fc.dma32_end = PhysAddr(end & !(PAGE_SIZE - 1));
        } else {
            fc.dma32_end = DEFAULT_DMA32_END;
        }
        fc.zero_pool_high = config.zero_pool;
        let ranges: Vec<_> = rams
            .iter()
            .map(|u| PhysAddr(u.paddr)..PhysAddr(u.paddr + (1 << u.bits)))
            .collect();
        let mut alloc = FrameAllocator::new(fc, &ranges).map_err(StartError::Allocator)?;
        let obj_lo = u0.paddr / PAGE_SIZE;
        let obj_hi = (u0.paddr + wm) / PAGE_SIZE;
        if obj_hi > obj_lo {
            alloc
                .reserve_range(Pfn(obj_lo), Pfn(obj_hi))
                .map_err(StartError::Allocator)?;
        }
        let devices: Vec<(u64, u64)> = devs
            .iter()
            .map(|d| (d.paddr / PAGE_SIZE, (1u64 << d.bits) / PAGE_SIZE))
            .collect();
        let mut phys = Phys::new(PhysInit {
            alloc,
            lay: lay.clone(),
            has_cap,
            convertible,
            objects: alloc::vec![(obj_lo - lay.base_pfn, obj_hi - lay.base_pfn)],
            devices,
        });

        // ----- page tables, then the window -----
        let want = config.page_table_chunks.unwrap_or((lay.chunks / 64).max(1));
        for _ in 0..want {
            phys.grow_pt_pool().map_err(fail)?;
        }
        phys.reserve_pt_pool();
        for c in 0..lay.chunks as usize {
            if matches!(phys.chunk_role(c), Role::Small | Role::Fixed) {
                phys.map_window(c).map_err(fail)?;
            }
        }

        // ----- device frames -----
        let mut d = 0;
        for u in &devs {
            let pages = (1u64 << u.bits) / PAGE_SIZE;
            lay.retype(u.cap, ObjectType::SmallPage, 0, lay.d(d).0, pages)
                .map_err(kernel("retype device frames"))?;
            d += pages;
        }

        // ----- clients -----
        let mut clients = Vec::new();
        let mut by_badge = BTreeMap::new();
        for spec in &config.clients {
            if spec.badge == 0
                || by_badge.contains_key(&spec.badge)
                || config.supervisor == Some(spec.badge)
            {
                return Err(StartError::BadClient(spec.badge));
            }
            // The caps of another process carry its index as their value
            // (the simulator names them `pid<N>/...`, the QEMU loader
            // `<name>/...`: the server goes by kind and index).
            let find = |kind: CapKind| {
                boot.caps()
                    .find(|d| d.kind == kind && d.value == spec.process)
                    .map(|d| CPtr(d.slot))
            };
            let (Some(vs), Some(tcb)) = (find(CapKind::VSpace), find(CapKind::Tcb)) else {
                return Err(StartError::ClientCaps(spec.badge));
            };
            let c = Client::new(spec, vs, tcb).ok_or(StartError::BadClient(spec.badge))?;
            by_badge.insert(spec.badge, clients.len() as u32);
            clients.push(c);
        }
        Ok(Server {
            ep,
            config,
            phys,
            clients,
            by_badge,
            shm: BTreeMap::new(),
            next_shm: 1,
            rmap: ReverseMap::new(),
            stats: ServerStats::default(),
            gone: Vec::new(),
        })
    }
}
