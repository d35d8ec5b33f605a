//! The microkernel: boots QEMU `virt` at EL1 and runs the system's processes at EL0.
//!
//! It implements the seL4-style ABI of `platform/abi` — capabilities in
//! CNodes with a derivation tree, Untyped memory retyped into every other
//! object, synchronous IPC through endpoints with one-shot reply caps,
//! notifications, faults delivered as IPC, address spaces built from
//! page-table objects — with the same semantics as the host simulator.
//!
//! # Design principles
//!
//! - **The machine is discovered, not assumed.** RAM, the console UART, the
//!   interrupt controller and the device regions come from the device tree
//!   QEMU hands over; only the architecture's own rules are constants.
//! - **Safe code by default.** The kernel's logic ([`kerncore`]: capabilities,
//!   objects, IPC, scheduling; [`elf`], [`bootimage`], [`loader`],
//!   [`devicetree`]) is safe Rust over the [`machine::Machine`] trait and
//!   is unit-tested on the host against a fake machine. `unsafe` lives in
//!   `arch/` (registers, the MMU, exception entry, physical memory through
//!   the linear map, the heap, `memcpy`, semihosting) and in the PL011
//!   driver (`console`); every
//!   block carries a `// SAFETY:` comment, every `unsafe fn` a `# Safety`
//!   section, and register writes that can break memory safety (SCTLR,
//!   TTBR, VBAR) are wrapped in our own `unsafe fn`s.
//! - **seL4's semantics, function by function.** The IPC, capability and
//!   scheduling code follows seL4's (non-MCS) structure and names, so each
//!   operation reads side by side with the function it mirrors, and both
//!   kernels decode invocations with `abi::invocation`, rejecting bad input
//!   the same way.
//! - **Simple and clear before fast and clever**, then the measured fast
//!   paths (register-only Call and ReplyRecv, a VM fault delivered to a
//!   waiting handler and the reply that restarts the thread, the MM
//!   server's batched map) made fast where the benchmarks say so — still
//!   in safe Rust, by shaping the data they read (see `kerncore::syscall`'s
//!   fastpaths). Each does what the general path would, and leaves it
//!   everything else.
//!
//! # Invariants
//!
//! - An invocation with bad arguments returns seL4's error and changes
//!   nothing: every check precedes the first change.
//! - The derivation tree is a consistent doubly linked list in preorder; a
//!   slot is linked iff it holds a cap; every cap names a live object
//!   (`Kernel::check_cspace_invariants`, asserted after every step of the
//!   host tests).
//! - Physical memory reachable by a process is only what its capabilities
//!   grant: frames and tables come from Untyped memory, which never covers
//!   the kernel image, its heap, or the boot processes' images and tables.
//! - A thread is in a ready queue iff it is runnable and not running; a
//!   blocked thread is in exactly the queue of the object it waits on.
//!   Queues are linked through the threads' TCBs.
//! - After boot only `Untyped_Retype` allocates from the kernel heap, and
//!   it allocates everything its objects need before it changes anything
//!   (failing with NotEnoughMemory when the heap is full): no user action
//!   can run the heap out into a panic (checked by counting allocations in
//!   the host tests, and by the `heap` QEMU test).
//! - The kernel runs with interrupts masked, on one core, on one stack; it
//!   never blocks.
//!
//! On the host this crate is a plain library (for its unit tests and for
//! `cargo xtask`, which packs boot archives with [`bootimage`]).
#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

pub mod bootimage;
pub mod devicetree;
pub mod elf;
pub mod kerncore;
pub mod loader;
pub mod machine;

#[cfg(test)]
pub mod testing_alloc;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod arch;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod console;
