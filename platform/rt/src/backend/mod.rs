//! The backend primitives (see the contract in the crate documentation), chosen by target.
//!
//! `qemu.rs` on the bare-metal target, `sim.rs` on the host.

#[cfg(target_os = "none")]
mod qemu;
#[cfg(target_os = "none")]
pub(crate) use qemu::*;

#[cfg(not(target_os = "none"))]
mod sim;
#[cfg(not(target_os = "none"))]
pub(crate) use sim::*;
