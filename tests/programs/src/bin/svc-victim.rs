//! A client of the MM server that takes memory and then dies of a fatal fault, for the service test's death checks.
//!
//! Its badge says how: 0x203 writes to memory it made read-only, 0x204
//! reads an address outside every region. It waits for its mailbox
//! (shared object 2 or 3 from `svc-driver`), takes memory of every kind it
//! may (populated anonymous memory, demand faults, vmalloc, shared memory,
//! its heap), reports the pages it holds, and faults when told.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    extern crate alloc;

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
        let badge = info.find("mm").map_or(0, |d| d.value);
        let Ok(mb) = mailbox::attach(|h| mm.shm_map(h, 0, Prot::READ_WRITE)) else {
            return;
        };
        let base = mb.addr();
        let pop = mm.mmap(0, 2 << 20, Prot::READ_WRITE, MapFlags::POPULATE);
        let lazy = mm.mmap(0, 1 << 20, Prot::READ_WRITE, MapFlags::default());
        let area = mm.vzalloc(32 << 10);
        let own = mm.shm_create(16 << 10);
        let v: alloc::vec::Vec<u32> = (0..10_000).collect();
        let (Ok(pop), Ok(lazy), Ok(_area), Ok(own)) = (pop, lazy, area, own) else {
            mailbox::put(base, STATE, 2);
            return;
        };
        let _own_map = own.map(0, Prot::READ_WRITE);
        for i in 0..64 {
            let _ = rt::mem::write_u64(lazy.addr() + i * 4096, i);
        }
        let ro = pop.mprotect(Prot::READ);
        let held = mm.client_stats().map_or(0, |s| s.resident_pages);
        mailbox::put(base, VALUE, held);
        mailbox::put(base, VALUE + 1, v.len() as u64 + u64::from(ro.is_ok()));
        mailbox::put(base, STATE, 1);
        if mailbox::wait(base, COMMAND, 1, 10_000_000) {
            if badge == 0x203 {
                // Write to read-only memory: a permission fault.
                let _ = rt::mem::write_u64(pop.addr(), 1);
            } else {
                // Outside every region.
                let _ = rt::mem::read_u64(0x7000_0000_0000);
            }
        }
        mailbox::put(base, STATE, 3);
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
