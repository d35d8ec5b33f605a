//! Works in bursts longer than a time slice and calls the server after each.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use abi::{CPtr, MessageInfo};
    use qemu_test_programs::counter;

    fn main(info: &'static rt::BootInfo) {
        let mm = CPtr(info.find("mm").map_or(16, |d| d.slot));
        for round in 0..5 {
            // About 3 ms of guest time (3 timer ticks) of work.
            let start = counter();
            while counter() - start < 3 * 62_500 {}
            rt::set_mr(0, round);
            rt::call(mm, MessageInfo::new(1, 0, 0, 1));
        }
        rt::exit(0);
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
