//! Starting the boot processes: address spaces, images, stacks, capabilities and boot info.
//!
//! For each process of the boot archive the loader creates, from memory it
//! takes off the top of free RAM, a VSpace (with an ASID), a CNode, a TCB,
//! the frames of its ELF segments, its stack, IPC buffer and boot-info
//! frames, and the page tables they need; it fills the well-known slots of
//! `abi::boot` and hands out the capabilities of the process's role (see
//! [`crate::bootimage`]). Every other byte of free RAM goes to the server
//! as Untyped capabilities, so that nothing a process can reach overlaps
//! the kernel, its heap or the boot objects.
//!
//! Devices: the server gets each device region as device Untyped caps
//! (descriptors of kind `DeviceUntyped`, named after the device, `value`
//! the physical address) and, for a device with an interrupt, a descriptor
//! of kind `IrqControl` with the same name whose slot is the IRQ control
//! cap ([`SLOT_IRQ_CONTROL`]) and whose `value` is the device's interrupt
//! number (the GIC's INTID, from the device tree): what to ask the IRQ
//! control for (`IRQControl_Get`) to handle that device's interrupt.
//!
//! Virtual layout of a process: its ELF segments where they are linked, the
//! stack below [`STACK_TOP`] with an unmapped guard page under it, the IPC
//! buffer at [`IPC_BUFFER_VADDR`], the boot info (read-only) at
//! [`BOOT_INFO_VADDR`], whose address the process finds in `x0`, and its
//! configuration blob, if the manifest gives it one (read-only, opaque to
//! the kernel) at [`CONFIG_VADDR`], named in the boot info.

use alloc::string::String;
use alloc::vec::Vec;

use abi::boot::{
    BOOT_INFO_SIZE, BOOT_INFO_WORDS, BootInfo, CapDescriptor, CapKind, FIRST_GRANTED_SLOT,
    SLOT_ASID_POOL, SLOT_BOOT_INFO_FRAME, SLOT_CNODE, SLOT_IPC_BUFFER, SLOT_IRQ_CONTROL, SLOT_TCB,
    SLOT_VSPACE,
};
use abi::error::ErrorReply;
use abi::object::{PAGE_BITS, SLOT_BITS};
use abi::{CapRights, Word};

use crate::bootimage::{Archive, Role};
use crate::devicetree::PhysRange;
use crate::elf::Elf;
use crate::kerncore::Kernel;
use crate::kerncore::cap::{Cap, Mapping, ObjId};
use crate::kerncore::object::{Context, Endpoint, EndpointState, SlotRef, ThreadState, tcb_slot};
use crate::kerncore::vspace::page_attrs;
use crate::machine::Machine;

/// Top of the initial thread's stack.
pub const STACK_TOP: u64 = 0x7ffe_0000_0000;
/// Where the IPC buffer is mapped.
pub const IPC_BUFFER_VADDR: u64 = 0x7fff_0001_0000;
/// Where the boot info is mapped (read-only, `BOOT_INFO_SIZE` bytes).
pub const BOOT_INFO_VADDR: u64 = 0x7fff_0000_0000;
/// Where a process's configuration blob is mapped (read-only).
pub const CONFIG_VADDR: u64 = 0x7fff_0100_0000;
const PAGE: u64 = 1 << PAGE_BITS;

/// The most free ranges [`BootMemory`] tracks.
const MAX_RANGES: usize = 32;

/// Free physical memory, handed out from the bottom of each range. It
/// needs no heap (the kernel heap itself comes from it).
#[derive(Clone, Debug)]
pub struct BootMemory {
    ranges: [PhysRange; MAX_RANGES],
    count: usize,
}

impl BootMemory {
    /// Free RAM: page-aligned ranges.
    pub fn new(ranges: &[PhysRange]) -> Self {
        let mut m = BootMemory {
            ranges: [PhysRange { base: 0, size: 0 }; MAX_RANGES],
            count: 0,
        };
        for r in ranges {
            let base = r.base.next_multiple_of(PAGE);
            let end = r.end() & !(PAGE - 1);
            m.push(base, end);
        }
        m
    }

