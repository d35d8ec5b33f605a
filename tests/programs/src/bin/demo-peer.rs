//! The demo's peer client: maps the demo's shared mailbox, lends it a buffer for copy_to_user and copy_from_user, exits when told.
//!
//! It prints nothing (the demo reports); see `demo.rs` for the script.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use libmm::Mm;
    use libmm::protocol::{MapFlags, Prot};
    use qemu_test_programs::mailbox::{self, COMMAND, STATE, VALUE};
    use rt::BootInfo;

    #[global_allocator]
    static HEAP: libmm::RtGlobalHeap = libmm::RtGlobalHeap::rt();

    fn main(info: &'static BootInfo) {
        let Ok(mm) = Mm::from_boot_info(info) else {
            return;
        };
        // The mailbox: granted by the demo when it gets there.
        let Ok(mb) = mailbox::attach(|h| mm.shm_map(h, 0, Prot::READ_WRITE)) else {
            return;
        };
        let base = mb.addr();
        // A 16 KiB buffer, populated, for the demo's copies.
        let Ok(buf) = mm.mmap(0, 16 << 10, Prot::READ_WRITE, MapFlags::POPULATE) else {
            return;
        };
        for i in 0..(16 << 10) / 8 {
            let _ = rt::mem::write_u64(buf.addr() + i * 8, 0x5eed_0000 + i);
        }
        let _ = rt::mem::write_bytes(base + 512, b"hello from the peer");
        mailbox::put(base, VALUE, buf.addr());
        mailbox::put(base, VALUE + 1, buf.len());
        mailbox::put(base, STATE, 1);
        // Leave when told: the server reclaims everything on Exit.
        if mailbox::wait(base, COMMAND, 9, 10_000_000) {
            mailbox::put(base, STATE, 9);
            core::mem::forget(buf);
            core::mem::forget(mb);
            let _ = mm.exit();
        }
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
