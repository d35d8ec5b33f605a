//! Boot images with processes: a test's boot manifest, its programs, the archive, the patched kernel.
//!
//! A QEMU test whose folder holds a `manifest.toml` boots an image with EL0
//! processes. The manifest is checked in next to the test:
//!
//! ```toml
//! [[process]]
//! name = "server"           # at most 16 bytes; names the process in its caps
//! program = "ipc-server"    # a binary of tests/programs (package qemu-test-programs)
//! role = "server"           # "server" (at most one) or "client" (default)
//! priority = 100            # 0..=255 (default 100)
//! cnode_radix = 12          # log2 of its CNode's slots, 4..=20 (default 12)
//! stack_pages = 16          # 4 KiB stack pages (default 16)
//! badge = 1                 # a client's badge on the server endpoint (default: its index + 1)
//! ```
//!
//! What each role gets is described in `kernel::bootimage`. The build
//! compiles the programs for the bare-metal target, trims each ELF to what
//! loading reads, packs them with `kernel::bootimage::encode`, and writes
//! the archive into the `.boot_archive` section of a copy of the kernel
//! ELF: one kernel build serves every image, and an image costs a file copy.

use std::path::{Path, PathBuf};

use kernel::bootimage::{self, Process, Role};
use serde::Deserialize;

use crate::{Result, cross};

/// A boot manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    process: Vec<ProcessSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessSpec {
    name: String,
    program: String,
    #[serde(default)]
    role: RoleSpec,
    #[serde(default = "default_priority")]
    priority: u8,
    #[serde(default = "default_radix")]
    cnode_radix: u8,
    #[serde(default = "default_stack")]
    stack_pages: u8,
    badge: Option<u64>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RoleSpec {
    Server,
    #[default]
    Client,
}

fn default_priority() -> u8 {
    100
}
fn default_radix() -> u8 {
    12
}
fn default_stack() -> u8 {
    16
}

/// The package of the test programs.
pub const PROGRAMS_PACKAGE: &str = "qemu-test-programs";

/// Reads a manifest file.
pub fn read_manifest(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds the kernel and the test programs; returns the directory of the
/// binaries (the kernel is `kernel` in it).
pub fn build_all(root: &Path) -> Result<PathBuf> {
    cross::build(root, &["kernel", PROGRAMS_PACKAGE])
}

/// Makes the boot image of the test `name` from its manifest; `bin_dir`
/// holds the kernel and the program binaries. Returns the image's path.
pub fn make_image(root: &Path, bin_dir: &Path, name: &str, manifest: &Manifest) -> Result<PathBuf> {
    let mut elves = Vec::new();
    for p in &manifest.process {
        let path = bin_dir.join(&p.program);
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("{name}: program `{}` ({}): {e}", p.program, path.display()))?;
        let elf = kernel::elf::Elf::parse(&bytes).map_err(|e| {
            format!(
                "{name}: program `{}` is not a loadable ELF: {e:?}",
                p.program
            )
        })?;
        let keep = elf.loaded_prefix_len();
        elves.push(bytes[..keep].to_vec());
    }
    let processes: Vec<Process<'_>> = manifest
        .process
        .iter()
        .zip(&elves)
        .enumerate()
        .map(|(i, (p, elf))| Process {
            name: &p.name,
            elf,
            role: match p.role {
                RoleSpec::Server => Role::Server,
                RoleSpec::Client => Role::Client,
            },
            priority: p.priority,
            cnode_radix: p.cnode_radix,
            stack_pages: p.stack_pages,
            badge: p.badge.unwrap_or(i as u64 + 1),
        })
        .collect();
    let archive = bootimage::encode(&processes)
        .map_err(|e| format!("{name}: the manifest does not make a valid archive: {e:?}"))?;
    let mut image =
        std::fs::read(bin_dir.join("kernel")).map_err(|e| format!("kernel ELF: {e}"))?;
    patch_section(&mut image, ".boot_archive", &archive)?;
    let out_dir = root.join("target").join("qemu-images");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let out = out_dir.join(format!("{name}.elf"));
    std::fs::write(&out, image).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

fn le(b: &[u8], at: usize, n: usize) -> Result<u64> {
    let bytes = b.get(at..at + n).ok_or("kernel ELF: truncated header")?;
    Ok(bytes
        .iter()
        .rev()
        .fold(0, |acc, &x| acc << 8 | u64::from(x)))
}

/// Overwrites the start of the named section of an ELF64 file with `data`.
pub fn patch_section(elf: &mut [u8], section: &str, data: &[u8]) -> Result<()> {
    if elf.get(..4) != Some(b"\x7fELF".as_slice()) || elf.get(4) != Some(&2) {
        return Err("kernel ELF: not a 64-bit ELF".into());
    }
    let shoff = le(elf, 0x28, 8)? as usize;
    let shentsize = le(elf, 0x3a, 2)? as usize;
    let shnum = le(elf, 0x3c, 2)? as usize;
    let shstrndx = le(elf, 0x3e, 2)? as usize;
    let header = |i: usize| shoff + i * shentsize;
    let strtab = le(elf, header(shstrndx) + 24, 8)? as usize;
    for i in 0..shnum {
        let name_off = le(elf, header(i), 4)? as usize;
        let name_at = strtab + name_off;
        let name_end = elf[name_at..]
            .iter()
            .position(|&c| c == 0)
            .map(|n| name_at + n)
            .ok_or("kernel ELF: bad section name")?;
        if &elf[name_at..name_end] != section.as_bytes() {
            continue;
        }
        let offset = le(elf, header(i) + 24, 8)? as usize;
        let size = le(elf, header(i) + 32, 8)? as usize;
        if data.len() > size {
            return Err(format!(
                "the boot archive ({} bytes) does not fit the kernel's {section} ({size} bytes)",
                data.len()
            ));
        }
        elf[offset..offset + data.len()].copy_from_slice(data);
        return Ok(());
    }
    Err(format!("kernel ELF: no {section} section"))
}
