//! Memory access for a process: mm-core's `MemoryAccess` over the runtime's `rt::mem`.
//!
//! The slab and the heap never dereference the addresses they hand out;
//! when an operation must touch memory (zeroing for kzalloc and
//! `alloc_zeroed`, copying for krealloc and `realloc`) it goes through a
//! [`MemoryAccess`]. In a process that is [`RtMemory`]: plain loads and
//! stores of the process's own memory in QEMU, the software MMU in the
//! simulator — the one audited place where an address becomes a pointer is
//! `platform/rt`. A fault on a page not yet backed goes to the MM server
//! (the process's pager) and the access completes after its reply, so
//! touching a demand-zero page of the heap costs a fault, never an error.

use mm_core::memory::{AccessError, MemoryAccess};

/// The calling process's own memory, through `rt::mem`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtMemory;

impl MemoryAccess for RtMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        rt::mem::read_bytes(addr, buf).map_err(|_| AccessError { addr })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        rt::mem::write_bytes(addr, data).map_err(|_| AccessError { addr })
    }

    fn fill(&mut self, addr: u64, len: u64, byte: u8) -> Result<(), AccessError> {
        rt::mem::fill_bytes(addr, len, byte).map_err(|_| AccessError { addr })
    }

    fn copy(&mut self, dst: u64, src: u64, len: u64) -> Result<(), AccessError> {
        rt::mem::copy(dst, src, len).map_err(|_| AccessError { addr: src })
    }
}
