//! Boot images with processes: a test's boot manifest, its programs, the archive, the patched kernel.
//!
//! A QEMU test whose folder holds a `manifest.toml` boots an image with EL0
//! processes. The manifest is checked in next to the test:
//!
//! ```toml
//! [[process]]
//! name = "server"           # at most 16 bytes; names the process in its caps
//! program = "ipc-server"    # a binary of tests/programs (qemu-test-programs) or "mm-server"
//! role = "server"           # "server" (at most one) or "client" (default)
//! priority = 100            # 0..=255 (default 100)
//! cnode_radix = 12          # log2 of its CNode's slots, 4..=20 (default 12)
//! stack_pages = 16          # 4 KiB stack pages (default 16)
//! badge = 1                 # a client's badge on the server endpoint (default: its index + 1)
//! config = "..."            # an opaque configuration blob for the process (text)
//! ```
//!
//! An image whose server is the MM server describes its policy in the
//! manifest too, and the build writes it into the server's configuration
//! blob as the text `mm_server::ServerConfig::parse` reads (the kernel
//! maps the blob into the server and never looks inside):
//!
//! ```toml
//! [mm]                      # the MM server's policy (all optional)
//! supervisor = 0xffff       # the badge allowed to report a client's death (a
//!                           # process with this badge is no client: no [process.mm])
//! self_check = true         # check every invariant after each message
//! verbose = true            # report fatal faults and deaths
//! zero_pool = [64, 256, 0]  # pre-zeroed frames per zone
//! extra_caps = 4096         # slots for second mappings of frames
//! page_table_chunks = 1     # 2 MiB chunks made page tables at start
//! dma32_end = 0x100000000   # end of the DMA32 zone
//!
//! [[process]]
//! name = "client"
//! program = "demo-anon"
//! [process.mm]              # required for every client when [mm] is present
//! quota_pages = 4096        # the most frames it may hold
//! grants = ["pages"]        # any of "pages", "dma", "user_access"
//! devices = [[0x0900_0000, 0x1000]]  # device ranges it may map: start, bytes
//! window = [0x1000_0000, 0x7f80_0000_0000]  # optional: the managed part of its address space
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
    mm: Option<MmPolicy>,
}

/// The MM server's policy (`[mm]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MmPolicy {
    supervisor: Option<u64>,
    self_check: Option<bool>,
    verbose: Option<bool>,
    zero_pool: Option<[u32; 3]>,
    extra_caps: Option<u64>,
    page_table_chunks: Option<u64>,
    dma32_end: Option<u64>,
}

/// A client's entry in the MM server's policy (`[process.mm]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MmClient {
    quota_pages: u64,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    devices: Vec<[u64; 2]>,
    window: Option<[u64; 2]>,
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
    config: Option<String>,
    mm: Option<MmClient>,
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
/// The package of the MM server (its binary `mm-server`).
pub const MM_SERVER_PACKAGE: &str = "mm-server";

