//! The DMA test's driver: pools of every shape, bus addresses checked against the kernel's frames, checking mode, leaks, coherent buffers below 4 GiB, clients that die, exit or are refused.
//!
//! The image (`tests/qemu/dma`) runs the MM server with this client
//! (granted pages and DMA) and three helpers (`dma-client`). The driver:
//!
//! 1. reads the zones: DMA32 below 4 GiB, Normal above (empty on a machine
//!    with less RAM), and checks that an anonymous page comes from above
//!    4 GiB when the Normal zone has memory, so that "below 4 GiB" below
//!    says something;
//! 2. checks that `dma_pool_create` refuses Linux's bad shapes;
//! 3. for each of 17 shapes (size, align, boundary) — Linux's
//!    `dmapool_test.c` ones and the edge cases of `dma_pool_create` —
//!    allocates hundreds of blocks and checks every one: aligned in both
//!    address spaces, within its boundary window in both, its bus range
//!    below 4 GiB, **and every page of it at the bus address the kernel
//!    gives** (below); blocks written at both ends and read back (no two
//!    overlap), recycled blocks zeroed by `dma_pool_zalloc`, one chunk
//!    request per chunk, every chunk given back by `dma_pool_destroy`;
//! 4. tests that checker with deliberate mismatches;
//! 5. checking mode: a double free and every kind of bogus free refused, a
//!    write after free found;
//! 6. a pool destroyed with a block live: the leak reported, its chunk
//!    kept (and still at its bus address) until released;
//! 7. coherent buffers: alignment, contiguity, refusals; 64 MiB of them,
//!    every page's frame below 4 GiB, taken from the DMA32 zone;
//! 8. the helpers, one after the other: `victim` (managed pools) dies of a
//!    fatal fault and `leaver` (a managed pool with blocks live) exits —
//!    every frame of each comes back to the zones — and `plain`, not
//!    granted DMA, is refused;
//! 9. frame conservation over the whole run; then the QEMU benchmarks of
//!    `dma_pool_alloc`/`dma_pool_free` pairs of 16, 256 and 4096 bytes
//!    (`BENCH` lines, read by `cargo xtask bench` from the `[[bench]]` run).
//!
//! # Bus addresses, as the kernel knows them
//!
//! The client holds no frame caps; the server does. It answers
//! `follow_pfn(va)` with `Page_GetAddress` invoked on the very cap that
//! maps `va` in the client (not from its own records, which it checks
//! against the kernel's answer), so `follow_pfn(page) * 4096 + offset ==
//! bus` checks the bus address the pool handed out (the server's record
//! of the chunk, plus the block's offset) against the frame the kernel
//! really mapped there. The checker (`Kernel::check`) does that for
//! every page a block or buffer touches, and is itself tested: a bus
//! address a page off, 16 bytes off, another chunk's, and an unmapped
//! address must all be caught.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    extern crate alloc;

    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    use libmm::dmapool::{DestroyError, DmaBlock, DmaError, DmaPoolError, POOL_POISON_FREED};
    use libmm::memory::RtMemory;
    use libmm::protocol::{Align, MapFlags, MmError, Prot, ZoneInfo};
    use libmm::{DmaPools, Error, Mm, RtTransport};
    use qemu_test_programs::mailbox::{self, COMMAND, STATE, VALUE};
    use qemu_test_programs::{Tester, counter};
    use rt::BootInfo;

    #[global_allocator]
    static HEAP: libmm::RtGlobalHeap = libmm::RtGlobalHeap::rt();

    const PAGE: u64 = 4096;
    /// The end of the DMA32 zone: 4 GiB.
    const DMA32_END: u64 = 1 << 32;
    /// Where RAM starts on QEMU virt.
    const RAM_START: u64 = 0x4000_0000;
    /// The most bytes of blocks one shape allocates.
    const SHAPE_BYTES: u64 = 8 << 20;

    type MmRt = Mm<RtTransport>;
    type Pools = DmaPools<RtTransport, RtMemory>;

    /// Pool shapes (size, align, boundary) that `dma_pool_create` accepts:
    /// `dmapool_test.c`'s and its edge cases.
    const SHAPES: [(u64, u64, u64); 17] = [
        (1, 0, 0),             // rounded up to the 16-byte minimum block
        (16, 16, 0),           // dmapool_test
        (16, 0, 16),           // a boundary equal to the minimum block
        (64, 64, 0),           // dmapool_test
        (68, 32, 4096),        // dmapool_test: 96-byte blocks, 42 a page
        (100, 32, 128),        // rounded up to exactly the boundary
        (200, 8, 1024),        // four 1 KiB windows a page, gaps at their ends
        (256, 256, 0),         // dmapool_test
        (1024, 1024, 0),       // dmapool_test
        (1500, 512, 2048),     // one block a window, a 512-byte gap each
        (4096, 4096, 0),       // dmapool_test: one block a page
        (4096, 0, 4096),       // block = boundary = page
        (6000, 0, 0),          // blocks larger than a page
        (6000, 8, 8192),       // ... within an 8 KiB boundary
        (64, 65536, 0),        // alignment above a page: 64 KiB blocks
        (100_000, 0, 131_072), // 25-page chunks in 128 KiB windows
        (4 << 20, 4 << 20, 0), // the largest block, 4 MiB aligned
    ];

    /// Shapes `dma_pool_create` must refuse, as Linux does: (size, align,
    /// boundary, what).
    const BAD_SHAPES: [(u64, u64, u64, &str); 6] = [
        (0, 0, 0, "a zero size"),
        (64, 48, 0, "an alignment not a power of two"),
        (64, 0, 1000, "a boundary not a power of two"),
        (8, 0, 8, "a boundary below the 16-byte minimum block"),
        (
            100,
            64,
            64,
            "a boundary below the size rounded up to the alignment",
        ),
        ((4 << 20) + 1, 0, 0, "a block above 4 MiB"),
    ];

    /// Why a bus address is wrong.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum BusFault {
        /// Nothing is mapped at `va`.
        NotMapped { va: u64 },
        /// The byte at `va` claims bus address `bus`; the kernel's frame
        /// there puts it at `kernel`.
        Mismatch { va: u64, bus: u64, kernel: u64 },
    }

    /// The kernel's view of this client's pages: the physical address of
    /// the frame mapped at each page, from `follow_pfn` (answered by the
    /// server with `Page_GetAddress` on the cap that maps the page),
    /// remembered per page until [`Kernel::forget`].
    struct Kernel<'a> {
        mm: &'a MmRt,
        frames: BTreeMap<u64, u64>,
        /// `follow_pfn` requests made.
        asked: u64,
    }

    impl<'a> Kernel<'a> {
        fn new(mm: &'a MmRt) -> Self {
            Kernel {
                mm,
                frames: BTreeMap::new(),
                asked: 0,
            }
        }

        /// The physical address of the frame mapped at `page`.
        fn frame(&mut self, page: u64) -> Option<u64> {
            if let Some(&f) = self.frames.get(&page) {
                return Some(f);
            }
            self.asked += 1;
            let f = self.mm.follow_pfn(page).ok()?.checked_mul(PAGE)?;
            self.frames.insert(page, f);
            Some(f)
        }

        /// Checks that each byte of `[vaddr, vaddr + len)` is at bus
        /// address `bus` plus its offset: page by page, against the frame
        /// the kernel has mapped there.
        fn check(&mut self, vaddr: u64, bus: u64, len: u64) -> Result<(), BusFault> {
            let mut off = 0;
            while off < len {
                let va = vaddr + off;
                let page = va & !(PAGE - 1);
                let frame = self.frame(page).ok_or(BusFault::NotMapped { va })?;
                let kernel = frame + (va - page);
                if kernel != bus + off {
                    return Err(BusFault::Mismatch {
                        va,
                        bus: bus + off,
                        kernel,
                    });
                }
                off += PAGE - (va - page);
            }
            Ok(())
        }

        /// Forgets every page (their chunks were given back).
        fn forget(&mut self) {
            self.frames.clear();
        }
    }

    fn zones(mm: &MmRt) -> Vec<ZoneInfo> {
        mm.zone_stats().map(|z| z.0.to_vec()).unwrap_or_default()
    }

    fn zone(z: &[ZoneInfo], index: u8) -> ZoneInfo {
        z.iter()
            .find(|z| z.zone == index)
            .copied()
            .unwrap_or_default()
    }

    /// Frames of coherent DMA memory the server holds for this client
    /// (pool chunks and coherent buffers), by its own accounting.
    fn dma_held(mm: &MmRt) -> u64 {
        mm.client_stats().map_or(u64::MAX, |s| s.dma_pages)
    }

    /// Whether `[a, a + len)` stays in one `boundary` window (0: none).
    fn within(a: u64, len: u64, boundary: u64) -> bool {
        boundary == 0 || a / boundary == (a + len - 1) / boundary
    }

    /// Whether every byte of `[addr, addr + len)` is zero.
    fn all_zero(addr: u64, len: u64) -> bool {
        let mut buf = [0u8; 256];
        let mut off = 0;
        while off < len {
            let n = (len - off).min(256) as usize;
            if rt::mem::read_bytes(addr + off, &mut buf[..n]).is_err()
                || buf[..n].iter().any(|&b| b != 0)
            {
                return false;
            }
            off += n as u64;
        }
        true
    }

    /// The variant of a pool error, without its addresses (which differ
    /// from run to run of a changed program).
    fn kind(e: &DmaError) -> &'static str {
        match e {
            DmaError::NotGranted => "NotGranted",
            DmaError::Server(_) => "Server",
            DmaError::Pool(p) => match p {
                DmaPoolError::ZeroSize => "ZeroSize",
                DmaPoolError::BadAlign { .. } => "BadAlign",
                DmaPoolError::BadBoundary { .. } => "BadBoundary",
                DmaPoolError::BoundaryTooSmall { .. } => "BoundaryTooSmall",
                DmaPoolError::TooLarge { .. } => "TooLarge",
                DmaPoolError::NotInPool { .. } => "NotInPool",
                DmaPoolError::WrongPool { .. } => "WrongPool",
                DmaPoolError::Gap { .. } => "Gap",
                DmaPoolError::Interior { .. } => "Interior",
                DmaPoolError::BusMismatch { .. } => "BusMismatch",
                DmaPoolError::NeverAllocated { .. } => "NeverAllocated",
                DmaPoolError::DoubleFree { .. } => "DoubleFree",
                DmaPoolError::Corrupted(_) => "Corrupted",
                _ => "another pool error",
            },
        }
    }

    fn kind_of<T>(r: &Result<T, DmaError>) -> &'static str {
        match r {
            Ok(_) => "Ok",
            Err(e) => kind(e),
        }
    }

    fn main(info: &'static BootInfo) {
        let mut t = Tester::new("dma");
        let Ok(mm) = Mm::from_boot_info(info) else {
            t.check("the MM endpoint", false);
            t.finish();
        };
        // Warm the GlobalAlloc up (its first use maps the heap).
        let warm: Vec<u64> = (0..64).collect();
        let m0 = mm.mem_info().unwrap_or_default();
        t.check("frames conserved at the start", m0.conserved());
        zones_and_dma32(&mut t, &mm);
        shapes(&mut t, &mm);
        checker(&mut t, &mm);
        checking_mode(&mut t, &mm);
        leaks(&mut t, &mm);
        coherent(&mut t, &mm);
        bulk_dma32(&mut t, &mm);
        helpers(&mut t, &mm);

        t.eq("the warm-up vector", warm.iter().sum::<u64>(), 63 * 32);
        let m1 = mm.mem_info().unwrap_or_default();
        let me = mm.client_stats().unwrap_or_default();
        rt::println!(
            "at the end: {} frames, {} free, {} pre-zeroed, {} held by clients (the driver: {}, {} of them DMA), {} shared, {} page tables, {} reserved",
            m1.total,
            m1.free,
            m1.zero_pool,
            m1.clients,
            me.resident_pages,
            me.dma_pages,
            m1.shared,
            m1.page_tables,
            m1.reserved
        );
        t.check("  frames conserved", m1.conserved() && m1.total == m0.total);
        t.eq(
            "  every client frame is the driver's, none DMA, no shared object left",
            (m1.clients, me.dma_pages, m1.shared),
            (me.resident_pages, 0, 0),
        );
        bench(&mut t, &mm);
        t.finish();
    }

    // ----- 1. zones --------------------------------------------------------

    fn zones_and_dma32(t: &mut Tester, mm: &MmRt) {
        let z = zones(mm);
        let (dma32, normal) = (zone(&z, 0), zone(&z, 1));
        rt::println!(
            "zones: DMA32 {} frames (below 4 GiB), Normal {} frames (above)",
            dma32.managed,
            normal.managed
        );
        t.check("the DMA32 zone has memory", dma32.managed > 0);
        let anon = mm.mmap(0, PAGE, Prot::READ_WRITE, MapFlags::POPULATE);
        let mut kernel = Kernel::new(mm);
        let high = anon
            .as_ref()
            .ok()
            .and_then(|a| kernel.frame(a.addr()))
            .map(|f| f >= DMA32_END);
        rt::println!(
            "an anonymous page's frame is above 4 GiB: {high:?} (the Normal zone has memory: {})",
            normal.managed > 0
        );
        t.eq(
            "anonymous memory comes from above 4 GiB exactly when there is memory there",
            high,
            Some(normal.managed > 0),
        );
    }

    // ----- 2. and 3. shapes ------------------------------------------------

    fn shapes(t: &mut Tester, mm: &MmRt) {
        let mut p: Pools = DmaPools::new(mm.clone(), RtMemory);
        for (size, align, boundary, what) in BAD_SHAPES {
            let r = p.dma_pool_create("bad", size, align, boundary);
            rt::println!(
                "dma_pool_create({size}, {align}, {boundary}) with {what}: {}",
                kind_of(&r)
            );
            t.check("refused", r.is_err());
        }
        for (size, align, boundary) in SHAPES {
            shape(t, mm, &mut p, size, align, boundary);
        }
        let c = p.chunks().stats();
        t.eq(
            "every chunk of every shape given back",
            (c.held, c.free_failures),
            (0, 0),
        );
    }

    /// How many blocks a shape allocates: at least two chunks and one
    /// block, at least 200, at most [`SHAPE_BYTES`] of blocks (but 3).
    fn blocks_for(block: u64, per_chunk: u64) -> u64 {
        (2 * per_chunk + 1).max(200).min(SHAPE_BYTES / block).max(3)
    }

    fn shape(t: &mut Tester, mm: &MmRt, p: &mut Pools, size: u64, align: u64, boundary: u64) {
        let Ok(pool) = p.dma_pool_create("shape", size, align, boundary) else {
            t.check("dma_pool_create", false);
            return;
        };
        let Ok(st) = p.pool_stats(pool) else {
            t.check("pool_stats", false);
            return;
        };
        let block = st.block_size;
        let n = blocks_for(block, st.blocks_per_chunk);
        let asked0 = p.chunks().stats().allocated;
        let mut blocks: Vec<DmaBlock> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match p.dma_pool_alloc(pool) {
                Ok(b) => blocks.push(b),
                Err(_) => break,
            }
        }
        let chunks = p.pool_stats(pool).map_or(0, |s| s.chunks);
        let asked = p.chunks().stats().allocated - asked0;
        rt::println!(
            "shape {size}/{align}/{boundary}: {block}-byte blocks, {} a chunk of {} bytes; {} blocks in {chunks} chunks, {asked} chunk requests",
            st.blocks_per_chunk,
            st.chunk_size,
            blocks.len()
        );
        let expect_chunks = n.div_ceil(st.blocks_per_chunk);
        t.check(
            "  all allocated, one request per chunk",
            blocks.len() as u64 == n && chunks == expect_chunks && asked == chunks,
        );
        let a = align.max(1);
        let placed = blocks.iter().all(|b| {
            b.vaddr % a == 0
                && b.bus % a == 0
                && within(b.vaddr, block, boundary)
                && within(b.bus, block, boundary)
                && b.bus >= RAM_START
                && b.bus + block <= DMA32_END
        });
        t.check(
            "  aligned, no boundary crossed (virtual and bus), below 4 GiB",
            placed,
        );
        let mut kernel = Kernel::new(mm);
        let bad = blocks
            .iter()
            .map(|b| kernel.check(b.vaddr, b.bus, block))
            .find(|r| r.is_err());
        if let Some(Err(e)) = bad {
            rt::println!("  {e:x?}");
        }
        rt::println!(
            "  {} pages' frames asked of the kernel for their bus addresses",
            kernel.asked
        );
        t.check(
            "  every page of every block at its bus address",
            bad.is_none(),
        );
        // Each block written at both ends, then all read back.
        for (i, b) in blocks.iter().enumerate() {
            let tag = size << 32 | i as u64;
            let _ = rt::mem::write_u64(b.vaddr, tag);
            let _ = rt::mem::write_u64(b.vaddr + block - 8, !tag);
        }
        let intact = blocks.iter().enumerate().all(|(i, b)| {
            let tag = size << 32 | i as u64;
            rt::mem::read_u64(b.vaddr) == Ok(tag)
                && rt::mem::read_u64(b.vaddr + block - 8) == Ok(!tag)
        });
        let mut freed = true;
        for b in &blocks {
            freed &= p.dma_pool_free(pool, b.vaddr, b.bus).is_ok();
        }
        // Recycled blocks (they hold the tags) come back zeroed.
        let again = blocks.len().min(64);
        let mut zeroed = true;
        let mut z = Vec::with_capacity(again);
        for _ in 0..again {
            match p.dma_pool_zalloc(pool) {
                Ok(b) => {
                    zeroed &= all_zero(b.vaddr, block.min(4096));
                    z.push(b);
                }
                Err(_) => zeroed = false,
            }
        }
        for b in z {
            freed &= p.dma_pool_free(pool, b.vaddr, b.bus).is_ok();
        }
        freed &= p.alloc_free_pairs(pool, 1000).is_ok();
        t.check(
            "  no two blocks overlap, recycled ones zeroed by zalloc, all freed",
            intact && zeroed && freed && p.chunks().stats().allocated - asked0 == chunks,
        );
        let held = dma_held(mm);
        let destroyed = p.dma_pool_destroy(pool).is_ok();
        t.eq(
            "  destroyed: its chunks' pages back to the server",
            (destroyed, held.wrapping_sub(dma_held(mm))),
            (true, chunks * st.chunk_size / PAGE),
        );
    }

    // ----- 4. the checker --------------------------------------------------

    fn checker(t: &mut Tester, mm: &MmRt) {
        let mut p: Pools = DmaPools::new(mm.clone(), RtMemory);
        let Ok(pool) = p.dma_pool_create("checker", 512, 512, 0) else {
            t.check("dma_pool_create", false);
            return;
        };
        // Three chunks of eight blocks.
        let blocks: Vec<DmaBlock> = (0..24)
            .filter_map(|_| p.dma_pool_alloc(pool).ok())
            .collect();
        if blocks.len() != 24 {
            t.check("24 blocks", false);
            return;
        }
        let (a, other) = (blocks[0], blocks[16]);
        let mut k = Kernel::new(mm);
        t.check(
            "the checker passes a true bus address",
            k.check(a.vaddr, a.bus, 512).is_ok() && k.check(other.vaddr, other.bus, 512).is_ok(),
        );
        let off_page = k.check(a.vaddr, a.bus + PAGE, 512);
        t.check(
            "the checker catches a bus address a page off",
            matches!(off_page, Err(BusFault::Mismatch { .. })),
        );
        let off_16 = k.check(a.vaddr, a.bus + 16, 512);
        t.check(
            "the checker catches a bus address 16 bytes off",
            matches!(off_16, Err(BusFault::Mismatch { .. })),
        );
        let swapped = k.check(a.vaddr, other.bus, 512);
        t.check(
            "the checker catches another chunk's bus address",
            matches!(swapped, Err(BusFault::Mismatch { .. })),
        );
        for b in &blocks {
            let _ = p.dma_pool_free(pool, b.vaddr, b.bus);
        }
        let _ = p.dma_pool_destroy(pool);
        k.forget();
        let gone = k.check(a.vaddr, a.bus, 512);
        t.check(
            "the checker catches an address no longer mapped",
            gone == Err(BusFault::NotMapped { va: a.vaddr }),
        );
    }

    // ----- 5. checking mode ------------------------------------------------

    fn checking_mode(t: &mut Tester, mm: &MmRt) {
        let mut p: Pools = DmaPools::new_checking(mm.clone(), RtMemory);
        // Two 1536-byte blocks a page, each in its 2 KiB window followed
        // by a 512-byte gap.
        let (Ok(pool), Ok(other)) = (
            p.dma_pool_create("chk", 1500, 512, 2048),
            p.dma_pool_create("other", 64, 64, 0),
        ) else {
            t.check("dma_pool_create", false);
            return;
        };
        let got: Vec<DmaBlock> = (0..3).filter_map(|_| p.dma_pool_alloc(pool).ok()).collect();
        let x = p.dma_pool_alloc(other);
        let (Some(&a), Some(&b), Some(&c), Ok(x)) = (got.first(), got.get(1), got.get(2), x) else {
            t.check("blocks", false);
            return;
        };
        let poisoned = {
            let mut bytes = [0u8; 1536];
            let freed = p.dma_pool_free(pool, a.vaddr, a.bus).is_ok();
            freed
                && rt::mem::read_bytes(a.vaddr, &mut bytes).is_ok()
                && bytes.iter().all(|&v| v == POOL_POISON_FREED)
        };
        t.check("a freed block is poisoned in memory", poisoned);
        let frees: [(&str, u64, u64, &str); 7] = [
            ("a double free", a.vaddr, a.bus, "DoubleFree"),
            ("an address in no pool", 0x7000_0000_0000, 0, "NotInPool"),
            ("another pool's block", x.vaddr, x.bus, "WrongPool"),
            (
                "an address inside a block",
                b.vaddr + 64,
                b.bus + 64,
                "Interior",
            ),
            ("the gap after a block", b.vaddr + 1536, b.bus + 1536, "Gap"),
            (
                "a block never handed out",
                c.vaddr + 2048,
                c.bus + 2048,
                "NeverAllocated",
            ),
            ("a wrong bus address", b.vaddr, b.bus + 2048, "BusMismatch"),
        ];
        for (what, vaddr, bus, want) in frees {
            let r = p.dma_pool_free(pool, vaddr, bus);
            rt::println!("checking mode: dma_pool_free of {what}: {}", kind_of(&r));
            t.eq("  refused as such", kind_of(&r), want);
        }
        t.check(
            "  the pools are intact",
            p.check().is_ok() && p.check_poison().is_ok(),
        );
        // A write after free: found by the poison check, and the block is
        // never handed out again.
        let _ = rt::mem::write_u64(a.vaddr + 256, 0);
        let scan = p.check_poison();
        let next = p.dma_pool_alloc(pool);
        rt::println!(
            "checking mode: a write after free: check_poison {}, the next dma_pool_alloc {}",
            kind_of(&scan),
            kind_of(&next)
        );
        let fresh = p.dma_pool_alloc(pool);
        t.check(
            "  found, and the block quarantined",
            kind_of(&scan) == "Corrupted"
                && kind_of(&next) == "Corrupted"
                && fresh.is_ok_and(|f| f.vaddr != a.vaddr)
                && p.pool_stats(pool).is_ok_and(|s| s.blocks_quarantined == 1),
        );
        let _ = p.dma_pool_free(other, x.vaddr, x.bus);
        let _ = p.dma_pool_destroy(other);
        let leaked = p.dma_pool_destroy(pool);
        t.check(
            "  destroyed with its live blocks reported",
            matches!(leaked, Err(DestroyError::Leaked(ref r)) if r.leaked.len() == 3),
        );
        // The device is done with them: released, their chunks go back.
        let held = dma_held(mm);
        let quarantined = p.stats().chunks_quarantined;
        let mut released = 0;
        if let Err(DestroyError::Leaked(r)) = &leaked {
            for b in &r.leaked {
                released += u64::from(p.release_leaked(b.vaddr, b.bus) == Ok(true));
            }
        }
        let s = p.stats();
        t.check(
            "  its leaked blocks released, their chunks back to the server",
            quarantined > 0
                && released == quarantined
                && s.chunks_quarantined == 0
                && s.chunks_in_pools == 0
                && dma_held(mm) < held,
        );
    }

    // ----- 6. leaks --------------------------------------------------------

    fn leaks(t: &mut Tester, mm: &MmRt) {
        let mut p: Pools = DmaPools::new(mm.clone(), RtMemory);
        let Ok(pool) = p.dma_pool_create("leaky", 1024, 1024, 0) else {
            t.check("dma_pool_create", false);
            return;
        };
        let blocks: Vec<DmaBlock> = (0..8).filter_map(|_| p.dma_pool_alloc(pool).ok()).collect();
        let Some(&leaked) = blocks.last() else {
            t.check("blocks", false);
            return;
        };
        for b in &blocks[..blocks.len() - 1] {
            let _ = p.dma_pool_free(pool, b.vaddr, b.bus);
        }
        let _ = rt::mem::write_u64(leaked.vaddr, 0x1eaf);
        let held = dma_held(mm);
        let r = p.dma_pool_destroy(pool);
        let (listed, quarantined) = match &r {
            Err(DestroyError::Leaked(r)) => (r.leaked == [leaked], r.quarantined_chunks),
            _ => (false, 0),
        };
        let after = dma_held(mm);
        rt::println!(
            "leak: a pool destroyed with 1 of 8 blocks live: reported: {listed}, {quarantined} chunk kept, {} of 2 pages given back",
            held.wrapping_sub(after)
        );
        t.check(
            "  the leak reported, the other chunk given back",
            listed && quarantined == 1 && held.wrapping_sub(after) == 1,
        );
        let mut k = Kernel::new(mm);
        t.check(
            "  the leaked block still mapped, at its bus address",
            rt::mem::read_u64(leaked.vaddr) == Ok(0x1eaf)
                && k.check(leaked.vaddr, leaked.bus, 1024).is_ok(),
        );
        let mut reused = true;
        if let Ok(q) = p.dma_pool_create("again", 1024, 1024, 0) {
            let fresh: Vec<DmaBlock> = (0..8).filter_map(|_| p.dma_pool_alloc(q).ok()).collect();
            reused = fresh.len() != 8
                || fresh
                    .iter()
                    .any(|b| b.vaddr & !(PAGE - 1) == leaked.vaddr & !(PAGE - 1));
            for b in &fresh {
                reused |= p.dma_pool_free(q, b.vaddr, b.bus).is_err();
            }
            reused |= p.dma_pool_destroy(q).is_err();
        }
        t.check("  its chunk never handed out again", !reused);
        let before = dma_held(mm);
        let released = p.release_leaked(leaked.vaddr, leaked.bus);
        t.eq(
            "  released: its chunk goes back",
            (released, before.wrapping_sub(dma_held(mm))),
            (Ok(true), 1),
        );
    }

    // ----- 7. coherent buffers ---------------------------------------------

    fn coherent(t: &mut Tester, mm: &MmRt) {
        let buf = mm.dma_alloc_coherent_aligned(3 * PAGE, Align(14));
        let Ok(buf) = buf else {
            t.check("dma_alloc_coherent", false);
            return;
        };
        let mut k = Kernel::new(mm);
        let placed = buf.addr() % (16 << 10) == 0
            && buf.bus() % (16 << 10) == 0
            && buf.bus() + 3 * PAGE <= DMA32_END;
        let at_bus = k.check(buf.addr(), buf.bus(), 3 * PAGE);
        let zero = all_zero(buf.addr(), 3 * PAGE);
        rt::println!(
            "coherent: 12 KiB aligned to 16 KiB: placed {placed}, zeroed {zero}, its 3 frames contiguous at its bus address: {}",
            at_bus.is_ok()
        );
        t.check(
            "  aligned, zeroed, contiguous at its bus address",
            placed && zero && at_bus.is_ok(),
        );
        let (addr, _, size) = buf.into_raw();
        let refusals = [
            mm.dma_alloc_coherent_raw(0, Align::PAGE).err(),
            mm.dma_alloc_coherent_raw(PAGE, Align(23)).err(),
            mm.dma_alloc_coherent_raw((4 << 20) + 1, Align::PAGE).err(),
            mm.dma_free_coherent(addr, PAGE).err(),
            mm.dma_free_coherent(addr + PAGE, 2 * PAGE).err(),
        ];
        rt::println!(
            "coherent: size 0, 8 MiB alignment, above 4 MiB, freed with another size, freed from inside: {refusals:?}"
        );
        let inval = Some(Error::Mm(MmError::InvalidArgument));
        t.check(
            "  refused",
            refusals
                == [
                    inval,
                    inval,
                    inval,
                    inval,
                    Some(Error::Mm(MmError::NotOwner)),
                ],
        );
        let r = dma_held(mm);
        t.check(
            "  freed",
            mm.dma_free_coherent(addr, size).is_ok() && r.wrapping_sub(dma_held(mm)) == 3,
        );
    }

    /// 64 MiB of coherent buffers, 4 MiB each: every page's frame below
    /// 4 GiB (asked of the kernel), taken from the DMA32 zone.
    fn bulk_dma32(t: &mut Tester, mm: &MmRt) {
        const N: usize = 16;
        let before = zones(mm);
        let mut bufs = Vec::with_capacity(N);
        for _ in 0..N {
            match mm.dma_alloc_coherent_aligned(4 << 20, Align::MAX_DMA) {
                Ok(b) => bufs.push(b),
                Err(_) => break,
            }
        }
        let after = zones(mm);
        let mut k = Kernel::new(mm);
        let mut at_bus = bufs.len() == N;
        let mut highest = 0;
        for b in &bufs {
            at_bus &= k.check(b.addr(), b.bus(), 4 << 20).is_ok();
            highest = highest.max(b.bus() + (4 << 20) - 1);
        }
        let d32 = zone(&before, 0).free as i64 - zone(&after, 0).free as i64;
        let dn = zone(&before, 1).free as i64 - zone(&after, 1).free as i64;
        rt::println!(
            "coherent: {} x 4 MiB, {} pages' frames asked of the kernel: at their bus addresses {at_bus}, the highest byte at {highest:#x}",
            bufs.len(),
            k.asked
        );
        rt::println!("coherent: DMA32 free frames fell by {d32}, Normal's by {dn}");
        t.check(
            "  every page of them at its bus address, below 4 GiB",
            at_bus && highest < DMA32_END,
        );
        t.check(
            "  taken from the DMA32 zone",
            d32 >= (N as i64) * 1024 && dn < 1024,
        );
        let r = dma_held(mm);
        let freed = bufs.into_iter().all(|b| b.free().is_ok());
        t.eq(
            "  all freed",
            (freed, r.wrapping_sub(dma_held(mm))),
            (true, N as u64 * 1024),
        );
    }

    // ----- 8. the helpers --------------------------------------------------

    fn helpers(t: &mut Tester, mm: &MmRt) {
        for (badge, name) in [(0x402u64, "victim"), (0x403, "leaver"), (0x404, "plain")] {
            let shm = mm.shm_create(PAGE);
            let Ok(shm) = shm else {
                t.check("mailbox", false);
                continue;
            };
            let Ok(m) = shm.map(0, Prot::READ_WRITE) else {
                t.check("mailbox map", false);
                continue;
            };
            let base = m.addr();
            let granted = shm.grant(badge, Prot::READ_WRITE).is_ok();
            let ready = mailbox::wait(base, STATE, 1, 100_000_000);
            t.check("the helper is ready", granted && ready);
            let held = mailbox::get(base, VALUE);
            let clients = |mm: &MmRt| mm.mem_info().map_or(u64::MAX, |m| m.clients);
            let before = clients(mm);
            mailbox::put(base, COMMAND, 1);
            if name == "plain" {
                let done = mailbox::wait(base, STATE, 2, 100_000_000);
                t.check(
                    "a client not granted DMA is refused",
                    done && mailbox::get(base, VALUE + 1) == 1,
                );
            }
            // The frames held by clients fall by what the helper held,
            // once the server has reclaimed it.
            let now = mailbox::poll(100_000, || {
                let now = clients(mm);
                if now.wrapping_add(held) <= before {
                    Ok(now)
                } else {
                    Err(now)
                }
            })
            .unwrap_or_else(|now| now);
            // Let the helper finish what it prints.
            for _ in 0..1000 {
                rt::yield_now();
            }
            let back = before.wrapping_sub(now);
            rt::println!("{name} {badge:#x} held {held} pages; {back} came back");
            t.eq("  every frame it held came back", back, held);
            if name == "victim" {
                t.check("  it did not run on", mailbox::get(base, STATE) == 1);
            }
        }
    }

    // ----- 9. benchmarks ---------------------------------------------------

    /// Prints `ticks` over `n` operations as instructions per operation
    /// (one tick is 16 instructions under `-icount shift=0`).
    fn report(name: &str, ticks: u64, n: u64) {
        let tenths = ticks * 16 * 10 / n;
        rt::println!("BENCH {name} {}.{} instructions", tenths / 10, tenths % 10);
    }

    fn bench(t: &mut Tester, mm: &MmRt) {
        const N: u64 = 100_000;
        let mut p: Pools = DmaPools::new(mm.clone(), RtMemory);
        for (size, name) in [
            (16u64, "dmapool.alloc_free.16.qemu.instructions"),
            (256, "dmapool.alloc_free.256.qemu.instructions"),
            (4096, "dmapool.alloc_free.4096.qemu.instructions"),
        ] {
            let Ok(pool) = p.dma_pool_create("bench", size, size, 0) else {
                t.check("dma_pool_create", false);
                continue;
            };
            // Warm up: the chunk is taken now, not in the measured loop.
            let warm = p.alloc_free_pairs(pool, 1000);
            let start = counter();
            let r = p.alloc_free_pairs(pool, N);
            let ticks = counter() - start;
            report(name, ticks, N);
            t.check(
                "  measured without a chunk request",
                warm.is_ok() && r.is_ok() && p.pool_stats(pool).is_ok_and(|s| s.chunks == 1),
            );
            let _ = p.dma_pool_destroy(pool);
        }
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
