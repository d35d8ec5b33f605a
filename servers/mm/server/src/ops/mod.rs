//! The request handlers, one module per family of the protocol.
//!
//! Each handler validates its whole request before changing anything and
//! returns a [`Reply`](libmm::protocol::Reply) or a failure; the dispatcher
//! encodes either.

mod anon;
mod fault;
mod pages;
mod pfnmap;
mod shm;
mod stats;
pub(crate) mod uaccess;
mod vmalloc;

use libmm::protocol::MmError;
use mm_core::addr::PAGE_SIZE;

/// Checks a page range: non-zero length (InvalidArgument), page-aligned
/// (Unaligned), not wrapping (Overflow). Returns `(start, end)`.
pub(crate) fn page_range(addr: u64, len: u64) -> Result<(u64, u64), MmError> {
    if len == 0 {
        return Err(MmError::InvalidArgument);
    }
    if !addr.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(MmError::Unaligned);
    }
    let end = addr.checked_add(len).ok_or(MmError::Overflow)?;
    Ok((addr, end))
}

/// The core's protection for a protocol protection (InvalidArgument for
/// undefined bits).
pub(crate) fn prot(p: libmm::protocol::Prot) -> Result<mm_core::vm::Prot, MmError> {
    if !p.is_valid() {
        return Err(MmError::InvalidArgument);
    }
    mm_core::vm::Prot::from_bits(p.0).ok_or(MmError::InvalidArgument)
}
pub use uaccess::MAX_COPY;
