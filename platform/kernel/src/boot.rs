//! From the entry code to a running kernel: MMU on, device tree read, banner.

use core::panic::PanicInfo;

use crate::arch::{cpu, mmu, semihosting};
use crate::devicetree::{BootInfo, blob_size};
use crate::{console, kprintln};

/// Where QEMU puts the device tree for an ELF kernel: the start of RAM on `virt`.
const DTB_AT_RAM_START: u64 = 0x4000_0000;

/// The kernel's Rust entry point, called once by the boot core.
///
/// `dtb` is the address the boot loader passed in `x0` (0 when none was);
/// `boot_counter` is `CNTVCT_EL0` as read by the first instruction.
pub extern "C" fn kernel_main(dtb: u64, boot_counter: u64) -> ! {
    // SAFETY: first thing on the boot core, MMU off, image in the low 5 GiB.
    unsafe { mmu::enable() };

    let dtb = if dtb != 0 { dtb } else { DTB_AT_RAM_START };
    // SAFETY: with the identity map on, the 8-byte header at `dtb` is mapped
    // Normal memory inside RAM; it is only read.
    let header: &[u8; 8] = unsafe { &*(dtb as *const [u8; 8]) };
    let Some(size) = blob_size(header) else {
        semihosting::exit(2);
    };
    // SAFETY: the header says the blob spans `size` bytes from `dtb`; QEMU
    // placed it in RAM, which is identity-mapped, and nothing writes it.
    let blob = unsafe { core::slice::from_raw_parts(dtb as *const u8, size) };
    let Ok(info) = BootInfo::parse(blob) else {
        semihosting::exit(3);
    };
    if let Some(uart) = info.uart {
        // SAFETY: the device tree names this a PL011; the first GiB (where
        // `virt` puts its MMIO) is identity-mapped as Device memory.
        unsafe { console::init(uart.base as usize) };
    }
    let banner_counter = cpu::counter();

    kprintln!(
        "mm-kernel {} (aarch64, QEMU virt)",
        env!("CARGO_PKG_VERSION")
    );
    kprintln!("cpu: {} (MIDR_EL1 {:#010x})", cpu::model(), cpu::midr());
    for range in info.memory() {
        kprintln!(
            "memory: {:#x}..{:#x} ({} MiB)",
            range.base,
            range.end(),
            range.size >> 20
        );
    }
    kprintln!("memory total: {} MiB", info.total_memory() >> 20);
    kprintln!("device tree: {dtb:#x} ({} KiB)", info.dtb_size >> 10);
    if info.has_flag("bench") {
        // Under -icount shift=0 the counter ticks once per 16 instructions.
        let instructions = (banner_counter - boot_counter) * 16;
        kprintln!("BENCH boot.to_banner.qemu.instructions {instructions} instructions");
    }
    kprintln!("poweroff: status 0");
    semihosting::exit(0);
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    kprintln!("kernel panic: {info}");
    semihosting::exit(101);
}
