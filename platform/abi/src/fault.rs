//! Fault messages: what a thread's fault handler receives, and what its reply means.
//!
//! When a thread faults the kernel blocks it and sends, on its fault
//! endpoint, a message whose label is the fault type and whose MRs describe
//! the fault (seL4's layouts on AArch64); the thread's badge is that of the
//! fault-endpoint cap. The handler's reply decides what happens next:
//!
//! - [`Fault::VmFault`]: any reply restarts the faulting instruction (the
//!   handler has presumably mapped something);
//! - [`Fault::UnknownSyscall`], [`Fault::UserException`]: a reply with label 0
//!   resumes the thread with registers set from the reply (see
//!   [`UnknownSyscall`]); any other label leaves it suspended;
//! - [`Fault::CapFault`]: any reply restarts the failed syscall.
//!
//! The MM server is every client's fault handler: it resolves demand-paging
//! faults and replies.

use crate::Word;
use crate::error::LookupFailure;

/// Fault type labels (seL4_FaultType).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum FaultLabel {
    CapFault = 1,
    UnknownSyscall = 2,
    UserException = 3,
    VmFault = 5,
}

/// A data or instruction abort (seL4_Fault_VMFault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmFault {
    /// MR0: the faulting instruction's address.
    pub ip: Word,
    /// MR1: the faulting data (or instruction) address (`FAR_EL1`).
    pub addr: Word,
    /// MR2: whether the fault was an instruction fetch (prefetch abort).
    pub instruction: bool,
    /// MR3: the fault status: `ESR_EL1`'s ISS, whose DFSC/IFSC (bits 5:0)
    /// tells translation (0b0001LL), access flag (0b0010LL) and permission
    /// (0b0011LL) faults apart and whose WnR (bit 6) says a data write.
    pub fsr: Word,
}

impl VmFault {
    /// Whether this was a data write (ISS.WnR).
    pub const fn is_write(&self) -> bool {
        !self.instruction && self.fsr & (1 << 6) != 0
    }
    /// Whether this was a translation fault: nothing mapped there.
    pub const fn is_translation(&self) -> bool {
        self.fsr & 0b11_1100 == 0b00_0100
    }
    /// Whether this was a permission fault: mapped without the right.
    pub const fn is_permission(&self) -> bool {
        self.fsr & 0b11_1100 == 0b00_1100
    }
}

/// The ISS fault-status code of a translation fault at `level` (0..=3), as
/// the hardware reports it: the value a simulator writes into [`VmFault::fsr`].
pub const fn fsc_translation(level: u8) -> Word {
    0b00_0100 | (level as Word & 3)
}
/// The ISS fault-status code of a permission fault at `level`.
pub const fn fsc_permission(level: u8) -> Word {
    0b00_1100 | (level as Word & 3)
}
/// ISS.WnR: the abort was caused by a write.
pub const ISS_WNR: Word = 1 << 6;

/// A syscall number the kernel does not know (seL4_Fault_UnknownSyscall).
/// MRs: x0..x7, pc, sp, lr (x30), spsr, the syscall number. A reply with
/// label 0 and these 12 registers' new values (x0..x7, pc, sp, lr, spsr)
/// resumes the thread with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownSyscall {
    /// x0..x7.
    pub x: [Word; 8],
    /// The address after the `svc`.
    pub pc: Word,
    /// Stack pointer.
    pub sp: Word,
    /// Link register.
    pub lr: Word,
    /// Saved program status.
    pub spsr: Word,
    /// The number in x7... as seL4 passes it.
    pub syscall: Word,
}

/// Any other synchronous exception (seL4_Fault_UserException):
/// MRs pc, sp, spsr, exception class, ISS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserException {
    /// Faulting instruction address.
    pub pc: Word,
    /// Stack pointer.
    pub sp: Word,
    /// Saved program status.
    pub spsr: Word,
    /// `ESR_EL1.EC`: the exception class.
    pub number: Word,
    /// `ESR_EL1.ISS`.
    pub code: Word,
}

/// A capability lookup failed during a syscall (seL4_Fault_CapFault):
/// MRs pc, the CPtr, whether it failed in the receive phase, then the lookup
/// failure's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapFault {
    /// The syscall's address.
    pub pc: Word,
    /// The CPtr that failed.
    pub cptr: Word,
    /// Whether the failure was in the receive phase of a Call/ReplyRecv.
    pub in_receive_phase: bool,
    /// Why.
    pub failure: LookupFailure,
}

