//! Address spaces: ASIDs, frames and page tables, through the shared `vmsa` code.
//!
//! A VSpace is a level-0 translation table retyped from Untyped memory; it
//! can hold mappings once `ASIDPool_Assign` gives it an ASID. Frame and page
//! table caps remember where they are mapped (ASID and address), as in
//! seL4, so that unmapping or deleting the cap removes exactly that mapping,
//! and a mapping in an address space that has since been deleted is simply
//! forgotten. The descriptors, the walk, map and unmap are `vmsa`'s — the
//! same code the simulator runs.

use abi::error::{ErrorReply, LookupFailure};
use abi::vm::{EXECUTE_NEVER, MemoryType as AbiMemoryType};
use abi::{CapRights, Word};
use vmsa::{MapError, MemoryType, PageAttrs, TableMemory};

use super::Kernel;
use super::cap::{Mapping, TableMapping};
use crate::machine::Machine;

/// `vmsa`'s view of physical memory, through the machine.
pub struct Tables<'a, M: Machine>(pub &'a mut M);

impl<M: Machine> TableMemory for Tables<'_, M> {
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        self.0.read_word(table + index as u64 * 8)
    }
    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        self.0.write_word(table + index as u64 * 8, value);
        self.0.table_write_barrier();
    }
}

/// The descriptor attributes of a user mapping with `rights` and `attr`.
pub fn page_attrs(rights: CapRights, attr: Word) -> PageAttrs {
    PageAttrs {
        user: true,
        writable: rights.can_write(),
        user_exec: attr & EXECUTE_NEVER == 0,
        kernel_exec: false,
        memory: match AbiMemoryType::from_attributes(attr) {
            AbiMemoryType::NormalWriteBack => MemoryType::NormalWriteBack,
            AbiMemoryType::NormalUncached => MemoryType::NormalUncached,
            AbiMemoryType::Device => MemoryType::Device,
        },
        global: false,
    }
}

/// The seL4 error for a `vmsa` refusal.
pub fn map_error(e: MapError) -> ErrorReply {
    match e {
        MapError::Misaligned => ErrorReply::AlignmentError,
        MapError::OutOfRange => ErrorReply::InvalidArgument { index: 0 },
        MapError::MissingTable { level } => ErrorReply::FailedLookup {
            source: false,
            failure: LookupFailure::MissingCapability {
                bits_left: vmsa::level_shift(level - 1) as u8,
            },
        },
        MapError::AlreadyMapped { .. } | MapError::AlreadyPresent => ErrorReply::DeleteFirst,
    }
}

impl<M: Machine> Kernel<M> {
    /// The root table of the address space with this ASID.
    pub fn vspace_root(&self, asid: u16) -> Option<u64> {
        self.asids.get(asid as usize).copied().flatten()
    }

    /// Gives the VSpace at `root` a free ASID.
    pub fn assign_asid(&mut self, root: u64) -> Option<u16> {
        self.cap_generation += 1;
        let asid = (1..self.asids.len()).find(|&a| self.asids[a].is_none())?;
        self.asids[asid] = Some(root);
        self.machine.tlb_flush_asid(asid as u16);
        Some(asid as u16)
    }

    /// Forgets an ASID (its VSpace is being deleted).
    pub fn delete_asid(&mut self, asid: u16, root: u64) {
        self.cap_generation += 1;
        if self.vspace_root(asid) == Some(root) {
            self.asids[asid as usize] = None;
            self.machine.tlb_flush_asid(asid);
        }
    }

    /// Maps a frame; `Ok(true)` when it only changed an existing mapping's rights.
    pub fn map_frame(
        &mut self,
        asid: u16,
        vaddr: u64,
        paddr: u64,
        size: u64,
        attrs: PageAttrs,
    ) -> Result<bool, ErrorReply> {
        let root = self
            .vspace_root(asid)
            .ok_or(ErrorReply::InvalidCapability { index: 1 })?;
        let remap = vmsa::map_frame(
            &mut Tables(&mut self.machine),
            root,
            vaddr,
            paddr,
            size,
            attrs,
        )
        .map_err(map_error)?;
        if remap {
            self.machine.tlb_flush_page(asid, vaddr);
        }
        Ok(remap)
    }

    /// Removes the mapping a frame cap recorded (if its address space lives on).
    pub fn unmap_frame_at(&mut self, m: Mapping, paddr: u64, size: u64) {
        if let Some(root) = self.vspace_root(m.asid)
            && vmsa::unmap_frame(&mut Tables(&mut self.machine), root, m.vaddr, paddr, size)
        {
            if size == vmsa::PAGE_SIZE {
                self.machine.tlb_flush_page(m.asid, m.vaddr);
            } else {
                self.machine.tlb_flush_asid(m.asid);
            }
        }
    }

    /// Installs a page table.
    pub fn install_table(&mut self, asid: u16, vaddr: u64, table: u64) -> Result<u8, ErrorReply> {
        let root = self
            .vspace_root(asid)
            .ok_or(ErrorReply::InvalidCapability { index: 1 })?;
        vmsa::install_table(&mut Tables(&mut self.machine), root, vaddr, table).map_err(map_error)
    }

    /// Removes a page table from where its cap recorded it.
    pub fn unmap_table_at(&mut self, m: TableMapping, table: u64) {
        if let Some(root) = self.vspace_root(m.asid)
            && vmsa::uninstall_table(
                &mut Tables(&mut self.machine),
                root,
                m.vaddr,
                m.level,
                table,
            )
        {
            self.machine.tlb_flush_asid(m.asid);
        }
    }

    /// Translates a user address of an address space (for the kernel's own
    /// reads of user memory, e.g. DebugPutString).
    pub fn translate(&mut self, asid: u16, vaddr: u64) -> Option<vmsa::Translation> {
        let root = self.vspace_root(asid)?;
        vmsa::walk(&Tables(&mut self.machine), root, vaddr).ok()
    }
}