    fn push(&mut self, base: u64, end: u64) {
        if end > base && self.count < MAX_RANGES {
            self.ranges[self.count] = PhysRange {
                base,
                size: end - base,
            };
            self.count += 1;
        }
    }

    /// Removes `[base, base + size)` from the free ranges.
    pub fn reserve(&mut self, base: u64, size: u64) {
        let (lo, hi) = (base & !(PAGE - 1), (base + size).next_multiple_of(PAGE));
        let old = self.clone();
        self.count = 0;
        for r in old.remaining() {
            if hi <= r.base || lo >= r.end() {
                self.push(r.base, r.end());
                continue;
            }
            self.push(r.base, lo.max(r.base));
            self.push(hi.min(r.end()), r.end());
        }
    }

    /// Takes `bytes` (a power of two ≥ 4 KiB), aligned to their size; the
    /// alignment gap below it stays free.
    pub fn alloc(&mut self, bytes: u64) -> Option<u64> {
        for i in 0..self.count {
            let r = self.ranges[i];
            let at = r.base.next_multiple_of(bytes);
            if at.checked_add(bytes).is_some_and(|e| e <= r.end()) {
                self.reserve(at, bytes);
                return Some(at);
            }
        }
        None
    }

    /// What is left, in address order.
    pub fn remaining(&self) -> &[PhysRange] {
        &self.ranges[..self.count]
    }
}

/// A device region the server gets as device Untyped.
#[derive(Clone, Copy, Debug)]
pub struct DeviceRegion {
    /// A name for the boot info.
    pub name: &'static str,
    /// Base physical address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// Its interrupt (GIC INTID), if it has one the server may handle.
    pub irq: Option<u32>,
}

/// Why the boot processes could not be started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError(pub String);

fn err(msg: impl Into<String>) -> LoadError {
    LoadError(msg.into())
}

/// What the loader made of one process.
struct Loaded {
    name: String,
    role: Role,
    badge: Word,
    tcb: ObjId,
    cnode: ObjId,
    info: BootInfo,
    info_paddr: u64,
}

/// Splits `[base, end)` into naturally aligned power-of-two blocks of at
/// least `2^min_bits` bytes.
pub fn aligned_blocks(mut base: u64, end: u64, min_bits: u32) -> Vec<(u64, u8)> {
    let mut out = Vec::new();
    while base < end {
        let align_bits = if base == 0 { 63 } else { base.trailing_zeros() };
        let size_bits = (63 - (end - base).leading_zeros()).min(align_bits).min(47);
        if size_bits < min_bits {
            break;
        }
        out.push((base, size_bits as u8));
        base += 1 << size_bits;
    }
    out
}

impl<M: Machine> Kernel<M> {
    fn alloc_zeroed(&mut self, mem: &mut BootMemory, bytes: u64) -> Result<u64, LoadError> {
        let at = mem
            .alloc(bytes)
            .ok_or_else(|| err("out of memory starting the boot processes"))?;
        self.machine.zero(at, bytes);
        Ok(at)
    }

    /// Maps a fresh zeroed page at `vaddr`, creating page tables as needed;
    /// returns its physical address.
    fn boot_map_page(
        &mut self,
        mem: &mut BootMemory,
        asid: u16,
        vaddr: u64,
        attrs: vmsa::PageAttrs,
    ) -> Result<u64, LoadError> {
        let frame = self.alloc_zeroed(mem, PAGE)?;
        loop {
            match self.map_frame(asid, vaddr, frame, PAGE, attrs) {
                Ok(_) => return Ok(frame),
                Err(ErrorReply::FailedLookup { .. }) => {
                    let table = self.alloc_zeroed(mem, PAGE)?;
                    self.install_table(asid, vaddr, table)
                        .map_err(|e| err(alloc::format!("page table at {vaddr:#x}: {e:?}")))?;
                }
                Err(e) => return Err(err(alloc::format!("mapping {vaddr:#x}: {e:?}"))),
            }
        }
    }

