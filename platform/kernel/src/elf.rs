//! ELF64 executables: the loadable segments of an EL0 program.
//!
//! Only what loading needs: the header (64-bit, little-endian, AArch64,
//! executable), the entry point and the `PT_LOAD` program headers with their
//! file bytes. Every offset and size is checked against the blob, so a
//! truncated or hostile image is an error, never a panic. Section headers
//! are not read (the build tool strips what follows the last segment).

/// `PT_LOAD`.
const PT_LOAD: u32 = 1;
/// `ET_EXEC`.
const ET_EXEC: u16 = 2;
/// `EM_AARCH64`.
const EM_AARCH64: u16 = 183;
/// Size of an ELF64 program header.
const PHDR_SIZE: usize = 56;

/// Why an image is not a loadable AArch64 executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file, or not 64-bit little-endian.
    NotElf,
    /// Not an AArch64 executable.
    WrongKind,
    /// A header or segment lies outside the blob, or sizes are inconsistent.
    Truncated,
}

/// Segment permissions (`p_flags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    /// PF_R.
    pub read: bool,
    /// PF_W.
    pub write: bool,
    /// PF_X.
    pub execute: bool,
}

/// One `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Where it goes.
    pub vaddr: u64,
    /// Bytes in memory (the tail past `data` is zero).
    pub mem_size: u64,
    /// The bytes from the file.
    pub data: &'a [u8],
    /// Permissions.
    pub flags: Flags,
}

