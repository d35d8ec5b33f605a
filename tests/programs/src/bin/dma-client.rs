//! The DMA test's helpers: a driver with managed pools that dies of a fatal fault, one that exits with blocks still allocated, one not granted DMA.
//!
//! Three processes of the image `tests/qemu/dma` run this program; the
//! badge says which. Each waits for its mailbox (a shared object the
//! driver, `dma-driver`, creates and grants it), takes what it takes,
//! reports the pages it holds in slot `VALUE`, sets `STATE` to 1 and
//! waits for `COMMAND` 1:
//!
//! - `0x402`, the victim: two managed pools (`dmam_pool_create`, one for
//!   itself, one for a device it drives) and a plain one, blocks in
//!   thirteen chunks written; told, it reads an address outside every
//!   region, and the server kills it. Its pools' chunks come back with
//!   its other frames, although it never destroyed them.
//! - `0x403`, the leaver: a managed pool with three blocks still allocated
//!   and a plain pool it never destroys; told, it exits with
//!   `DmaPools::exit`, which destroys the managed pool (reporting the
//!   three blocks, whose chunk stays quarantined) and then tells the
//!   server, which takes back everything else.
//! - `0x404`, plain (granted pages, not DMA): told, it tries a pool, a
//!   managed pool and a coherent buffer, prints the refusals, reports
//!   whether they were the right ones in `VALUE + 1`, sets `STATE` to 2
//!   and exits.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    extern crate alloc;

    use alloc::vec::Vec;

    use libmm::dmapool::{DmaBlock, DmaError, OwnerId};
    use libmm::memory::RtMemory;
    use libmm::protocol::{MmError, Prot};
    use libmm::{DmaPools, Error, Mm, RtTransport};
    use qemu_test_programs::mailbox::{self, COMMAND, STATE, VALUE};
    use rt::BootInfo;

    #[global_allocator]
    static HEAP: libmm::RtGlobalHeap = libmm::RtGlobalHeap::rt();

    const PAGE: u64 = 4096;

    type MmRt = Mm<RtTransport>;
    type Pools = DmaPools<RtTransport, RtMemory>;

    fn resident(mm: &MmRt) -> u64 {
        mm.client_stats().map_or(0, |s| s.resident_pages)
    }

    /// `n` blocks of `pool`, each written with its index.
    fn take(p: &mut Pools, pool: libmm::dmapool::PoolId, n: u64) -> Vec<DmaBlock> {
        let mut v = Vec::new();
        for i in 0..n {
            if let Ok(b) = p.dma_pool_alloc(pool) {
                let _ = rt::mem::write_u64(b.vaddr, i);
                v.push(b);
            }
        }
        v
    }

    /// Reports the pages held and waits to be told to go on.
    fn ready(mm: &MmRt, base: u64) -> bool {
        mailbox::put(base, VALUE, resident(mm));
        mailbox::put(base, STATE, 1);
        mailbox::wait(base, COMMAND, 1, 100_000_000)
    }

    fn victim(mm: &MmRt, base: u64) {
        let mut p: Pools = DmaPools::new(mm.clone(), RtMemory);
        let (Ok(rings), Ok(bufs), Ok(scratch)) = (
            p.dmam_pool_create("rings", 64, 64, 4096),
            p.dmam_pool_create_for(OwnerId(7), "bufs", 2048, 2048, 0),
            p.dma_pool_create("scratch", 6000, 0, 0),
        ) else {
            rt::println!("victim: dma_pool_create failed");
            return;
        };
        let blocks = take(&mut p, rings, 200).len()
            + take(&mut p, bufs, 10).len()
            + take(&mut p, scratch, 4).len();
        let chunks = p.stats().chunks_in_pools;
        rt::println!(
            "victim: 3 pools (2 managed), {blocks} blocks in {chunks} chunks written; it reads outside every region now"
        );
        if ready(mm, base) {
            let _ = rt::mem::read_u64(0x7000_0000_0000);
        }
        // Not reached: the server killed it.
        mailbox::put(base, STATE, 3);
    }

    fn leaver(mm: &MmRt, base: u64) {
        let mut p: Pools = DmaPools::new(mm.clone(), RtMemory);
        let (Ok(desc), Ok(tmp)) = (
            p.dmam_pool_create("desc", 64, 64, 4096),
            p.dma_pool_create("tmp", 512, 512, 0),
        ) else {
            rt::println!("leaver: dma_pool_create failed");
            return;
        };
        let mut kept = take(&mut p, desc, 100);
        let _ = take(&mut p, tmp, 4);
        for b in kept.drain(3..) {
            let _ = p.dma_pool_free(desc, b.vaddr, b.bus);
        }
        rt::println!(
            "leaver: a managed pool with 3 of 100 blocks still allocated, and a plain pool it never destroys; it exits now"
        );
        if !ready(mm, base) {
            return;
        }
        match p.exit() {
            Ok(reports) => {
                let listed = reports.len() == 1 && {
                    let mut leaked = reports[0].leaked.clone();
                    leaked.sort();
                    kept.sort();
                    leaked == kept
                };
                rt::println!(
                    "leaver: exit: {} leak report, its 3 live blocks listed: {listed}, {} chunk quarantined",
                    reports.len(),
                    reports.first().map_or(0, |r| r.quarantined_chunks)
                );
            }
            Err(e) => rt::println!("leaver: exit failed: {e:?}"),
        }
    }

    fn plain(mm: &MmRt, base: u64) {
        if !ready(mm, base) {
            return;
        }
        let mut p: Pools = DmaPools::new(mm.clone(), RtMemory);
        let pool = p.dma_pool_create("nope", 64, 64, 0);
        let managed = p.dmam_pool_create("nope2", 512, 0, 0);
        let (Ok(pool), Ok(managed)) = (pool, managed) else {
            rt::println!("plain: dma_pool_create failed");
            mailbox::put(base, STATE, 2);
            return;
        };
        let alloc = p.dma_pool_alloc(pool).err();
        let zalloc = p.dma_pool_zalloc(managed).err();
        let coherent = mm.dma_alloc_coherent(PAGE).err();
        rt::println!(
            "plain (not granted DMA): pools created (nothing allocated yet); dma_pool_alloc {alloc:?}, dma_pool_zalloc {zalloc:?}, dma_alloc_coherent {coherent:?}"
        );
        let right = alloc == Some(DmaError::NotGranted)
            && zalloc == Some(DmaError::NotGranted)
            && coherent == Some(Error::Mm(MmError::PermissionDenied))
            && p.chunks().stats().refused == 2
            && p.dma_pool_destroy(pool).is_ok();
        mailbox::put(base, VALUE + 1, u64::from(right));
        mailbox::put(base, STATE, 2);
        let _ = p.exit();
    }

    fn main(info: &'static BootInfo) {
        let Ok(mm) = Mm::from_boot_info(info) else {
            return;
        };
        let badge = info.find("mm").map_or(0, |d| d.value);
        let Ok(mb) = mailbox::attach(|h| mm.shm_map(h, 0, Prot::READ_WRITE)) else {
            return;
        };
        match badge {
            0x402 => victim(&mm, mb.addr()),
            0x403 => leaver(&mm, mb.addr()),
            0x404 => plain(&mm, mb.addr()),
            _ => {}
        }
        // The victim is dead and the others have exited: the server took
        // the mailbox's mapping back with the rest, nothing to unmap.
        core::mem::forget(mb);
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