    /// Puts a cap in a process's CNode slot as a new derivation-tree root.
    fn boot_cap(&mut self, cnode: ObjId, slot: Word, cap: Cap) {
        self.insert_new_cap(
            None,
            SlotRef {
                cnode,
                index: slot as u32,
            },
            cap,
        );
    }

    /// Copies the cap at `src` into `cnode`'s `slot` (a child or sibling).
    fn boot_copy(&mut self, src: SlotRef, cnode: ObjId, slot: Word, cap: Cap) {
        self.cte_insert(
            cap,
            src,
            SlotRef {
                cnode,
                index: slot as u32,
            },
        );
    }

    fn load_process(
        &mut self,
        mem: &mut BootMemory,
        index: usize,
        p: &crate::bootimage::Process<'_>,
    ) -> Result<Loaded, LoadError> {
        let elf = Elf::parse(p.elf)
            .map_err(|e| err(alloc::format!("{}: bad ELF image: {e:?}", p.name)))?;
        let radix = p.cnode_radix;
        let cnode_paddr = self.alloc_zeroed(mem, (1u64 << (radix as u32 + SLOT_BITS)).max(PAGE))?;
        let cnode = self
            .cnodes
            .insert(crate::kerncore::object::CNode::new(cnode_paddr, radix));
        let root = self.alloc_zeroed(mem, PAGE)?;
        let asid = self.assign_asid(root).ok_or_else(|| err("out of ASIDs"))?;
        let tcb_paddr = self.alloc_zeroed(mem, PAGE)?;
        let tcb = self.create_tcb(tcb_paddr, None);

        // The image.
        for seg in elf.segments() {
            let attrs = vmsa::PageAttrs {
                writable: seg.flags.write,
                user_exec: seg.flags.execute,
                ..page_attrs(CapRights::READ_WRITE, abi::vm::CACHEABLE)
            };
            let start = seg.vaddr & !(PAGE - 1);
            let end = (seg.vaddr + seg.mem_size).next_multiple_of(PAGE);
            let mut va = start;
            while va < end {
                let frame = match self.translate(asid, va) {
                    Some(t) => t.paddr,
                    None => self.boot_map_page(mem, asid, va, attrs)?,
                };
                // Copy the part of the segment's file bytes inside this page.
                let seg_lo = seg.vaddr.max(va);
                let seg_hi = (seg.vaddr + seg.data.len() as u64).min(va + PAGE);
                if seg_lo < seg_hi {
                    let from = (seg_lo - seg.vaddr) as usize;
                    let to = (seg_hi - seg.vaddr) as usize;
                    self.machine
                        .write_bytes(frame + (seg_lo - va), &seg.data[from..to]);
                }
                va += PAGE;
            }
        }
        // Stack, with a guard page below it left unmapped.
        let stack_pages = u64::from(p.stack_pages.max(1));
        let rw = page_attrs(
            CapRights::READ_WRITE,
            abi::vm::CACHEABLE | abi::vm::EXECUTE_NEVER,
        );
        for i in 0..stack_pages {
            self.boot_map_page(mem, asid, STACK_TOP - (i + 1) * PAGE, rw)?;
        }
        // IPC buffer and boot info.
        let ipc_frame = self.boot_map_page(mem, asid, IPC_BUFFER_VADDR, rw)?;
        let ro = page_attrs(CapRights::READ, abi::vm::CACHEABLE | abi::vm::EXECUTE_NEVER);
        let mut info_pages = [0; (BOOT_INFO_SIZE as u64 / PAGE) as usize];
        for (i, page) in info_pages.iter_mut().enumerate() {
            *page = self.boot_map_page(mem, asid, BOOT_INFO_VADDR + i as u64 * PAGE, ro)?;
        }
        if info_pages.windows(2).any(|w| w[1] != w[0] + PAGE) {
            return Err(err("boot info frames are not contiguous"));
        }
        // The configuration blob, read-only.
        for (i, chunk) in p.config.chunks(PAGE as usize).enumerate() {
            let frame = self.boot_map_page(mem, asid, CONFIG_VADDR + i as u64 * PAGE, ro)?;
            self.machine.write_bytes(frame, chunk);
        }

        // Well-known caps.
        self.boot_cap(cnode, SLOT_TCB, Cap::Tcb { id: tcb });
        let cnode_cap = Cap::CNode {
            id: cnode,
            radix,
            guard_size: 64 - radix,
            guard: 0,
        };
        self.boot_cap(cnode, SLOT_CNODE, cnode_cap);
        let vspace_cap = Cap::VSpace {
            paddr: root,
            asid: Some(asid),
        };
        self.boot_cap(cnode, SLOT_VSPACE, vspace_cap);
        let ipc_cap = Cap::Frame {
            paddr: ipc_frame,
            size_bits: PAGE_BITS as u8,
            device: false,
            rights: CapRights::READ_WRITE,
            mapping: Some(Mapping {
                asid,
                vaddr: IPC_BUFFER_VADDR,
            }),
        };
        self.boot_cap(cnode, SLOT_IPC_BUFFER, ipc_cap);
        self.boot_cap(
            cnode,
            SLOT_BOOT_INFO_FRAME,
            Cap::Frame {
                paddr: info_pages[0],
                size_bits: PAGE_BITS as u8,
                device: false,
                rights: CapRights::READ,
                mapping: Some(Mapping {
                    asid,
                    vaddr: BOOT_INFO_VADDR,
                }),
            },
        );
        // The thread: its CSpace, VSpace and IPC buffer.
        let slot = |index: Word| SlotRef {
            cnode,
            index: index as u32,
        };
        let ctable = self
            .tcbs
            .get(tcb)
            .map(|t| t.ctable)
            .ok_or_else(|| err("TCB"))?;
        self.boot_copy(
            slot(SLOT_CNODE),
            ctable,
            tcb_slot::CSPACE as Word,
            cnode_cap,
        );
        self.boot_copy(
            slot(SLOT_VSPACE),
            ctable,
            tcb_slot::VSPACE as Word,
            vspace_cap,
        );
        let buffer_cap = self
            .derive_cap(slot(SLOT_IPC_BUFFER), ipc_cap)
            .map_err(|e| err(alloc::format!("{e:?}")))?;
        self.boot_copy(
            slot(SLOT_IPC_BUFFER),
            ctable,
            tcb_slot::BUFFER as Word,
            buffer_cap,
        );

        let mcp = if p.role == Role::Server {
            255
        } else {
            p.priority
        };
        let t = self.tcbs.get_mut(tcb).ok_or_else(|| err("TCB"))?;
        t.context = Context::new(elf.entry, STACK_TOP);
        t.context.x[0] = BOOT_INFO_VADDR;
        t.priority = p.priority;
        t.mcp = mcp;
        t.ipc_buffer = IPC_BUFFER_VADDR;
        let n = p.name.len().min(16);
        t.name[..n].copy_from_slice(&p.name.as_bytes()[..n]);

        let mut info = BootInfo::new(radix, IPC_BUFFER_VADDR, index as Word);
        if !p.config.is_empty() {
            info.config_addr = CONFIG_VADDR;
            info.config_len = p.config.len() as Word;
        }
        Ok(Loaded {
            name: String::from(p.name),
            role: p.role,
            badge: p.badge,
            tcb,
            cnode,
            info,
            info_paddr: info_pages[0],
        })
    }

