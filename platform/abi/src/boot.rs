//! What a process finds at start: its well-known slots and the capabilities it was given.
//!
//! Every process starts with a single-level CSpace (one CNode of `2^radix`
//! slots, guard = 64 − radix bits of zeros, so a CPtr is a slot number) in
//! which the slots below [`FIRST_GRANTED_SLOT`] are well known (after seL4's
//! `seL4_RootCNodeCapSlots`). The capabilities its boot manifest grants follow,
//! each described in the [`BootInfo`] with a name, so a process finds "the MM
//! endpoint" or "the UART's device memory" without hard-coded slot numbers.
//!
//! In QEMU the kernel writes the boot info, encoded by [`BootInfo::encode`],
//! into a frame mapped read-only at an address passed in `x0` at entry; the
//! simulator hands the same structure to the process. The MM server's boot
//! info lists Untyped caps covering all free RAM, device Untypeds for the
//! MMIO regions, the IRQ control cap and one set of caps per client.

use crate::Word;

/// The null slot: always empty.
pub const SLOT_NULL: Word = 0;
/// The process's initial thread's TCB.
pub const SLOT_TCB: Word = 1;
/// The process's root CNode.
pub const SLOT_CNODE: Word = 2;
/// The process's VSpace.
pub const SLOT_VSPACE: Word = 3;
/// The IRQ control cap (only for processes granted it; else empty).
pub const SLOT_IRQ_CONTROL: Word = 4;
/// The ASID pool (only for processes granted it; else empty).
pub const SLOT_ASID_POOL: Word = 6;
/// The boot info frame.
pub const SLOT_BOOT_INFO_FRAME: Word = 9;
/// The initial thread's IPC buffer frame.
pub const SLOT_IPC_BUFFER: Word = 10;
/// The first slot holding a capability granted by the boot manifest.
pub const FIRST_GRANTED_SLOT: Word = 16;

/// What kind of capability a descriptor describes.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CapKind {
    Untyped = 1,
    DeviceUntyped = 2,
    Endpoint = 3,
    Notification = 4,
    Tcb = 5,
    CNode = 6,
    VSpace = 7,
    Frame = 8,
    IrqControl = 9,
    IrqHandler = 10,
    AsidPool = 11,
}

impl CapKind {
    const fn from_u8(v: u8) -> Option<CapKind> {
        Some(match v {
            1 => CapKind::Untyped,
            2 => CapKind::DeviceUntyped,
            3 => CapKind::Endpoint,
            4 => CapKind::Notification,
            5 => CapKind::Tcb,
            6 => CapKind::CNode,
            7 => CapKind::VSpace,
            8 => CapKind::Frame,
            9 => CapKind::IrqControl,
            10 => CapKind::IrqHandler,
            11 => CapKind::AsidPool,
            _ => return None,
        })
    }
}

/// Longest capability name, in bytes.
pub const NAME_LEN: usize = 16;

/// One granted capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapDescriptor {
    /// Its slot (a CPtr).
    pub slot: Word,
    /// What it is.
    pub kind: CapKind,
    /// For Untyped/DeviceUntyped/Frame: log2 of the size in bytes.
    pub size_bits: u8,
    /// For memory: the physical address; for endpoints and notifications: the
    /// badge; for TCB/CNode/VSpace caps of another process: that process's index.
    pub value: Word,
    /// A name from the manifest ("mm", "uart", "client:3/tcb"), NUL-padded.
    pub name: [u8; NAME_LEN],
}

impl CapDescriptor {
    /// The name as text (up to the first NUL).
    pub fn name(&self) -> &str {
        let len = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        core::str::from_utf8(&self.name[..len]).unwrap_or("")
    }

    /// Makes a name field from text, truncated to [`NAME_LEN`] bytes.
    pub fn name_bytes(name: &str) -> [u8; NAME_LEN] {
        let mut out = [0; NAME_LEN];
        let n = name.len().min(NAME_LEN);
        out[..n].copy_from_slice(&name.as_bytes()[..n]);
        out
    }
}

/// The boot info's identifying first word ("mmboot" + version 1).
pub const BOOT_INFO_MAGIC: Word = 0x6d6d_626f_6f74_0001;
/// Bytes of the boot info frame(s).
pub const BOOT_INFO_SIZE: usize = 8192;
/// Words of the encoded boot info.
pub const BOOT_INFO_WORDS: usize = BOOT_INFO_SIZE / 8;
const HEADER_WORDS: usize = 8;
const DESCRIPTOR_WORDS: usize = 5;
/// The most descriptors a boot info holds.
pub const MAX_DESCRIPTORS: usize = (BOOT_INFO_WORDS - HEADER_WORDS) / DESCRIPTOR_WORDS;

/// What a process is told at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// log2 of the number of slots in the root CNode.
    pub cnode_radix: u8,
    /// The first empty slot after the granted ones.
    pub first_free_slot: Word,
    /// Virtual address of the initial thread's IPC buffer.
    pub ipc_buffer: Word,
    /// The process's index in the boot manifest.
    pub process_index: Word,
    /// Where the process's configuration blob is mapped (read-only), 0 if
    /// it has none: bytes the boot manifest gives the process, which only
    /// the process interprets (the MM server's clients and their grants).
    pub config_addr: Word,
    /// The blob's length in bytes.
    pub config_len: Word,
    descriptors: [Option<CapDescriptor>; MAX_DESCRIPTORS],
    count: usize,
}

/// Why an encoded boot info could not be read, or a descriptor not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// The first word is not [`BOOT_INFO_MAGIC`].
    BadMagic,
    /// A count or a kind is out of range.
    Corrupt,
    /// More than [`MAX_DESCRIPTORS`] descriptors.
    Full,
}

