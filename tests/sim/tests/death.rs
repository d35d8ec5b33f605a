//! Client death at any point: every frame, mapping, page table, pin and shared-object reference comes back.
//!
//! A client runs a workload touching every family of the protocol (anonymous
//! memory with faults, protect and 2 MiB blocks, page blocks, vmalloc, vmap,
//! shared memory granted to a peer that maps it, pins, PFNMAP insertions,
//! DMA, copies) and is killed by fault injection at its `n`th syscall, for
//! many `n` and many schedules. The supervisor reports the death; the server
//! checks all its invariants after every message; at the end everything the
//! victim held must be back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use libmm::protocol::{Gfp, MapFlags, Prot};
use mm_server::Grants;
use sim_scenarios::*;

/// The victim's workload; `shared` receives its shared object's handle.
/// Every handle is given up at once (`leak`, `into_raw`): a client killed
/// mid-way must not count on its drops.
fn workload(mm: Client, shared: &AtomicU64, exit: bool) {
    let a = mm.mmap_raw(0, 32 * PAGE, RW, NOFLAGS).unwrap();
    for i in 0..8 {
        poke(a + i * PAGE, i + 1);
    }
    let b = mm.mmap_raw(0, 16 * PAGE, RW, MapFlags::POPULATE).unwrap();
    mm.mprotect(b, 4 * PAGE, Prot::READ).unwrap();
    let h = mm
        .mmap_raw(0, 2 * MIB2, RW, MapFlags::HUGE.union(MapFlags::POPULATE))
        .unwrap();
    poke(h + MIB2 + 8, 3);
    mm.munmap(h + PAGE, PAGE).unwrap();
    let (p, pfn, _) = mm.alloc_pages(2, Gfp(0)).unwrap().into_raw();
    poke(p, 9);
    let v = mm.vzalloc(5 * PAGE).unwrap().leak();
    poke(v + 4 * PAGE, 1);
    let m = mm.vmap(&[pfn, pfn + 1], Prot::READ).unwrap().leak();
    assert_eq!(peek(m), 9);
    let s = mm.shm_create(4 * PAGE).unwrap().leak();
    // The peer may have ended already (NoSuchHandle then).
    let _ = mm.shm_grant(s, badge(1), Prot::READ_WRITE);
    let sa = mm.shm_map(s, 0, Prot::READ_WRITE).unwrap().leak();
    poke(sa, 77);
    shared.store(s, Ordering::SeqCst);
    mm.get_user_pages_fast(a, 2, true).unwrap().leak();
    let pf = mm.mmap_raw(0, 4 * PAGE, RW, MapFlags::PFNMAP).unwrap();
    mm.vm_insert_page(pf, pfn + 2).unwrap();
    mm.dma_alloc_coherent(2 * PAGE).unwrap().leak();
    assert_eq!(mm.copy_to_user(mm.badge, a + 16 * PAGE, b, 2 * PAGE), Ok(0));
    let d = mm.memdup_user(mm.badge, a, 100).unwrap().leak();
    assert_eq!(peek(d), 1);
    let _g = mm
        .mmap_raw(0, 4 * PAGE, Prot::NONE, MapFlags::GUARD)
        .unwrap();
    let r = mm.vm_map_ram(&[pfn + 3]).unwrap().leak();
    poke(r, 5);
    if exit {
        mm.exit().unwrap();
    }
}

/// The peer: maps the victim's shared object when it appears, uses it, and
/// keeps memory of its own.
fn peer(mm: Client, shared: &AtomicU64) {
    let own = mm.mmap_raw(0, 8 * PAGE, RW, MapFlags::POPULATE).unwrap();
    poke(own, 1);
    for _ in 0..2000 {
        let h = shared.load(Ordering::SeqCst);
        if h != 0 {
            // The victim may be dead already (and its object gone).
            if let Ok(m) = mm.shm_map(h, 0, Prot::READ) {
                // The reply says how long: the peer was told only the handle.
                assert_eq!(m.len(), 4 * PAGE);
                let _ = peek(m.addr());
                m.munmap().unwrap();
            }
            break;
        }
        rt::yield_now();
    }
    assert_eq!(peek(own), 1);
    mm.munmap(own, 8 * PAGE).unwrap();
}

/// Builds the machine; `kill_at`: the victim's syscall to die at.
fn machine(seed: u64, kill_at: Option<u64>, exit: bool) -> World {
    let shared = Arc::new(AtomicU64::new(0));
    let s2 = shared.clone();
    let w = Scenario::new()
        .ram(32 << 20)
        .seeded(seed)
        .client("victim", Grants::all(), 4096, move |mm| {
            workload(mm, &shared, exit)
        })
        .client("peer", Grants::default(), 4096, move |mm| peer(mm, &s2))
        .build();
    if let Some(n) = kill_at {
        w.sim.kill_at_syscall(w.clients[0].0, n).unwrap();
    }
    w
}

#[test]
fn a_client_that_exits_or_just_ends_returns_everything() {
    for exit in [true, false] {
        let w = machine(1, None, exit);
        w.run_ok();
        w.assert_all_returned();
        assert_eq!(w.stats().reclaimed, 2);
    }
}

#[test]
fn clients_killed_at_random_syscalls_return_everything() {
    // How many syscalls the whole workload makes.
    let w = machine(7, None, true);
    w.run_ok();
    let total = w.first_client_syscalls();
    assert!(total >= 20, "{total}");
    // More seeds for a longer hunt: MM_DEATH_SEEDS=1000 cargo test ...
    let seeds = std::env::var("MM_DEATH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100u64);
    for seed in 0..seeds {
        let n = kill_point(seed, total);
        machine(seed, Some(n), true).run_killed(n, seed);
    }
}

#[test]
fn a_client_that_faults_fatally_returns_everything() {
    let shared = Arc::new(AtomicU64::new(0));
    let s2 = shared.clone();
    let w = Scenario::new()
        .ram(32 << 20)
        .daemon_client("victim", Grants::all(), 4096, move |mm| {
            workload(mm, &shared, false);
            // A stray write far from any region.
            poke(0x7000_0000_0000, 1);
            unreachable!();
        })
        .client("peer", Grants::default(), 4096, move |mm| peer(mm, &s2))
        .build();
    w.run_ok();
    assert!(
        w.server_console()
            .contains("0x100 killed: access outside any region")
    );
    assert_eq!(w.stats().fatal_faults, 1);
    w.assert_all_returned();
}