/// Reads a manifest file.
pub fn read_manifest(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds the kernel, the MM server and the test programs; returns the
/// directory of the binaries (the kernel is `kernel` in it).
pub fn build_all(root: &Path) -> Result<PathBuf> {
    cross::build(root, &["kernel", MM_SERVER_PACKAGE, PROGRAMS_PACKAGE])
}

/// The MM server's configuration text for a manifest with an `[mm]` table
/// (the format `mm_server::ServerConfig::parse` reads), or `None`.
pub fn mm_config(manifest: &Manifest) -> Result<Option<String>> {
    use std::fmt::Write;
    let Some(policy) = &manifest.mm else {
        for p in &manifest.process {
            if p.mm.is_some() {
                return Err(format!(
                    "process `{}` has an [process.mm] table but the manifest has no [mm]",
                    p.name
                ));
            }
        }
        return Ok(None);
    };
    let mut t = String::from("mm-config 1\n");
    let mut line = |s: String| {
        t.push_str(&s);
        t.push('\n');
    };
    if let Some(b) = policy.supervisor {
        line(format!("supervisor {b:#x}"));
    }
    if let Some(v) = policy.self_check {
        line(format!("self_check {}", u8::from(v)));
    }
    if let Some(v) = policy.verbose {
        line(format!("verbose {}", u8::from(v)));
    }
    if let Some([a, b, c]) = policy.zero_pool {
        line(format!("zero_pool {a} {b} {c}"));
    }
    if let Some(n) = policy.extra_caps {
        line(format!("extra_caps {n}"));
    }
    if let Some(n) = policy.page_table_chunks {
        line(format!("page_table_chunks {n}"));
    }
    if let Some(n) = policy.dma32_end {
        line(format!("dma32_end {n:#x}"));
    }
    for (i, p) in manifest.process.iter().enumerate() {
        if p.role == RoleSpec::Server {
            continue;
        }
        let badge = p.badge.unwrap_or(i as u64 + 1);
        if policy.supervisor == Some(badge) {
            // The supervisor is no client of the MM server.
            if p.mm.is_some() {
                return Err(format!(
                    "process `{}` is the supervisor (badge {badge:#x}): it takes no [process.mm]",
                    p.name
                ));
            }
            continue;
        }
        let Some(c) = &p.mm else {
            return Err(format!(
                "client `{}` has no [process.mm] table (quota and grants for the MM server)",
                p.name
            ));
        };
        let mut text = format!("client {badge:#x} {i} {}", c.quota_pages);
        for g in &c.grants {
            if !["pages", "dma", "user_access"].contains(&g.as_str()) {
                return Err(format!("client `{}`: unknown grant `{g}`", p.name));
            }
            let _ = write!(text, "\ngrant {g}");
        }
        for [start, len] in &c.devices {
            let _ = write!(text, "\ndevice {start:#x} {len:#x}");
        }
        if let Some([lo, hi]) = c.window {
            let _ = write!(text, "\nwindow {lo:#x} {hi:#x}");
        }
        line(text);
    }
    Ok(Some(t))
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
    let mm = mm_config(manifest).map_err(|e| format!("{name}: {e}"))?;
    let configs: Vec<Vec<u8>> = manifest
        .process
        .iter()
        .map(|p| match (&p.config, p.role == RoleSpec::Server, &mm) {
            (Some(text), _, _) => text.as_bytes().to_vec(),
            (None, true, Some(mm)) => mm.as_bytes().to_vec(),
            _ => Vec::new(),
        })
        .collect();
    let processes: Vec<Process<'_>> = manifest
        .process
        .iter()
        .zip(elves.iter().zip(&configs))
        .enumerate()
        .map(|(i, (p, (elf, config)))| Process {
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
            config,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mm_policy_becomes_the_servers_configuration_text() {
        let m: Manifest = toml::from_str(
            r#"
            [mm]
            supervisor = 0xffff
            self_check = true
            zero_pool = [1, 2, 3]

            [[process]]
            name = "mm"
            program = "mm-server"
            role = "server"

            [[process]]
            name = "a"
            program = "demo"
            badge = 0x101
            [process.mm]
            quota_pages = 4096
            grants = ["pages", "user_access"]
            devices = [[0x9000000, 0x1000]]

            [[process]]
            name = "b"
            program = "demo"
            [process.mm]
            quota_pages = 10
            window = [0x10000000, 0x20000000]

            [[process]]
            name = "sup"
            program = "demo"
            badge = 0xffff
            "#,
        )
        .unwrap();
        let text = mm_config(&m).unwrap().unwrap();
        assert_eq!(
            text,
            "mm-config 1\nsupervisor 0xffff\nself_check 1\nzero_pool 1 2 3\n\
             client 0x101 1 4096\ngrant pages\ngrant user_access\ndevice 0x9000000 0x1000\n\
             client 0x3 2 10\nwindow 0x10000000 0x20000000\n"
        );
    }

    #[test]
    fn a_client_without_a_policy_or_with_an_unknown_grant_is_refused() {
        let m: Manifest =
            toml::from_str("[mm]\n[[process]]\nname = \"a\"\nprogram = \"p\"\n").unwrap();
        assert!(mm_config(&m).unwrap_err().contains("no [process.mm]"));
        let m: Manifest = toml::from_str(
            "[mm]\n[[process]]\nname = \"a\"\nprogram = \"p\"\n[process.mm]\nquota_pages = 1\ngrants = [\"root\"]\n",
        )
        .unwrap();
        assert!(mm_config(&m).unwrap_err().contains("unknown grant"));
        let m: Manifest = toml::from_str("[[process]]\nname = \"a\"\nprogram = \"p\"\n").unwrap();
        assert_eq!(mm_config(&m).unwrap(), None);
        let m: Manifest = toml::from_str(
            "[mm]\nsupervisor = 7\n[[process]]\nname = \"s\"\nprogram = \"p\"\nbadge = 7\n[process.mm]\nquota_pages = 1\n",
        )
        .unwrap();
        assert!(mm_config(&m).unwrap_err().contains("is the supervisor"));
    }
}
