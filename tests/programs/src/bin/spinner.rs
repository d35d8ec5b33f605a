//! A process that spins forever without a system call: only the timer can take the CPU from it.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use core::sync::atomic::{AtomicU64, Ordering};

    static SPINS: AtomicU64 = AtomicU64::new(0);

    fn main(_info: &'static rt::BootInfo) {
        loop {
            SPINS.fetch_add(1, Ordering::Relaxed);
        }
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
