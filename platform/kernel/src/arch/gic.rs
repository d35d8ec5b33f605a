//! The GICv2 interrupt controller of QEMU `virt`: distributor and CPU interface.
//!
//! Register names and offsets from the Arm GIC Architecture Specification
//! v2 (IHI 0048B), §4. The kernel routes every interrupt to the one core,
//! at one priority; it takes them with `GICC_IAR`, and signals completion
//! with `GICC_EOIR`.

use core::sync::atomic::{AtomicU64, Ordering};

/// GICD_CTLR: Distributor Control Register.
const GICD_CTLR: u64 = 0x000;
/// GICD_TYPER: Interrupt Controller Type Register (ITLinesNumber in bits 4:0).
const GICD_TYPER: u64 = 0x004;
/// GICD_ISENABLERn: Interrupt Set-Enable Registers.
const GICD_ISENABLER: u64 = 0x100;
/// GICD_ICENABLERn: Interrupt Clear-Enable Registers.
const GICD_ICENABLER: u64 = 0x180;
/// GICD_IPRIORITYRn: Interrupt Priority Registers (one byte per interrupt).
const GICD_IPRIORITYR: u64 = 0x400;
/// GICD_ITARGETSRn: Interrupt Processor Targets Registers (one byte per interrupt).
const GICD_ITARGETSR: u64 = 0x800;
/// GICC_CTLR: CPU Interface Control Register.
const GICC_CTLR: u64 = 0x000;
/// GICC_PMR: Interrupt Priority Mask Register.
const GICC_PMR: u64 = 0x004;
/// GICC_IAR: Interrupt Acknowledge Register.
const GICC_IAR: u64 = 0x00c;
/// GICC_EOIR: End of Interrupt Register.
const GICC_EOIR: u64 = 0x010;
/// The interrupt ID of "no pending interrupt".
const SPURIOUS: u32 = 1023;

static DIST: AtomicU64 = AtomicU64::new(0);
static CPU: AtomicU64 = AtomicU64::new(0);

fn read(base: &AtomicU64, offset: u64) -> u32 {
    let addr = base.load(Ordering::Relaxed) + offset;
    // SAFETY: `init` stored the mapped (Device) addresses of the GIC's
    // register blocks; these are 32-bit registers read with a volatile access.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write(base: &AtomicU64, offset: u64, value: u32) {
    let addr = base.load(Ordering::Relaxed) + offset;
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

/// Initialises the GIC at the given (mapped) addresses; returns the number
/// of interrupt lines.
///
/// # Safety
///
/// `dist` and `cpu` must be the kernel-space addresses of a GICv2
/// distributor and CPU interface mapped as Device memory.
pub unsafe fn init(dist: u64, cpu: u64) -> u32 {
    DIST.store(dist, Ordering::Relaxed);
    CPU.store(cpu, Ordering::Relaxed);
    write(&DIST, GICD_CTLR, 0);
    let lines = ((read(&DIST, GICD_TYPER) & 0x1f) + 1) * 32;
    for i in 0..lines / 32 {
        write(&DIST, GICD_ICENABLER + 4 * u64::from(i), u32::MAX);
    }
    for i in 0..lines / 4 {
        write(&DIST, GICD_IPRIORITYR + 4 * u64::from(i), 0xa0a0_a0a0);
        if i >= 8 {
            write(&DIST, GICD_ITARGETSR + 4 * u64::from(i), 0x0101_0101);
        }
    }
    write(&DIST, GICD_CTLR, 1);
    write(&CPU, GICC_PMR, 0xff);
    write(&CPU, GICC_CTLR, 1);
    lines
}

/// Enables (unmasks) or disables an interrupt.
pub fn set_enabled(irq: u32, enabled: bool) {
    let reg = if enabled {
        GICD_ISENABLER
    } else {
        GICD_ICENABLER
    };
    write(&DIST, reg + 4 * u64::from(irq / 32), 1 << (irq % 32));
}

/// Takes the highest-priority pending interrupt, if any.
pub fn acknowledge() -> Option<u32> {
    let iar = read(&CPU, GICC_IAR);
    let irq = iar & 0x3ff;
    (irq != SPURIOUS).then_some(iar)
}

/// Signals the end of handling of an interrupt (the value `acknowledge` returned).
pub fn end_of_interrupt(iar: u32) {
    write(&CPU, GICC_EOIR, iar);
}