    /// Starts every process of the archive; the remaining RAM in `mem`
    /// becomes the server's Untyped memory.
    pub fn load_boot_processes(
        &mut self,
        archive: &Archive<'_>,
        mem: &mut BootMemory,
        devices: &[DeviceRegion],
    ) -> Result<(), LoadError> {
        let mut loaded = Vec::new();
        for (i, p) in archive.processes().enumerate() {
            loaded.push(self.load_process(mem, i, &p)?);
        }
        if let Some(server) = loaded.iter().position(|l| l.role == Role::Server) {
            self.grant_server_caps(&mut loaded, server, mem, devices)?;
        }
        for l in &loaded {
            let mut words = [0; BOOT_INFO_WORDS];
            l.info.encode(&mut words);
            for (i, w) in words.iter().enumerate() {
                self.machine.write_word(l.info_paddr + i as u64 * 8, *w);
            }
            self.set_thread_state(l.tcb, ThreadState::Running);
            self.sched_enqueue(l.tcb, false);
        }
        self.reschedule_required();
        Ok(())
    }

    /// Puts `cap` in the next free granted slot of `cnode` and describes it.
    #[allow(clippy::too_many_arguments)]
    fn grant_cap(
        &mut self,
        cnode: ObjId,
        next: &mut Word,
        info: &mut BootInfo,
        src: Option<SlotRef>,
        cap: Cap,
        kind: CapKind,
        size_bits: u8,
        value: Word,
        name: &str,
    ) -> Result<Word, LoadError> {
        let slot = *next;
        if slot >= 1 << info.cnode_radix {
            return Err(err("the server's CNode is too small for its capabilities"));
        }
        match src {
            Some(src) => self.boot_copy(src, cnode, slot, cap),
            None => self.boot_cap(cnode, slot, cap),
        }
        info.push(CapDescriptor {
            slot,
            kind,
            size_bits,
            value,
            name: CapDescriptor::name_bytes(name),
        })
        .map_err(|_| err("too many capabilities for the boot info"))?;
        *next += 1;
        Ok(slot)
    }

