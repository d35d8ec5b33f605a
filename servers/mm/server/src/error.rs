//! How an operation inside the server fails, and what the client is told.

use abi::ErrorReply;
use libmm::protocol::MmError;
use mm_core::frame::FrameError;
use mm_core::vm::VmError;

/// A failed step inside the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    /// A domain error for the client (nothing changed).
    Mm(MmError),
    /// A client's VSpace (or TCB) capability is gone: the client died under
    /// us. The operation is abandoned and the client reclaimed.
    Gone,
    /// The kernel refused an invocation the server believed valid: a server
    /// bug, reported on the console and counted; the client gets NoMemory.
    Bug(&'static str, ErrorReply),
}

impl From<MmError> for Fail {
    fn from(e: MmError) -> Self {
        Fail::Mm(e)
    }
}

/// The client's view of a region-map error.
pub(crate) fn vm_error(e: VmError) -> MmError {
    match e {
        VmError::ZeroLength
        | VmError::BadAlignment
        | VmError::BadBacking
        | VmError::GuardProtection
        | VmError::GuardRegion
        | VmError::BadWindow => MmError::InvalidArgument,
        VmError::Unaligned => MmError::Unaligned,
        VmError::Overflow | VmError::OutsideWindow => MmError::Overflow,
        VmError::Overlap | VmError::AlreadyMapped => MmError::AlreadyMapped,
        VmError::NoSpace | VmError::TooManyRegions => MmError::NoMemory,
        VmError::NotMapped => MmError::NotMapped,
    }
}

/// The client's view of a frame-allocator error.
pub(crate) fn frame_error(e: FrameError) -> MmError {
    match e {
        FrameError::NoMemory => MmError::NoMemory,
        FrameError::Busy => MmError::Busy,
        FrameError::Misaligned => MmError::Unaligned,
        FrameError::NotManaged | FrameError::InvalidRange => MmError::InvalidArgument,
        _ => MmError::InvalidArgument,
    }
}
