//! libmm: the client library of the memory manager.
//!
//! A process links `libmm` to reach the MM server, which owns all physical
//! memory and the process's page tables. The layers, bottom up:
//!
//! - [`protocol`]: every request and reply, shared with the server (which
//!   depends on this crate for exactly that), postcard-encoded into message
//!   registers.
//! - [`transport`]: the [`Transport`] trait and the real transport, a `Call`
//!   on the `"mm"` endpoint through `platform/rt` using the register fast
//!   path; [`mock`]: an in-process mock server for tests.
//! - [`mm`]: [`Mm`], one typed call per request, named after its Linux
//!   counterpart (`mmap`, `alloc_pages`, `vmalloc`, `vm_insert_page`,
//!   `copy_to_user`, `get_user_pages_fast`, `dma_alloc_coherent`, ...),
//!   returning `Result<_, Error>`; [`handles`]: the RAII handles those calls
//!   return ([`Mapping`], [`Pages`], [`VmArea`], [`SharedObject`], [`Pins`],
//!   [`DmaBuffer`]), which release what they own when dropped.
//! - [`heap`]: [`Heap`], the client-side slab — mm-core's kmalloc family and
//!   kmem_cache — on a heap arena of demand-zero chunks mapped from the
//!   server ([`arena`]), with no IPC on the fast path; [`mempool`]: reserve
//!   pools over it.
//! - [`dmapool`]: [`DmaPools`], Linux's `dma_pool_*` family — mm-core's
//!   pool logic on coherent chunks from the server's `dma_alloc_coherent`,
//!   with no IPC per block; managed pools die with their owner.
//! - [`global`]: [`GlobalHeap`], a `GlobalAlloc` over the heap, so that a
//!   QEMU client's `Vec` and `Box` live on MM-served memory, with a separate
//!   metadata heap ([`meta`]) for the slab's own bookkeeping.
//!
//! Everything deals in addresses (`u64`), never pointers: nothing here
//! dereferences the memory it manages. Touching it (zeroing, copying) goes
//! through mm-core's `MemoryAccess`, which a process implements over
//! `rt::mem` ([`memory::RtMemory`]). The one module with `unsafe` code is
//! [`raw`]: the spin lock and the `GlobalAlloc` impl.
//!
//! # Example
//!
//! With the mock server (a process uses `Mm::from_boot_info(boot)` and
//! [`memory::RtMemory`] instead):
//!
//! ```
//! use libmm::heap::{Heap, HeapConfig};
//! use libmm::mock::MockMm;
//! use libmm::protocol::{Gfp, MapFlags, Prot};
//!
//! let server = MockMm::new();
//! let mm = server.mm();
//!
//! // Anonymous memory: unmapped when the handle drops.
//! let region = mm.mmap(0, 1 << 20, Prot::READ_WRITE, MapFlags::default()).unwrap();
//! assert_eq!(region.len(), 1 << 20);
//! drop(region);
//!
//! // Physically contiguous pages from the page allocator.
//! let pages = mm.alloc_pages(2, Gfp::ZERO).unwrap();
//! assert_eq!(pages.count(), 4);
//! pages.free().unwrap();
//!
//! // The client-side slab: one IPC to map the first chunk, then none.
//! let mut heap = Heap::new(mm.clone(), server.clone(), HeapConfig::default());
//! let a = heap.kmalloc(64).unwrap();
//! let before = server.requests();
//! for _ in 0..1000 {
//!     let b = heap.kmalloc(64).unwrap();
//!     heap.kfree(b).unwrap();
//! }
//! assert_eq!(server.requests(), before);
//! heap.kfree(a).unwrap();
//! ```
//!
//! In QEMU, a client's global allocator:
//!
//! ```no_run
//! #[global_allocator]
//! static HEAP: libmm::global::RtGlobalHeap = libmm::global::RtGlobalHeap::rt();
//! # fn main() {}
//! ```
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

#[cfg(test)]
extern crate std;

pub mod arena;
pub mod dmapool;
pub mod global;
pub mod handles;
pub mod heap;
pub mod memory;
pub mod mempool;
pub mod meta;
pub mod mm;
pub mod mock;
pub mod protocol;
#[allow(unsafe_code)]
pub mod raw;
pub mod transport;

#[cfg(test)]
mod tests;

pub use dmapool::{DmaError, DmaPools};
pub use global::{GlobalConfig, GlobalHeap, RtGlobalHeap};
pub use handles::{DmaBuffer, Mapping, Pages, Pins, SharedObject, VmArea};
pub use heap::{Heap, HeapConfig, HeapError};
pub use mm::Mm;
pub use transport::{CallError, Error, RtTransport, Transport};