    fn grant_server_caps(
        &mut self,
        loaded: &mut [Loaded],
        server: usize,
        mem: &mut BootMemory,
        devices: &[DeviceRegion],
    ) -> Result<(), LoadError> {
        let s_cnode = loaded[server].cnode;
        let ep_paddr = self.alloc_zeroed(mem, PAGE)?;
        let ep = self
            .endpoints
            .insert(crate::kerncore::object::Boxed::new(Endpoint {
                paddr: ep_paddr,
                state: EndpointState::Idle,
                queue: crate::kerncore::object::ThreadQueue::default(),
            }));
        let mut next = FIRST_GRANTED_SLOT;
        let mut info = core::mem::replace(&mut loaded[server].info, BootInfo::new(0, 0, 0));
        let ep_slot = self.grant_cap(
            s_cnode,
            &mut next,
            &mut info,
            None,
            Cap::Endpoint {
                id: ep,
                badge: 0,
                rights: CapRights::ALL,
            },
            CapKind::Endpoint,
            0,
            0,
            "mm",
        )?;
        self.boot_cap(s_cnode, SLOT_IRQ_CONTROL, Cap::IrqControl);
        self.boot_cap(s_cnode, SLOT_ASID_POOL, Cap::AsidPool);

        // Clients: a badged endpoint cap (also their fault endpoint); the
        // server gets their TCB, CNode and VSpace.
        let ep_src = SlotRef {
            cnode: s_cnode,
            index: ep_slot as u32,
        };
        for (i, l) in loaded.iter_mut().enumerate() {
            if i == server {
                continue;
            }
            let badged = Cap::Endpoint {
                id: ep,
                badge: l.badge,
                rights: CapRights::new(true, true, false, true),
            };
            self.boot_copy(ep_src, l.cnode, FIRST_GRANTED_SLOT, badged);
            l.info
                .push(CapDescriptor {
                    slot: FIRST_GRANTED_SLOT,
                    kind: CapKind::Endpoint,
                    size_bits: 0,
                    value: l.badge,
                    name: CapDescriptor::name_bytes("mm"),
                })
                .map_err(|_| err("boot info full"))?;
            if let Some(t) = self.tcbs.get_mut(l.tcb) {
                t.fault_ep = FIRST_GRANTED_SLOT;
            }
            for (slot, kind, suffix) in [
                (SLOT_TCB, CapKind::Tcb, "tcb"),
                (SLOT_CNODE, CapKind::CNode, "cnode"),
                (SLOT_VSPACE, CapKind::VSpace, "vspace"),
            ] {
                let src = SlotRef {
                    cnode: l.cnode,
                    index: slot as u32,
                };
                let cap = self.slot(src).cap;
                let name = alloc::format!("{}/{}", l.name, suffix);
                self.grant_cap(
                    s_cnode,
                    &mut next,
                    &mut info,
                    Some(src),
                    cap,
                    kind,
                    0,
                    i as Word,
                    &name,
                )?;
            }
        }
        // Device memory, then all remaining RAM.
        for d in devices {
            for (base, bits) in aligned_blocks(d.base, d.base + d.size, PAGE_BITS) {
                let cap = Cap::Untyped {
                    paddr: base,
                    size_bits: bits,
                    device: true,
                    free_index: 0,
                };
                self.grant_cap(
                    s_cnode,
                    &mut next,
                    &mut info,
                    None,
                    cap,
                    CapKind::DeviceUntyped,
                    bits,
                    base,
                    d.name,
                )?;
            }
            if let Some(irq) = d.irq {
                info.push(CapDescriptor {
                    slot: SLOT_IRQ_CONTROL,
                    kind: CapKind::IrqControl,
                    size_bits: 0,
                    value: Word::from(irq),
                    name: CapDescriptor::name_bytes(d.name),
                })
                .map_err(|_| err("too many capabilities for the boot info"))?;
            }
        }
        let free: Vec<PhysRange> = mem.remaining().to_vec();
        let mut free = free;
        free.sort_unstable_by_key(|r| r.base);
        for r in free {
            for (base, bits) in aligned_blocks(r.base, r.end(), PAGE_BITS) {
                let cap = Cap::Untyped {
                    paddr: base,
                    size_bits: bits,
                    device: false,
                    free_index: 0,
                };
                self.grant_cap(
                    s_cnode,
                    &mut next,
                    &mut info,
                    None,
                    cap,
                    CapKind::Untyped,
                    bits,
                    base,
                    "ram",
                )?;
            }
        }
        *mem = BootMemory::new(&[]);
        info.first_free_slot = next;
        loaded[server].info = info;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_and_cover_the_range() {
        let blocks = aligned_blocks(0x4100_0000, 0x8000_0000, 12);
        let mut at = 0x4100_0000;
        for (base, bits) in &blocks {
            assert_eq!(*base, at);
            assert_eq!(base % (1 << bits), 0);
            at += 1 << bits;
        }
        assert_eq!(at, 0x8000_0000);
        assert!(blocks.len() < 12);
    }

    #[test]
    fn boot_memory_hands_out_aligned_pages() {
        let mut m = BootMemory::new(&[PhysRange {
            base: 0x4000_1000,
            size: 0x10_0000,
        }]);
        assert_eq!(m.alloc(0x1000), Some(0x4000_1000));
        assert_eq!(m.alloc(0x4000), Some(0x4000_4000));
        // The gap below the aligned block stays available.
        assert_eq!(m.remaining()[0].base, 0x4000_2000);
        assert_eq!(m.remaining()[1].base, 0x4000_8000);
        assert_eq!(m.alloc(0x2000), Some(0x4000_2000));
        assert_eq!(m.alloc(0x100_0000), None);
    }
}
