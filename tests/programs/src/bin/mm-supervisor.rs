//! The supervisor of MM clients: it reports a running client dead and checks that the server stops it and takes back every frame.
//!
//! Its badge is the one the server's manifest names as the supervisor: it
//! is no client (no quota, no memory of its own from the MM server) and
//! may only report deaths and read the global statistics. It waits until
//! the victim (`sup-victim`, badge 0x301) holds its memory, reports it
//! dead, and checks with `mem_info` that no client frame is left and that
//! every frame is accounted for; then that a second report is harmless,
//! that an unknown client is refused, and that it may do nothing else.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use libmm::protocol::{MapFlags, MmError, Prot};
    use libmm::{Error, Mm};
    use qemu_test_programs::{Tester, mailbox};
    use rt::BootInfo;

    // Linking needs an allocator; the supervisor allocates nothing (it is
    // no client: the MM server would give it no memory).
    #[global_allocator]
    static HEAP: libmm::RtGlobalHeap = libmm::RtGlobalHeap::rt();

    /// The victim's badge (see the test's manifest).
    const VICTIM: u64 = 0x301;

    fn main(info: &'static BootInfo) {
        let mut t = Tester::new("mm-supervisor");
        let Ok(mm) = Mm::from_boot_info(info) else {
            t.check("an MM endpoint", false);
            t.finish();
        };
        t.check("the supervisor may read mem_info", mm.mem_info().is_ok());
        t.check("and zone_stats", mm.zone_stats().is_ok());
        // The victim takes its memory (a populated MiB and more).
        let before = mailbox::poll(100_000, || match mm.mem_info() {
            Ok(m) if m.clients >= 256 + 64 => Ok(m),
            Ok(m) => Err(m),
            Err(_) => Err(Default::default()),
        });
        t.check("the victim took its memory", before.is_ok());
        let before = before.unwrap_or_else(|m| m);
        let held = before.clients;
        rt::println!("mm-supervisor: clients hold {held} frames; reporting 0x301 dead");
        t.check(
            "ClientDied for a running client",
            mm.client_died(VICTIM).is_ok(),
        );
        match mm.mem_info() {
            Ok(m) => {
                rt::println!("mm-supervisor: after: {m}");
                t.eq("no client frame left", m.clients, 0);
                t.check("every frame accounted for", m.conserved());
                t.eq(
                    "every frame it held is free again (counting the page-table pool)",
                    m.free + m.zero_pool + m.page_tables,
                    before.free + before.zero_pool + before.page_tables + held,
                );
            }
            Err(_) => t.check("mem_info after the report", false),
        }
        t.check(
            "a second report is harmless (idempotent)",
            mm.client_died(VICTIM).is_ok(),
        );
        t.eq(
            "an unknown client is refused",
            mm.client_died(0x999),
            Err(Error::Mm(MmError::NoSuchHandle)),
        );
        t.eq(
            "the supervisor is no client: it may not map memory",
            mm.mmap(0, 4096, Prot::READ_WRITE, MapFlags::default())
                .err(),
            Some(Error::Mm(MmError::PermissionDenied)),
        );
        t.finish();
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
