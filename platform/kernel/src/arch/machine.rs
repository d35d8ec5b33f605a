//! The real machine under the kernel's logic: RAM through the linear map, TLB, GIC, PL011, semihosting.

use crate::arch::{gic, mmu, semihosting};
use crate::devicetree::{MAX_MEMORY_RANGES, PhysRange};
use crate::machine::Machine;

/// QEMU `virt` as the kernel's logic sees it.
pub struct HwMachine {
    ram: [PhysRange; MAX_MEMORY_RANGES],
    ram_count: usize,
}

impl HwMachine {
    /// The machine with these RAM ranges (all mapped by the kernel's linear map).
    pub fn new(ram: &[PhysRange]) -> Self {
        let mut m = HwMachine {
            ram: [PhysRange { base: 0, size: 0 }; MAX_MEMORY_RANGES],
            ram_count: ram.len().min(MAX_MEMORY_RANGES),
        };
        m.ram[..m.ram_count].copy_from_slice(&ram[..m.ram_count]);
        m
    }

    /// The kernel-space address of `len` bytes of RAM at `paddr`. Panics
    /// when the range is not RAM: the kernel's logic only names RAM it
    /// handed out, so anything else is a kernel bug, caught before it
    /// touches memory. (Inlined: table walks read words through it.)
    #[inline(always)]
    fn window(&self, paddr: u64, len: u64) -> u64 {
        // The first range first (QEMU `virt` has one): a subtraction and
        // two compares instead of the loop.
        let first = self.ram[0];
        let off = paddr.wrapping_sub(first.base);
        if len <= first.size && off <= first.size - len {
            return mmu::phys_to_virt(paddr);
        }
        let ok = self.ram[..self.ram_count]
            .iter()
            .any(|r| paddr >= r.base && paddr.checked_add(len).is_some_and(|e| e <= r.end()));
        assert!(ok, "kernel access to non-RAM {paddr:#x}+{len:#x}");
        mmu::phys_to_virt(paddr)
    }
}

/// Whether `dc zva` zeroes 64-byte blocks here (DCZID_EL0: BS = 4 words
/// log2, DZP clear), as on QEMU's Cortex-A53 and A72.
fn zva_block_is_64() -> bool {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 ("Data Cache Zero ID") has no side effects.
    unsafe { core::arch::asm!("mrs {0}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    dczid & 0x1f == 4
}

impl Machine for HwMachine {
    #[inline(always)]
    fn read_word(&self, paddr: u64) -> u64 {
        let va = self.window(paddr, 8);
        assert!(paddr.is_multiple_of(8), "misaligned word {paddr:#x}");
        // SAFETY: `window` checked that the aligned word lies in RAM, which
        // the linear map covers as Normal memory; plain loads of RAM shared
        // with user threads cannot be undefined behaviour for a u64 (any bit
        // pattern is valid) and no Rust reference covers user memory.
        unsafe { core::ptr::read_volatile(va as *const u64) }
    }

    #[inline(always)]
    fn write_word(&mut self, paddr: u64, value: u64) {
        let va = self.window(paddr, 8);
        assert!(paddr.is_multiple_of(8), "misaligned word {paddr:#x}");
        // SAFETY: as in `read_word`; the kernel's own data (image, heap,
        // stack) is never RAM handed out to objects, so this cannot alias it.
        unsafe { core::ptr::write_volatile(va as *mut u64, value) }
    }

    fn zero(&mut self, paddr: u64, len: u64) {
        let va = self.window(paddr, len);
        if va.is_multiple_of(64) && len.is_multiple_of(64) && zva_block_is_64() {
            // Objects are page-aligned: whole 64-byte blocks, one `dc zva`
            // ("Data Cache Zero by VA") each.
            let (mut at, mut n) = (va, len / 64);
            // SAFETY: `window` checked the range is RAM handed out to objects
            // (see `write_word`), mapped as Normal memory by the linear map,
            // made of whole aligned 64-byte blocks, each zeroed by one `dc zva`.
            unsafe {
                core::arch::asm!(
                    "cbz {n}, 9f",
                    "2:",
                    "dc zva, {at}",
                    "add {at}, {at}, #64",
                    "subs {n}, {n}, #1",
                    "b.ne 2b",
                    "9:",
                    at = inout(reg) at,
                    n = inout(reg) n,
                    options(nostack),
                );
            }
            let _ = (at, n);
            return;
        }
        // SAFETY: `window` checked the range is RAM handed out to objects
        // (see `write_word`).
        unsafe { core::ptr::write_bytes(va as *mut u8, 0, len as usize) }
    }

    fn read_bytes(&self, paddr: u64, out: &mut [u8]) {
        let va = self.window(paddr, out.len() as u64);
        // SAFETY: as in `read_word`; `out` is kernel memory, disjoint from it.
        unsafe { core::ptr::copy_nonoverlapping(va as *const u8, out.as_mut_ptr(), out.len()) }
    }

    fn write_bytes(&mut self, paddr: u64, data: &[u8]) {
        let va = self.window(paddr, data.len() as u64);
        // SAFETY: as in `write_word`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), va as *mut u8, data.len()) }
    }

    fn table_write_barrier(&mut self) {
        // SAFETY: a barrier has no memory-safety effect.
        unsafe { core::arch::asm!("dsb ishst", options(nostack)) }
    }

    fn tlb_flush_page(&mut self, asid: u16, vaddr: u64) {
        let arg = u64::from(asid) << 48 | (vaddr >> 12) & 0xfff_ffff_ffff;
        // SAFETY: TLB invalidation only drops cached translations.
        unsafe {
            core::arch::asm!("dsb ishst", "tlbi vae1is, {0}", "dsb ish", "isb", in(reg) arg, options(nostack));
        }
    }

    fn tlb_flush_asid(&mut self, asid: u16) {
        let arg = u64::from(asid) << 48;
        // SAFETY: as in `tlb_flush_page`.
        unsafe {
            core::arch::asm!("dsb ishst", "tlbi aside1is, {0}", "dsb ish", "isb", in(reg) arg, options(nostack));
        }
    }

    fn irq_set_enabled(&mut self, irq: u32, enabled: bool) {
        gic::set_enabled(irq, enabled);
    }

    fn console_write(&mut self, bytes: &[u8]) {
        crate::console::write_bytes(bytes);
    }

    fn halt(&mut self, status: u32) {
        semihosting::exit(status);
    }
}
