//! The generic timer's virtual timer (`CNTV_*_EL0`): the scheduler's tick.
//!
//! Its interrupt is PPI 11, interrupt ID 27 on `virt`. Under QEMU's
//! `-icount shift=0` the counter advances once per 16 instructions, so the
//! tick, and with it the schedule, is deterministic.

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTV_CTL_EL0, CNTV_TVAL_EL0, Readable, Writeable};

/// The virtual timer's interrupt ID.
pub const TIMER_IRQ: u32 = 27;
/// Ticks per second.
pub const TICK_HZ: u64 = 1000;

/// Arms the timer for the next tick.
pub fn rearm() {
    let ticks = (CNTFRQ_EL0.get() / TICK_HZ).max(1);
    CNTV_TVAL_EL0.set(ticks);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
}
