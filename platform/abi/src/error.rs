//! seL4's error codes, and the details an error reply carries.
//!
//! An invocation that fails returns a reply whose label is the error code and
//! whose message registers describe it, as seL4 does:
//!
//! | error              | MRs                                                   |
//! |--------------------|-------------------------------------------------------|
//! | InvalidArgument    | MR0: the index of the invalid argument                |
//! | InvalidCapability  | MR0: the index of the invalid capability (0 = the invoked one, 1.. = extra caps) |
//! | RangeError         | MR0: the least and MR1: the greatest allowed value    |
//! | FailedLookup       | MR0: 1 if the source lookup failed, 0 otherwise; MR1: the lookup failure type ([`LookupFailure`]); MR2..: its details |
//! | NotEnoughMemory    | MR0: bytes still available                            |
//! | others             | none                                                  |
//!
//! Success is label 0 ("seL4_NoError"), so the error enum never uses 0.

use crate::Word;

/// An seL4 error code (seL4_Error without NoError).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Error {
    /// An argument is out of its domain; MR0 names which.
    InvalidArgument = 1,
    /// A capability is of the wrong type, lacks rights or is null; MR0 names which.
    InvalidCapability = 2,
    /// The operation is not allowed on this object in its state.
    IllegalOperation = 3,
    /// A value is outside the allowed range; MR0..MR1 give the range.
    RangeError = 4,
    /// An address or size is not suitably aligned.
    AlignmentError = 5,
    /// A CSpace lookup failed; the details say where.
    FailedLookup = 6,
    /// The message was too short for the operation.
    TruncatedMessage = 7,
    /// The destination slot is occupied.
    DeleteFirst = 8,
    /// The object has derived capabilities (children) that must be revoked first.
    RevokeFirst = 9,
    /// An Untyped has too little memory left; MR0 gives the bytes available.
    NotEnoughMemory = 10,
}

impl Error {
    /// The error for a reply label; `None` for 0 (success) and unknown codes.
    pub const fn from_word(word: Word) -> Option<Error> {
        Some(match word {
            1 => Error::InvalidArgument,
            2 => Error::InvalidCapability,
            3 => Error::IllegalOperation,
            4 => Error::RangeError,
            5 => Error::AlignmentError,
            6 => Error::FailedLookup,
            7 => Error::TruncatedMessage,
            8 => Error::DeleteFirst,
            9 => Error::RevokeFirst,
            10 => Error::NotEnoughMemory,
            _ => return None,
        })
    }

    /// The code as a reply label.
    pub const fn word(self) -> Word {
        self as Word
    }
}

/// Why a CSpace lookup failed (seL4_LookupFailureType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LookupFailure {
    /// The root was not a CNode (seL4_InvalidRoot).
    InvalidRoot,
    /// A lookup ended on a slot that holds no capability or a non-CNode
    /// before using all bits; `bits_left` remained (seL4_MissingCapability).
    MissingCapability {
        /// Bits left unresolved.
        bits_left: u8,
    },
    /// Fewer bits remained than a CNode needed (seL4_DepthMismatch).
    DepthMismatch {
        /// Bits left unresolved.
        bits_left: u8,
        /// Bits the CNode would have consumed.
        bits_found: u8,
    },
    /// A CNode's guard did not match (seL4_GuardMismatch).
    GuardMismatch {
        /// Bits left unresolved.
        bits_left: u8,
        /// The guard found.
        guard_found: Word,
        /// Its size in bits.
        guard_size: u8,
    },
}

impl LookupFailure {
    /// The failure as message words: type, then details (as in seL4's
    /// lookup-failure message layout).
    pub fn to_words(self) -> ([Word; 4], usize) {
        match self {
            LookupFailure::InvalidRoot => ([1, 0, 0, 0], 1),
            LookupFailure::MissingCapability { bits_left } => ([2, bits_left as Word, 0, 0], 2),
            LookupFailure::DepthMismatch {
                bits_left,
                bits_found,
            } => ([3, bits_left as Word, bits_found as Word, 0], 3),
            LookupFailure::GuardMismatch {
                bits_left,
                guard_found,
                guard_size,
            } => ([4, bits_left as Word, guard_found, guard_size as Word], 4),
        }
    }

    /// Reads a failure back from message words.
    pub fn from_words(words: &[Word]) -> Option<LookupFailure> {
        let arg = |i: usize| words.get(i).copied();
        Some(match *words.first()? {
            1 => LookupFailure::InvalidRoot,
            2 => LookupFailure::MissingCapability {
                bits_left: arg(1)? as u8,
            },
            3 => LookupFailure::DepthMismatch {
                bits_left: arg(1)? as u8,
                bits_found: arg(2)? as u8,
            },
            4 => LookupFailure::GuardMismatch {
                bits_left: arg(1)? as u8,
                guard_found: arg(2)?,
                guard_size: arg(3)? as u8,
            },
            _ => return None,
        })
    }
}

