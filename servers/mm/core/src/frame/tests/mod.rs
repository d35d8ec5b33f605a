//! Tests of the frame allocator: unit tests by area, and property tests against a model.
//!
//! `unit` holds one group of tests per area of the allocator; `prop` runs
//! random operation sequences against a model of every frame, checking the
//! invariants after each step. The helpers here build small machines at
//! QEMU virt's RAM base.

mod prop;
mod unit;

use core::ops::Range;

use super::*;
use crate::addr::PhysAddr;

/// 1 GiB, where QEMU virt's RAM starts.
pub(super) const RAM: u64 = 0x4000_0000;
pub(super) const MIB: u64 = 1 << 20;

/// A byte range `[RAM + a, RAM + b)`.
pub(super) fn r(a: u64, b: u64) -> Range<PhysAddr> {
    PhysAddr(RAM + a)..PhysAddr(RAM + b)
}

/// The frame at byte offset `off` from the start of RAM.
pub(super) fn pfn_at(off: u64) -> Pfn {
    PhysAddr(RAM + off).pfn()
}

/// A configuration with DMA32 ending `dma_mib` MiB into RAM.
pub(super) fn config(dma_mib: u64) -> FrameConfig {
    FrameConfig {
        dma32_end: PhysAddr(RAM + dma_mib * MIB),
        ..FrameConfig::default()
    }
}

/// Panics with the message if the invariants are broken.
#[track_caller]
pub(super) fn check(a: &FrameAllocator) {
    if let Err(e) = a.check_invariants() {
        panic!("invariant broken: {e}");
    }
}
