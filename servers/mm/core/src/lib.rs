//! The memory manager's core: all policy and data structures, no IPC.
//!
//! This crate decides; it never touches memory it manages. The allocators
//! deal in addresses — integers — and keep their metadata out of band
//! (per-frame arrays, free stacks, bitmaps), so a client's buffer overflow
//! cannot corrupt an allocator and the whole crate is safe Rust, tested on the
//! host. Where an operation must touch memory (zeroing, copying, poisoning) it
//! goes through the [`memory::MemoryAccess`] trait, implemented with raw
//! pointers in QEMU and with the software MMU in the simulator.
//!
//! Used unchanged by the MM server (in QEMU and in the simulator) and by
//! `libmm` in every client.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(test)]
extern crate std;

pub mod addr;
pub mod dmapool;
pub mod frame;
pub mod memory;
pub mod mempool;
pub mod pages;
pub mod slab;
pub mod vm;
