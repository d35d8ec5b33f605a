//! The demo's victim client: takes memory, reports it in the mailbox, then touches its guard page when told and is killed.
//!
//! It prints nothing; the MM server reports the fatal fault and reclaims
//! everything it held (see `demo.rs`).
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
        let Ok(mb) = mailbox::attach(|h| mm.shm_map(h, 0, Prot::READ_WRITE)) else {
            return;
        };
        let base = mb.addr();
        // Memory of three kinds: populated anonymous, vmalloc, a Vec.
        let anon = mm.mmap(0, 1 << 20, Prot::READ_WRITE, MapFlags::POPULATE);
        let area = mm.vmalloc(64 << 10);
        let v: alloc::vec::Vec<u64> = (0..4096).collect();
        let guard = mm.mmap(0, 4096, Prot::NONE, MapFlags::GUARD);
        let (Ok(_anon), Ok(_area), Ok(guard)) = (anon, area, guard) else {
            mailbox::put(base, STATE, 2);
            return;
        };
        let held = mm.client_stats().map_or(0, |s| s.resident_pages);
        mailbox::put(base, VALUE, held);
        mailbox::put(base, VALUE + 1, v.len() as u64);
        mailbox::put(base, STATE, 1);
        if mailbox::wait(base, COMMAND, 1, 10_000_000) {
            // The guard page: a fatal fault. The server kills us here.
            let _ = rt::mem::read_u64(guard.addr());
        }
        mailbox::put(base, STATE, 3);
    }

    extern crate alloc;

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
