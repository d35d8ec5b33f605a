//! System call numbers and the register convention.
//!
//! A process traps with `svc #0`, the syscall number in `x7`. As on seL4
//! AArch64:
//!
//! | register | on entry                     | on return                      |
//! |----------|------------------------------|--------------------------------|
//! | `x0`     | destination capability       | badge of the sender (receives) |
//! | `x1`     | [`MessageInfo`](crate::MessageInfo) | `MessageInfo` of the reply/message |
//! | `x2`–`x5`| message registers MR0–MR3    | MR0–MR3                        |
//! | `x7`     | syscall number               | preserved                      |
//!
//! Message registers beyond [`FAST_MESSAGE_REGISTERS`] travel in the IPC
//! buffer (`msg[4..]`); the first four slots of the buffer's `msg` array are
//! not used for them.

/// Message registers carried in machine registers (`x2`–`x5`).
pub const FAST_MESSAGE_REGISTERS: usize = 4;

/// The system calls, numbered as seL4 numbers them (negative, in `x7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum Syscall {
    /// Send to an endpoint and wait for the reply through a one-shot reply
    /// capability. On any other capability: invoke the kernel object.
    Call = -1,
    /// Reply to the caller, then receive on `x0`'s endpoint or notification.
    ReplyRecv = -2,
    /// Send; blocks until a receiver takes the message. On a notification: Signal.
    Send = -3,
    /// Send if a receiver is waiting, otherwise drop the message silently.
    NBSend = -4,
    /// Receive; blocks until a message arrives. On a notification: Wait.
    Recv = -5,
    /// Reply to the caller through the thread's reply capability.
    Reply = -6,
    /// Give up the rest of the time slice.
    Yield = -7,
    /// Receive if a message is waiting, otherwise return at once. On a notification: Poll.
    NBRecv = -8,
    /// Debug: print the character in `x0` on the kernel console.
    DebugPutChar = -9,
    /// Debug **extension**: stop the whole system; `x0` is the exit status
    /// (QEMU exits with it through semihosting).
    DebugHalt = -11,
    /// Debug **extension**: print `x1` bytes of the caller's memory at `x0`.
    DebugPutString = -100,
}

impl Syscall {
    /// The syscall for a number, or `None` for an unknown one (which the
    /// kernel turns into an UnknownSyscall fault).
    pub const fn from_number(n: i64) -> Option<Syscall> {
        Some(match n {
            -1 => Syscall::Call,
            -2 => Syscall::ReplyRecv,
            -3 => Syscall::Send,
            -4 => Syscall::NBSend,
            -5 => Syscall::Recv,
            -6 => Syscall::Reply,
            -7 => Syscall::Yield,
            -8 => Syscall::NBRecv,
            -9 => Syscall::DebugPutChar,
            -11 => Syscall::DebugHalt,
            -100 => Syscall::DebugPutString,
            _ => return None,
        })
    }

    /// The number placed in `x7`.
    pub const fn number(self) -> i64 {
        self as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in -120..10 {
            if let Some(s) = Syscall::from_number(n) {
                assert_eq!(s.number(), n);
            }
        }
        assert_eq!(Syscall::from_number(-1), Some(Syscall::Call));
        assert_eq!(Syscall::from_number(0), None);
    }
}
