//! A client of the MM server that takes memory and then runs on, until its supervisor reports it dead.
//!
//! It maps and writes 1 MiB (populated) and 256 KiB more by demand faults,
//! checks that it may not report a death itself, prints what it holds and
//! then yields forever: only the server's reaction to the supervisor's
//! `ClientDied` (stopping its thread) ends it.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use libmm::Mm;
    use libmm::protocol::{MapFlags, Prot};
    use rt::BootInfo;

    #[global_allocator]
    static HEAP: libmm::RtGlobalHeap = libmm::RtGlobalHeap::rt();

    fn main(info: &'static BootInfo) {
        let Ok(mm) = Mm::from_boot_info(info) else {
            return;
        };
        let badge = info.find("mm").map_or(0, |d| d.value);
        let pop = mm.mmap(0, 1 << 20, Prot::READ_WRITE, MapFlags::POPULATE);
        let lazy = mm.mmap(0, 256 << 10, Prot::READ_WRITE, MapFlags::default());
        let (Ok(pop), Ok(lazy)) = (pop, lazy) else {
            rt::println!("sup-victim: no memory");
            return;
        };
        for i in 0..64 {
            let _ = rt::mem::write_u64(pop.addr() + i * 4096, i);
            let _ = rt::mem::write_u64(lazy.addr() + i * 4096, i);
        }
        // Only the supervisor reports deaths.
        let own = mm.client_died(badge);
        let held = mm.client_stats().map_or(0, |s| s.resident_pages);
        rt::println!("sup-victim: holds {held} pages; reporting its own death: {own:?}");
        // The mappings stay: what the supervisor's report must take back.
        core::mem::forget((pop, lazy));
        loop {
            rt::yield_now();
        }
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
