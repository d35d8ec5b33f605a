//! libmm's `GlobalHeap` as the real global allocator of a host test program.
//!
//! Every `Vec`, `Box`, `String` and `BTreeMap` of this program — and the
//! standard library's own allocations, and the slab's metadata — is served
//! by `GlobalHeap`, exactly as in a QEMU client. The "server" is a minimal
//! host stand-in: `Map` hands out zeroed host memory aligned to 4 MiB,
//! `Discard` of part of it (the heap's trimming) zeroes it again, and
//! `Unmap` frees it. Memory is touched with raw pointers, as `rt::mem` does
//! in QEMU. This is the only place the re-entry of the slab's metadata into
//! the global allocator happens for real on the host.
//!
//! Run without the test harness (its threads would only add noise); it
//! checks contents and the heap's accounting and exits non-zero on failure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use libmm::global::{GlobalConfig, GlobalHeap};
use libmm::heap::HeapConfig;
use libmm::protocol::{MapFlags, MmError, Reply, Request};
use libmm::{Error, Transport};
use mm_core::memory::{AccessError, MemoryAccess};

/// Alignment of every block the stand-in server hands out.
const ALIGN: usize = 4 << 20;

/// The stand-in server's blocks: `(addr, len)`.
static BLOCKS: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// A stand-in MM server over host memory.
#[derive(Clone, Copy, Debug)]
struct HostMm;

fn block_layout(len: u64) -> Layout {
    Layout::from_size_align(len as usize, ALIGN).expect("layout")
}

impl Transport for HostMm {
    fn call(&self, req: &Request) -> Result<Reply, Error> {
        // The block table never grows (see `reserve_table`): the heap calls
        // this with its lock held, where an allocation would go to the
        // metadata heap — fine, but the table is simpler kept fixed.
        let mut blocks = BLOCKS.lock().map_err(|_| Error::Mm(MmError::Busy))?;
        match *req {
            Request::Discard { addr, len } => {
                let inside = blocks
                    .iter()
                    .any(|&(a, l)| addr >= a && addr + len <= a + l);
                if !inside {
                    return Err(Error::Mm(MmError::InvalidArgument));
                }
                // SAFETY: [addr, addr + len) lies in a block this server
                // allocated from System and has not freed; fresh anonymous
                // memory reads as zero.
                unsafe { std::ptr::write_bytes(addr as usize as *mut u8, 0, len as usize) };
                Ok(Reply::Done)
            }
            Request::Map { flags, .. } if flags.contains(MapFlags::FIXED_NOREPLACE) => {
                Err(Error::Mm(MmError::AlreadyMapped))
            }
            Request::Map { len, align, .. } => {
                if blocks.len() == blocks.capacity()
                    || align.bytes().is_none_or(|a| a > ALIGN as u64)
                {
                    return Err(Error::Mm(MmError::NoMemory));
                }
                // SAFETY: a non-zero size (the heap never maps 0 bytes;
                // Layout would have failed above for overflow).
                let p = unsafe { System.alloc_zeroed(block_layout(len.max(1))) };
                if p.is_null() {
                    return Err(Error::Mm(MmError::NoMemory));
                }
                let addr = p as usize as u64;
                blocks.push((addr, len));
                Ok(Reply::Mapped { addr, len })
            }
            Request::Unmap { addr, .. } => {
                // A block's start frees the block; a tail (a shrunk
                // direct map) stays until then.
                if let Some(i) = blocks.iter().position(|&(a, _)| a == addr) {
                    let (a, l) = blocks.swap_remove(i);
                    // SAFETY: allocated above with this layout.
                    unsafe { System.dealloc(a as usize as *mut u8, block_layout(l.max(1))) };
                }
                Ok(Reply::Done)
            }
            _ => Err(Error::Mm(MmError::Unsupported)),
        }
    }
}

/// Host memory through raw pointers (what `rt::mem` is in QEMU).
#[derive(Clone, Copy, Debug)]
struct HostMemory;

impl MemoryAccess for HostMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        // SAFETY: the heap only reads blocks it was given by HostMm, which
        // are live host allocations; `buf` is a distinct Rust buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(addr as usize as *const u8, buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        // SAFETY: as in `read`.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), addr as usize as *mut u8, data.len())
        };
        Ok(())
    }
    fn fill(&mut self, addr: u64, len: u64, byte: u8) -> Result<(), AccessError> {
        // SAFETY: as in `read`.
        unsafe { std::ptr::write_bytes(addr as usize as *mut u8, byte, len as usize) };
        Ok(())
    }
    fn copy(&mut self, dst: u64, src: u64, len: u64) -> Result<(), AccessError> {
        // SAFETY: as in `read`; `copy` allows overlap.
        unsafe {
            std::ptr::copy(
                src as usize as *const u8,
                dst as usize as *mut u8,
                len as usize,
            )
        };
        Ok(())
    }
}

fn connect() -> Result<(HostMm, HostMemory), Error> {
    // The block table gets its room from System: an allocation through the
    // global heap here would find its main lock held (connecting runs under
    // it) and the metadata heap not yet mapped, and fail.
    let mut blocks = BLOCKS.lock().map_err(|_| Error::Mm(MmError::Busy))?;
    if blocks.capacity() == 0 {
        *blocks = reserve_table();
    }
    Ok((HostMm, HostMemory))
}

