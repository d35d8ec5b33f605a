//! Touching managed memory: the one trait through which the core reads and writes it.
//!
//! The allocators never dereference the addresses they hand out. Operations
//! that must touch memory — zeroing (kzalloc, pre-zeroed frames), copying
//! (krealloc, kmemdup), poisoning and red-zone checks — take a
//! [`MemoryAccess`]. In QEMU it is implemented with raw pointers in one
//! audited module; in the simulator through the software MMU; in host tests by
//! [`ArenaMemory`], a byte vector standing for an address range.

use alloc::vec;
use alloc::vec::Vec;

/// An address range that could not be accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessError {
    /// The first address that could not be accessed.
    pub addr: u64,
}

/// Reads and writes memory named by address (virtual or physical, as the
/// implementor decides).
pub trait MemoryAccess {
    /// Copies `buf.len()` bytes starting at `addr` into `buf`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError>;
    /// Copies `data` to memory starting at `addr`.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError>;
    /// Sets `len` bytes starting at `addr` to `byte`.
    fn fill(&mut self, addr: u64, len: u64, byte: u8) -> Result<(), AccessError>;
    /// Copies `len` bytes from `src` to `dst`; the ranges may overlap.
    fn copy(&mut self, dst: u64, src: u64, len: u64) -> Result<(), AccessError> {
        let mut chunk = [0u8; 256];
        let mut done = 0;
        // Copy in the direction that keeps overlapping ranges correct.
        if dst <= src {
            while done < len {
                let n = (len - done).min(chunk.len() as u64) as usize;
                self.read(src + done, &mut chunk[..n])?;
                self.write(dst + done, &chunk[..n])?;
                done += n as u64;
            }
        } else {
            while done < len {
                let n = (len - done).min(chunk.len() as u64) as usize;
                let at = len - done - n as u64;
                self.read(src + at, &mut chunk[..n])?;
                self.write(dst + at, &chunk[..n])?;
                done += n as u64;
            }
        }
        Ok(())
    }
    /// Sets `len` bytes starting at `addr` to zero.
    fn zero(&mut self, addr: u64, len: u64) -> Result<(), AccessError> {
        self.fill(addr, len, 0)
    }
}

/// Host memory standing for the address range `[base, base + len)`: for tests
/// and benchmarks.
#[derive(Clone, Debug)]
pub struct ArenaMemory {
    base: u64,
    bytes: Vec<u8>,
}

impl ArenaMemory {
    /// A zeroed arena covering `[base, base + len)`.
    pub fn new(base: u64, len: usize) -> Self {
        ArenaMemory {
            base,
            bytes: vec![0; len],
        }
    }

    fn range(&self, addr: u64, len: u64) -> Result<core::ops::Range<usize>, AccessError> {
        let start = addr.checked_sub(self.base).ok_or(AccessError { addr })?;
        let end = start.checked_add(len).ok_or(AccessError { addr })?;
        if end > self.bytes.len() as u64 {
            let first_bad = self.base + (self.bytes.len() as u64).max(start);
            return Err(AccessError { addr: first_bad });
        }
        Ok(start as usize..end as usize)
    }
}

impl MemoryAccess for ArenaMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        let r = self.range(addr, buf.len() as u64)?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        let r = self.range(addr, data.len() as u64)?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }

    fn fill(&mut self, addr: u64, len: u64, byte: u8) -> Result<(), AccessError> {
        let r = self.range(addr, len)?;
        self.bytes[r].fill(byte);
        Ok(())
    }

    fn copy(&mut self, dst: u64, src: u64, len: u64) -> Result<(), AccessError> {
        let s = self.range(src, len)?;
        let d = self.range(dst, len)?;
        self.bytes.copy_within(s, d.start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_reads_what_was_written() {
        let mut m = ArenaMemory::new(0x1000, 64);
        m.write(0x1008, b"hello").unwrap();
        let mut buf = [0u8; 5];
        m.read(0x1008, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(m.write(0x0fff, b"x"), Err(AccessError { addr: 0x0fff }));
        assert!(m.write(0x103f, b"xy").is_err());
    }

    #[test]
    fn default_copy_handles_overlap() {
        struct Slow(ArenaMemory);
        impl MemoryAccess for Slow {
            fn read(&self, a: u64, b: &mut [u8]) -> Result<(), AccessError> {
                self.0.read(a, b)
            }
            fn write(&mut self, a: u64, d: &[u8]) -> Result<(), AccessError> {
                self.0.write(a, d)
            }
            fn fill(&mut self, a: u64, l: u64, b: u8) -> Result<(), AccessError> {
                self.0.fill(a, l, b)
            }
        }
        let mut m = Slow(ArenaMemory::new(0, 1024));
        let data: Vec<u8> = (0..=255).collect();
        m.write(0, &data).unwrap();
        m.copy(100, 0, 256).unwrap(); // forward overlap
        let mut out = [0u8; 256];
        m.read(100, &mut out).unwrap();
        assert_eq!(&out[..], &data[..]);
        m.copy(50, 100, 256).unwrap(); // backward overlap
        m.read(50, &mut out).unwrap();
        assert_eq!(&out[..], &data[..]);
    }
}
