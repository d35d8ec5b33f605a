//! What the kernel learns from the device tree that QEMU hands it.
//!
//! The board's memory map is not compiled in: RAM ranges, the console UART and
//! the command line come from the flattened device tree (FDT) that QEMU builds
//! for the `virt` machine. This module is plain safe Rust over a byte slice, so
//! it is tested on the host against device trees dumped from QEMU.

use fdt::Fdt;

/// The most RAM ranges the kernel keeps track of.
pub const MAX_MEMORY_RANGES: usize = 8;

/// A physical address range `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte of the range.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl PhysRange {
    /// One past the last byte of the range.
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// Why a device tree could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceTreeError {
    /// The blob's header is not a valid FDT header.
    BadHeader,
    /// The tree lists no RAM.
    NoMemory,
}

/// The facts about the machine that the kernel boots with.
#[derive(Clone, Debug)]
pub struct BootInfo<'a> {
    memory: [PhysRange; MAX_MEMORY_RANGES],
    memory_count: usize,
    /// The PL011 UART's register block, from `/chosen/stdout-path` or the
    /// first `arm,pl011` node.
    pub uart: Option<PhysRange>,
    /// The command line (`/chosen/bootargs`, set by QEMU's `-append`).
    pub cmdline: &'a str,
    /// The GICv2 distributor and CPU interface register blocks.
    pub gic: Option<(PhysRange, PhysRange)>,
    /// The window holding every `virtio,mmio` transport.
    pub virtio: Option<PhysRange>,
    /// The PL031 real-time clock's registers and interrupt ID.
    pub rtc: Option<(PhysRange, u32)>,
    /// Size of the device tree blob itself.
    pub dtb_size: usize,
}

impl<'a> BootInfo<'a> {
    /// Parses a device tree blob.
    pub fn parse(blob: &'a [u8]) -> Result<Self, DeviceTreeError> {
        let fdt = Fdt::new(blob).map_err(|_| DeviceTreeError::BadHeader)?;
        let mut memory = [PhysRange { base: 0, size: 0 }; MAX_MEMORY_RANGES];
        let mut memory_count = 0;
        for node in fdt.all_nodes() {
            let is_memory = node
                .property("device_type")
                .and_then(|p| p.as_str())
                .is_some_and(|t| t == "memory");
            if !is_memory {
                continue;
            }
            for region in node.reg().into_iter().flatten() {
                let size = region.size.unwrap_or(0) as u64;
                if size == 0 || memory_count == MAX_MEMORY_RANGES {
                    continue;
                }
                memory[memory_count] = PhysRange {
                    base: region.starting_address as u64,
                    size,
                };
                memory_count += 1;
            }
        }
        if memory_count == 0 {
            return Err(DeviceTreeError::NoMemory);
        }
        memory[..memory_count].sort_unstable_by_key(|r| r.base);

        let uart = fdt
            .chosen()
            .stdout()
            .filter(|n| {
                n.compatible()
                    .is_some_and(|c| c.all().any(|s| s == "arm,pl011"))
            })
            .or_else(|| fdt.find_compatible(&["arm,pl011"]))
            .and_then(|n| n.reg().and_then(|mut r| r.next()))
            .map(|r| PhysRange {
                base: r.starting_address as u64,
                size: r.size.unwrap_or(0x1000) as u64,
            });

        let gic = fdt
            .find_compatible(&["arm,cortex-a15-gic", "arm,gic-400"])
            .and_then(|n| {
                let mut regs = n.reg()?;
                let mut next = || {
                    regs.next().map(|r| PhysRange {
                        base: r.starting_address as u64,
                        size: r.size.unwrap_or(0x1000) as u64,
                    })
                };
                Some((next()?, next()?))
            });
        let mut virtio: Option<PhysRange> = None;
        for node in fdt.all_nodes() {
            let is_virtio = node
                .compatible()
                .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"));
            if !is_virtio {
                continue;
            }
            for r in node.reg().into_iter().flatten() {
                let (base, end) = (
                    r.starting_address as u64,
                    r.starting_address as u64 + r.size.unwrap_or(0x200) as u64,
                );
                virtio = Some(match virtio {
                    None => PhysRange {
                        base,
                        size: end - base,
                    },
                    Some(v) => {
                        let lo = v.base.min(base);
                        PhysRange {
                            base: lo,
                            size: v.end().max(end) - lo,
                        }
                    }
                });
            }
        }

        let rtc = fdt.find_compatible(&["arm,pl031"]).and_then(|n| {
            let r = n.reg()?.next()?;
            let irq = n.property("interrupts").and_then(|p| {
                let cells: [u8; 8] = p.value.get(..8)?.try_into().ok()?;
                let kind = u32::from_be_bytes(cells[..4].try_into().ok()?);
                let number = u32::from_be_bytes(cells[4..].try_into().ok()?);
                // GIC bindings: type 0 is an SPI (ID 32 + n), 1 a PPI (16 + n).
                Some(if kind == 0 { 32 + number } else { 16 + number })
            })?;
            Some((
                PhysRange {
                    base: r.starting_address as u64,
                    size: r.size.unwrap_or(0x1000) as u64,
                },
                irq,
            ))
        });

        Ok(BootInfo {
            memory,
            memory_count,
            uart,
            cmdline: fdt.chosen().bootargs().unwrap_or(""),
            gic,
            virtio,
            rtc,
            dtb_size: fdt.total_size(),
        })
    }