/// A block table with its capacity allocated from System.
fn reserve_table() -> Vec<(u64, u64)> {
    const CAP: usize = 4096;
    let layout = Layout::array::<(u64, u64)>(CAP).expect("layout");
    // SAFETY: a non-zero size; the Vec takes ownership of the allocation,
    // which is never freed (the table lives as long as the program, and
    // never grows: pushes are checked against its capacity).
    unsafe {
        let p = System.alloc(layout) as *mut (u64, u64);
        assert!(!p.is_null(), "no memory for the block table");
        Vec::from_raw_parts(p, 0, CAP)
    }
}

const CONFIG: GlobalConfig = GlobalConfig {
    heap: HeapConfig {
        first_chunk: 16 << 20,
        max_chunk: 64 << 20,
        retain: 1 << 20,
        checking: false,
    },
    meta_bytes: 32 << 20,
};

/// Names the calling thread: the address of a thread-local (which needs no
/// allocation: a `const` initializer and no destructor).
fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|t| t as *const u8 as usize)
}

#[global_allocator]
static GLOBAL: GlobalHeap<HostMm, HostMemory> =
    GlobalHeap::new(connect, CONFIG).with_thread_id(thread_token);

fn check(cond: bool, what: &str) {
    if !cond {
        eprintln!("host_global_alloc: FAILED: {what}");
        std::process::exit(1);
    }
}

fn owns(addr: *const u8) -> bool {
    let a = addr as usize as u64;
    GLOBAL.with_heap(|h| h.owns(a)).unwrap_or(false)
}

fn main() {
    // Already connected: std allocated before main.
    let stats = GLOBAL.stats().expect("connected");
    check(
        stats.meta.used_bytes > 0,
        "the slab's metadata lives in the metadata heap",
    );

    // A Vec growing from nothing to 10 MB: slab classes, page blocks, a
    // direct map, each realloc keeping the contents.
    let mut v: Vec<u32> = Vec::new();
    for i in 0..2_500_000u32 {
        v.push(i.wrapping_mul(2_654_435_761));
    }
    check(
        v.iter()
            .enumerate()
            .all(|(i, &x)| x == (i as u32).wrapping_mul(2_654_435_761)),
        "Vec contents after growth",
    );
    check(
        GLOBAL.stats().unwrap().direct_maps >= 1,
        "a 10 MB Vec is a direct map",
    );
    drop(v);

    // Many small objects: strings in a BTreeMap and a HashMap.
    let mut tree = BTreeMap::new();
    let mut hash = HashMap::new();
    for i in 0..100_000u64 {
        tree.insert(i, format!("value-{i}"));
        hash.insert(format!("key-{i}"), vec![i; (i % 17) as usize]);
    }
    check(tree.len() == 100_000 && hash.len() == 100_000, "map sizes");
    check(
        tree.iter().all(|(k, v)| *v == format!("value-{k}")),
        "BTreeMap contents",
    );
    check(
        hash.iter().all(|(k, v)| {
            let n: u64 = k["key-".len()..].parse().unwrap_or(u64::MAX);
            v.len() as u64 == n % 17 && v.iter().all(|&x| x == n)
        }),
        "HashMap contents",
    );
    let sample = tree.get(&777).expect("entry");
    check(
        owns(sample.as_ptr()),
        "a String's bytes live in the heap's chunks",
    );

    // Over-aligned allocations.
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let pages: Vec<Box<Page>> = (0..64).map(|i| Box::new(Page([i as u8; 4096]))).collect();
    check(
        pages.iter().enumerate().all(|(i, p)| {
            (&**p as *const Page as usize).is_multiple_of(4096) && p.0.iter().all(|&b| b == i as u8)
        }),
        "page-aligned boxes",
    );
    let zeroed = vec![0u64; 1 << 20];
    check(zeroed.iter().all(|&x| x == 0), "vec![0; n] is zero");
    drop(zeroed);

    // Several threads at once: the lock makes the heap Sync for real.
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..20_000u64 {
                    mine.push(Box::new([t, i, t ^ i]));
                    if i % 3 == 0 {
                        mine.swap_remove((i as usize * 7) % mine.len());
                    }
                }
                mine.iter().all(|b| b[0] == t && b[2] == t ^ b[1])
            })
        })
        .collect();
    for h in handles {
        check(h.join().unwrap_or(false), "thread contents");
    }

    drop(tree);
    drop(hash);
    drop(pages);
    check(GLOBAL.validate().is_ok(), "the heap validates");
    let end = GLOBAL.stats().unwrap();
    check(end.bad_frees == 0, "no bad frees");
    check(end.direct_maps == 0, "no direct map left");
    check(end.meta.lost_bytes == 0, "the metadata heap lost nothing");
    check(end.meta.failures == 0, "the metadata heap never ran out");
    println!(
        "host_global_alloc: ok (chunks {}, slab pages {}, trimmed {}, metadata {} B peak, {} extents)",
        end.heap.chunks_mapped,
        end.heap.slab.slab_pages,
        end.heap.pages_trimmed,
        end.meta.peak_bytes,
        end.meta.extents,
    );
}
