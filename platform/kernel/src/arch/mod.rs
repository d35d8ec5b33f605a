//! The aarch64 half of the kernel: boot, MMU, exception entry, GIC, timer, heap, physical memory.
//!
//! Everything here touches the machine directly, so this is where the
//! kernel's `unsafe` lives; each block says why it is sound. The kernel's
//! logic ([`crate::kerncore`]) reaches the hardware only through
//! [`machine::HwMachine`], its implementation of [`crate::machine::Machine`].

pub mod boot;
pub mod cpu;
pub mod entry;
pub mod gic;
pub mod heap;
pub mod machine;
pub mod mmu;
pub mod semihosting;
pub mod timer;
pub mod vectors;
