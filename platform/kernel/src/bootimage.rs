//! The boot archive: the processes a boot image starts, with their ELF images.
//!
//! `cargo xtask` reads a test's checked-in boot manifest (`manifest.toml`,
//! see `tools/xtask/src/image.rs`), builds the programs it names and packs
//! them with [`encode`] into the archive, which it writes into the kernel
//! image's `.boot_archive` section. At boot the kernel reads it back with
//! [`Archive::parse`] and the [`loader`](crate::loader) starts the processes.
//!
//! Layout (little-endian):
//!
//! ```text
//! 0   magic "MMBOOTv1"
//! 8   u32 total length in bytes
//! 12  u32 number of processes (at most MAX_PROCESSES)
//! 16  one 48-byte entry per process:
//!       0  name, 16 bytes, NUL-padded
//!       16 u32 offset of the ELF image from the archive start
//!       20 u32 its length
//!       24 u8 role (0 client, 1 server), u8 priority, u8 CNode radix,
//!          u8 stack size in pages
//!       28 u32 length of its configuration blob (0: none)
//!       32 u64 badge of the client's endpoint cap to the server
//!       40 u32 offset of its configuration blob from the archive start
//!       44 u32 reserved (0)
//! ...  the ELF images and configuration blobs, each 8-byte aligned
//! ```
//!
//! A configuration blob is opaque to the kernel: the loader maps it
//! read-only into its process and says where in the boot info
//! (`BootInfo::config`); the process alone interprets it (the MM server
//! reads its clients, quotas and grants from it). At most
//! [`MAX_CONFIG_LEN`] bytes.
//!
//! Roles: the *server* (the MM server; at most one) gets Untyped caps for
//! all free RAM, device Untypeds for the MMIO regions, the IRQ control, the
//! ASID pool, the original endpoint (named `mm`, as the clients' caps to
//! it are), and each client's TCB, CNode and
//! VSpace; a *client* gets a cap to that endpoint with its badge, which is
//! also its fault endpoint.

/// The archive's first bytes.
pub const MAGIC: &[u8; 8] = b"MMBOOTv1";
/// The most processes an archive holds.
pub const MAX_PROCESSES: usize = 16;
/// Bytes of the header before the entries.
const HEADER: usize = 16;
/// Bytes of one entry.
const ENTRY: usize = 48;
/// Longest process name.
pub const NAME_LEN: usize = 16;
/// Longest configuration blob.
pub const MAX_CONFIG_LEN: usize = 1 << 20;

/// A process's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An ordinary process: a badged endpoint cap to the server.
    Client,
    /// The server: the system's resources and its clients' caps.
    Server,
}

/// One process of the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process<'a> {
    /// Its name (at most [`NAME_LEN`] bytes).
    pub name: &'a str,
    /// Its ELF image.
    pub elf: &'a [u8],
    /// Its role.
    pub role: Role,
    /// Scheduling priority.
    pub priority: u8,
    /// log2 of its CNode's slot count.
    pub cnode_radix: u8,
    /// Stack size in 4 KiB pages.
    pub stack_pages: u8,
    /// For a client: the badge of its endpoint cap to the server.
    pub badge: u64,
    /// Its configuration blob (empty: none).
    pub config: &'a [u8],
}

/// Why an archive cannot be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveError {
    /// The magic is missing (e.g. an image built without an archive).
    NoArchive,
    /// A length, offset or field is out of range.
    Corrupt,
    /// Too many processes, a name too long, or more than one server.
    Invalid,
}

/// A parsed archive.
#[derive(Clone, Copy, Debug)]
pub struct Archive<'a> {
    blob: &'a [u8],
    count: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl<'a> Archive<'a> {
    /// Reads an archive from the start of `blob` (which may be longer).
    pub fn parse(blob: &'a [u8]) -> Result<Archive<'a>, ArchiveError> {
        if blob.get(..8) != Some(MAGIC.as_slice()) {
            return Err(ArchiveError::NoArchive);
        }
        let total = u32_at(blob, 8).ok_or(ArchiveError::Corrupt)? as usize;
        let count = u32_at(blob, 12).ok_or(ArchiveError::Corrupt)? as usize;
        if total > blob.len() || count > MAX_PROCESSES || HEADER + count * ENTRY > total {
            return Err(ArchiveError::Corrupt);
        }
        let archive = Archive {
            blob: &blob[..total],
            count,
        };
        let mut servers = 0;
        for i in 0..count {
            let p = archive.entry(i).ok_or(ArchiveError::Corrupt)?;
            if p.role == Role::Server {
                servers += 1;
            }
        }
        if servers > 1 {
            return Err(ArchiveError::Invalid);
        }
        Ok(archive)
    }

    fn entry(&self, i: usize) -> Option<Process<'a>> {
        let at = HEADER + i * ENTRY;
        let b = self.blob;
        let raw_name = b.get(at..at + NAME_LEN)?;
        let len = raw_name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        let name = core::str::from_utf8(&raw_name[..len]).ok()?;
        let offset = u32_at(b, at + 16)? as usize;
        let length = u32_at(b, at + 20)? as usize;
        let elf = b.get(offset..offset.checked_add(length)?)?;
        let role = match *b.get(at + 24)? {
            0 => Role::Client,
            1 => Role::Server,
            _ => return None,
        };
        let cnode_radix = *b.get(at + 26)?;
        if !(4..=20).contains(&cnode_radix) {
            return None;
        }
        let config_len = u32_at(b, at + 28)? as usize;
        let config_offset = u32_at(b, at + 40)? as usize;
        if config_len > MAX_CONFIG_LEN {
            return None;
        }
        let config = b.get(config_offset..config_offset.checked_add(config_len)?)?;
        Some(Process {
            name,
            elf,
            role,
            priority: *b.get(at + 25)?,
            cnode_radix,
            stack_pages: *b.get(at + 27)?,
            badge: u64_at(b, at + 32)?,
            config,
        })
    }

    /// How many processes.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The processes, in manifest order.
    pub fn processes(&self) -> impl Iterator<Item = Process<'a>> + '_ {
        (0..self.count).filter_map(|i| self.entry(i))
    }
}

