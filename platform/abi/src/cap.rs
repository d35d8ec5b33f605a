//! Capability pointers, badges and rights.
//!
//! A process names a capability by a [`CPtr`]: an address in its CSpace, a
//! tree of CNodes resolved from the root CNode as seL4 resolves it (each
//! CNode consumes its guard bits, then its radix bits, until `depth` bits —
//! 64 for a plain CPtr — are used up or a non-CNode cap is reached). With the
//! single-level CSpaces the boot loader builds (guard = 64 − radix bits, guard
//! value 0), a CPtr is simply the slot number.
//!
//! Minting an endpoint or notification cap sets a [`Badge`], which the
//! receiver sees with each message: the MM server tells its clients apart by
//! badge alone.

use crate::Word;

/// A capability pointer: an address in the caller's CSpace.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
#[repr(transparent)]
pub struct CPtr(pub Word);

impl CPtr {
    /// The null capability pointer: slot 0 is always empty, so it names nothing.
    pub const NULL: CPtr = CPtr(0);
}

/// The depth that resolves a whole word: the depth of a plain CPtr.
pub const WORD_BITS: u8 = 64;

/// A badge: set when a cap is minted, delivered to the receiver of every
/// message sent through it, OR-ed into a notification's word on Signal.
/// Badge 0 means "unbadged"; an unbadged cap can be minted once more.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
#[repr(transparent)]
pub struct Badge(pub Word);

/// Capability access rights (seL4_CapRights_t), packed as seL4 packs them.
///
/// - `Write`: send on an endpoint, signal a notification, write a frame;
/// - `Read`: receive, wait, read a frame;
/// - `Grant`: send capabilities through an endpoint;
/// - `GrantReply`: send the reply capability with a Call (without it the
///   receiver gets a reply cap that cannot grant).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
#[repr(transparent)]
pub struct CapRights(Word);

impl CapRights {
    /// Bit of the write right.
    pub const WRITE_BIT: Word = 1 << 0;
    /// Bit of the read right.
    pub const READ_BIT: Word = 1 << 1;
    /// Bit of the grant right.
    pub const GRANT_BIT: Word = 1 << 2;
    /// Bit of the grant-reply right.
    pub const GRANT_REPLY_BIT: Word = 1 << 3;

    /// No rights.
    pub const NONE: CapRights = CapRights(0);
    /// Read only.
    pub const READ: CapRights = CapRights(Self::READ_BIT);
    /// Write only.
    pub const WRITE: CapRights = CapRights(Self::WRITE_BIT);
    /// Read and write (seL4_ReadWrite).
    pub const READ_WRITE: CapRights = CapRights(Self::READ_BIT | Self::WRITE_BIT);
    /// Every right (seL4_AllRights).
    pub const ALL: CapRights =
        CapRights(Self::READ_BIT | Self::WRITE_BIT | Self::GRANT_BIT | Self::GRANT_REPLY_BIT);

    /// Rights from flags (seL4_CapRights_new argument order).
    pub const fn new(grant_reply: bool, grant: bool, read: bool, write: bool) -> Self {
        CapRights(
            (grant_reply as Word) << 3 | (grant as Word) << 2 | (read as Word) << 1 | write as Word,
        )
    }

    /// Rights from a word; bits above the four rights are ignored, as in seL4.
    pub const fn from_word(word: Word) -> Self {
        CapRights(word & 0xf)
    }

    /// The packed word.
    pub const fn word(self) -> Word {
        self.0
    }

    /// Whether the write right is present.
    pub const fn can_write(self) -> bool {
        self.0 & Self::WRITE_BIT != 0
    }
    /// Whether the read right is present.
    pub const fn can_read(self) -> bool {
        self.0 & Self::READ_BIT != 0
    }
    /// Whether the grant right is present.
    pub const fn can_grant(self) -> bool {
        self.0 & Self::GRANT_BIT != 0
    }
    /// Whether the grant-reply right is present.
    pub const fn can_grant_reply(self) -> bool {
        self.0 & Self::GRANT_REPLY_BIT != 0
    }

    /// The rights present in both (how a derived cap's rights are masked).
    pub const fn intersect(self, other: CapRights) -> CapRights {
        CapRights(self.0 & other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_like_sel4() {
        assert_eq!(
            CapRights::new(false, false, true, true),
            CapRights::READ_WRITE
        );
        assert_eq!(CapRights::new(true, true, true, true), CapRights::ALL);
        assert_eq!(CapRights::ALL.word(), 0xf);
        assert!(CapRights::READ.can_read() && !CapRights::READ.can_write());
        assert_eq!(CapRights::from_word(0xff), CapRights::ALL);
        assert_eq!(CapRights::ALL.intersect(CapRights::WRITE), CapRights::WRITE);
    }
}
