//! The MM service's QEMU benchmarks: demand faults, batched populate, the client heap's kmalloc, DMA pool blocks.
//!
//! Under `-icount shift=0` the virtual counter ticks once per 16 guest
//! instructions, so `ticks * 16 / n` over `n` operations is instructions
//! per operation, everything on the way included: the client's loop, the
//! kernel, the MM server (which outranks the client, so its idle work —
//! zeroing frames for its zero pool — falls inside the measured time too).
//! Figures, each printed as a `BENCH` line for `cargo xtask bench`:
//!
//! - `fault.anon4k.qemu.instructions`: a store to a page of anonymous
//!   memory that is not mapped yet, from the faulting access to its retry:
//!   the fault IPC, the server allocating a frame, zeroing it (the frames
//!   are recycled: a first pass touched and unmapped them, so none is
//!   known zero) and mapping it, the reply, the retried store;
//!   `fault.anon4k.fresh.qemu.instructions` the same on frames fresh from
//!   their retype (known zero: no zeroing);
//! - `populate.anon256m.qemu.instructions_per_page`: one `Map` with
//!   `POPULATE` of 256 MiB, per 4 KiB page, on fresh frames;
//!   `populate.anon256m.recycled.qemu.instructions_per_page` the same
//!   again after unmapping (every frame zeroed);
//! - `libmm.kmalloc64.qemu.instructions`: a `kmalloc(64)`/`kfree` pair on
//!   the client heap (no IPC);
//! - `dmapool.alloc_free.64.qemu.instructions`: a `dma_pool_alloc` /
//!   `dma_pool_free` pair of 64-byte blocks (no IPC).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use libmm::heap::{Heap, HeapConfig};
    use libmm::memory::RtMemory;
    use libmm::protocol::{MapFlags, Prot};
    use libmm::{DmaPools, Mm};
    use qemu_test_programs::counter;

    #[global_allocator]
    static HEAP: libmm::RtGlobalHeap = libmm::RtGlobalHeap::rt();

    const PAGE: u64 = 4096;

    /// Prints `ticks` over `n` operations as instructions per operation.
    fn report(name: &str, ticks: u64, n: u64, unit: &str) {
        let tenths = ticks * 16 * 10 / n;
        rt::println!("BENCH {name} {}.{} {unit}", tenths / 10, tenths % 10);
    }

    /// Times a store to each of `pages` pages from `addr`.
    fn touch(addr: u64, pages: u64) -> u64 {
        let start = counter();
        for i in 0..pages {
            let _ = rt::mem::write_u64(addr + i * PAGE, i);
        }
        counter() - start
    }

    /// The runtime's memcpy and memset (every struct copy of the server
    /// and of this program goes through them) and its zeroing (`dc zva`,
    /// which zeroes recycled frames) against byte models. (Out of line, so
    /// that the measured loops of `main` are compiled as without it.)
    #[inline(never)]
    fn self_tests() -> bool {
        let mut ok = true;
        if let Err(case) = rt::mem::memfns_self_test() {
            rt::println!("mm-bench: memcpy/memset wrong at (len, src, dst) {case:?}");
            ok = false;
        }
        if let Err(case) = rt::mem::zero_self_test() {
            rt::println!("mm-bench: zero wrong at (len, offset) {case:?}");
            ok = false;
        }
        ok
    }

    fn main(info: &'static rt::BootInfo) {
        let Ok(mm) = Mm::from_boot_info(info) else {
            rt::println!("mm-bench: no MM endpoint");
            rt::debug_halt(1);
        };
        let mut ok = self_tests();

        // Demand faults: fresh frames, then recycled ones.
        const FAULTS: u64 = 4096;
        match mm.mmap(0, FAULTS * PAGE, Prot::READ_WRITE, MapFlags::default()) {
            Ok(m) => {
                let t = touch(m.addr(), FAULTS);
                report(
                    "fault.anon4k.fresh.qemu.instructions",
                    t,
                    FAULTS,
                    "instructions",
                );
                drop(m);
            }
            Err(e) => {
                rt::println!("mm-bench: map: {e:?}");
                ok = false;
            }
        }
        match mm.mmap(0, FAULTS * PAGE, Prot::READ_WRITE, MapFlags::default()) {
            Ok(m) => {
                let t = touch(m.addr(), FAULTS);
                report("fault.anon4k.qemu.instructions", t, FAULTS, "instructions");
                let (_, faults) = mm
                    .client_stats()
                    .map_or((0, 0), |s| (s.resident_pages, s.faults));
                ok &= faults == 2 * FAULTS;
                drop(m);
            }
            Err(_) => ok = false,
        }

        // Populate 256 MiB in one request: fresh frames, then recycled.
        const POP: u64 = 256 << 20;
        for name in [
            "populate.anon256m.qemu.instructions_per_page",
            "populate.anon256m.recycled.qemu.instructions_per_page",
        ] {
            let start = counter();
            let m = mm.mmap(0, POP, Prot::READ_WRITE, MapFlags::POPULATE);
            let t = counter() - start;
            match m {
                Ok(m) => {
                    report(name, t, POP / PAGE, "instructions");
                    ok &= rt::mem::read_u64(m.addr() + POP - 8) == Ok(0);
                    let _ = rt::mem::write_u64(m.addr() + POP - 8, 1);
                }
                Err(e) => {
                    rt::println!("mm-bench: populate: {e:?}");
                    ok = false;
                }
            }
        }

        // kmalloc(64) / kfree on the client heap.
        let mut heap = Heap::new(mm.clone(), RtMemory, HeapConfig::default());
        const N: u64 = 100_000;
        for _ in 0..1000 {
            if let Ok(a) = heap.kmalloc(64) {
                let _ = heap.kfree(a);
            }
        }
        let start = counter();
        for _ in 0..N {
            match heap.kmalloc(64) {
                Ok(a) => {
                    let _ = heap.kfree(a);
                }
                Err(_) => ok = false,
            }
        }
        report(
            "libmm.kmalloc64.qemu.instructions",
            counter() - start,
            N,
            "instructions",
        );

        // DMA pool blocks of 64 bytes.
        let mut pools = DmaPools::new(mm.clone(), RtMemory);
        match pools.dma_pool_create("bench", 64, 64, 0) {
            Ok(pool) => {
                for _ in 0..1000 {
                    if let Ok(b) = pools.dma_pool_alloc(pool) {
                        let _ = pools.dma_pool_free(pool, b.vaddr, b.bus);
                    }
                }
                let start = counter();
                for _ in 0..N {
                    match pools.dma_pool_alloc(pool) {
                        Ok(b) => {
                            let _ = pools.dma_pool_free(pool, b.vaddr, b.bus);
                        }
                        Err(_) => ok = false,
                    }
                }
                report(
                    "dmapool.alloc_free.64.qemu.instructions",
                    counter() - start,
                    N,
                    "instructions",
                );
            }
            Err(e) => {
                rt::println!("mm-bench: dma_pool_create: {e:?}");
                ok = false;
            }
        }

        if ok {
            rt::println!("TEST_PASS mm-bench");
            rt::debug_halt(0);
        }
        rt::println!("TEST_FAIL mm-bench");
        rt::debug_halt(1);
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
