//! Simulated physical memory: RAM in one host allocation, MMIO regions, and physical allocators.
//!
//! RAM is a zeroed host `Vec<u8>` (the host OS hands out zero pages lazily,
//! so a 1 GiB simulated machine costs only what is touched). Physical
//! addresses start at [`RAM_BASE`], as on QEMU `virt`. MMIO regions sit
//! below it; each is plain backing memory or a [`MmioDevice`] model. Page
//! tables live in RAM in the VMSAv8-64 format, reached through
//! [`vmsa::TableMemory`].

use std::collections::BTreeMap;

/// Physical address of the first byte of simulated RAM (as on QEMU `virt`).
pub const RAM_BASE: u64 = 0x4000_0000;

/// A simulated device behind an MMIO region.
pub trait MmioDevice: Send {
    /// Reads `buf.len()` bytes at `offset` into the region.
    fn read(&mut self, offset: u64, buf: &mut [u8]);
    /// Writes `data` at `offset`; may return an interrupt number to raise.
    fn write(&mut self, offset: u64, data: &[u8]) -> Option<u32>;
}

/// What an MMIO region is backed by.
pub(crate) enum Backing {
    /// Plain memory (a scratch device region).
    Memory(Vec<u8>),
    /// A device model.
    Device(Box<dyn MmioDevice>),
}

/// One MMIO region.
pub(crate) struct MmioRegion {
    pub base: u64,
    pub size: u64,
    pub backing: Backing,
}

/// Physical memory: RAM plus MMIO regions.
pub(crate) struct Ram {
    bytes: Vec<u8>,
    pub mmio: Vec<MmioRegion>,
}

impl Ram {
    pub fn new(size: u64) -> Ram {
        Ram {
            bytes: vec![0; size as usize],
            mmio: Vec::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The RAM byte range of `[paddr, paddr + len)`, if all of it is RAM.
    fn ram_range(&self, paddr: u64, len: u64) -> Option<std::ops::Range<usize>> {
        let off = paddr.checked_sub(RAM_BASE)?;
        let end = off.checked_add(len)?;
        if end > self.size() {
            return None;
        }
        Some(off as usize..end as usize)
    }

    fn mmio_index(&self, paddr: u64, len: u64) -> Option<(usize, u64)> {
        self.mmio.iter().enumerate().find_map(|(i, r)| {
            let off = paddr.checked_sub(r.base)?;
            (off.checked_add(len)? <= r.size).then_some((i, off))
        })
    }

    /// Reads physical memory; false when the range is neither RAM nor one MMIO region.
    pub fn read(&mut self, paddr: u64, buf: &mut [u8]) -> bool {
        let len = buf.len() as u64;
        if let Some(r) = self.ram_range(paddr, len) {
            buf.copy_from_slice(&self.bytes[r]);
            return true;
        }
        match self.mmio_index(paddr, len) {
            Some((i, off)) => {
                match &mut self.mmio[i].backing {
                    Backing::Memory(m) => {
                        buf.copy_from_slice(&m[off as usize..(off + len) as usize])
                    }
                    Backing::Device(d) => d.read(off, buf),
                }
                true
            }
            None => false,
        }
    }

    /// Writes physical memory; `Err(())` when the range is not memory, else
    /// the interrupt a device asks to raise.
    pub fn write(&mut self, paddr: u64, data: &[u8]) -> Result<Option<u32>, ()> {
        let len = data.len() as u64;
        if let Some(r) = self.ram_range(paddr, len) {
            self.bytes[r].copy_from_slice(data);
            return Ok(None);
        }
        match self.mmio_index(paddr, len) {
            Some((i, off)) => Ok(match &mut self.mmio[i].backing {
                Backing::Memory(m) => {
                    m[off as usize..(off + len) as usize].copy_from_slice(data);
                    None
                }
                Backing::Device(d) => d.write(off, data),
            }),
            None => Err(()),
        }
    }

    /// Fills physical memory with a byte; false when not memory.
    pub fn fill(&mut self, paddr: u64, len: u64, byte: u8) -> bool {
        if let Some(r) = self.ram_range(paddr, len) {
            self.bytes[r].fill(byte);
            return true;
        }
        let chunk = [byte; 256];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(256);
            if self.write(paddr + done, &chunk[..n as usize]).is_err() {
                return false;
            }
            done += n;
        }
        true
    }

    /// Zeroes RAM, without touching (and so committing) host pages that are
    /// already zero.
    pub fn zero(&mut self, paddr: u64, len: u64) {
        if let Some(r) = self.ram_range(paddr, len) {
            for chunk in self.bytes[r].chunks_mut(4096) {
                if chunk.iter().any(|&b| b != 0) {
                    chunk.fill(0);
                }
            }
        }
    }
}

impl vmsa::TableMemory for Ram {
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        match self.ram_range(table + index as u64 * 8, 8) {
            Some(r) => {
                let mut w = [0; 8];
                w.copy_from_slice(&self.bytes[r]);
                u64::from_le_bytes(w)
            }
            None => 0,
        }
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        if let Some(r) = self.ram_range(table + index as u64 * 8, 8) {
            self.bytes[r].copy_from_slice(&value.to_le_bytes());
        }
    }
}