/// A failed invocation: the error code with the details seL4 puts in the MRs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorReply {
    /// Argument `index` is invalid.
    InvalidArgument {
        /// Which argument (0-based, in the invocation's argument order).
        index: Word,
    },
    /// Capability `index` is invalid (0: the invoked cap; 1..: extra caps).
    InvalidCapability {
        /// Which capability.
        index: Word,
    },
    /// Not allowed in this state.
    IllegalOperation,
    /// Outside `[min, max]`.
    RangeError {
        /// Least allowed value.
        min: Word,
        /// Greatest allowed value.
        max: Word,
    },
    /// Misaligned.
    AlignmentError,
    /// A CSpace lookup failed.
    FailedLookup {
        /// Whether the source (rather than the destination) lookup failed.
        source: bool,
        /// Why.
        failure: LookupFailure,
    },
    /// Too few message registers or caps for the operation.
    TruncatedMessage,
    /// The destination slot is occupied.
    DeleteFirst,
    /// Derived capabilities exist.
    RevokeFirst,
    /// Too little memory left; `available` bytes remain.
    NotEnoughMemory {
        /// Bytes still available in the Untyped.
        available: Word,
    },
}

impl ErrorReply {
    /// The error code.
    pub const fn code(&self) -> Error {
        match self {
            ErrorReply::InvalidArgument { .. } => Error::InvalidArgument,
            ErrorReply::InvalidCapability { .. } => Error::InvalidCapability,
            ErrorReply::IllegalOperation => Error::IllegalOperation,
            ErrorReply::RangeError { .. } => Error::RangeError,
            ErrorReply::AlignmentError => Error::AlignmentError,
            ErrorReply::FailedLookup { .. } => Error::FailedLookup,
            ErrorReply::TruncatedMessage => Error::TruncatedMessage,
            ErrorReply::DeleteFirst => Error::DeleteFirst,
            ErrorReply::RevokeFirst => Error::RevokeFirst,
            ErrorReply::NotEnoughMemory { .. } => Error::NotEnoughMemory,
        }
    }

    /// The reply's message registers and their count.
    pub fn to_mrs(&self) -> ([Word; 6], usize) {
        match *self {
            ErrorReply::InvalidArgument { index } | ErrorReply::InvalidCapability { index } => {
                ([index, 0, 0, 0, 0, 0], 1)
            }
            ErrorReply::RangeError { min, max } => ([min, max, 0, 0, 0, 0], 2),
            ErrorReply::FailedLookup { source, failure } => {
                let (words, n) = failure.to_words();
                let mut mrs = [0; 6];
                mrs[0] = source as Word;
                mrs[1..1 + n].copy_from_slice(&words[..n]);
                (mrs, 1 + n)
            }
            ErrorReply::NotEnoughMemory { available } => ([available, 0, 0, 0, 0, 0], 1),
            _ => ([0; 6], 0),
        }
    }

    /// Reads an error reply from its label and message registers; `None` when
    /// the label is 0 or unknown, or the registers are too few.
    pub fn from_reply(label: Word, mrs: &[Word]) -> Option<ErrorReply> {
        let mr = |i: usize| mrs.get(i).copied();
        Some(match Error::from_word(label)? {
            Error::InvalidArgument => ErrorReply::InvalidArgument { index: mr(0)? },
            Error::InvalidCapability => ErrorReply::InvalidCapability { index: mr(0)? },
            Error::IllegalOperation => ErrorReply::IllegalOperation,
            Error::RangeError => ErrorReply::RangeError {
                min: mr(0)?,
                max: mr(1)?,
            },
            Error::AlignmentError => ErrorReply::AlignmentError,
            Error::FailedLookup => ErrorReply::FailedLookup {
                source: mr(0)? != 0,
                failure: LookupFailure::from_words(mrs.get(1..)?)?,
            },
            Error::TruncatedMessage => ErrorReply::TruncatedMessage,
            Error::DeleteFirst => ErrorReply::DeleteFirst,
            Error::RevokeFirst => ErrorReply::RevokeFirst,
            Error::NotEnoughMemory => ErrorReply::NotEnoughMemory { available: mr(0)? },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sel4s_and_never_zero() {
        assert_eq!(Error::InvalidArgument.word(), 1);
        assert_eq!(Error::NotEnoughMemory.word(), 10);
        assert_eq!(Error::from_word(0), None);
        for w in 1..=10 {
            assert_eq!(Error::from_word(w).unwrap().word(), w);
        }
    }

    #[test]
    fn replies_round_trip() {
        let cases = [
            ErrorReply::InvalidArgument { index: 3 },
            ErrorReply::InvalidCapability { index: 1 },
            ErrorReply::IllegalOperation,
            ErrorReply::RangeError { min: 4, max: 47 },
            ErrorReply::AlignmentError,
            ErrorReply::FailedLookup {
                source: true,
                failure: LookupFailure::GuardMismatch {
                    bits_left: 60,
                    guard_found: 5,
                    guard_size: 4,
                },
            },
            ErrorReply::FailedLookup {
                source: false,
                failure: LookupFailure::MissingCapability { bits_left: 0 },
            },
            ErrorReply::TruncatedMessage,
            ErrorReply::DeleteFirst,
            ErrorReply::RevokeFirst,
            ErrorReply::NotEnoughMemory { available: 4096 },
        ];
        for case in cases {
            let (mrs, n) = case.to_mrs();
            assert_eq!(
                ErrorReply::from_reply(case.code().word(), &mrs[..n]),
                Some(case)
            );
        }
    }
}
