//! The client of the IPC benchmarks: times Call round trips to the server.
//!
//! Under `-icount shift=0` the virtual counter ticks once per 16 guest
//! instructions, so `ticks * 16 / iterations` is instructions per round
//! trip (including this loop's few instructions).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use abi::{CPtr, MessageInfo, Word};
    use qemu_test_programs::counter;

    const N: u64 = 20_000;

    fn instructions(ticks: u64, n: u64) -> (u64, u64) {
        let tenths = ticks * 16 * 10 / n;
        (tenths / 10, tenths % 10)
    }

    fn main(info: &'static rt::BootInfo) {
        let mm = CPtr(info.find("mm").map_or(16, |d| d.slot));
        // Register-only null Call: the fastpath.
        let mut mrs = [0; 4];
        for _ in 0..100 {
            rt::call_with_mrs(mm, MessageInfo::new(0, 0, 0, 0), &mut mrs);
        }
        let start = counter();
        for _ in 0..N {
            rt::call_with_mrs(mm, MessageInfo::new(0, 0, 0, 0), &mut mrs);
        }
        let (i, f) = instructions(counter() - start, N);
        rt::println!("BENCH ipc.roundtrip.qemu.instructions {i}.{f} instructions");

        // Ten words each way through the IPC buffer: the slow path.
        for i in 0..10 {
            rt::set_mr(i, i as Word);
        }
        let start = counter();
        for _ in 0..N {
            rt::call(mm, MessageInfo::new(1, 0, 0, 10));
        }
        let (i, f) = instructions(counter() - start, N);
        rt::println!("BENCH ipc.roundtrip.slowpath.qemu.instructions {i}.{f} instructions");

        // Now fault forever on an unmapped page: the server times the
        // fault round trips (it replies without mapping anything).
        rt::call(mm, MessageInfo::new(2, 0, 0, 0));
        loop {
            // SAFETY: a load from an unmapped address: it faults to our
            // fault handler (the server), which replies, and it retries.
            unsafe { core::arch::asm!("ldr xzr, [{0}]", in(reg) 0x5000_0000u64, options(nostack)) };
        }
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
