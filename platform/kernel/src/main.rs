//! The microkernel: boots QEMU `virt` at EL1 and runs the system's processes at EL0.
//!
//! # Design principles
//!
//! - **The machine is discovered, not assumed.** RAM and devices come from the
//!   device tree QEMU hands over; only the architecture's own rules are constants.
//! - **Safe code by default.** `unsafe` lives in `arch/` (registers, the MMU,
//!   the boot path, semihosting) and in the console's MMIO access; every block
//!   carries a `// SAFETY:` comment.
//! - **Simple and clear before fast and clever**, then the measured fast paths
//!   made fast where the benchmarks say so.
//!
//! On the host this crate builds as an empty program so that `cargo test
//! --workspace` runs the unit tests of its portable modules.
#![cfg_attr(target_os = "none", no_std, no_main)]
// On the host only the portable modules' tests use them.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod arch;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod console;
mod devicetree;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod boot;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the kernel runs on QEMU virt: `cargo xtask run` builds and boots it");
}