/// A fault message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A capability fault.
    CapFault(CapFault),
    /// An unknown syscall.
    UnknownSyscall(UnknownSyscall),
    /// A user exception.
    UserException(UserException),
    /// A virtual-memory fault.
    VmFault(VmFault),
}

/// The most MRs a fault message uses.
pub const MAX_FAULT_WORDS: usize = 13;

impl Fault {
    /// The message label.
    pub const fn label(&self) -> FaultLabel {
        match self {
            Fault::CapFault(_) => FaultLabel::CapFault,
            Fault::UnknownSyscall(_) => FaultLabel::UnknownSyscall,
            Fault::UserException(_) => FaultLabel::UserException,
            Fault::VmFault(_) => FaultLabel::VmFault,
        }
    }

    /// The message registers and their count.
    pub fn to_mrs(&self) -> ([Word; MAX_FAULT_WORDS], usize) {
        let mut m = [0; MAX_FAULT_WORDS];
        let n = match *self {
            Fault::VmFault(f) => {
                m[..4].copy_from_slice(&[f.ip, f.addr, f.instruction as Word, f.fsr]);
                4
            }
            Fault::UnknownSyscall(f) => {
                m[..8].copy_from_slice(&f.x);
                m[8..13].copy_from_slice(&[f.pc, f.sp, f.lr, f.spsr, f.syscall]);
                13
            }
            Fault::UserException(f) => {
                m[..5].copy_from_slice(&[f.pc, f.sp, f.spsr, f.number, f.code]);
                5
            }
            Fault::CapFault(f) => {
                m[..3].copy_from_slice(&[f.pc, f.cptr, f.in_receive_phase as Word]);
                let (words, n) = f.failure.to_words();
                m[3..3 + n].copy_from_slice(&words[..n]);
                3 + n
            }
        };
        (m, n)
    }

    /// Reads a fault message; `None` when the label is not a fault or the
    /// message is too short.
    pub fn from_message(label: Word, mrs: &[Word]) -> Option<Fault> {
        let m = |i: usize| mrs.get(i).copied();
        Some(match label {
            5 => Fault::VmFault(VmFault {
                ip: m(0)?,
                addr: m(1)?,
                instruction: m(2)? != 0,
                fsr: m(3)?,
            }),
            2 => {
                let mut x = [0; 8];
                x.copy_from_slice(mrs.get(..8)?);
                Fault::UnknownSyscall(UnknownSyscall {
                    x,
                    pc: m(8)?,
                    sp: m(9)?,
                    lr: m(10)?,
                    spsr: m(11)?,
                    syscall: m(12)?,
                })
            }
            3 => Fault::UserException(UserException {
                pc: m(0)?,
                sp: m(1)?,
                spsr: m(2)?,
                number: m(3)?,
                code: m(4)?,
            }),
            1 => Fault::CapFault(CapFault {
                pc: m(0)?,
                cptr: m(1)?,
                in_receive_phase: m(2)? != 0,
                failure: LookupFailure::from_words(mrs.get(3..)?)?,
            }),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let faults = [
            Fault::VmFault(VmFault {
                ip: 0x40_0000,
                addr: 0x1000_0000,
                instruction: false,
                fsr: fsc_translation(3) | ISS_WNR,
            }),
            Fault::UnknownSyscall(UnknownSyscall {
                x: [1, 2, 3, 4, 5, 6, 7, 8],
                pc: 9,
                sp: 10,
                lr: 11,
                spsr: 12,
                syscall: 13,
            }),
            Fault::UserException(UserException {
                pc: 1,
                sp: 2,
                spsr: 3,
                number: 0x22,
                code: 5,
            }),
            Fault::CapFault(CapFault {
                pc: 1,
                cptr: 99,
                in_receive_phase: true,
                failure: LookupFailure::MissingCapability { bits_left: 0 },
            }),
        ];
        for f in faults {
            let (m, n) = f.to_mrs();
            assert_eq!(Fault::from_message(f.label() as Word, &m[..n]), Some(f));
        }
        assert_eq!(Fault::from_message(5, &[1, 2, 3]), None);
    }

    #[test]
    fn classifies_vm_faults() {
        let f = VmFault {
            ip: 0,
            addr: 0,
            instruction: false,
            fsr: fsc_translation(2) | ISS_WNR,
        };
        assert!(f.is_translation() && f.is_write() && !f.is_permission());
        let g = VmFault {
            fsr: fsc_permission(3),
            ..f
        };
        assert!(g.is_permission() && !g.is_write());
    }
}
