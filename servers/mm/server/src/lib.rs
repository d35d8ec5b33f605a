//! The memory-manager server: one ReplyRecv loop serving every client's memory over IPC, in QEMU and in the simulator.
//!
//! The MM server owns all free physical memory and every client's page
//! tables. Clients reach it with `Call`s on a badged endpoint cap (the
//! protocol is `libmm::protocol`); it is also every client's fault handler,
//! on the same endpoint, so a client's page fault arrives as a message with
//! seL4's fault label and is answered by mapping a page. The same source
//! runs on our aarch64 kernel and in the simulator: it uses only
//! `platform/rt`.
//!
//! # Start-up ([`Server::start`])
//!
//! The boot info gives the server Untyped caps for all free RAM, device
//! Untypeds for MMIO, and per client its VSpace and TCB caps (their value
//! the client's process index); the [`ServerConfig`] says which badge is
//! which client, its quota and its grants (in QEMU it comes from the boot
//! manifest as the server's configuration text, [`ServerConfig::parse`]).
//! The server then:
//!
//! 1. builds itself a **two-level CSpace** (module `cspace`): a small root
//!    CNode whose slot 0 is the boot CNode (so boot CPtrs keep their
//!    meaning) and second-level CNodes retyped from the largest Untyped,
//!    made its CSpace root with `TCB_SetSpace` on its own TCB. Every RAM
//!    frame gets two caps — `W(k)`, mapped in the server's window, and
//!    `M(k)`, its mapping in one client — at CPtrs that follow the frame
//!    number, so physically contiguous runs are runs of consecutive CPtrs,
//!    which the batched `VSpace_MapFrames` maps in one invocation;
//! 2. retypes RAM into **2 MiB chunks** (an Untyped each) and those into
//!    4 KiB frames (module `phys`); Untypeds smaller than 2 MiB become
//!    frames directly. A chunk can later be revoked and retyped into one
//!    2 MiB frame (for a block mapping) or 512 page tables, whenever the
//!    buddy allocator hands it out whole;
//! 3. creates the [`FrameAllocator`](mm_core::frame::FrameAllocator) over
//!    all of it (the CNodes' memory reserved), converts a few chunks into
//!    the page-table pool, and maps every frame into its **window** (a
//!    linear map of RAM in its own VSpace, one batched map per chunk),
//!    through which it zeroes recycled frames and copies client data;
//! 4. retypes device memory into frames (D region) for granted clients.
//!
//! # Serving ([`Server::serve`], [`Server::dispatch`])
//!
//! One thread: `Recv`, dispatch, `ReplyRecv`. Clients are told apart by
//! badge alone. Every request is decoded (an undecodable one gets
//! `LABEL_MALFORMED`) and validated before anything changes; a refused
//! request gets an `MmError` and leaves everything as it was. Per client
//! the server keeps its regions (`RegionMap`), a page map of what is
//! mapped where and with which cap (module `pagemap`), the page tables it
//! installed, its areas (page blocks, vmalloc, vmap, DMA), pins, and its
//! charge against its quota. Shared objects and second mappings of owned
//! frames are recorded in the `ReverseMap`. When idle (nothing pending after
//! a reply) the server zeroes free frames into the allocator's zero pool.
//!
//! **Populate** (`Map` with `POPULATE`, `Populate`, and the 2 MiB fault
//! path) takes frames in runs of up to 1024 contiguous frames, zeroes only
//! those not known to be zero (frames fresh from a retype are), in runs,
//! through the window, and maps each run with one `VSpace_MapFrames`. With
//! `MapFlags::HUGE`, every 2 MiB-aligned part of the region is backed by a
//! real 2 MiB frame (its chunk converted to `Large` if needed) and mapped as
//! a block; unmapping or re-protecting part of a block first splits it
//! (its contents copied into 512 small frames).
//!
//! **Faults.** A translation fault in an anonymous region is served by
//! taking a zeroed frame (from the zero pool when it has one) and mapping
//! it (or a whole 2 MiB block in a `HUGE` region), then replying, which
//! restarts the access. A fault outside every region, in a guard region,
//! against the region's protection, in a PFNMAP region where nothing was
//! inserted, or that cannot be served for lack of memory or quota, is
//! fatal: the server reports it on the console, suspends the client's
//! thread and reclaims everything it held.
//!
//! **Death.** `Exit`, `ClientDied` (from the supervisor's badge only) and a
//! fatal fault all end in [`Server::dispatch`]'s reclaim: every mapping is
//! unmapped (in batches, or cap by cap when the client's VSpace is already
//! gone), every frame, area, pin, page table and shared-object reference
//! returned, objects it created destroyed (freed once no one maps them).
//!
//! **Conservation.** [`Server::check`] verifies, in O(frames + mappings),
//! that every frame is in exactly one class (free, zero pool, clients,
//! shared objects, page tables, reserved), that the classes agree with the
//! allocator's counters and add up to the total, and that page maps, owners,
//! caps, areas, pins and the reverse map all agree. Tests run it after every
//! message ([`ServerConfig::self_check`]).
//!
//! # Grants
//!
//! [`Grants`] per client: `pages` (the page-allocator family, and mapping
//! its own frames again with vmap / vm_insert_page / remap_pfn_range),
//! `dma` (coherent DMA), `user_access` (copies to and from other clients),
//! and `devices` (physical ranges it may map with vm_insert_pfn,
//! remap_pfn_range, vm_iomap_memory).
//!
//! # What the ABI adds, and could add
//!
//! Beyond seL4's invocations the server uses the ABI's batched extensions:
//! `VSpace_MapFrames`/`VSpace_UnmapFrames` (a run of frame caps mapped or
//! unmapped in one invocation) and `CNode_CopyRun` (the M copies of a
//! chunk's 512 frame caps in one invocation per second-level CNode,
//! `Layout::copy_run`). One place still uses one invocation per cap:
//! reclaiming a client whose VSpace is already gone unmaps its frame caps
//! one `Page_Unmap` at a time (`phys::unmap_caps`), because
//! `VSpace_UnmapFrames` needs the VSpace cap; an unmap of a run of frame
//! caps wherever they are mapped (invoked on the CNode holding them) would
//! batch it.
//!
//! # Deliberate differences from Linux
//!
//! Refused requests change nothing (Linux's `mprotect`/`mmap(MAP_POPULATE)`
//! may change a prefix); every page handed out is zeroed, whatever the
//! flags say (`vmalloc`, `alloc_pages` without `__GFP_ZERO`); areas made by
//! dedicated calls and pinned pages cannot be `munmap`ped; pinned pages
//! never move (a 2 MiB block is split before a pin); `copy_from_user` does
//! not zero the tail it could not copy.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod client;
mod config;
mod cspace;
mod error;
mod mapping;
mod ops;
mod pagemap;
mod phys;
mod server;
mod startup;
mod util;

pub use config::{
    CONFIG_MAGIC, ClientSpec, ConfigError, DEFAULT_CLIENT_WINDOW, ENDPOINT_NAME, Grants,
    ServerConfig,
};
pub use ops::MAX_COPY;
pub use phys::{PhysCounters, WINDOW_BASE, window_va};
pub use server::{Census, Event, Outcome, Server, ServerStats};
pub use startup::StartError;

/// Starts the server and serves forever; on a start-up failure prints why
/// and exits with status 1. The entry point of the server process.
pub fn run(boot: &abi::boot::BootInfo, config: ServerConfig) -> ! {
    match Server::start(boot, config) {
        Ok(server) => server.serve(&mut |_, _| {}),
        Err(e) => {
            rt::println!("mm: cannot start: {e:?}");
            rt::exit(1)
        }
    }
}
