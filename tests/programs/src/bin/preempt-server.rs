//! Preemption and priorities: a spinning process does not starve another of
//! its priority, and a runnable higher-priority thread always runs first.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use core::sync::atomic::{AtomicU64, Ordering};

    use abi::object::ObjectType;
    use abi::{CPtr, MessageInfo, Word};
    use qemu_test_programs::{Objects, Tester, counter};

    static LOW_RAN: AtomicU64 = AtomicU64::new(0);

    fn low(_: Word) -> ! {
        LOW_RAN.store(1, Ordering::SeqCst);
        loop {
            rt::yield_now();
        }
    }

    fn main(info: &'static rt::BootInfo) {
        let mut t = Tester::new("preempt");
        let Some(mut o) = Objects::new(info) else {
            t.check("the server has Untyped memory", false);
            t.finish();
        };
        // A lower-priority thread does not run while we spin for 5 ticks.
        o.spawn(low, 0, 50, 0);
        let start = counter();
        while counter() - start < 5 * 62_500 {}
        t.eq(
            "priorities: a lower-priority thread waits while we spin",
            LOW_RAN.load(Ordering::SeqCst),
            0,
        );

        // The worker shares its priority with a process that never yields;
        // it still gets its turns and calls us five times.
        let ep = CPtr(info.find("mm").map_or(16, |d| d.slot));
        let worker_badge = info.find("worker/tcb").map(|_| 3);
        let mut rounds = [Word::MAX; 5];
        let (mut m, mut b) = rt::recv(ep);
        for (i, r) in rounds.iter_mut().enumerate() {
            t.eq(
                "preempt: a call from the worker",
                (m.label(), Some(b.0)),
                (1, worker_badge),
            );
            *r = rt::get_mr(0);
            if i < 4 {
                (m, b) = rt::reply_recv(ep, MessageInfo::new(0, 0, 0, 0));
            }
        }
        t.eq(
            "preempt: all five rounds, in order",
            rounds,
            [0, 1, 2, 3, 4],
        );
        t.eq(
            "priorities: strict: the spinner (priority 100) still keeps the priority-50 thread waiting",
            LOW_RAN.load(Ordering::SeqCst),
            0,
        );
        let _ = o.create(ObjectType::Endpoint);
        t.finish();
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
