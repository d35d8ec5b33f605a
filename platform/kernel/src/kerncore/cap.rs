//! Capabilities: what a slot can hold, and seL4's rules relating two of them.
//!
//! A [`Cap`] names a kernel object (by its index in the kernel's object
//! tables, or by physical address for memory-backed objects) together with
//! the per-capability data: rights, badge, guard, mapping. The relations
//! here are seL4's (`sameRegionAs`, `sameObjectAs`, `isCapRevocable`,
//! `updateCapData`, `maskCapRights`) and decide the derivation tree that
//! revoke walks: see [`crate::kerncore::cspace`].

use abi::CapRights;
use abi::object::{LARGE_PAGE_BITS, PAGE_BITS};

/// Index of an object in one of the kernel's object tables.
pub type ObjId = u32;

/// Where a mapped frame sits: address space (ASID) and virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The address space.
    pub asid: u16,
    /// The virtual address of the frame's first byte.
    pub vaddr: u64,
}

/// Where a mapped page table sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableMapping {
    /// The address space.
    pub asid: u16,
    /// A virtual address it translates.
    pub vaddr: u64,
    /// Its level (1..=3).
    pub level: u8,
}

/// A capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Cap {
    /// The empty slot.
    #[default]
    Null,
    /// Untyped memory `[paddr, paddr + 2^size_bits)`; `free_index` bytes are used.
    Untyped {
        /// Base physical address.
        paddr: u64,
        /// log2 of the size.
        size_bits: u8,
        /// Device memory (only frames and Untypeds may be made of it).
        device: bool,
        /// The watermark: bytes from `paddr` already handed out.
        free_index: u64,
    },
    /// An endpoint.
    Endpoint {
        /// The endpoint.
        id: ObjId,
        /// The badge (0: unbadged).
        badge: u64,
        /// Rights.
        rights: CapRights,
    },
    /// A notification.
    Notification {
        /// The notification.
        id: ObjId,
        /// The badge (0: unbadged).
        badge: u64,
        /// Rights.
        rights: CapRights,
    },
    /// A reply capability to a thread waiting for a reply (or, with
    /// `master`, the thread's own master reply cap in its TCB).
    Reply {
        /// The thread that will be replied to.
        tcb: ObjId,
        /// Whether the reply may carry capabilities.
        can_grant: bool,
        /// The master reply cap (never invocable).
        master: bool,
    },
    /// A CNode.
    CNode {
        /// The CNode.
        id: ObjId,
        /// log2 of its number of slots.
        radix: u8,
        /// Guard size in bits.
        guard_size: u8,
        /// Guard value.
        guard: u64,
    },
    /// A thread.
    Tcb {
        /// The TCB.
        id: ObjId,
    },
    /// A frame of 4 KiB or 2 MiB.
    Frame {
        /// Physical address.
        paddr: u64,
        /// log2 of its size (12 or 21).
        size_bits: u8,
        /// Device memory (not zeroed, never Normal unless asked).
        device: bool,
        /// Rights (Read/Write matter).
        rights: CapRights,
        /// Where this cap has mapped it.
        mapping: Option<Mapping>,
    },
    /// A translation table below the top level.
    PageTable {
        /// Physical address of the table.
        paddr: u64,
        /// Where it is installed.
        mapping: Option<TableMapping>,
    },
    /// The top-level table of an address space.
    VSpace {
        /// Physical address of the level-0 table.
        paddr: u64,
        /// Its ASID, once assigned.
        asid: Option<u16>,
    },
    /// The ASID pool: assigns ASIDs to VSpaces.
    AsidPool,
    /// The IRQ control: issues IRQ handler caps.
    IrqControl,
    /// The handler of one interrupt.
    IrqHandler {
        /// The interrupt number.
        irq: u32,
    },
}

/// A physical region `[base, base + 2^bits)` that a cap's object occupies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// log2 of the size.
    pub bits: u8,
}

impl Region {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.base + (1u64 << self.bits)
    }
    /// Whether `other` lies within this region.
    pub fn contains(&self, other: &Region) -> bool {
        self.base <= other.base && other.end() <= self.end()
    }
}