/// A first-fit allocator of naturally aligned power-of-two blocks over a
/// physical range, with coalescing on free. The harness carves the objects it
/// creates for processes (and the Untyped it hands out) from these.
#[derive(Clone, Debug, Default)]
pub(crate) struct PhysAlloc {
    /// Free ranges, start → end.
    free: BTreeMap<u64, u64>,
}

impl PhysAlloc {
    pub fn new(start: u64, end: u64) -> PhysAlloc {
        let mut free = BTreeMap::new();
        if start < end {
            free.insert(start, end);
        }
        PhysAlloc { free }
    }

    /// A block of `2^bits` bytes aligned to its size.
    pub fn alloc(&mut self, bits: u32) -> Option<u64> {
        let size = 1u64.checked_shl(bits)?;
        let (s, e, a) = self.free.iter().find_map(|(&s, &e)| {
            let a = s.checked_add(size - 1)? & !(size - 1);
            (a.checked_add(size)? <= e).then_some((s, e, a))
        })?;
        self.free.remove(&s);
        if s < a {
            self.free.insert(s, a);
        }
        if a + size < e {
            self.free.insert(a + size, e);
        }
        Some(a)
    }

    /// Returns a block.
    pub fn free(&mut self, start: u64, bits: u32) {
        let mut s = start;
        let mut e = start + (1u64 << bits);
        if let Some((&ps, &pe)) = self.free.range(..s).next_back()
            && pe == s
        {
            self.free.remove(&ps);
            s = ps;
        }
        if let Some(&ne) = self.free.get(&e) {
            self.free.remove(&e);
            e = ne;
        }
        self.free.insert(s, e);
    }

    /// Bytes free.
    pub fn available(&self) -> u64 {
        self.free.iter().map(|(s, e)| e - s).sum()
    }

    /// Takes every free range, as maximal aligned power-of-two blocks.
    pub fn take_all(&mut self) -> Vec<(u64, u32)> {
        let ranges = std::mem::take(&mut self.free);
        ranges
            .into_iter()
            .flat_map(|(s, e)| power_of_two_blocks(s, e))
            .collect()
    }
}

/// Splits `[start, end)` into maximal naturally aligned power-of-two blocks
/// of at most `2^MAX_UNTYPED_BITS` bytes and at least `2^MIN_UNTYPED_BITS`.
pub(crate) fn power_of_two_blocks(mut start: u64, end: u64) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    while start < end {
        let align = if start == 0 {
            63
        } else {
            start.trailing_zeros()
        };
        let fit = 63 - (end - start).leading_zeros();
        let bits = align.min(fit).min(abi::object::MAX_UNTYPED_BITS);
        if bits >= abi::object::MIN_UNTYPED_BITS {
            out.push((start, bits));
        }
        start += 1 << bits;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsa::TableMemory;

    #[test]
    fn alloc_aligns_splits_and_coalesces() {
        let mut a = PhysAlloc::new(0x1000, 0x10_0000);
        let x = a.alloc(12).unwrap();
        assert_eq!(x, 0x1000);
        let y = a.alloc(16).unwrap();
        assert_eq!(y, 0x1_0000);
        assert_eq!(a.available(), 0xf_f000 - 0x1000 - 0x1_0000);
        a.free(x, 12);
        a.free(y, 16);
        assert_eq!(a.available(), 0xf_f000);
        assert_eq!(a.free.len(), 1);
        assert_eq!(a.alloc(21), None);
    }

    #[test]
    fn blocks_cover_a_range() {
        let blocks = power_of_two_blocks(0x4000_1000, 0x4040_0000);
        let total: u64 = blocks.iter().map(|&(_, b)| 1u64 << b).sum();
        assert_eq!(total, 0x4040_0000 - 0x4000_1000);
        for (s, b) in blocks {
            assert_eq!(s % (1 << b), 0);
        }
    }

    #[test]
    fn ram_and_mmio() {
        let mut ram = Ram::new(1 << 16);
        ram.mmio.push(MmioRegion {
            base: 0x900_0000,
            size: 0x1000,
            backing: Backing::Memory(vec![0; 0x1000]),
        });
        assert!(ram.write(RAM_BASE + 8, &[1, 2, 3]).is_ok());
        let mut b = [0; 3];
        assert!(ram.read(RAM_BASE + 8, &mut b));
        assert_eq!(b, [1, 2, 3]);
        assert!(ram.write(0x900_0ffe, &[7, 7]).is_ok());
        assert!(ram.write(0x900_0fff, &[7, 7]).is_err());
        assert!(!ram.read(RAM_BASE + (1 << 16) - 1, &mut b));
        ram.write_entry(RAM_BASE + 0x1000, 3, 0xdead);
        assert_eq!(ram.read_entry(RAM_BASE + 0x1000, 3), 0xdead);
        ram.zero(RAM_BASE, 1 << 16);
        assert_eq!(ram.read_entry(RAM_BASE + 0x1000, 3), 0);
    }
}
