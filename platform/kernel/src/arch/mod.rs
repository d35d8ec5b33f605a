//! The aarch64 half of the kernel: the boot path, the MMU, and semihosting.
//!
//! Everything here touches the machine directly, so this is where the kernel's
//! `unsafe` lives; each block says why it is sound.

pub mod cpu;
pub mod entry;
pub mod mmu;
pub mod semihosting;
