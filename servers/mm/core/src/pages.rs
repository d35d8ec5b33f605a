//! Page sources: where slab caches, mempools and DMA pools get their pages.
//!
//! Inside the MM server the source is the buddy allocator (addresses are
//! physical); in a client it is a batch of pages mapped by the server
//! (addresses are virtual). Either way an address is a `u64` the core never
//! dereferences.

/// A supplier of page-aligned, physically contiguous runs of `2^order` pages.
pub trait PageSource {
    /// Allocates `2^order` contiguous pages; returns the address of the first,
    /// aligned to at least the page size, or `None` when none are available.
    fn alloc_pages(&mut self, order: u32) -> Option<u64>;
    /// Returns pages obtained from [`PageSource::alloc_pages`] with the same `order`.
    fn free_pages(&mut self, addr: u64, order: u32);
}
