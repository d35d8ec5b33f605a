//! Page tables in simulated RAM, mapping rules, permissions enforced by the
//! software MMU, 2 MiB blocks, the batched map and unmap, and the fault IPC
//! round trip.

mod common;
use common::*;

use rt::abi::boot::SLOT_VSPACE;
use rt::abi::fault::Fault;
use rt::abi::object::ObjectType;
use rt::abi::vm::{CACHEABLE, DEFAULT_ATTRIBUTES};
use rt::invoke::*;
use rt::{Badge, CPtr, CapRights, ErrorReply, MessageInfo, Word};
use sim::{ExitReason, Pid};

const VS: CPtr = CPtr(SLOT_VSPACE);

fn mem<T>(r: Result<T, rt::MemoryError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("memory access: {e:?}"),
    }
}

#[test]
fn map_unmap_and_mapping_rules() {
    let sim = small();
    let ut = sim.untyped(20).unwrap();
    sim.process("p")
        .untyped("ut", &ut)
        .spawn(|boot| {
            let ut = cap(boot, "ut");
            let mut s = Slots(boot.first_free_slot);
            let va: Word = 0x1000_0000;
            let f = make(ut, ObjectType::SmallPage, 0, &mut s);
            let g = make(ut, ObjectType::SmallPage, 0, &mut s);
            // No tables yet: the lookup fails at the missing level-1 table.
            assert!(matches!(
                page_map(f, VS, va, CapRights::READ_WRITE, DEFAULT_ATTRIBUTES),
                Err(ErrorReply::FailedLookup { source: false, .. })
            ));
            tables(ut, VS, va, 3, &mut s);
            // A fourth table has nowhere to go.
            let extra = make(ut, ObjectType::PageTable, 0, &mut s);
            assert_eq!(
                page_table_map(extra, VS, va, 0),
                Err(ErrorReply::DeleteFirst)
            );
            assert_eq!(
                page_map(f, VS, va + 1, CapRights::READ_WRITE, 0),
                Err(ErrorReply::AlignmentError)
            );
            assert_eq!(
                page_map(f, VS, 0, CapRights::READ_WRITE, 0),
                Err(ErrorReply::InvalidArgument { index: 0 })
            );
            assert_eq!(
                page_map(f, VS, va, CapRights::WRITE, 0),
                Err(ErrorReply::InvalidArgument { index: 1 })
            );
            assert_eq!(
                page_map(f, f, va, CapRights::READ_WRITE, 0),
                Err(ErrorReply::InvalidCapability { index: 1 })
            );
            ok(page_map(f, VS, va, CapRights::READ_WRITE, CACHEABLE), "map");
            // A second map at the same address is refused.
            assert_eq!(
                page_map(g, VS, va, CapRights::READ_WRITE, 0),
                Err(ErrorReply::DeleteFirst)
            );
            // A frame cap maps at one place only.
            assert_eq!(
                page_map(f, VS, va + 4096, CapRights::READ_WRITE, 0),
                Err(ErrorReply::InvalidArgument { index: 0 })
            );
            mem(rt::mem::write_u64(va + 16, 0x1122_3344_5566_7788));
            assert_eq!(mem(rt::mem::read_u64(va + 16)), 0x1122_3344_5566_7788);
            assert_eq!(mem(rt::mem::read_u8(va + 16)), 0x88);
            // A copy of the cap maps the same frame a second time.
            let f2 = CPtr(s.next());
            ok(
                cnode_copy(ROOT, f2.0, D, ROOT, f.0, D, CapRights::READ),
                "copy",
            );
            ok(
                page_map(f2, VS, va + 4096, CapRights::READ_WRITE, 0),
                "map copy",
            );
            assert_eq!(
                mem(rt::mem::read_u64(va + 4096 + 16)),
                0x1122_3344_5566_7788
            );
            ok(page_unmap(f), "unmap");
            ok(page_unmap(f), "unmap twice is fine");
            ok(
                page_map(g, VS, va, CapRights::READ_WRITE, 0),
                "map the other",
            );
            assert_eq!(
                mem(rt::mem::read_u64(va + 16)),
                0,
                "fresh frames are zeroed"
            );
            // Deleting a mapped frame cap unmaps it; the page table cannot
            // be unmapped while another cap to it exists.
            ok(cnode_delete(ROOT, g.0, D), "delete");
            ok(page_map(f, VS, va, CapRights::READ_WRITE, 0), "map again");
            rt::println!("ok");
        })
        .unwrap();
    sim.run().unwrap();
    assert_eq!(sim.console_of(Pid(0)), "ok\n");
}

