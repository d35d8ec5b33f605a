//! Device memory and interrupts: the PL031 real-time clock's alarm, through
//! a device Untyped, a device frame, an IRQ handler cap and a notification.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use abi::boot::{CapKind, SLOT_CNODE, SLOT_IRQ_CONTROL, SLOT_VSPACE};
    use abi::object::ObjectType;
    use abi::{Badge, CPtr, CapRights, ErrorReply, Word};
    use qemu_test_programs::{DEPTH, Objects, Tester};
    use rt::invoke;

    /// The PL031's interrupt on QEMU `virt` (SPI 2): what the boot info
    /// must report.
    const VIRT_RTC_IRQ: Word = 34;
    /// Where we map its registers.
    const RTC: Word = 0x2000_0000;
    /// RTCDR: the current time in seconds.
    const RTCDR: Word = 0x00;
    /// RTCMR: the alarm (match) time.
    const RTCMR: Word = 0x04;
    /// RTCIMSC: interrupt mask set/clear (1: enabled).
    const RTCIMSC: Word = 0x10;
    /// RTCRIS: raw interrupt status.
    const RTCRIS: Word = 0x14;
    /// RTCICR: interrupt clear.
    const RTCICR: Word = 0x1c;

    fn read(offset: Word) -> u32 {
        let v: u32;
        // SAFETY: a 32-bit load from the RTC's register block, mapped as
        // Device memory at RTC by this program.
        unsafe {
            core::arch::asm!("ldr {0:w}, [{1}]", out(reg) v, in(reg) RTC + offset, options(nostack))
        };
        v
    }

    fn write(offset: Word, value: u32) {
        // SAFETY: a 32-bit store to the RTC's register block (see `read`).
        unsafe {
            core::arch::asm!("str {0:w}, [{1}]", in(reg) value, in(reg) RTC + offset, options(nostack))
        };
    }

    fn main(info: &'static rt::BootInfo) {
        let mut t = Tester::new("irq");
        let Some(mut o) = Objects::new(info) else {
            t.check("the server has Untyped memory", false);
            t.finish();
        };
        let Some(rtc) = info
            .find("rtc")
            .filter(|d| d.kind == CapKind::DeviceUntyped)
        else {
            t.check("the boot info lists the RTC's device Untyped", false);
            t.finish();
        };
        // The boot info names the RTC's interrupt: an IrqControl
        // descriptor with the device's name.
        let rtc_irq = info
            .caps()
            .find(|d| d.kind == CapKind::IrqControl && d.name() == "rtc");
        t.eq(
            "irq: the boot info reports the RTC's interrupt and the IRQ control slot",
            rtc_irq.map(|d| (d.slot, d.value)),
            Some((SLOT_IRQ_CONTROL, VIRT_RTC_IRQ)),
        );
        let irq = rtc_irq.map_or(VIRT_RTC_IRQ, |d| d.value);
        let untyped = CPtr(rtc.slot);
        let frame = o.slot();
        t.eq(
            "device: an Untyped of device memory cannot become an endpoint",
            invoke::untyped_retype(
                untyped,
                ObjectType::Endpoint,
                0,
                CPtr(SLOT_CNODE),
                0,
                0,
                frame.0,
                1,
            ),
            Err(ErrorReply::InvalidArgument { index: 1 }),
        );
        t.eq(
            "device: it becomes a frame",
            invoke::untyped_retype(
                untyped,
                ObjectType::SmallPage,
                0,
                CPtr(SLOT_CNODE),
                0,
                0,
                frame.0,
                1,
            ),
            Ok(()),
        );
        t.eq(
            "device: the frame is the device's registers",
            invoke::page_get_address(frame),
            Ok(rtc.value),
        );
        // Attributes 0: neither cacheable nor Normal-uncached: Device memory.
        let r = o.map_with(CPtr(SLOT_VSPACE), frame, RTC, CapRights::READ_WRITE, 0);
        t.eq("device: mapped as Device memory", r, Ok(()));

        // The IRQ handler.
        let handler = o.slot();
        let control = CPtr(SLOT_IRQ_CONTROL);
        t.eq(
            "irq: a handler for the RTC's interrupt",
            invoke::irq_control_get(control, irq, CPtr(SLOT_CNODE), handler.0, DEPTH),
            Ok(()),
        );
        let again = o.slot();
        t.eq(
            "irq: a second handler for it is RevokeFirst",
            invoke::irq_control_get(control, irq, CPtr(SLOT_CNODE), again.0, DEPTH),
            Err(ErrorReply::RevokeFirst),
        );
        t.eq(
            "irq: the kernel's timer interrupt is not for users",
            invoke::irq_control_get(control, 27, CPtr(SLOT_CNODE), again.0, DEPTH),
            Err(ErrorReply::RevokeFirst),
        );
        t.eq(
            "irq: a number past the last line is RangeError",
            invoke::irq_control_get(control, 100_000, CPtr(SLOT_CNODE), again.0, DEPTH)
                .map_err(|e| e.code()),
            Err(abi::Error::RangeError),
        );
        let n = o.create(ObjectType::Notification);
        let badged = o.slot();
        let _ = invoke::cnode_mint(
            CPtr(SLOT_CNODE),
            badged.0,
            DEPTH,
            CPtr(SLOT_CNODE),
            n.0,
            DEPTH,
            CapRights::ALL,
            Badge(0x40),
        );
        t.eq(
            "irq: signal our notification",
            invoke::irq_handler_set_notification(handler, badged),
            Ok(()),
        );

        // Arm the alarm one second ahead and wait for its interrupt.
        let now = read(RTCDR);
        write(RTCMR, now.wrapping_add(1));
        write(RTCIMSC, 1);
        let badge = rt::wait(n);
        t.eq(
            "irq: the alarm's interrupt arrives as a signal with our badge",
            badge.0,
            0x40,
        );
        t.eq("irq: the device reports it raised it", read(RTCRIS) & 1, 1);
        write(RTCICR, 1);
        write(RTCIMSC, 0);
        t.eq("irq: acknowledge", invoke::irq_handler_ack(handler), Ok(()));
        t.eq(
            "irq: deleting the handler frees the line",
            invoke::cnode_delete(CPtr(SLOT_CNODE), handler.0, DEPTH),
            Ok(()),
        );
        t.eq(
            "irq: which can be issued again",
            invoke::irq_control_get(control, irq, CPtr(SLOT_CNODE), again.0, DEPTH),
            Ok(()),
        );
        t.finish();
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