/// Packs processes into an archive (used by the build tool).
pub fn encode(processes: &[Process<'_>]) -> Result<alloc::vec::Vec<u8>, ArchiveError> {
    if processes.len() > MAX_PROCESSES
        || processes.iter().filter(|p| p.role == Role::Server).count() > 1
        || processes
            .iter()
            .any(|p| p.name.len() > NAME_LEN || p.name.is_empty())
        || processes.iter().any(|p| !(4..=20).contains(&p.cnode_radix))
        || processes.iter().any(|p| p.config.len() > MAX_CONFIG_LEN)
    {
        return Err(ArchiveError::Invalid);
    }
    let mut out = alloc::vec![0u8; HEADER + processes.len() * ENTRY];
    out[..8].copy_from_slice(MAGIC);
    out[12..16].copy_from_slice(&(processes.len() as u32).to_le_bytes());
    for (i, p) in processes.iter().enumerate() {
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        let offset = out.len();
        out.extend_from_slice(p.elf);
        let at = HEADER + i * ENTRY;
        out[at..at + p.name.len()].copy_from_slice(p.name.as_bytes());
        out[at + 16..at + 20].copy_from_slice(&(offset as u32).to_le_bytes());
        out[at + 20..at + 24].copy_from_slice(&(p.elf.len() as u32).to_le_bytes());
        out[at + 24] = match p.role {
            Role::Client => 0,
            Role::Server => 1,
        };
        out[at + 25] = p.priority;
        out[at + 26] = p.cnode_radix;
        out[at + 27] = p.stack_pages;
        out[at + 32..at + 40].copy_from_slice(&p.badge.to_le_bytes());
        if !p.config.is_empty() {
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            let config_offset = out.len();
            out.extend_from_slice(p.config);
            out[at + 28..at + 32].copy_from_slice(&(p.config.len() as u32).to_le_bytes());
            out[at + 40..at + 44].copy_from_slice(&(config_offset as u32).to_le_bytes());
        }
    }
    let total = out.len() as u32;
    out[8..12].copy_from_slice(&total.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc<'a>(name: &'a str, elf: &'a [u8], role: Role) -> Process<'a> {
        Process {
            name,
            elf,
            role,
            priority: 100,
            cnode_radix: 12,
            stack_pages: 16,
            badge: 7,
            config: &[],
        }
    }

    #[test]
    fn round_trips() {
        let ps = [
            Process {
                config: b"clients 2\n",
                ..proc("server", b"ELFA", Role::Server)
            },
            proc("client", b"ELFBB", Role::Client),
        ];
        let blob = encode(&ps).unwrap();
        let mut padded = blob.clone();
        padded.resize(blob.len() + 100, 0);
        let a = Archive::parse(&padded).unwrap();
        let back: alloc::vec::Vec<_> = a.processes().collect();
        assert_eq!(back, ps);
    }

    #[test]
    fn rejects_bad_archives() {
        assert_eq!(
            Archive::parse(&[0; 64]).unwrap_err(),
            ArchiveError::NoArchive
        );
        let two = [proc("a", b"x", Role::Server), proc("b", b"y", Role::Server)];
        assert_eq!(encode(&two).unwrap_err(), ArchiveError::Invalid);
        let blob = encode(&[proc("a", b"xyz", Role::Client)]).unwrap();
        assert_eq!(
            Archive::parse(&blob[..blob.len() - 1]).unwrap_err(),
            ArchiveError::Corrupt
        );
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if bytes.len() >= 8 { bytes[..8].copy_from_slice(MAGIC); }
            if let Ok(a) = Archive::parse(&bytes) {
                for p in a.processes() { proptest::prop_assert!(p.name.len() <= NAME_LEN); }
            }
        }
    }
}