#[test]
fn large_pages_map_as_2mib_blocks() {
    let sim = small();
    let ut = sim.untyped(22).unwrap();
    let small_ut = sim.untyped(16).unwrap();
    sim.process("p")
        .untyped("big", &ut)
        .untyped("small", &small_ut)
        .spawn(|boot| {
            let mut s = Slots(boot.first_free_slot);
            let big = make(cap(boot, "big"), ObjectType::LargePage, 0, &mut s);
            let va: Word = 0x4000_0000;
            tables(cap(boot, "small"), VS, va, 2, &mut s);
            assert_eq!(
                page_map(big, VS, va + 4096, CapRights::READ_WRITE, 0),
                Err(ErrorReply::AlignmentError)
            );
            ok(
                page_map(big, VS, va, CapRights::READ_WRITE, CACHEABLE),
                "map block",
            );
            mem(rt::mem::write_u64(va + (1 << 20) + 8, 77));
            mem(rt::mem::write_bytes(va + (2 << 20) - 4, &[1, 2, 3, 4]));
            assert_eq!(mem(rt::mem::read_u64(va + (1 << 20) + 8)), 77);
            // A page table cannot go where a block is.
            let pt = make(cap(boot, "small"), ObjectType::PageTable, 0, &mut s);
            assert_eq!(page_table_map(pt, VS, va, 0), Err(ErrorReply::DeleteFirst));
            let pa = ok(page_get_address(big), "address");
            assert_eq!(pa % (2 << 20), 0);
            rt::set_mr(0, pa);
            rt::println!("{pa}");
        })
        .unwrap();
    sim.run().unwrap();
    let pa: u64 = sim.console_of(Pid(0)).trim().parse().unwrap();
    let mut b = [0; 8];
    assert!(sim.read_phys(pa + (1 << 20) + 8, &mut b));
    assert_eq!(u64::from_le_bytes(b), 77);
}

#[test]
fn batched_map_is_all_or_nothing() {
    let sim = small();
    let ut = sim.untyped(20).unwrap();
    sim.process("p")
        .untyped("ut", &ut)
        .spawn(|boot| {
            let ut = cap(boot, "ut");
            let mut s = Slots(boot.first_free_slot);
            let va: Word = 0x2000_0000;
            tables(ut, VS, va, 3, &mut s);
            let first = s.0;
            ok(
                untyped_retype(ut, ObjectType::SmallPage, 0, ROOT, 0, 0, first, 4),
                "frames",
            );
            s.0 += 4;
            let blocker = make(ut, ObjectType::SmallPage, 0, &mut s);
            ok(
                page_map(blocker, VS, va + 2 * 4096, CapRights::READ, 0),
                "blocker",
            );
            let e =
                vspace_map_frames(VS, CPtr(first), 4, va, CapRights::READ_WRITE, 0).unwrap_err();
            assert_eq!(e.frame, Some(2));
            assert_eq!(e.error, ErrorReply::DeleteFirst);
            // Nothing was mapped: the first frame maps on its own elsewhere.
            ok(
                page_map(CPtr(first), VS, va + 8 * 4096, CapRights::READ, 0),
                "single",
            );
            ok(page_unmap(CPtr(first)), "unmap single");
            let e =
                vspace_map_frames(VS, CPtr(first), 0, va, CapRights::READ_WRITE, 0).unwrap_err();
            assert_eq!(
                (e.frame, e.error),
                (None, ErrorReply::RangeError { min: 1, max: 1024 })
            );
            let e = vspace_map_frames(VS, CPtr(first), 5, va + 16 * 4096, CapRights::READ_WRITE, 0)
                .unwrap_err();
            assert_eq!(
                (e.frame, e.error),
                (Some(4), ErrorReply::InvalidCapability { index: 0 })
            );
            ok(page_unmap(blocker), "unmap blocker");
            vspace_map_frames(VS, CPtr(first), 4, va, CapRights::READ_WRITE, 0).unwrap();
            for i in 0..4 {
                mem(rt::mem::write_u64(va + i * 4096, i + 1));
            }
            let addr = ok(page_get_address(CPtr(first + 3)), "address");
            rt::println!("{addr}");
            vspace_unmap_frames(VS, CPtr(first), 4).unwrap();
            // All unmapped: each maps again.
            vspace_map_frames(VS, CPtr(first), 4, va + 4 * 4096, CapRights::READ, 0).unwrap();
            assert_eq!(mem(rt::mem::read_u64(va + 7 * 4096)), 4);
        })
        .unwrap();
    sim.run().unwrap();
}