/// A parsed executable.
#[derive(Clone, Copy, Debug)]
pub struct Elf<'a> {
    blob: &'a [u8],
    /// The entry point.
    pub entry: u64,
    phoff: usize,
    phnum: usize,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl<'a> Elf<'a> {
    /// Checks the header and the program-header table.
    pub fn parse(blob: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        if blob.get(..4) != Some(b"\x7fELF") || blob.get(4) != Some(&2) || blob.get(5) != Some(&1) {
            return Err(ElfError::NotElf);
        }
        let e_type = u16_at(blob, 16).ok_or(ElfError::Truncated)?;
        let machine = u16_at(blob, 18).ok_or(ElfError::Truncated)?;
        if e_type != ET_EXEC || machine != EM_AARCH64 {
            return Err(ElfError::WrongKind);
        }
        let entry = u64_at(blob, 24).ok_or(ElfError::Truncated)?;
        let phoff = u64_at(blob, 32).ok_or(ElfError::Truncated)? as usize;
        let phentsize = u16_at(blob, 54).ok_or(ElfError::Truncated)? as usize;
        let phnum = u16_at(blob, 56).ok_or(ElfError::Truncated)? as usize;
        if phentsize != PHDR_SIZE {
            return Err(ElfError::Truncated);
        }
        let end = phnum
            .checked_mul(PHDR_SIZE)
            .and_then(|n| n.checked_add(phoff))
            .ok_or(ElfError::Truncated)?;
        if end > blob.len() {
            return Err(ElfError::Truncated);
        }
        let elf = Elf {
            blob,
            entry,
            phoff,
            phnum,
        };
        // Validate every segment once, so iteration cannot fail later.
        for i in 0..phnum {
            elf.segment(i)?;
        }
        Ok(elf)
    }

    fn segment(&self, i: usize) -> Result<Option<Segment<'a>>, ElfError> {
        let at = self.phoff + i * PHDR_SIZE;
        let b = self.blob;
        let t = ElfError::Truncated;
        if u32_at(b, at).ok_or(t)? != PT_LOAD {
            return Ok(None);
        }
        let flags = u32_at(b, at + 4).ok_or(t)?;
        let offset = u64_at(b, at + 8).ok_or(t)? as usize;
        let vaddr = u64_at(b, at + 16).ok_or(t)?;
        let file_size = u64_at(b, at + 32).ok_or(t)? as usize;
        let mem_size = u64_at(b, at + 40).ok_or(t)?;
        if file_size as u64 > mem_size || vaddr.checked_add(mem_size).is_none() {
            return Err(t);
        }
        let data = b
            .get(offset..offset.checked_add(file_size).ok_or(t)?)
            .ok_or(t)?;
        Ok(Some(Segment {
            vaddr,
            mem_size,
            data,
            flags: Flags {
                read: flags & 4 != 0,
                write: flags & 2 != 0,
                execute: flags & 1 != 0,
            },
        }))
    }

    /// The loadable segments.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'a>> + '_ {
        (0..self.phnum).filter_map(|i| self.segment(i).ok().flatten())
    }

    /// The length of the prefix of the blob that loading reads: the headers
    /// and every segment's file bytes (what a build tool must keep).
    pub fn loaded_prefix_len(&self) -> usize {
        let headers = self.phoff + self.phnum * PHDR_SIZE;
        (0..self.phnum)
            .filter_map(|i| {
                let at = self.phoff + i * PHDR_SIZE;
                let off = u64_at(self.blob, at + 8)? as usize;
                let size = u64_at(self.blob, at + 32)? as usize;
                (u32_at(self.blob, at)? == PT_LOAD).then_some(off + size)
            })
            .fold(headers.max(64), usize::max)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Builds a tiny AArch64 executable with the given segments
    /// (vaddr, bytes, mem_size, flags).
    pub fn build(entry: u64, segments: &[(u64, &[u8], u64, u32)]) -> Vec<u8> {
        let phoff = 64usize;
        let mut data_off = phoff + segments.len() * PHDR_SIZE;
        let mut out = alloc::vec![0u8; data_off];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        out[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        out[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        let mut blobs = Vec::new();
        for (i, (vaddr, bytes, mem, flags)) in segments.iter().enumerate() {
            let at = phoff + i * PHDR_SIZE;
            out[at..at + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            out[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&(data_off as u64).to_le_bytes());
            out[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
            out[at + 32..at + 40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            out[at + 40..at + 48].copy_from_slice(&mem.to_le_bytes());
            data_off += bytes.len();
            blobs.extend_from_slice(bytes);
        }
        out.extend_from_slice(&blobs);
        out
    }

    #[test]
    fn reads_segments() {
        let blob = build(
            0x40_0000,
            &[(0x40_0000, b"code", 4, 5), (0x41_0000, b"data", 0x2000, 6)],
        );
        let elf = Elf::parse(&blob).unwrap();
        assert_eq!(elf.entry, 0x40_0000);
        let segs: Vec<_> = elf.segments().collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].data, b"code");
        assert!(segs[0].flags.execute && !segs[0].flags.write);
        assert_eq!(segs[1].mem_size, 0x2000);
        assert!(segs[1].flags.write);
        assert_eq!(elf.loaded_prefix_len(), blob.len());
    }

    #[test]
    fn rejects_bad_images() {
        assert_eq!(Elf::parse(b"nope").unwrap_err(), ElfError::NotElf);
        let blob = build(0, &[(0x1000, b"abcd", 4, 5)]);
        // Truncate inside the segment data.
        assert_eq!(
            Elf::parse(&blob[..blob.len() - 2]).unwrap_err(),
            ElfError::Truncated
        );
        // Truncate inside the program headers.
        assert_eq!(Elf::parse(&blob[..80]).unwrap_err(), ElfError::Truncated);
        let mut wrong = blob.clone();
        wrong[18] = 62; // x86-64
        assert_eq!(Elf::parse(&wrong).unwrap_err(), ElfError::WrongKind);
        // file size larger than memory size.
        let bad = build(0, &[(0x1000, b"abcdefgh", 4, 5)]);
        assert_eq!(Elf::parse(&bad).unwrap_err(), ElfError::Truncated);
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Ok(elf) = Elf::parse(&bytes) {
                for s in elf.segments() {
                    proptest::prop_assert!(s.data.len() as u64 <= s.mem_size);
                }
            }
        }
    }
}
