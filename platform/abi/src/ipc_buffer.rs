//! The per-thread IPC buffer: message registers beyond the fast ones, and caps.
//!
//! Its layout is seL4's `seL4_IPCBuffer` (128 words, 1 KiB, at a 1 KiB-aligned
//! address set with `TCB_Configure`/`TCB_SetIPCBuffer`):
//!
//! | words      | field                 | meaning                                     |
//! |------------|-----------------------|---------------------------------------------|
//! | 0          | `tag`                 | unused by the kernel (seL4 keeps it for libraries) |
//! | 1..=120    | `msg`                 | message registers MR0..MR119 (MR0–MR3 travel in `x2`–`x5`) |
//! | 121        | `user_data`           | free for the runtime (thread-local pointer) |
//! | 122..=124  | `caps_or_badges`      | on send: CPtrs of the extra caps; on receive: badges of unwrapped caps |
//! | 125        | `receive_cnode`       | where a received cap goes: CNode ...        |
//! | 126        | `receive_index`       | ... slot index ...                          |
//! | 127        | `receive_depth`       | ... and depth                               |

use crate::Word;
use crate::message::{MAX_EXTRA_CAPS, MAX_LENGTH};

/// Words in the IPC buffer.
pub const IPC_BUFFER_WORDS: usize = 128;
/// Bytes in the IPC buffer.
pub const IPC_BUFFER_SIZE: usize = IPC_BUFFER_WORDS * 8;
/// log2 of the IPC buffer's required alignment.
pub const IPC_BUFFER_ALIGN_BITS: u32 = 10;

/// Word offset of `msg[0]`.
pub const MSG_OFFSET: usize = 1;
/// Word offset of `user_data`.
pub const USER_DATA_OFFSET: usize = MSG_OFFSET + MAX_LENGTH;
/// Word offset of `caps_or_badges[0]`.
pub const CAPS_OFFSET: usize = USER_DATA_OFFSET + 1;
/// Word offset of `receive_cnode`.
pub const RECEIVE_CNODE_OFFSET: usize = CAPS_OFFSET + MAX_EXTRA_CAPS;
/// Word offset of `receive_index`.
pub const RECEIVE_INDEX_OFFSET: usize = RECEIVE_CNODE_OFFSET + 1;
/// Word offset of `receive_depth`.
pub const RECEIVE_DEPTH_OFFSET: usize = RECEIVE_INDEX_OFFSET + 1;

const _: () = assert!(RECEIVE_DEPTH_OFFSET + 1 == IPC_BUFFER_WORDS);

/// The IPC buffer (seL4_IPCBuffer).
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C, align(1024))]
pub struct IpcBuffer {
    /// Unused by the kernel.
    pub tag: Word,
    /// Message registers; `msg[0..4]` shadow `x2`–`x5` and are not read by the kernel.
    pub msg: [Word; MAX_LENGTH],
    /// Free for the runtime.
    pub user_data: Word,
    /// Extra caps to send (CPtrs), or badges of caps received unwrapped.
    pub caps_or_badges: [Word; MAX_EXTRA_CAPS],
    /// Root CNode of the slot that receives a transferred capability (0: none).
    pub receive_cnode: Word,
    /// Index of that slot.
    pub receive_index: Word,
    /// Depth of that index.
    pub receive_depth: Word,
}

const _: () = assert!(core::mem::size_of::<IpcBuffer>() == IPC_BUFFER_SIZE);

impl Default for IpcBuffer {
    fn default() -> Self {
        IpcBuffer {
            tag: 0,
            msg: [0; MAX_LENGTH],
            user_data: 0,
            caps_or_badges: [0; MAX_EXTRA_CAPS],
            receive_cnode: 0,
            receive_index: 0,
            receive_depth: 0,
        }
    }
}