/// A pager: maps a fresh frame at every faulting page of its client, with
/// Read only first, then Read/Write on a write fault; replies to resume it.
fn pager(boot: &'static rt::BootInfo) {
    let faults = cap(boot, "faults");
    let ut = cap(boot, "ram");
    let client_vs = cap(boot, "pid0/vspace");
    let mut s = Slots(boot.first_free_slot);
    let mut tables_done = false;
    let mut last: Option<CPtr> = None;
    loop {
        let (info, badge) = rt::recv(faults);
        let mut mrs = [0; 4];
        rt::get_mrs(&mut mrs);
        let Some(Fault::VmFault(f)) = Fault::from_message(info.label(), &mrs[..info.length()])
        else {
            panic!("not a VM fault");
        };
        rt::println!(
            "badge {} addr {:#x} write {} translation {} permission {}",
            badge.0,
            f.addr,
            f.is_write(),
            f.is_translation(),
            f.is_permission()
        );
        let page = f.addr & !0xfff;
        if f.is_translation() {
            if !tables_done {
                tables(ut, client_vs, page, 3, &mut s);
                tables_done = true;
            }
            let frame = make(ut, ObjectType::SmallPage, 0, &mut s);
            ok(
                page_map(frame, client_vs, page, CapRights::READ, CACHEABLE),
                "map ro",
            );
            last = Some(frame);
        } else if let Some(frame) = last {
            // Same cap, same place: the rights change.
            ok(
                page_map(frame, client_vs, page, CapRights::READ_WRITE, CACHEABLE),
                "map rw",
            );
        }
        rt::reply(MessageInfo::new(0, 0, 0, 0));
    }
}

#[test]
fn fault_ipc_round_trip_and_permissions() {
    let sim = small();
    let faults = sim.endpoint().unwrap();
    // The client first, so that the pager can be given its VSpace (pid 0).
    let _client = sim
        .process("client")
        .fault_handler(&faults, Badge(42))
        .spawn(|_| {
            let va: Word = 0x3000_0000;
            // Unmapped: a translation fault; the pager maps it read-only.
            assert_eq!(mem(rt::mem::read_u64(va + 8)), 0);
            // A write to a read-only page: a permission fault; then it completes.
            mem(rt::mem::write_u64(va + 8, 5));
            assert_eq!(mem(rt::mem::read_u64(va + 8)), 5);
            rt::println!("client done");
        })
        .unwrap();
    let pager_pid = sim
        .process("pager")
        .endpoint("faults", &faults, Badge(0), CapRights::ALL)
        .all_ram("ram")
        .process_caps(Pid(0))
        .daemon()
        .spawn(pager)
        .unwrap();
    assert_eq!(pager_pid, Pid(1));
    sim.run().unwrap();
    assert_eq!(sim.console_of(Pid(0)), "client done\n");
    assert_eq!(
        sim.console_of(Pid(1)),
        "badge 42 addr 0x30000008 write false translation true permission false\n\
         badge 42 addr 0x30000008 write true translation false permission true\n"
    );
    assert_eq!(sim.status(Pid(0)), Some(ExitReason::Exited(0)));
}

#[test]
fn a_fault_without_a_handler_stops_the_process() {
    let sim = small();
    let p = sim
        .process("p")
        .spawn(|_| {
            let _ = rt::mem::read_u64(0x5000_0000);
            unreachable!();
        })
        .unwrap();
    sim.run().unwrap();
    match sim.status(p) {
        Some(ExitReason::Faulted(Fault::VmFault(f))) => {
            assert_eq!(f.addr, 0x5000_0000);
            assert!(f.is_translation() && !f.is_write());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_ranges_are_errors_not_faults() {
    let sim = small();
    sim.process("p")
        .spawn(|_| {
            let mut b = [0; 8];
            assert_eq!(
                rt::mem::read_bytes(u64::MAX - 3, &mut b),
                Err(rt::MemoryError::InvalidRange)
            );
            assert_eq!(
                rt::mem::write_u64(1 << 48, 0),
                Err(rt::MemoryError::InvalidRange)
            );
            assert_eq!(rt::mem::read_bytes(0x1234, &mut []), Ok(()));
        })
        .unwrap();
    sim.run().unwrap();
}
