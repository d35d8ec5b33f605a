//! The MM server process on our kernel: its heap, its configuration from the boot manifest, then the server.
//!
//! The kernel's loader starts this program as the boot image's `server`:
//! it holds Untyped caps for all free RAM, the device Untypeds, the ASID
//! pool, the endpoint `mm`, its clients' TCB, CNode and VSpace caps, and a
//! read-only configuration blob, the text `cargo xtask` writes from the
//! manifest's `[mm]` and `[process.mm]` tables (`ServerConfig::parse`).
//!
//! Before the server starts, `main` gives it a heap (module `heap`): it
//! sizes it for the RAM it will manage, splits one RAM Untyped by halves
//! until the heap's part is carved out (the halves it does not need go
//! back, as new Untyped descriptors, into the boot info the server is
//! started with; the carved ones leave it), retypes that part into two page
//! tables and 2 MiB frames, and maps them at `heap::HEAP_BASE`. Then it
//! parses the configuration and calls `mm_server::run`, which never returns.
//!
//! On the host this builds as an empty program (the server runs in the
//! simulator there, started by its scenarios).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod heap;

#[cfg(target_os = "none")]
mod program {
    use abi::boot::{BootInfo, CapDescriptor, CapKind, SLOT_CNODE, SLOT_VSPACE};
    use abi::object::{MAX_RETYPE_COUNT, ObjectType};
    use abi::vm::{CACHEABLE, EXECUTE_NEVER};
    use abi::{CPtr, CapRights, Word};
    use mm_server::ServerConfig;

    use crate::heap::{self, HEAP_BASE};

    const CHUNK_BITS: u32 = 21;
    const CHUNK: u64 = 1 << CHUNK_BITS;
    /// The most Untyped pieces one carve makes (one split per bit).
    const MAX_PIECES: usize = 48;

    /// Heap bytes for `frames` frames of RAM: the per-frame arrays (frame
    /// allocator 12 B, owner 8 B, bit sets), a page-map entry (16 B) for
    /// every frame mapped in a client, and 4 MiB for everything else.
    fn heap_bytes(frames: u64) -> u64 {
        frames * 40 + (4 << 20)
    }

    /// An Untyped: its slot, physical address and size.
    #[derive(Clone, Copy, Debug)]
    struct Ut {
        slot: Word,
        paddr: u64,
        bits: u32,
    }

    /// Why the heap could not be made.
    enum HeapError {
        /// No RAM Untyped is large enough to carve it from.
        NoUntyped(u64),
        /// A kernel invocation failed.
        Kernel(&'static str, abi::ErrorReply),
        /// Too many pieces or slots.
        Layout,
    }