impl Cap {
    /// Whether the slot is empty.
    pub const fn is_null(&self) -> bool {
        matches!(self, Cap::Null)
    }

    /// The cap's rights, for the kinds that carry them.
    pub const fn rights(&self) -> CapRights {
        match *self {
            Cap::Endpoint { rights, .. }
            | Cap::Notification { rights, .. }
            | Cap::Frame { rights, .. } => rights,
            _ => CapRights::ALL,
        }
    }

    /// seL4 `maskCapRights`: the cap with its rights masked by `mask`.
    pub fn mask_rights(self, mask: CapRights) -> Cap {
        match self {
            Cap::Endpoint { id, badge, rights } => Cap::Endpoint {
                id,
                badge,
                rights: rights.intersect(mask),
            },
            Cap::Notification { id, badge, rights } => {
                // A notification cap has no grant rights.
                let r = rights.intersect(mask);
                Cap::Notification {
                    id,
                    badge,
                    rights: CapRights::new(false, false, r.can_read(), r.can_write()),
                }
            }
            Cap::Reply {
                tcb,
                can_grant,
                master,
            } => Cap::Reply {
                tcb,
                can_grant: can_grant && mask.can_grant(),
                master,
            },
            Cap::Frame {
                paddr,
                size_bits,
                device,
                rights,
                mapping,
            } => {
                let r = rights.intersect(mask);
                Cap::Frame {
                    paddr,
                    size_bits,
                    device,
                    rights: CapRights::new(false, false, r.can_read(), r.can_write()),
                    mapping,
                }
            }
            other => other,
        }
    }

    /// seL4 `updateCapData`: set a badge on an unbadged endpoint or
    /// notification cap, or the guard of a CNode cap from `data`
    /// (`guard_size` in bits 5:0, the guard above). `preserve` (Mutate)
    /// forbids re-badging. Returns `Cap::Null` when the update is not allowed.
    pub fn update_data(self, preserve: bool, data: u64) -> Cap {
        match self {
            Cap::Endpoint { id, badge, rights } => {
                if !preserve && badge == 0 {
                    Cap::Endpoint {
                        id,
                        badge: data,
                        rights,
                    }
                } else {
                    Cap::Null
                }
            }
            Cap::Notification { id, badge, rights } => {
                if !preserve && badge == 0 {
                    Cap::Notification {
                        id,
                        badge: data,
                        rights,
                    }
                } else {
                    Cap::Null
                }
            }
            Cap::CNode { id, radix, .. } => {
                let guard_size = (data & 0x3f) as u8;
                if guard_size as u32 + radix as u32 > 64 {
                    return Cap::Null;
                }
                let guard = (data >> 6) & low_mask(guard_size as u32);
                Cap::CNode {
                    id,
                    radix,
                    guard_size,
                    guard,
                }
            }
            other => other,
        }
    }

    /// The frame size in bytes, for frame caps.
    pub const fn frame_size(&self) -> Option<u64> {
        match *self {
            Cap::Frame { size_bits, .. } => Some(1 << size_bits),
            _ => None,
        }
    }
}

/// A mask of the low `bits` bits (all ones for 64).
pub const fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// Whether a frame size is one this kernel supports.
pub const fn is_frame_bits(bits: u8) -> bool {
    bits as u32 == PAGE_BITS || bits as u32 == LARGE_PAGE_BITS
}

/// seL4 `isCapRevocable(derived, src)`: whether a cap derived from `src`
/// starts a new level of the derivation tree (so that revoking it deletes its
/// own derivations).
pub fn is_cap_revocable(derived: &Cap, src: &Cap) -> bool {
    match (derived, src) {
        (Cap::Endpoint { badge: a, .. }, Cap::Endpoint { badge: b, .. })
        | (Cap::Notification { badge: a, .. }, Cap::Notification { badge: b, .. }) => a != b,
        (Cap::IrqHandler { .. }, Cap::IrqControl) => true,
        (Cap::Untyped { .. }, _) => true,
        _ => false,
    }
}
