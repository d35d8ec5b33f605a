//! Identification and timing of the CPU the kernel runs on.

use aarch64_cpu::registers::{CNTVCT_EL0, MIDR_EL1, Readable};

/// The core's name, from `MIDR_EL1` (Main ID Register): implementer and part number.
pub fn model() -> &'static str {
    let midr = MIDR_EL1.get();
    let implementer = (midr >> 24) & 0xff;
    let part = (midr >> 4) & 0xfff;
    match (implementer, part) {
        (0x41, 0xd03) => "Cortex-A53",
        (0x41, 0xd07) => "Cortex-A57",
        (0x41, 0xd08) => "Cortex-A72",
        (0x41, 0xd0b) => "Cortex-A76",
        (0x41, _) => "Arm core",
        _ => "unknown core",
    }
}

/// The raw value of `MIDR_EL1`.
pub fn midr() -> u64 {
    MIDR_EL1.get()
}

/// The virtual counter (`CNTVCT_EL0`). Under QEMU's `-icount shift=0` it ticks
/// once per 16 guest instructions (62.5 MHz against 1 ns per instruction).
pub fn counter() -> u64 {
    CNTVCT_EL0.get()
}