    impl core::fmt::Display for HeapError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                HeapError::NoUntyped(bytes) => {
                    write!(f, "no RAM Untyped holds the {bytes}-byte heap")
                }
                HeapError::Kernel(what, e) => write!(f, "{what}: {e:?}"),
                HeapError::Layout => write!(f, "too many pieces or slots"),
            }
        }
    }

    /// Carves `chunks` 2 MiB chunks out of `ut` by splitting it in halves:
    /// the heap's pieces go to `heap`, the others to `back`. Slots from
    /// `*next`.
    fn carve(
        ut: Ut,
        mut chunks: u64,
        next: &mut Word,
        heap: &mut [Option<Ut>; MAX_PIECES],
        back: &mut [Option<Ut>; MAX_PIECES],
    ) -> Result<(), HeapError> {
        let push = |list: &mut [Option<Ut>; MAX_PIECES], u: Ut| {
            let free = list
                .iter_mut()
                .find(|p| p.is_none())
                .ok_or(HeapError::Layout)?;
            *free = Some(u);
            Ok(())
        };
        let mut cur = ut;
        loop {
            let have = 1u64 << (cur.bits - CHUNK_BITS);
            if chunks == have {
                return push(heap, cur);
            }
            // Split `cur` in two halves (Untyped_Retype into two Untypeds).
            let half = cur.bits - 1;
            rt::invoke::untyped_retype(
                CPtr(cur.slot),
                ObjectType::Untyped,
                half as Word,
                CPtr(SLOT_CNODE),
                0,
                0,
                *next,
                2,
            )
            .map_err(|e| HeapError::Kernel("split an Untyped", e))?;
            let lo = Ut {
                slot: *next,
                paddr: cur.paddr,
                bits: half,
            };
            let hi = Ut {
                slot: *next + 1,
                paddr: cur.paddr + (1 << half),
                bits: half,
            };
            *next += 2;
            let half_chunks = have / 2;
            if chunks > half_chunks {
                push(heap, lo)?;
                chunks -= half_chunks;
                cur = hi;
            } else {
                push(back, hi)?;
                cur = lo;
            }
        }
    }

    /// Makes the heap and returns the boot info the server starts with
    /// (without the Untypeds the heap took, with the halves given back).
    fn make_heap(boot: &BootInfo) -> Result<(BootInfo, u64), HeapError> {
        let rams = || {
            boot.caps()
                .filter(|d| d.kind == CapKind::Untyped && (12..48).contains(&d.size_bits))
        };
        let frames: u64 = rams().map(|d| (1u64 << d.size_bits) >> 12).sum();
        // One chunk more: the first one holds the two page tables.
        let chunks = heap_bytes(frames).div_ceil(CHUNK) + 1;
        // The smallest Untyped that holds it (the server keeps the big ones).
        let from = rams()
            .filter(|d| d.size_bits as u32 >= CHUNK_BITS && (1u64 << d.size_bits) >= chunks * CHUNK)
            .min_by_key(|d| (d.size_bits, d.value))
            .ok_or(HeapError::NoUntyped(chunks * CHUNK))?;
        let ut = Ut {
            slot: from.slot,
            paddr: from.value,
            bits: from.size_bits as u32,
        };
        let mut next = boot.first_free_slot;
        let mut pieces = [None; MAX_PIECES];
        let mut back = [None; MAX_PIECES];
        carve(ut, chunks, &mut next, &mut pieces, &mut back)?;

        // Two page tables (levels 1 and 2 for HEAP_BASE), then 2 MiB frames.
        let vspace = CPtr(SLOT_VSPACE);
        let mut first = true;
        let mut va = HEAP_BASE;
        let kernel = |what| move |e| HeapError::Kernel(what, e);
        for p in pieces.iter().flatten() {
            if first {
                rt::invoke::untyped_retype(
                    CPtr(p.slot),
                    ObjectType::PageTable,
                    0,
                    CPtr(SLOT_CNODE),
                    0,
                    0,
                    next,
                    2,
                )
                .map_err(kernel("retype the heap's page tables"))?;
                for i in 0..2 {
                    rt::invoke::page_table_map(CPtr(next + i), vspace, HEAP_BASE, 0)
                        .map_err(kernel("install a heap page table"))?;
                }
                next += 2;
            }
            // The first piece loses its first chunk to the tables.
            let mut n = (1u64 << (p.bits - CHUNK_BITS)) - u64::from(first);
            first = false;
            while n > 0 {
                let k = n.min(MAX_RETYPE_COUNT);
                rt::invoke::untyped_retype(
                    CPtr(p.slot),
                    ObjectType::LargePage,
                    0,
                    CPtr(SLOT_CNODE),
                    0,
                    0,
                    next,
                    k,
                )
                .map_err(kernel("retype the heap's frames"))?;
                rt::invoke::vspace_map_frames(
                    vspace,
                    CPtr(next),
                    k,
                    va,
                    CapRights::READ_WRITE,
                    CACHEABLE | EXECUTE_NEVER,
                )
                .map_err(|e| HeapError::Kernel("map the heap", e.error))?;
                next += k;
                va += k * CHUNK;
                n -= k;
            }
        }
        if va - HEAP_BASE > 1 << 30 || next >= 1 << boot.cnode_radix {
            return Err(HeapError::Layout);
        }

        // The server's boot info: the carved Untyped replaced by the halves
        // given back.
        let mut info = BootInfo::new(boot.cnode_radix, boot.ipc_buffer, boot.process_index);
        info.config_addr = boot.config_addr;
        info.config_len = boot.config_len;
        for d in boot.caps() {
            if d.slot != from.slot {
                info.push(*d).map_err(|_| HeapError::Layout)?;
            }
        }
        for u in back.iter().flatten() {
            info.push(CapDescriptor {
                slot: u.slot,
                kind: CapKind::Untyped,
                size_bits: u.bits as u8,
                value: u.paddr,
                name: CapDescriptor::name_bytes("ram"),
            })
            .map_err(|_| HeapError::Layout)?;
        }
        info.first_free_slot = next;
        Ok((info, va - HEAP_BASE))
    }

    /// The configuration text the manifest gave, parsed.
    fn config(boot: &BootInfo) -> Result<ServerConfig, alloc::string::String> {
        let Some((addr, len)) = boot.config() else {
            return Err("no configuration blob: the manifest needs an [mm] table".into());
        };
        let mut text = alloc::vec![0u8; len as usize];
        rt::mem::read_bytes(addr, &mut text).map_err(|e| alloc::format!("{e:?}"))?;
        ServerConfig::parse(&text)
            .map_err(|e| alloc::format!("configuration line {}: {}", e.line, e.what))
    }

    fn main(boot: &'static BootInfo) {
        let (info, bytes) = match make_heap(boot) {
            Ok(r) => r,
            Err(e) => {
                rt::println!("mm: cannot make the heap: {e}");
                rt::debug_halt(3);
            }
        };
        #[allow(unsafe_code)]
        // SAFETY: `make_heap` mapped `[HEAP_BASE, HEAP_BASE + bytes)`
        // read/write for the heap alone, before any allocation.
        unsafe {
            heap::init(HEAP_BASE as usize, bytes as usize)
        };
        let config = match config(&info) {
            Ok(c) => c,
            Err(e) => {
                rt::println!("mm: {e}");
                rt::debug_halt(3);
            }
        };
        rt::println!(
            "mm: {} clients, heap {} MiB",
            config.clients.len(),
            bytes >> 20
        );
        mm_server::run(&info, config)
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "the MM server runs on our kernel (`cargo xtask run`) or in the simulator (tests/sim)"
    );
}