impl BootInfo {
    /// An empty boot info.
    pub const fn new(cnode_radix: u8, ipc_buffer: Word, process_index: Word) -> Self {
        BootInfo {
            cnode_radix,
            first_free_slot: FIRST_GRANTED_SLOT,
            ipc_buffer,
            process_index,
            config_addr: 0,
            config_len: 0,
            descriptors: [None; MAX_DESCRIPTORS],
            count: 0,
        }
    }

    /// Adds a descriptor (and moves `first_free_slot` past its slot).
    pub fn push(&mut self, d: CapDescriptor) -> Result<(), BootInfoError> {
        if self.count == MAX_DESCRIPTORS {
            return Err(BootInfoError::Full);
        }
        self.descriptors[self.count] = Some(d);
        self.count += 1;
        self.first_free_slot = self.first_free_slot.max(d.slot + 1);
        Ok(())
    }

    /// The descriptors, in slot order as added.
    pub fn caps(&self) -> impl Iterator<Item = &CapDescriptor> {
        self.descriptors[..self.count].iter().flatten()
    }

    /// The configuration blob's address and length, if the process has one.
    pub fn config(&self) -> Option<(Word, Word)> {
        (self.config_addr != 0).then_some((self.config_addr, self.config_len))
    }

    /// The first capability with this name.
    pub fn find(&self, name: &str) -> Option<&CapDescriptor> {
        self.caps().find(|d| d.name() == name)
    }

    /// Writes the boot info as words (what the kernel puts in the boot info frame).
    pub fn encode(&self, out: &mut [Word; BOOT_INFO_WORDS]) {
        out.fill(0);
        out[0] = BOOT_INFO_MAGIC;
        out[1] = self.cnode_radix as Word;
        out[2] = self.first_free_slot;
        out[3] = self.ipc_buffer;
        out[4] = self.process_index;
        out[5] = self.count as Word;
        out[6] = self.config_addr;
        out[7] = self.config_len;
        for (i, d) in self.caps().enumerate() {
            let at = HEADER_WORDS + i * DESCRIPTOR_WORDS;
            out[at] = d.slot;
            out[at + 1] = d.kind as Word | (d.size_bits as Word) << 8;
            out[at + 2] = d.value;
            out[at + 3] = Word::from_le_bytes(d.name[..8].try_into().unwrap_or([0; 8]));
            out[at + 4] = Word::from_le_bytes(d.name[8..].try_into().unwrap_or([0; 8]));
        }
    }

    /// Reads a boot info from words.
    pub fn decode(words: &[Word; BOOT_INFO_WORDS]) -> Result<BootInfo, BootInfoError> {
        if words[0] != BOOT_INFO_MAGIC {
            return Err(BootInfoError::BadMagic);
        }
        let count = words[5] as usize;
        if count > MAX_DESCRIPTORS || words[1] > 64 {
            return Err(BootInfoError::Corrupt);
        }
        let mut info = BootInfo::new(words[1] as u8, words[3], words[4]);
        for i in 0..count {
            let at = HEADER_WORDS + i * DESCRIPTOR_WORDS;
            let kind = CapKind::from_u8(words[at + 1] as u8).ok_or(BootInfoError::Corrupt)?;
            let mut name = [0; NAME_LEN];
            name[..8].copy_from_slice(&words[at + 3].to_le_bytes());
            name[8..].copy_from_slice(&words[at + 4].to_le_bytes());
            info.push(CapDescriptor {
                slot: words[at],
                kind,
                size_bits: (words[at + 1] >> 8) as u8,
                value: words[at + 2],
                name,
            })?;
        }
        info.first_free_slot = words[2];
        info.config_addr = words[6];
        info.config_len = words[7];
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut info = BootInfo::new(12, 0x7000_0000, 2);
        assert_eq!(info.config(), None);
        info.config_addr = 0x7fff_0100_0000;
        info.config_len = 123;
        info.push(CapDescriptor {
            slot: 16,
            kind: CapKind::Endpoint,
            size_bits: 0,
            value: 7,
            name: CapDescriptor::name_bytes("mm"),
        })
        .unwrap();
        info.push(CapDescriptor {
            slot: 17,
            kind: CapKind::Untyped,
            size_bits: 27,
            value: 0x4800_0000,
            name: CapDescriptor::name_bytes("ram"),
        })
        .unwrap();
        let mut words = [0; BOOT_INFO_WORDS];
        info.encode(&mut words);
        let back = BootInfo::decode(&words).unwrap();
        assert_eq!(back, info);
        assert_eq!(back.find("mm").unwrap().value, 7);
        assert_eq!(back.find("ram").unwrap().size_bits, 27);
        assert_eq!(back.first_free_slot, 18);
        assert_eq!(back.config(), Some((0x7fff_0100_0000, 123)));
        assert!(back.find("blk").is_none());
    }

    #[test]
    fn rejects_garbage() {
        let mut words = [0; BOOT_INFO_WORDS];
        assert_eq!(BootInfo::decode(&words), Err(BootInfoError::BadMagic));
        words[0] = BOOT_INFO_MAGIC;
        words[5] = 10_000;
        assert_eq!(BootInfo::decode(&words), Err(BootInfoError::Corrupt));
        words[5] = 1;
        words[HEADER_WORDS + 1] = 99;
        assert_eq!(BootInfo::decode(&words), Err(BootInfoError::Corrupt));
    }

    #[test]
    fn long_names_are_truncated() {
        let d = CapDescriptor {
            slot: 1,
            kind: CapKind::Frame,
            size_bits: 12,
            value: 0,
            name: CapDescriptor::name_bytes("a-very-long-capability-name"),
        };
        assert_eq!(d.name(), "a-very-long-capa");
    }
}
