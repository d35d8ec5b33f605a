//! The smallest boot image: one process prints through DebugPutString and halts with status 0.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use rt::BootInfo;

    fn main(info: &'static BootInfo) {
        rt::println!(
            "hello from EL0: process {}, {} capabilities",
            info.process_index,
            info.caps().count()
        );
        rt::debug_halt(0);
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
