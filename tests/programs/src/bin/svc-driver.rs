//! The MM service test's driver: faults and populate under the server's self-check, then a hostile client, then two clients that die; frames conserved throughout.
//!
//! The image (`tests/qemu/mm-service`) runs the server with `self_check`:
//! after every message it verifies every invariant and frame conservation
//! (`Server::check`), and stops the system if one breaks. This client:
//!
//! 1. maps, touches (demand faults), populates, protects, unmaps anonymous
//!    memory, with 2 MiB blocks, page blocks and vmalloc areas, checking
//!    its resident count after each step and the zones' free frames at the
//!    end of the phase against the start;
//! 2. lets the hostile client (`svc-hostile`) loose (grants it the
//!    mailbox) and waits for its verdict;
//! 3. lets each victim (`svc-victim`) take memory and die of a fatal fault,
//!    and checks that every frame it held came back;
//! 4. checks the zones' free frames against the start once more.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    extern crate alloc;

    use libmm::protocol::{Align, Gfp, MapFlags, Prot};
    use libmm::{Mm, RtTransport};
    use qemu_test_programs::Tester;
    use qemu_test_programs::mailbox::{self, COMMAND, STATE, VALUE};
    use rt::BootInfo;

    #[global_allocator]
    static HEAP: libmm::RtGlobalHeap = libmm::RtGlobalHeap::rt();

    const PAGE: u64 = 4096;

    /// Frames free in the zones or in the server's page-table pool: what
    /// the driver and its victims take and give back, counted whole (a
    /// chunk of page tables the pool no longer needs moves from the pool to
    /// the zones, which leaves this sum as it was).
    fn unheld(mm: &Mm<RtTransport>) -> u64 {
        mm.mem_info()
            .map_or(0, |m| m.free + m.zero_pool + m.page_tables)
    }

    fn resident(mm: &Mm<RtTransport>) -> u64 {
        mm.client_stats().map_or(u64::MAX, |s| s.resident_pages)
    }

    fn main(info: &'static BootInfo) {
        let mut t = Tester::new("mm-service");
        let Ok(mm) = Mm::from_boot_info(info) else {
            t.check("the MM endpoint", false);
            t.finish();
        };
        // Warm the GlobalAlloc up (its first use maps the heap's chunk and
        // metadata), so that the counts below are the test's alone.
        let warm: alloc::vec::Vec<u64> = (0..64).collect();
        let start = unheld(&mm);
        let r0 = resident(&mm);

        // ----- 1. faults and populate -----
        let a = mm.mmap(0, 8 << 20, Prot::READ_WRITE, MapFlags::default());
        t.check("map 8 MiB on demand", a.is_ok());
        if let Ok(a) = &a {
            for i in (0..2048).step_by(2) {
                let _ = rt::mem::write_u64(a.addr() + i * PAGE, i);
            }
            t.eq("1024 pages faulted in", resident(&mm) - r0, 1024);
            let sum: u64 = (0..2048)
                .step_by(2)
                .map(|i| rt::mem::read_u64(a.addr() + i * PAGE).unwrap_or(0))
                .sum();
            t.eq("their contents", sum, 2046 * 1024 / 2);
            t.check(
                "populate the rest",
                mm.mm_populate(a.addr(), 8 << 20).is_ok(),
            );
            t.eq("all 2048 resident", resident(&mm) - r0, 2048);
            t.check(
                "unmap the upper half",
                mm.munmap(a.addr() + (4 << 20), 4 << 20).is_ok(),
            );
            t.eq("1024 left", resident(&mm) - r0, 1024);
            t.check(
                "protect a part read-only",
                mm.mprotect(a.addr(), 1 << 20, Prot::READ).is_ok(),
            );
            t.eq(
                "read-only memory reads",
                rt::mem::read_u64(a.addr() + 2 * PAGE),
                Ok(2),
            );
        }
        drop(a);
        t.eq("everything unmapped", resident(&mm), r0);
        let p = mm.mmap(0, 16 << 20, Prot::READ_WRITE, MapFlags::POPULATE);
        t.check("populate 16 MiB at map time", p.is_ok());
        t.eq("4096 resident", resident(&mm) - r0, 4096);
        drop(p);
        let h = mm.mmap_aligned(
            0,
            8 << 20,
            Prot::READ_WRITE,
            MapFlags::HUGE.union(MapFlags::POPULATE),
            Align::LARGE,
        );
        t.check("8 MiB of 2 MiB blocks", h.is_ok());
        if let Ok(h) = &h {
            t.eq("2048 resident", resident(&mm) - r0, 2048);
            t.check(
                "split a block by protecting one page",
                mm.mprotect(h.addr() + PAGE, PAGE, Prot::READ).is_ok(),
            );
            t.check(
                "unmap a page of another block",
                mm.munmap(h.addr() + (4 << 20), PAGE).is_ok(),
            );
            t.eq("2047 resident", resident(&mm) - r0, 2047);
        }
        drop(h);
        let blocks: [_; 6] = core::array::from_fn(|o| mm.alloc_pages(o as u8, Gfp::ZERO).ok());
        t.eq(
            "alloc_pages of orders 0..6",
            blocks.iter().flatten().map(|b| b.count()).sum::<u64>(),
            63,
        );
        let v = mm.vmalloc(1 << 20);
        t.check("vmalloc 1 MiB", v.is_ok());
        drop(v);
        drop(blocks);
        t.eq("all freed", resident(&mm), r0);
        t.eq("the warm-up vector", warm.iter().sum::<u64>(), 63 * 32);
        t.eq(
            "phase 1: every frame back but what the driver's heap grew by",
            start - unheld(&mm),
            resident(&mm) - r0,
        );

        // ----- 2. the hostile client -----
        let shm = mm.shm_create(PAGE);
        let hostile_ok = match &shm {
            Ok(s) => {
                let m = s.map(0, Prot::READ_WRITE);
                let granted = s.grant(0x202, Prot::READ_WRITE).is_ok();
                let verdict = m.as_ref().map_or(0, |m| {
                    for _ in 0..100_000_000 {
                        if mailbox::get(m.addr(), STATE) != 0 {
                            break;
                        }
                        rt::yield_now();
                    }
                    mailbox::get(m.addr(), STATE)
                });
                granted && verdict == 1
            }
            Err(_) => false,
        };
        t.check(
            "the hostile client got an error for every abuse",
            hostile_ok,
        );
        drop(shm);

        // ----- 3. deaths -----
        for (badge, how) in [
            (0x203u64, "a write to read-only memory"),
            (0x204, "an access outside every region"),
        ] {
            let shm = mm.shm_create(PAGE);
            let Ok(shm) = shm else {
                t.check("mailbox", false);
                continue;
            };
            let Ok(m) = shm.map(0, Prot::READ_WRITE) else {
                t.check("mailbox map", false);
                continue;
            };
            let _ = shm.grant(badge, Prot::READ_WRITE);
            let ready = mailbox::wait(m.addr(), STATE, 1, 100_000_000);
            t.check("the victim took memory", ready);
            let held = mailbox::get(m.addr(), VALUE);
            let before = unheld(&mm);
            mailbox::put(m.addr(), COMMAND, 1);
            let now = mailbox::poll(100_000, || {
                let now = unheld(&mm);
                if now >= before + held {
                    Ok(now)
                } else {
                    Err(now)
                }
            })
            .unwrap_or_else(|now| now);
            rt::println!("victim {badge:#x} held {held} pages and died of {how}");
            t.eq("every frame it held came back", now - before, held);
            t.check("it did not run on", mailbox::get(m.addr(), STATE) == 1);
        }

        // ----- 4. the end -----
        t.eq(
            "at the end: every frame back but what the driver's heap grew by",
            start - unheld(&mm),
            resident(&mm) - r0,
        );
        t.finish();
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
