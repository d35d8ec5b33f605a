//! The process's own memory: loads and stores at virtual addresses.
//!
//! In QEMU these are plain loads and stores; in the simulator every access
//! is translated by the software MMU through the process's page tables, so
//! an access to unmapped memory faults to the thread's fault handler (the
//! MM server, for clients) and completes after its reply, as a real load
//! would. Values are little-endian, as on aarch64.

use crate::{MemoryError, Word, backend};

/// Reads `buf.len()` bytes at `vaddr`.
pub fn read_bytes(vaddr: Word, buf: &mut [u8]) -> Result<(), MemoryError> {
    backend::read_bytes(vaddr, buf)
}

/// Writes `data` at `vaddr`.
pub fn write_bytes(vaddr: Word, data: &[u8]) -> Result<(), MemoryError> {
    backend::write_bytes(vaddr, data)
}

/// Fills `len` bytes at `vaddr` with `byte`.
pub fn fill_bytes(vaddr: Word, len: Word, byte: u8) -> Result<(), MemoryError> {
    backend::fill_bytes(vaddr, len, byte)
}

/// Zeroes `len` bytes at `vaddr`.
pub fn zero(vaddr: Word, len: Word) -> Result<(), MemoryError> {
    backend::fill_bytes(vaddr, len, 0)
}

/// Checks the runtime's `memcpy` and `memset` (QEMU only: the simulator
/// uses the host's) against a byte-by-byte model for every length up to
/// 300 bytes at every alignment up to 8; returns the first failing case as
/// (length, source offset, destination offset).
#[cfg(target_os = "none")]
pub fn memfns_self_test() -> Result<(), (usize, usize, usize)> {
    backend::memfns_self_test()
}

/// Checks [`zero`]'s QEMU implementation (`dc zva` over whole blocks,
/// stores around them) against a byte model for lengths around its
/// thresholds at offsets across a block; returns the first failing case as
/// (length, offset).
#[cfg(target_os = "none")]
pub fn zero_self_test() -> Result<(), (usize, usize)> {
    backend::zero_self_test()
}

/// Copies `len` bytes from `src` to `dst` (overlapping ranges copy as memmove does).
pub fn copy(dst: Word, src: Word, len: Word) -> Result<(), MemoryError> {
    let mut buf = [0u8; 256];
    let mut done: Word = 0;
    let backwards = dst > src && dst < src.saturating_add(len);
    while done < len {
        let n = (len - done).min(buf.len() as Word);
        let off = if backwards { len - done - n } else { done };
        let chunk = &mut buf[..n as usize];
        backend::read_bytes(
            src.checked_add(off).ok_or(MemoryError::InvalidRange)?,
            chunk,
        )?;
        backend::write_bytes(
            dst.checked_add(off).ok_or(MemoryError::InvalidRange)?,
            chunk,
        )?;
        done += n;
    }
    Ok(())
}

macro_rules! int_access {
    ($read:ident, $write:ident, $t:ty) => {
        #[doc = concat!("Reads a little-endian `", stringify!($t), "` at `vaddr`.")]
        pub fn $read(vaddr: Word) -> Result<$t, MemoryError> {
            let mut b = [0u8; core::mem::size_of::<$t>()];
            backend::read_bytes(vaddr, &mut b)?;
            Ok(<$t>::from_le_bytes(b))
        }

        #[doc = concat!("Writes a little-endian `", stringify!($t), "` at `vaddr`.")]
        pub fn $write(vaddr: Word, value: $t) -> Result<(), MemoryError> {
            backend::write_bytes(vaddr, &value.to_le_bytes())
        }
    };
}

int_access!(read_u8, write_u8, u8);
int_access!(read_u16, write_u16, u16);
int_access!(read_u32, write_u32, u32);
int_access!(read_u64, write_u64, u64);