    /// The RAM ranges, sorted by base address.
    pub fn memory(&self) -> &[PhysRange] {
        &self.memory[..self.memory_count]
    }

    /// Total RAM in bytes.
    pub fn total_memory(&self) -> u64 {
        self.memory().iter().map(|r| r.size).sum()
    }

    /// Whether the command line holds `word` as one of its space-separated words.
    pub fn has_flag(&self, word: &str) -> bool {
        self.cmdline.split_ascii_whitespace().any(|w| w == word)
    }
}

/// Reads the total size from an FDT header, or `None` when `header` does not
/// start with the FDT magic. Used to size the blob before parsing it.
pub fn blob_size(header: &[u8; 8]) -> Option<usize> {
    let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    (magic == 0xd00d_feed)
        .then(|| u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A53_1G: &[u8] = include_bytes!("../testdata/virt-cortex-a53-1G.dtb");
    const A72_4G: &[u8] = include_bytes!("../testdata/virt-cortex-a72-4G.dtb");

    #[test]
    fn finds_one_gib_of_ram_at_one_gib() {
        let info = BootInfo::parse(A53_1G).unwrap();
        assert_eq!(
            info.memory(),
            &[PhysRange {
                base: 0x4000_0000,
                size: 1 << 30
            }]
        );
        assert_eq!(info.total_memory(), 1 << 30);
    }

    #[test]
    fn finds_four_gib_of_ram() {
        let info = BootInfo::parse(A72_4G).unwrap();
        assert_eq!(info.memory().len(), 1);
        assert_eq!(info.memory()[0].base, 0x4000_0000);
        assert_eq!(info.memory()[0].end(), 0x1_4000_0000);
    }

    #[test]
    fn finds_the_pl011() {
        let info = BootInfo::parse(A53_1G).unwrap();
        assert_eq!(info.uart.map(|u| u.base), Some(0x0900_0000));
    }

    #[test]
    fn finds_the_gic_and_the_virtio_window() {
        let info = BootInfo::parse(A53_1G).unwrap();
        let (dist, cpu) = info.gic.unwrap();
        assert_eq!(dist.base, 0x0800_0000);
        assert_eq!(cpu.base, 0x0801_0000);
        let v = info.virtio.unwrap();
        assert_eq!((v.base, v.size), (0x0a00_0000, 0x4000));
        let (rtc, irq) = info.rtc.unwrap();
        assert_eq!((rtc.base, irq), (0x0901_0000, 34));
    }

    #[test]
    fn reads_the_header_size() {
        let header: [u8; 8] = A53_1G[..8].try_into().unwrap();
        assert_eq!(blob_size(&header), Some(A53_1G.len()));
        assert_eq!(blob_size(&[0; 8]), None);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            BootInfo::parse(&[0u8; 64]).unwrap_err(),
            DeviceTreeError::BadHeader
        );
    }

    #[test]
    fn flags_are_whole_words() {
        let mut info = BootInfo::parse(A53_1G).unwrap();
        info.cmdline = "bench quiet=1";
        assert!(info.has_flag("bench"));
        assert!(!info.has_flag("ben"));
        assert!(!info.has_flag("quiet"));
    }
}
