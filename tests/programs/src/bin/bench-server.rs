//! The server of the IPC benchmarks: answers calls, times fault round
//! trips and notification signal/wait, then halts.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use core::sync::atomic::{AtomicU64, Ordering};

    use abi::object::ObjectType;
    use abi::{CPtr, MessageInfo, Word};
    use qemu_test_programs::{Objects, counter};

    const FAULTS: u64 = 5_000;
    const SIGNALS: u64 = 10_000;

    static PING: AtomicU64 = AtomicU64::new(0);
    static PONG: AtomicU64 = AtomicU64::new(0);

    fn print(name: &str, ticks: u64, n: u64) {
        let tenths = ticks * 16 * 10 / n;
        rt::println!("BENCH {name} {}.{} instructions", tenths / 10, tenths % 10);
    }

    fn ponger(_: Word) -> ! {
        let (ping, pong) = (
            CPtr(PING.load(Ordering::SeqCst)),
            CPtr(PONG.load(Ordering::SeqCst)),
        );
        loop {
            rt::wait(ping);
            rt::signal(pong);
        }
    }

    fn main(info: &'static rt::BootInfo) {
        let ep = CPtr(info.find("mm").map_or(16, |d| d.slot));
        let Some(mut o) = Objects::new(info) else {
            rt::println!("bench-server: no Untyped memory");
            rt::debug_halt(1);
        };
        // Calls: null ones on the fastpath, ten-word ones echoed.
        let mut mrs = [0; 4];
        let (mut info_in, _) = rt::recv_with_mrs(ep, &mut mrs);
        while info_in.label() != 2 {
            let reply = MessageInfo::new(0, 0, 0, info_in.length());
            (info_in, _) = rt::reply_recv_with_mrs(ep, reply, &mut mrs);
        }
        // Faults: reply to each without doing anything; the client retries
        // and faults again.
        let (mut m, _) = rt::reply_recv_with_mrs(ep, MessageInfo::new(0, 0, 0, 0), &mut mrs);
        let start = counter();
        for _ in 0..FAULTS {
            if m.label() != abi::fault::FaultLabel::VmFault as Word {
                rt::println!("bench-server: expected a VM fault, got label {}", m.label());
                rt::debug_halt(1);
            }
            (m, _) = rt::reply_recv_with_mrs(ep, MessageInfo::new(0, 0, 0, 0), &mut mrs);
        }
        print(
            "fault.roundtrip.qemu.instructions",
            counter() - start,
            FAULTS,
        );

        // Notifications: signal a thread of the same priority and wait for its signal back.
        let ping = o.create(ObjectType::Notification);
        let pong = o.create(ObjectType::Notification);
        PING.store(ping.0, Ordering::SeqCst);
        PONG.store(pong.0, Ordering::SeqCst);
        o.spawn(ponger, 0, 100, 0);
        for _ in 0..100 {
            rt::signal(ping);
            rt::wait(pong);
        }
        let start = counter();
        for _ in 0..SIGNALS {
            rt::signal(ping);
            rt::wait(pong);
        }
        // Each round is two signal-to-wakeup hand-overs.
        print(
            "notification.signal_wait.qemu.instructions",
            counter() - start,
            2 * SIGNALS,
        );
        rt::debug_halt(0);
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
