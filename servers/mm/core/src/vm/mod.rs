//! Address-space bookkeeping: each client's regions and the reverse map of mapped frames.
//!
//! The MM server keeps, per client, what *should* be mapped where; it changes
//! the page tables separately, through kernel invocations. This module is that
//! bookkeeping, with no IPC and no page tables:
//!
//! - [`RegionMap`]: the regions of one address space — Linux's VMAs
//!   (`mm/mmap.c`, `mm/mprotect.c`). Regions are page-aligned, never overlap,
//!   are kept ordered by address and are merged with compatible neighbours.
//!   It places new regions (`get_unmapped_area`, with alignment and guard
//!   gaps, top-down or bottom-up), maps at fixed addresses (with and without
//!   replacing what is there), unmaps and changes protection of any
//!   page-aligned range (splitting regions at its ends), and answers the
//!   fault-path question "which region holds this address, and which page of
//!   its backing is it?".
//! - [`ReverseMap`]: from a frame ([`Pfn`](crate::addr::Pfn)) to every
//!   (client, virtual address) where it is mapped — Linux's rmap — plus the
//!   per-object index `(object, page) → mappings` that
//!   `unmap_mapping_range`/truncate need, and the per-client index that
//!   client death needs.
//!
//! Every operation validates its whole input before changing anything: bad
//! input (unaligned, zero-length, wrapping, outside the window, overlapping)
//! returns a [`VmError`] and leaves the structure exactly as it was. Nothing
//! here panics on caller-controlled values.
//!
//! Each structure has a `check_invariants()` that the property tests call
//! after every operation; the server may call it in debug builds.

mod map;
mod place;
mod region;
mod rmap;

#[cfg(test)]
mod model_tests;

pub use map::{Lookup, RegionMap, VmConfig};
pub use place::{Direction, Placement};
pub use region::{Backing, Prot, Region, RegionFlags, RegionKind, RegionSpec};
pub use rmap::{FilePage, Mappings, Place, ReverseMap, RmapEntry};

use core::fmt;

/// A client of the MM server, as the server tells them apart: by the badge of
/// its endpoint capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ClientId(pub u64);

/// A backing object (a file of the block server, an in-memory object): the
/// unit the page cache indexes and `unmap_mapping_range` acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ObjectId(pub u64);

/// A shared-memory object several clients map (the server's handle for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SharedId(pub u64);

/// Why an address-space or reverse-map operation was refused.
///
/// A refused operation changed nothing. The discriminants are stable, start
/// at 1 (0 is never an error) and may be sent over IPC as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VmError {
    /// A length of zero.
    ZeroLength = 1,
    /// An address or length that is not a multiple of the page size.
    Unaligned = 2,
    /// `start + len` does not fit in 64 bits.
    Overflow = 3,
    /// The range is not entirely inside the address space's window.
    OutsideWindow = 4,
    /// A requested alignment that is not a power of two at least the page size.
    BadAlignment = 5,
    /// A region's backing does not fit its length: an unaligned physical
    /// base, or a physical base / object offset that overflows when the
    /// region's length is added.
    BadBacking = 6,
    /// A guard region with a protection other than [`Prot::NONE`].
    GuardProtection = 7,
    /// A protection change over a guard region (remove guards with unmap).
    GuardRegion = 8,
    /// A fixed mapping over pages that are already mapped.
    Overlap = 9,
    /// No free range of the requested size, alignment and guard gaps.
    NoSpace = 10,
    /// A protection change over a range with unmapped pages in it.
    NotMapped = 11,
    /// The operation would leave more regions than the configured maximum.
    TooManyRegions = 12,
    /// The reverse map already records a mapping at this (client, address).
    AlreadyMapped = 13,
    /// An address-space window that is unaligned or empty.
    BadWindow = 14,
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            VmError::ZeroLength => "zero length",
            VmError::Unaligned => "address or length not page-aligned",
            VmError::Overflow => "range wraps around the address space",
            VmError::OutsideWindow => "range outside the address-space window",
            VmError::BadAlignment => "alignment not a power of two >= page size",
            VmError::BadBacking => "backing base or offset unaligned or overflowing",
            VmError::GuardProtection => "guard region with a protection other than none",
            VmError::GuardRegion => "protection change over a guard region",
            VmError::Overlap => "range already mapped",
            VmError::NoSpace => "no free range fits",
            VmError::NotMapped => "range has unmapped pages",
            VmError::TooManyRegions => "too many regions",
            VmError::AlreadyMapped => "address already has a mapping",
            VmError::BadWindow => "window unaligned or empty",
        };
        f.write_str(s)
    }
}

/// A broken invariant found by a `check_invariants()`: what, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvariantViolation {
    /// Which invariant.
    pub what: &'static str,
    /// The address (or frame number) where it was found.
    pub at: u64,
}

impl fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:#x}", self.what, self.at)
    }
}

/// Returns `Err` with `what` and `at` unless `ok`.
fn ensure(ok: bool, what: &'static str, at: u64) -> Result<(), InvariantViolation> {
    if ok {
        Ok(())
    } else {
        Err(InvariantViolation { what, at })
    }
}
