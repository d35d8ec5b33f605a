//! `MessageInfo`: the tag that describes every message, packed as seL4 packs it.
//!
//! On 64-bit seL4 the tag is one word:
//!
//! ```text
//! 63                              12 11        9 8       7 6        0
//! +---------------------------------+-----------+---------+----------+
//! |              label              | capsUnwr. | extraC. |  length  |
//! +---------------------------------+-----------+---------+----------+
//! ```
//!
//! - `label` (52 bits): for IPC, free for the protocol; for an object
//!   invocation, the operation; in a reply from the kernel, 0 or an error code.
//! - `capsUnwrapped` (3 bits): bit *i* set when extra cap *i* was unwrapped
//!   into its badge (it was a cap to the receiving endpoint).
//! - `extraCaps` (2 bits): how many capabilities travel, at most 3.
//! - `length` (7 bits): how many message registers, at most 120.

use crate::Word;

/// The most message registers a message can carry.
pub const MAX_LENGTH: usize = 120;
/// The most extra capabilities a message can carry.
pub const MAX_EXTRA_CAPS: usize = 3;

/// The message tag (seL4_MessageInfo_t).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct MessageInfo(Word);

impl MessageInfo {
    /// Packs a tag. `length` is clamped to [`MAX_LENGTH`] and `extra_caps`
    /// to [`MAX_EXTRA_CAPS`], as seL4 clamps them on send; the label keeps
    /// its low 52 bits.
    pub const fn new(label: Word, caps_unwrapped: u8, extra_caps: usize, length: usize) -> Self {
        let length = if length > MAX_LENGTH {
            MAX_LENGTH
        } else {
            length
        };
        let extra = if extra_caps > MAX_EXTRA_CAPS {
            MAX_EXTRA_CAPS
        } else {
            extra_caps
        };
        MessageInfo(
            (label & 0x000f_ffff_ffff_ffff) << 12
                | ((caps_unwrapped as Word) & 0x7) << 9
                | (extra as Word) << 7
                | length as Word,
        )
    }

    /// A tag from its raw word (as found in `x1`). Every word is a valid tag,
    /// but `length` may exceed [`MAX_LENGTH`]: use [`MessageInfo::length`],
    /// which clamps.
    pub const fn from_word(word: Word) -> Self {
        MessageInfo(word)
    }

    /// The raw word.
    pub const fn word(self) -> Word {
        self.0
    }

    /// The label.
    pub const fn label(self) -> Word {
        self.0 >> 12
    }

    /// Which extra caps were unwrapped into badges (bit per cap).
    pub const fn caps_unwrapped(self) -> u8 {
        ((self.0 >> 9) & 0x7) as u8
    }

    /// The number of extra caps (0..=3).
    pub const fn extra_caps(self) -> usize {
        ((self.0 >> 7) & 0x3) as usize
    }

    /// The number of message registers, clamped to [`MAX_LENGTH`] as the
    /// kernel clamps it.
    pub const fn length(self) -> usize {
        let l = (self.0 & 0x7f) as usize;
        if l > MAX_LENGTH { MAX_LENGTH } else { l }
    }

    /// The same tag with another label.
    pub const fn with_label(self, label: Word) -> Self {
        MessageInfo::new(
            label,
            self.caps_unwrapped(),
            self.extra_caps(),
            self.length(),
        )
    }

    /// The same tag with another length.
    pub const fn with_length(self, length: usize) -> Self {
        MessageInfo::new(
            self.label(),
            self.caps_unwrapped(),
            self.extra_caps(),
            length,
        )
    }
}

impl core::fmt::Debug for MessageInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MessageInfo")
            .field("label", &self.label())
            .field("caps_unwrapped", &self.caps_unwrapped())
            .field("extra_caps", &self.extra_caps())
            .field("length", &self.length())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_like_sel4() {
        let info = MessageInfo::new(0x1234, 0b101, 2, 17);
        assert_eq!(info.word(), 0x1234 << 12 | 0b101 << 9 | 2 << 7 | 17);
        assert_eq!(info.label(), 0x1234);
        assert_eq!(info.caps_unwrapped(), 0b101);
        assert_eq!(info.extra_caps(), 2);
        assert_eq!(info.length(), 17);
    }

    #[test]
    fn clamps_length_and_caps() {
        let info = MessageInfo::new(1, 0, 9, 500);
        assert_eq!(info.extra_caps(), MAX_EXTRA_CAPS);
        assert_eq!(info.length(), MAX_LENGTH);
        assert_eq!(MessageInfo::from_word(127).length(), MAX_LENGTH);
    }

    #[test]
    fn label_keeps_52_bits() {
        let info = MessageInfo::new(Word::MAX, 0, 0, 0);
        assert_eq!(info.label(), (1 << 52) - 1);
    }
}
