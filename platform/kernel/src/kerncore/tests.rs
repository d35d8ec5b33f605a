//! Host tests of the kernel's logic: IPC, capabilities, memory, faults and scheduling.
//!
//! Each test boots a server and a client with the real loader on a fake
//! machine and drives them through the real syscall entry, checking the
//! kernel's invariants after every step (`World::sys`).

use abi::boot::{SLOT_ASID_POOL, SLOT_CNODE, SLOT_TCB, SLOT_VSPACE};
use abi::error::LookupFailure;
use abi::fault::{Fault, VmFault};
use abi::invocation::Invocation;
use abi::object::ObjectType;
use abi::{CapRights, ErrorReply, MessageInfo, Syscall};

use super::object::ThreadState;
use super::syscall::Event;
use super::testing::{BADGE, EP, World};

fn retype(w: &mut World, ty: ObjectType, size: u64, slot: u64, n: u64) -> Option<ErrorReply> {
    let untyped =
        w.k.tcbs
            .get(w.server)
            .map(|_| ())
            .map(|_| first_untyped(w))
            .unwrap();
    w.error(
        w.server,
        untyped,
        Invocation::UntypedRetype {
            object_type: ty.word(),
            size_bits: size,
            node_index: 0,
            node_depth: 0,
            node_offset: slot,
            num_objects: n,
        },
        &[SLOT_CNODE],
    )
}

/// The slot of the server's first "ram" Untyped.
fn first_untyped(w: &World) -> u64 {
    let cnode = w.k.tcbs.get(w.server).unwrap().ctable;
    let root = w.k.slot(super::object::SlotRef { cnode, index: 0 }).cap;
    let super::cap::Cap::CNode { id, .. } = root else {
        panic!()
    };
    (0..1024u32)
        .find(|&i| {
            matches!(
                w.k.slot(super::object::SlotRef { cnode: id, index: i }).cap,
                super::cap::Cap::Untyped { device: false, size_bits, .. } if size_bits >= 20
            )
        })
        .unwrap() as u64
}

#[test]
fn call_and_reply_recv_carry_label_badge_and_registers() {
    let mut w = World::new();
    let (s, c) = (w.server, w.client);
    w.sys(s, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert!(matches!(
        w.k.tcbs.get(s).unwrap().state,
        ThreadState::BlockedOnReceive { .. }
    ));
    w.sys(
        c,
        Syscall::Call,
        EP,
        MessageInfo::new(7, 0, 0, 3),
        [1, 2, 3, 99],
    );
    assert_eq!(
        w.k.sched.current,
        Some(s),
        "the call switched to the server"
    );
    let r = w.regs(s);
    assert_eq!(r[0], BADGE);
    assert_eq!(MessageInfo::from_word(r[1]), MessageInfo::new(7, 0, 0, 3));
    assert_eq!(&r[2..5], &[1, 2, 3]);
    assert_eq!(w.k.tcbs.get(c).unwrap().state, ThreadState::BlockedOnReply);
    w.sys(
        s,
        Syscall::ReplyRecv,
        EP,
        MessageInfo::new(8, 0, 0, 1),
        [42, 0, 0, 0],
    );
    assert_eq!(w.k.sched.current, Some(c));
    let r = w.regs(c);
    assert_eq!((MessageInfo::from_word(r[1]).label(), r[2]), (8, 42));
    // The reply cap is one-shot: a second reply finds nothing.
    assert_eq!(w.k.tcbs.get(c).unwrap().state, ThreadState::Running);
}

#[test]
fn the_fastpath_and_the_slow_path_agree() {
    let run = |fast: bool| {
        let mut w = World::new();
        w.k.fastpath = fast;
        let (s, c) = (w.server, w.client);
        w.sys(s, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
        w.sys(
            c,
            Syscall::Call,
            EP,
            MessageInfo::new(3, 0, 0, 2),
            [5, 6, 7, 8],
        );
        let at_server = w.regs(s);
        w.sys(
            s,
            Syscall::ReplyRecv,
            EP,
            MessageInfo::new(4, 0, 0, 4),
            [9, 10, 11, 12],
        );
        (
            at_server,
            w.regs(c),
            w.k.sched.current,
            w.k.tcbs.get(s).unwrap().state,
        )
    };
    let (fast, slow) = (run(true), run(false));
    // Registers beyond the message length are not the sender's.
    assert_eq!(fast.0[..4], slow.0[..4]);
    assert_eq!(fast.1, slow.1);
    assert_eq!((fast.2, fast.3), (slow.2, slow.3));
}

#[test]
fn nbsend_without_receiver_is_dropped_and_nbrecv_finds_nothing() {
    let mut w = World::new();
    let (s, c) = (w.server, w.client);
    w.sys(c, Syscall::NBSend, EP, MessageInfo::new(1, 0, 0, 0), [0; 4]);
    assert_eq!(w.k.tcbs.get(c).unwrap().state, ThreadState::Running);
    let r = w.sys(s, Syscall::NBRecv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!((r[0], r[1]), (0, 0));
}

#[test]
fn senders_queue_in_order() {
    let mut w = World::new();
    let (s, c) = (w.server, w.client);
    // The client sends (blocks: no receiver), then the server receives it.
    w.sys(
        c,
        Syscall::Send,
        EP,
        MessageInfo::new(1, 0, 0, 1),
        [11, 0, 0, 0],
    );
    assert!(matches!(
        w.k.tcbs.get(c).unwrap().state,
        ThreadState::BlockedOnSend { .. }
    ));
    let r = w.sys(s, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    assert_eq!(
        (r[0], MessageInfo::from_word(r[1]).label(), r[2]),
        (BADGE, 1, 11)
    );
    assert_eq!(w.k.tcbs.get(c).unwrap().state, ThreadState::Running);
}

#[test]
fn notifications_or_their_badges() {
    let mut w = World::new();
    let s = w.server;
    assert_eq!(retype(&mut w, ObjectType::Notification, 0, 900, 1), None);
    for (slot, badge) in [(901, 0b01), (902, 0b10)] {
        let e = w.error(
            s,
            SLOT_CNODE,
            Invocation::CNodeMint {
                dest_index: slot,
                dest_depth: 64,
                src_index: 900,
                src_depth: 64,
                rights: CapRights::ALL.word(),
                badge,
            },
            &[SLOT_CNODE],
        );
        assert_eq!(e, None);
    }
    w.sys(s, Syscall::Send, 901, MessageInfo::default(), [0; 4]);
    w.sys(s, Syscall::Send, 902, MessageInfo::default(), [0; 4]);
    let r = w.sys(s, Syscall::Recv, 900, MessageInfo::default(), [0; 4]);
    assert_eq!(r[0], 0b11);
    let r = w.sys(s, Syscall::NBRecv, 900, MessageInfo::default(), [0; 4]);
    assert_eq!(r[0], 0);
}

#[test]
fn retype_errors_are_sel4s_and_change_nothing() {
    let mut w = World::new();
    assert_eq!(
        retype(&mut w, ObjectType::CNode, 0, 900, 1),
        Some(ErrorReply::InvalidArgument { index: 1 })
    );
    assert_eq!(
        retype(&mut w, ObjectType::Endpoint, 0, 900, 0),
        Some(ErrorReply::RangeError { min: 1, max: 256 })
    );
    assert_eq!(
        retype(&mut w, ObjectType::Endpoint, 0, SLOT_TCB, 1),
        Some(ErrorReply::DeleteFirst)
    );
    assert_eq!(
        retype(&mut w, ObjectType::Untyped, 50, 900, 1),
        Some(ErrorReply::RangeError { min: 0, max: 47 })
    );
    let eps = w.k.endpoints.len();
    assert_eq!(
        retype(&mut w, ObjectType::Endpoint, 0, 1023, 2),
        Some(ErrorReply::RangeError { min: 1, max: 1 })
    );
    assert_eq!(w.k.endpoints.len(), eps, "a failed retype creates nothing");
    assert_eq!(retype(&mut w, ObjectType::Endpoint, 0, 900, 3), None);
    assert_eq!(w.k.endpoints.len(), eps + 3);
}

#[test]
fn revoke_deletes_derived_caps_and_destroys_objects_with_their_last_cap() {
    let mut w = World::new();
    let s = w.server;
    assert_eq!(retype(&mut w, ObjectType::Endpoint, 0, 900, 1), None);
    let mint = |w: &mut World, dest, badge| {
        w.error(
            s,
            SLOT_CNODE,
            Invocation::CNodeMint {
                dest_index: dest,
                dest_depth: 64,
                src_index: 900,
                src_depth: 64,
                rights: CapRights::ALL.word(),
                badge,
            },
            &[SLOT_CNODE],
        )
    };
    assert_eq!(mint(&mut w, 901, 1), None);
    assert_eq!(mint(&mut w, 902, 2), None);
    let eps = w.k.endpoints.len();
    let revoke = Invocation::CNodeRevoke {
        index: 900,
        depth: 64,
    };
    assert_eq!(w.error(s, SLOT_CNODE, revoke, &[]), None);
    let copy = |w: &mut World, src| {
        w.error(
            s,
            SLOT_CNODE,
            Invocation::CNodeCopy {
                dest_index: 903,
                dest_depth: 64,
                src_index: src,
                src_depth: 64,
                rights: CapRights::ALL.word(),
            },
            &[SLOT_CNODE],
        )
    };
    assert_eq!(
        copy(&mut w, 901),
        Some(ErrorReply::FailedLookup {
            source: true,
            failure: LookupFailure::MissingCapability { bits_left: 64 }
        })
    );
    assert_eq!(
        w.k.endpoints.len(),
        eps,
        "the endpoint lives while its original does"
    );
    let delete = Invocation::CNodeDelete {
        index: 900,
        depth: 64,
    };
    assert_eq!(w.error(s, SLOT_CNODE, delete, &[]), None);
    assert_eq!(
        w.k.endpoints.len(),
        eps - 1,
        "the last cap took the endpoint with it"
    );
}

#[test]
fn a_vm_fault_goes_to_the_handler_and_its_reply_restarts_the_thread() {
    let mut w = World::new();
    let (s, c) = (w.server, w.client);
    w.sys(s, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    w.make_current(c);
    let pc = w.k.tcbs.get(c).unwrap().context.pc;
    w.k.tcbs.get_mut(c).unwrap().context.restart_pc = pc;
    let fault = VmFault {
        ip: pc,
        addr: 0x5000_0000,
        instruction: false,
        fsr: abi::fault::fsc_translation(1),
    };
    w.k.handle_event(Event::Fault(Fault::VmFault(fault)));
    w.check();
    let r = w.regs(s);
    assert_eq!(r[0], BADGE);
    let info = MessageInfo::from_word(r[1]);
    let mut mrs = [0; 4];
    mrs.copy_from_slice(&r[2..6]);
    assert_eq!(
        Fault::from_message(info.label(), &mrs),
        Some(Fault::VmFault(fault))
    );
    w.sys(s, Syscall::Reply, 0, MessageInfo::default(), [0; 4]);
    let t = w.k.tcbs.get(c).unwrap();
    assert_eq!(t.context.pc, pc, "the faulting instruction runs again");
}

#[test]
fn invoking_an_empty_slot_is_invalid_capability() {
    let mut w = World::new();
    let c = w.client;
    assert_eq!(
        w.error(c, 200, Invocation::TcbSuspend, &[]),
        Some(ErrorReply::InvalidCapability { index: 0 })
    );
    assert_eq!(
        w.error(c, SLOT_CNODE, Invocation::PageGetAddress, &[]),
        Some(ErrorReply::IllegalOperation)
    );
}

#[test]
fn frames_map_once_and_page_tables_are_needed() {
    let mut w = World::new();
    let s = w.server;
    assert_eq!(retype(&mut w, ObjectType::SmallPage, 0, 900, 1), None);
    let map = |w: &mut World, vaddr| {
        w.error(
            s,
            900,
            Invocation::PageMap {
                vaddr,
                rights: CapRights::READ_WRITE.word(),
                attr: abi::vm::DEFAULT_ATTRIBUTES,
            },
            &[SLOT_VSPACE],
        )
    };
    assert!(matches!(
        map(&mut w, 0x6000_0000),
        Some(ErrorReply::FailedLookup { .. })
    ));
    assert_eq!(map(&mut w, 0x6000_0001), Some(ErrorReply::AlignmentError));
    // The image's level-1 table exists: levels 2 and 3 are missing, and a
    // third table has nowhere to go.
    for (slot, want) in [
        (901, None),
        (902, None),
        (903, Some(ErrorReply::DeleteFirst)),
    ] {
        assert_eq!(retype(&mut w, ObjectType::PageTable, 0, slot, 1), None);
        assert_eq!(
            w.error(
                s,
                slot,
                Invocation::PageTableMap {
                    vaddr: 0x6000_0000,
                    attr: 0
                },
                &[SLOT_VSPACE]
            ),
            want
        );
    }
    assert_eq!(map(&mut w, 0x6000_0000), None);
    assert_eq!(
        map(&mut w, 0x6000_1000),
        Some(ErrorReply::InvalidArgument { index: 0 })
    );
    let (asid, _) = w.k.thread_asid(s).unwrap();
    assert!(w.k.translate(asid, 0x6000_0000).is_some());
    assert_eq!(w.error(s, 900, Invocation::PageUnmap, &[]), None);
    assert!(w.k.translate(asid, 0x6000_0000).is_none());
    // A new VSpace needs an ASID.
    assert_eq!(retype(&mut w, ObjectType::VSpace, 0, 910, 1), None);
    assert_eq!(
        w.error(
            s,
            911,
            Invocation::PageTableMap { vaddr: 0, attr: 0 },
            &[910]
        ),
        Some(ErrorReply::InvalidCapability { index: 0 })
    );
    assert_eq!(
        w.error(s, SLOT_ASID_POOL, Invocation::AsidPoolAssign, &[910]),
        None
    );
}

#[test]
fn a_frame_copy_is_the_general_derivation() {
    let w = World::new();
    let slot = super::object::SlotRef { cnode: 0, index: 0 };
    let rights = [
        CapRights::READ,
        CapRights::READ_WRITE,
        CapRights::new(true, true, true, true),
        CapRights::new(false, false, false, false),
    ];
    for r in rights {
        for mask in rights {
            for mapping in [
                None,
                Some(super::cap::Mapping {
                    asid: 3,
                    vaddr: 0x6000_0000,
                }),
            ] {
                for (size_bits, device) in [(12, false), (21, true)] {
                    let cap = super::cap::Cap::Frame {
                        paddr: 0x4020_0000,
                        size_bits,
                        device,
                        rights: r,
                        mapping,
                    };
                    let general = w.k.derive_cap(slot, cap.mask_rights(mask)).unwrap();
                    assert_eq!(super::invoke::frame_copy(&cap, mask), Some(general));
                }
            }
        }
    }
    assert_eq!(
        super::invoke::frame_copy(&super::cap::Cap::Null, CapRights::READ),
        None
    );
}

#[test]
fn a_page_descriptor_is_its_attributes_with_the_address() {
    let attrs = super::vspace::page_attrs(CapRights::READ_WRITE, abi::vm::DEFAULT_ATTRIBUTES);
    for paddr in [0, 0x4000_1000, 0x0000_ffff_ffff_f000, 0x1234_5678_9000] {
        assert_eq!(
            vmsa::Descriptor::page(paddr, attrs).0,
            vmsa::Descriptor::page(0, attrs).0 | paddr & super::invoke::PAGE_ADDRESS_MASK
        );
    }
}

#[test]
fn the_batched_map_takes_a_shorter_road_to_the_general_paths_results() {
    // The same VSpace_MapFrames calls, good and bad, through the dedicated
    // path (`fast_invoke_map_frames`) and the general path: the same
    // replies, translations and frame caps.
    let mut worlds = [map_world(true), map_world(false)];
    let rw = CapRights::READ_WRITE.word();
    let calls: &[(u64, u64, u64, u64)] = &[
        // (first frame, count, address, rights)
        (900, 4, 0x6000_0000, rw),
        (900, 4, 0x6000_0000, CapRights::READ.word()), // remapped, other rights
        (900, 1, 0x6000_8000, rw),                     // mapped elsewhere
        (904, 2, 0x6000_1000, rw),                     // occupied
        (904, 2, 0x6000_4001, rw),                     // misaligned
        (904, 0, 0x6000_4000, rw),                     // empty batch
        (904, 2, 0x7000_0000, rw),                     // no tables there
        (904, 2, 0x601f_f000, rw),                     // the second has none
        (904, 2, 0x6000_4000, 0),                      // no read right
        (906, 4, 0x6000_6000, rw),                     // 908 is empty
        (904, 2, u64::MAX - 0xfff, rw),                // out of range
        (904, 2, 0x6000_4000, rw),
        (904, 2, 0x6000_4000, rw), // 905 moved away (see below)
        (900, 1, 0x6000_0000, rw),
    ];
    let mut replies = [alloc::vec::Vec::new(), alloc::vec::Vec::new()];
    for (w, out) in worlds.iter_mut().zip(&mut replies) {
        let s = w.server;
        for (n, &(first_frame, count, vaddr, rights)) in calls.iter().enumerate() {
            if n == calls.len() - 2 {
                // A frame cap moves away under the remembered lookups: the
                // slot is read again (empty now), so the batch is refused.
                let mv = Invocation::CNodeMove {
                    dest_index: 930,
                    dest_depth: 64,
                    src_index: 905,
                    src_depth: 64,
                };
                assert_eq!(w.error(s, SLOT_CNODE, mv, &[SLOT_CNODE]), None);
            }
            let inv = Invocation::VSpaceMapFrames {
                first_frame,
                count,
                vaddr,
                rights,
                attr: abi::vm::DEFAULT_ATTRIBUTES,
            };
            out.push(w.invoke(s, SLOT_VSPACE, inv, &[]));
        }
    }
    assert_eq!(replies[0], replies[1]);
    // seL4's errors for a batch, each with the index of the frame at fault
    // (`Word::MAX`: the whole batch) in MR0.
    let missing = |bits_left| ErrorReply::FailedLookup {
        source: false,
        failure: LookupFailure::MissingCapability { bits_left },
    };
    let want: &[Option<(u64, ErrorReply)>] = &[
        None,
        None,
        Some((0, ErrorReply::InvalidCapability { index: 0 })),
        Some((0, ErrorReply::DeleteFirst)),
        Some((0, ErrorReply::AlignmentError)),
        Some((
            u64::MAX,
            ErrorReply::RangeError {
                min: 1,
                max: abi::invocation::MAX_BATCH_FRAMES,
            },
        )),
        Some((0, missing(21))),
        Some((1, missing(21))),
        Some((0, ErrorReply::InvalidArgument { index: 3 })),
        Some((2, ErrorReply::InvalidCapability { index: 0 })),
        Some((0, ErrorReply::InvalidArgument { index: 0 })),
        None,
        Some((1, ErrorReply::InvalidCapability { index: 0 })),
        None,
    ];
    for (n, ((label, mrs), want)) in replies[0].iter().zip(want).enumerate() {
        let got =
            (*label != 0).then(|| (mrs[0], ErrorReply::from_reply(*label, &mrs[1..]).unwrap()));
        assert_eq!(got, *want, "call {n}: {:?}", calls[n]);
    }
    assert_eq!(worlds[0].k.fastpath_hits, calls.len() as u64);
    let t = worlds[0].k.tcbs.get(worlds[0].server).unwrap();
    assert!(
        t.fast.object.is_some() && t.fast.frames.left > 0,
        "the later calls found their slots through the remembered lookups"
    );
    assert_eq!(worlds[1].k.fastpath_hits, 0);
    assert_same_mappings(&mut worlds);
}

/// A world whose server has 8 frames at slots 900.. and the page tables
/// for 2 MiB at 0x6000_0000, its fastpaths on or off.
fn map_world(fastpath: bool) -> World {
    let mut w = World::new();
    w.k.fastpath = fastpath;
    let s = w.server;
    assert_eq!(w.retype(ObjectType::SmallPage, 0, 900, 8), None);
    assert_eq!(w.retype(ObjectType::PageTable, 0, 920, 2), None);
    for slot in [920, 921] {
        let table = Invocation::PageTableMap {
            vaddr: 0x6000_0000,
            attr: 0,
        };
        assert_eq!(w.error(s, slot, table, &[SLOT_VSPACE]), None);
    }
    w
}

/// Asserts that every world of [`map_world`]'s maps the first 64 KiB at
/// 0x6000_0000 as the first does, with the same frame caps (slots 900..908
/// and 930), and that the first maps 0x6000_5000.
fn assert_same_mappings(worlds: &mut [World]) {
    let [a, rest @ ..] = worlds else {
        return;
    };
    let (asid, _) = a.k.thread_asid(a.server).unwrap();
    assert!(a.k.translate(asid, 0x6000_5000).is_some());
    for w in rest {
        let (other, _) = w.k.thread_asid(w.server).unwrap();
        for page in 0..16 {
            let va = 0x6000_0000 + page * 0x1000;
            assert_eq!(a.k.translate(asid, va), w.k.translate(other, va), "{va:#x}");
        }
        for slot in (900..908).chain([930]) {
            let (x, _) = a.k.lookup_cap(a.server, slot).unwrap();
            let (y, _) = w.k.lookup_cap(w.server, slot).unwrap();
            assert_eq!(x, y, "slot {slot}");
        }
    }
}

#[test]
fn the_one_frame_map_is_the_batch_of_one() {
    // The same one-frame mappings, good and bad, as VSpace_MapFrame (four
    // words in registers) and as VSpace_MapFrames of count 1, each through
    // the dedicated path and the general path: the same replies,
    // translations and frame caps in all four worlds.
    let mut worlds = [
        map_world(true),
        map_world(false),
        map_world(true),
        map_world(false),
    ];
    let rw = CapRights::READ_WRITE.word();
    let calls: &[(u64, u64, u64)] = &[
        // (frame, address, rights)
        (900, 0x6000_0000, rw),
        (900, 0x6000_0000, CapRights::READ.word()), // remapped, other rights
        (900, 0x6000_8000, rw),                     // mapped elsewhere
        (901, 0x6000_0000, rw),                     // occupied
        (901, 0x6000_4001, rw),                     // misaligned
        (901, 0x7000_0000, rw),                     // no tables there
        (901, 0x6000_4000, 0),                      // no read right
        (908, 0x6000_6000, rw),                     // an empty slot
        (901, u64::MAX - 0xfff, rw),                // out of range
        (901, 0x6000_4000, rw),
        (902, 0x6000_5000, rw), // 902 moved away (see below)
        (903, 0x6000_5000, rw),
    ];
    let mut replies: [alloc::vec::Vec<_>; 4] = Default::default();
    for (n, (w, out)) in worlds.iter_mut().zip(&mut replies).enumerate() {
        let s = w.server;
        for (i, &(frame, vaddr, rights)) in calls.iter().enumerate() {
            if i == calls.len() - 2 {
                let mv = Invocation::CNodeMove {
                    dest_index: 930,
                    dest_depth: 64,
                    src_index: 902,
                    src_depth: 64,
                };
                assert_eq!(w.error(s, SLOT_CNODE, mv, &[SLOT_CNODE]), None);
            }
            let attr = abi::vm::DEFAULT_ATTRIBUTES;
            let inv = if n < 2 {
                Invocation::VSpaceMapFrame {
                    frame,
                    vaddr,
                    rights,
                    attr,
                }
            } else {
                Invocation::VSpaceMapFrames {
                    first_frame: frame,
                    count: 1,
                    vaddr,
                    rights,
                    attr,
                }
            };
            out.push(w.invoke(s, SLOT_VSPACE, inv, &[]));
        }
    }
    for r in &replies[1..] {
        assert_eq!(&replies[0], r);
    }
    let errors = replies[0].iter().filter(|(label, _)| *label != 0).count();
    assert_eq!(errors, 8, "{:?}", replies[0]);
    assert_eq!(worlds[0].k.fastpath_hits, calls.len() as u64);
    assert_eq!(worlds[2].k.fastpath_hits, calls.len() as u64);
    assert_same_mappings(&mut worlds);
}

#[test]
fn a_higher_priority_thread_runs_first_and_time_slices_rotate() {
    let mut w = World::new();
    let (s, c) = (w.server, w.client);
    // Same priority: the timer rotates them.
    w.make_current(s);
    for _ in 0..super::sched::TIME_SLICE_TICKS {
        w.k.handle_event(Event::Timer);
    }
    w.check();
    assert_eq!(w.k.sched.current, Some(c));
    // Raise the server's priority: it preempts at once.
    let e = w.error(c, 0, Invocation::TcbSuspend, &[]);
    assert_eq!(e, Some(ErrorReply::InvalidCapability { index: 0 }));
    w.k.set_priority(s, 200);
    w.k.schedule();
    w.check();
    assert_eq!(w.k.sched.current, Some(s));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Retype(u64),
        Copy(u64, u64),
        Mint(u64, u64, u64),
        Move(u64, u64),
        Delete(u64),
        Revoke(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let slot = 900u64..912;
        prop_oneof![
            slot.clone().prop_map(Op::Retype),
            (slot.clone(), slot.clone()).prop_map(|(a, b)| Op::Copy(a, b)),
            (slot.clone(), slot.clone(), 0u64..3).prop_map(|(a, b, c)| Op::Mint(a, b, c)),
            (slot.clone(), slot.clone()).prop_map(|(a, b)| Op::Move(a, b)),
            slot.clone().prop_map(Op::Delete),
            slot.prop_map(Op::Revoke),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Random CNode operations never break the derivation tree, and a
        /// failed operation changes nothing.
        #[test]
        fn cnode_operations_keep_the_tree_consistent(ops in proptest::collection::vec(op(), 1..40)) {
            let mut w = World::new();
            let s = w.server;
            for op in ops {
                let before = (w.k.endpoints.len(), w.k.cnodes.len());
                let result = match op {
                    Op::Retype(d) => retype(&mut w, ObjectType::Endpoint, 0, d, 1),
                    Op::Copy(d, src) => w.error(s, SLOT_CNODE, Invocation::CNodeCopy { dest_index: d, dest_depth: 64, src_index: src, src_depth: 64, rights: CapRights::ALL.word() }, &[SLOT_CNODE]),
                    Op::Mint(d, src, b) => w.error(s, SLOT_CNODE, Invocation::CNodeMint { dest_index: d, dest_depth: 64, src_index: src, src_depth: 64, rights: CapRights::ALL.word(), badge: b }, &[SLOT_CNODE]),
                    Op::Move(d, src) => w.error(s, SLOT_CNODE, Invocation::CNodeMove { dest_index: d, dest_depth: 64, src_index: src, src_depth: 64 }, &[SLOT_CNODE]),
                    Op::Delete(d) => w.error(s, SLOT_CNODE, Invocation::CNodeDelete { index: d, depth: 64 }, &[]),
                    Op::Revoke(d) => w.error(s, SLOT_CNODE, Invocation::CNodeRevoke { index: d, depth: 64 }, &[]),
                };
                if result.is_some() {
                    prop_assert_eq!((w.k.endpoints.len(), w.k.cnodes.len()), before);
                }
                w.check();
            }
        }
    }
}

mod random_syscalls {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        Sys {
            who: usize,
            number: i64,
            cptr: u64,
            label: u64,
            length: usize,
            extra: usize,
            mrs: [u64; 4],
        },
        Timer,
        Fault {
            who: usize,
            addr: u64,
        },
        /// Another thread resumes this one (TCB_Resume): blocked threads
        /// come back, so sequences do not stall.
        Resume {
            who: usize,
        },
    }

    /// Syscall numbers, weighted towards the IPC ones.
    fn number() -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => Just(Syscall::Call.number()),
            4 => Just(Syscall::ReplyRecv.number()),
            3 => Just(Syscall::Recv.number()),
            2 => Just(Syscall::Send.number()),
            1 => Just(Syscall::NBSend.number()),
            1 => Just(Syscall::NBRecv.number()),
            1 => Just(Syscall::Reply.number()),
            1 => -120i64..10,
        ]
    }

    /// A well-formed IPC step: a client calls the server's endpoint, or
    /// the server waits or replies and waits on it, with a register-only
    /// message (what the fastpaths take, when the other side is ready).
    fn ipc_step() -> impl Strategy<Value = Step> {
        let server = (
            prop_oneof![
                3 => Just(Syscall::ReplyRecv.number()),
                1 => Just(Syscall::Recv.number())
            ],
            0u64..40,
            0usize..=4,
            any::<[u64; 4]>(),
        )
            .prop_map(|(number, label, length, mrs)| Step::Sys {
                who: 0,
                number,
                cptr: EP,
                label,
                length,
                extra: 0,
                mrs,
            });
        let client = (1usize..THREADS, 0u64..40, 0usize..=4, any::<[u64; 4]>()).prop_map(
            |(who, label, length, mrs)| Step::Sys {
                who,
                number: Syscall::Call.number(),
                cptr: EP,
                label,
                length,
                extra: 0,
                mrs,
            },
        );
        prop_oneof![server, client]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![3 => any_step(), 2 => ipc_step()]
    }

    fn any_step() -> impl Strategy<Value = Step> {
        let cptr = prop_oneof![
            6 => Just(EP),
            1 => Just(1u64),
            1 => Just(2),
            1 => Just(3),
            1 => 0u64..24,
            1 => any::<u64>(),
        ];
        let label = prop_oneof![0u64..40, any::<u64>()];
        prop_oneof![
            8 => (0usize..THREADS, number(), cptr, label, prop_oneof![3 => 0usize..=4, 1 => 0usize..7], prop_oneof![4 => Just(0usize), 1 => 0usize..3], any::<[u64; 4]>()).prop_map(
                |(who, number, cptr, label, length, extra, mrs)| Step::Sys {
                    who,
                    number,
                    cptr,
                    label,
                    length,
                    extra,
                    mrs,
                }
            ),
            1 => Just(Step::Timer),
            1 => (0usize..THREADS, any::<u64>()).prop_map(|(who, addr)| Step::Fault { who, addr }),
            2 => (0usize..THREADS).prop_map(|who| Step::Resume { who }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any sequence of system calls, faults and ticks, with any
        /// arguments, keeps the kernel's invariants and never panics.
        #[test]
        fn random_syscalls_keep_the_invariants(steps in proptest::collection::vec(step(), 1..60)) {
            let mut w = World::with_clients(THREADS - 1);
            for s in steps {
                apply(&mut w, s);
            }
        }

        /// Nothing but Untyped_Retype allocates kernel memory: any other
        /// sequence of system calls, faults and ticks runs on what the
        /// kernel holds (so no user action can exhaust the heap into a
        /// panic). Steps that name an Untyped cap are left out.
        #[test]
        fn random_syscalls_never_allocate(steps in proptest::collection::vec(step(), 1..60)) {
            let mut w = World::with_clients(THREADS - 1);
            for s in steps {
                if names_untyped(&w, &s) {
                    continue;
                }
                let ((), n) = crate::testing_alloc::count(|| apply(&mut w, s.clone()));
                prop_assert_eq!(n, 0, "{:?} allocated", s);
            }
        }
    }

    /// The fastpaths change nothing a thread can observe: the same random
    /// sequence with and without them leaves every thread with the same
    /// registers, state, own slots and queue links, the endpoints with the
    /// same queues, and the same thread running. The sequences take the
    /// fastpaths often (counted over all cases).
    #[test]
    fn the_fastpaths_are_invisible() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
        let hits = core::cell::Cell::new(0);
        let result = runner.run(&proptest::collection::vec(step(), 1..80), |steps| {
            let mut fast = World::with_clients(THREADS - 1);
            let mut slow = World::with_clients(THREADS - 1);
            slow.k.fastpath = false;
            // Warm caches (as each thread's first general-path system call
            // would), so that short sequences reach the fastpaths.
            for w in [&mut fast, &mut slow] {
                for t in w.threads.clone() {
                    w.k.warm_fast_info(t);
                }
            }
            for s in steps {
                apply(&mut fast, s.clone());
                apply(&mut slow, s);
                for (&f, &g) in fast.threads.iter().zip(&slow.threads) {
                    let (a, b) = (fast.k.tcbs.get(f).unwrap(), slow.k.tcbs.get(g).unwrap());
                    prop_assert_eq!(a.state, b.state);
                    prop_assert_eq!(a.context, b.context);
                    prop_assert_eq!(a.slots, b.slots);
                    prop_assert_eq!(a.ipc_links, b.ipc_links);
                    prop_assert_eq!(a.fault, b.fault);
                }
                prop_assert_eq!(fast.k.sched.current, slow.k.sched.current);
                for (f, g) in fast.k.endpoints.iter().zip(slow.k.endpoints.iter()) {
                    prop_assert_eq!((f.1.state, f.1.queue), (g.1.state, g.1.queue));
                }
            }
            prop_assert_eq!(slow.k.fastpath_hits, 0);
            hits.set(hits.get() + fast.k.fastpath_hits);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        assert!(
            hits.get() >= 100,
            "the random sequences took the fastpaths only {} times",
            hits.get()
        );
    }

    /// The threads of the random worlds: the server and two clients.
    const THREADS: usize = 3;

    /// Whether a step invokes an Untyped cap (which may allocate).
    fn names_untyped(w: &World, s: &Step) -> bool {
        let Step::Sys { who, cptr, .. } = *s else {
            return false;
        };
        matches!(
            w.k.lookup_cap(w.threads[who], cptr),
            Ok((super::super::cap::Cap::Untyped { .. }, _))
        )
    }

    fn apply(w: &mut World, s: Step) {
        match s {
            Step::Sys {
                who,
                number,
                cptr,
                label,
                length,
                extra,
                mrs,
            } => {
                let t = w.threads[who];
                if !w.k.tcbs.get(t).is_some_and(|t| t.state.is_runnable()) {
                    return;
                }
                let Some(sys) = Syscall::from_number(number) else {
                    return;
                };
                if sys == Syscall::DebugHalt {
                    return;
                }
                w.sys(t, sys, cptr, MessageInfo::new(label, 0, extra, length), mrs);
            }
            Step::Timer => {
                w.k.handle_event(Event::Timer);
                w.check();
            }
            Step::Resume { who } => {
                let t = w.threads[who];
                if w.k.tcbs.get(t).is_some_and(|t| !t.state.is_runnable()) {
                    // TCB_Suspend then TCB_Resume by another thread.
                    w.k.suspend(t);
                    w.check();
                    w.k.restart(t);
                    w.k.schedule();
                    w.k.activate();
                    w.check();
                }
            }
            Step::Fault { who, addr } => {
                let t = w.threads[who];
                if !w.k.tcbs.get(t).is_some_and(|t| t.state.is_runnable()) {
                    return;
                }
                w.make_current(t);
                let pc = w.k.tcbs.get(t).unwrap().context.pc;
                w.k.tcbs.get_mut(t).unwrap().context.restart_pc = pc;
                let fault = VmFault {
                    ip: pc,
                    addr,
                    instruction: false,
                    fsr: abi::fault::fsc_translation(3),
                };
                w.k.handle_event(Event::Fault(Fault::VmFault(fault)));
                w.check();
            }
        }
    }
}

#[test]
fn the_fastpaths_received_tag_is_the_general_paths() {
    use proptest::prelude::*;
    proptest!(|(label in any::<u64>(), unwrapped in 0u8..8, length in 0usize..=4)| {
        let sent = MessageInfo::new(label, unwrapped, 0, length);
        let general = MessageInfo::new(sent.label(), 0, 0, sent.length());
        prop_assert_eq!(super::syscall::received_tag_for_tests(sent.word()), general.word());
    });
}

#[test]
fn the_fastpaths_are_taken_once_the_threads_are_warm() {
    let mut w = World::new();
    let (s, c) = (w.server, w.client);
    let call = |w: &mut World| {
        w.sys(
            c,
            Syscall::Call,
            EP,
            MessageInfo::new(1, 0, 0, 2),
            [3, 4, 0, 0],
        );
    };
    let reply_recv = |w: &mut World| {
        w.sys(
            s,
            Syscall::ReplyRecv,
            EP,
            MessageInfo::new(2, 0, 0, 1),
            [9, 0, 0, 0],
        );
    };
    w.sys(s, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
    // The first round trip warms the caches through the general path.
    call(&mut w);
    reply_recv(&mut w);
    // From then on, each half is one fastpath, which leaves everything as
    // the general path would have.
    for _ in 0..3 {
        w.make_current(c);
        let t = w.k.tcbs.get_mut(c).unwrap();
        t.context.x[..6].copy_from_slice(&[EP, MessageInfo::new(1, 0, 0, 2).word(), 3, 4, 0, 0]);
        t.context.x[7] = Syscall::Call.number() as u64;
        assert!(w.k.fastpath(c).is_some(), "Call took the fastpath");
        w.check();
        assert_eq!(w.k.sched.current, Some(s));
        let r = w.regs(s);
        assert_eq!(
            (r[0], MessageInfo::from_word(r[1]), r[2], r[3]),
            (BADGE, MessageInfo::new(1, 0, 0, 2), 3, 4)
        );
        let t = w.k.tcbs.get_mut(s).unwrap();
        t.context.x[..3].copy_from_slice(&[EP, MessageInfo::new(2, 0, 0, 1).word(), 9]);
        t.context.x[7] = Syscall::ReplyRecv.number() as u64;
        assert!(w.k.fastpath(s).is_some(), "ReplyRecv took the fastpath");
        w.check();
        assert_eq!(w.k.sched.current, Some(c));
        let r = w.regs(c);
        assert_eq!(
            (r[0], MessageInfo::from_word(r[1]), r[2]),
            (0, MessageInfo::new(2, 0, 0, 1), 9)
        );
    }
    // Deleting an endpoint cap makes the cached views stale: the general
    // path again (a retype alone does not).
    call(&mut w);
    assert_eq!(w.retype(ObjectType::Endpoint, 0, 900, 1), None);
    let delete = Invocation::CNodeDelete {
        index: 900,
        depth: 64,
    };
    assert_eq!(w.error(s, SLOT_CNODE, delete, &[]), None);
    let t = w.k.tcbs.get_mut(s).unwrap();
    t.context.x[..2].copy_from_slice(&[EP, MessageInfo::new(0, 0, 0, 0).word()]);
    t.context.x[7] = Syscall::ReplyRecv.number() as u64;
    assert!(w.k.fastpath(s).is_none(), "stale caches: the general path");
}

#[test]
fn a_vm_fault_and_its_reply_take_the_fastpaths_once_warm() {
    // The same fault round trip, general path and fastpaths, ends the same.
    let mut worlds = [World::new(), World::new()];
    worlds[1].k.fastpath = false;
    for w in &mut worlds {
        let (s, c) = (w.server, w.client);
        // A first round trip through the general path warms the caches.
        w.sys(s, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
        w.sys(c, Syscall::Call, EP, MessageInfo::new(1, 0, 0, 0), [0; 4]);
        w.sys(s, Syscall::ReplyRecv, EP, MessageInfo::default(), [0; 4]);
        assert_eq!(w.k.sched.current, Some(c));
    }
    for round in 0..3 {
        for (i, w) in worlds.iter_mut().enumerate() {
            let (s, c) = (w.server, w.client);
            let hits = w.k.fastpath_hits;
            let pc = w.k.tcbs.get(c).unwrap().context.pc;
            w.k.tcbs.get_mut(c).unwrap().context.restart_pc = pc;
            let fault = VmFault {
                ip: pc,
                addr: 0x5000_0000 + round * 0x1000,
                instruction: false,
                fsr: abi::fault::fsc_translation(3) | abi::fault::ISS_WNR,
            };
            w.k.handle_event(Event::Fault(Fault::VmFault(fault)));
            w.check();
            assert_eq!(w.k.sched.current, Some(s));
            let r = w.regs(s);
            let info = MessageInfo::from_word(r[1]);
            assert_eq!((r[0], info.length()), (BADGE, 4));
            assert_eq!(
                Fault::from_message(info.label(), &r[2..6]),
                Some(Fault::VmFault(fault))
            );
            // The client's registers other than pc stay as they were.
            let before = w.k.tcbs.get(c).unwrap().context;
            let t = w.k.tcbs.get_mut(s).unwrap();
            t.context.x[..2].copy_from_slice(&[EP, MessageInfo::new(0, 0, 0, 0).word()]);
            t.context.x[7] = Syscall::ReplyRecv.number() as u64;
            if i == 0 {
                assert!(
                    w.k.fastpath(s).is_some(),
                    "the fault reply took the fastpath"
                );
                assert_eq!(w.k.fastpath_hits, hits + 1, "the fault took the fastpath");
            } else {
                w.k.handle_event(Event::Syscall);
                assert_eq!(w.k.fastpath_hits, 0);
            }
            w.check();
            assert_eq!(w.k.sched.current, Some(c));
            let t = w.k.tcbs.get(c).unwrap();
            assert_eq!((t.fault, t.state), (None, ThreadState::Running));
            assert_eq!(t.context.pc, pc, "the faulting instruction runs again");
            assert_eq!(t.context.x, before.x);
        }
        let [a, b] = &worlds;
        for (&f, &g) in a.threads.iter().zip(&b.threads) {
            let (x, y) = (a.k.tcbs.get(f).unwrap(), b.k.tcbs.get(g).unwrap());
            assert_eq!(
                (x.state, x.context, x.slots, x.ipc_links, x.fault),
                (y.state, y.context, y.slots, y.ipc_links, y.fault)
            );
        }
    }
}

#[test]
fn no_system_call_but_retype_allocates() {
    use super::cap::Cap;
    use crate::testing_alloc::count;
    let mut w = World::new();
    let s = w.server;
    // What the checks need is made first: retype allocates, as it may.
    let threads: alloc::vec::Vec<_> = (0..12).map(|i| w.spawn_thread(900 + i)).collect();
    assert_eq!(w.retype(ObjectType::Notification, 0, 950, 1), None);
    assert_eq!(w.retype(ObjectType::CNode, 4, 960, 2), None);
    assert_eq!(w.retype(ObjectType::Endpoint, 0, 970, 1), None);
    let cnode_op = |w: &mut World, cap, inv| w.error(s, cap, inv, &[SLOT_CNODE]);
    let ((), allocations) = count(|| {
        // Twelve senders queue on the endpoint; the server takes them in order.
        for (i, &t) in threads.iter().enumerate() {
            w.sys(
                t,
                Syscall::Send,
                EP,
                MessageInfo::new(1, 0, 0, 1),
                [i as u64, 0, 0, 0],
            );
        }
        for i in 0..threads.len() {
            let r = w.sys(s, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
            assert_eq!(r[2], i as u64, "senders in order");
        }
        // Twelve waiters on a notification; each signal wakes one.
        for &t in &threads {
            w.sys(t, Syscall::Recv, 950, MessageInfo::default(), [0; 4]);
        }
        for _ in &threads {
            w.sys(s, Syscall::Send, 950, MessageInfo::default(), [0; 4]);
        }
        // Calls and replies, through both paths, with the server also
        // queued as a receiver behind others.
        w.sys(s, Syscall::Recv, EP, MessageInfo::default(), [0; 4]);
        for _ in 0..3 {
            for &t in &threads {
                w.sys(
                    t,
                    Syscall::Call,
                    EP,
                    MessageInfo::new(2, 0, 0, 1),
                    [t as u64, 0, 0, 0],
                );
                w.sys(
                    s,
                    Syscall::ReplyRecv,
                    EP,
                    MessageInfo::new(0, 0, 0, 0),
                    [0; 4],
                );
            }
        }
        // A send wakes the server again.
        w.sys(
            threads[1],
            Syscall::Send,
            EP,
            MessageInfo::default(),
            [0; 4],
        );
        for _ in 0..25 {
            w.k.handle_event(Event::Timer);
            w.check();
        }
        // CNode operations: copies, badges, moves, revoke, and deletion of
        // a CNode holding the last cap to another CNode, and of a thread.
        let mint = |badge| Invocation::CNodeMint {
            dest_index: 980 + badge,
            dest_depth: 64,
            src_index: 970,
            src_depth: 64,
            rights: CapRights::ALL.word(),
            badge,
        };
        for b in 1..5 {
            assert_eq!(cnode_op(&mut w, SLOT_CNODE, mint(b)), None);
        }
        let revoke = Invocation::CNodeRevoke {
            index: 970,
            depth: 64,
        };
        assert_eq!(cnode_op(&mut w, SLOT_CNODE, revoke), None);
        let copy = Invocation::CNodeCopy {
            dest_index: 3,
            dest_depth: 4,
            src_index: 961,
            src_depth: 64,
            rights: CapRights::ALL.word(),
        };
        assert_eq!(cnode_op(&mut w, 960, copy), None);
        let cnodes = w.k.cnodes.len();
        for slot in [961, 960, 900, 970] {
            let delete = Invocation::CNodeDelete {
                index: slot,
                depth: 64,
            };
            assert_eq!(cnode_op(&mut w, SLOT_CNODE, delete), None);
        }
        assert_eq!(w.k.cnodes.len(), cnodes - 2, "both CNodes destroyed");
        assert!(w.k.tcbs.get(threads[0]).is_none(), "the thread destroyed");
        // Faults with a handler (the endpoint) and without one.
        for &t in &threads[1..4] {
            w.make_current(t);
            w.k.handle_event(Event::Fault(Fault::VmFault(VmFault {
                ip: 0,
                addr: 0x1000,
                instruction: false,
                fsr: abi::fault::fsc_translation(3),
            })));
            w.check();
        }
        assert!(matches!(
            w.k.slot(super::object::SlotRef {
                cnode: root_cnode(&w),
                index: 950
            })
            .cap,
            Cap::Notification { .. }
        ));
    });
    assert_eq!(allocations, 0, "system calls other than retype allocated");
    // The count is real: a retype allocates.
    let (e, allocations) = count(|| w.retype(ObjectType::Endpoint, 0, 990, 1));
    assert_eq!(e, None);
    assert!(allocations > 0, "retype allocates the endpoint's block");
}

/// The server's CSpace root CNode.
fn root_cnode(w: &World) -> super::cap::ObjId {
    let root =
        w.k.slot(super::object::SlotRef::tcb(
            w.server,
            super::object::tcb_slot::CSPACE,
        ))
        .cap;
    let super::cap::Cap::CNode { id, .. } = root else {
        panic!("the server has a CNode")
    };
    id
}

/// `CNode_CopyRun` as the server's CSpace code uses it: a result decoded
/// the way `rt::invoke` decodes batched errors (MR0 the index at fault).
fn copy_run(
    w: &mut World,
    dest: u64,
    src: u64,
    count: u64,
    rights: CapRights,
) -> Result<(), (u64, ErrorReply)> {
    let s = w.server;
    let (label, mrs) = w.invoke(
        s,
        SLOT_CNODE,
        Invocation::CNodeCopyRun {
            dest_index: dest,
            dest_depth: 64,
            src_index: src,
            src_depth: 64,
            count,
            rights: rights.word(),
        },
        &[SLOT_CNODE],
    );
    if label == 0 {
        return Ok(());
    }
    let e = ErrorReply::from_reply(label, &mrs[1..]).expect("a batched error reply");
    Err((mrs[0], e))
}

/// What the server's slot holds (None: empty).
fn slot_cap(w: &World, index: u64) -> Option<super::cap::Cap> {
    let cnode = root_cnode(w);
    let cap =
        w.k.slot(super::object::SlotRef {
            cnode,
            index: index as u32,
        })
        .cap;
    (!cap.is_null()).then_some(cap)
}

#[test]
fn a_copy_run_of_frames_is_the_single_copies() {
    // The same copies made by `CNode_CopyRun` (its frame-run path) and by
    // one `CNode_Copy` each leave the same slots and derivation list, also
    // when the sources already have copies (linked after the new ones).
    let mut runs = World::new();
    let mut singles = World::new();
    let src = 200;
    for w in [&mut runs, &mut singles] {
        assert_eq!(retype(w, ObjectType::SmallPage, 0, src, 16), None);
    }
    for (dest, first, count, rights) in [
        (300, 0, 16, CapRights::READ),
        (400, 4, 8, CapRights::READ_WRITE),
        (500, 15, 1, CapRights::ALL),
    ] {
        assert_eq!(
            copy_run(&mut runs, dest, src + first, count, rights),
            Ok(())
        );
        let s = singles.server;
        for i in 0..count {
            let copy = Invocation::CNodeCopy {
                dest_index: dest + i,
                dest_depth: 64,
                src_index: src + first + i,
                src_depth: 64,
                rights: rights.word(),
            };
            assert_eq!(singles.error(s, SLOT_CNODE, copy, &[SLOT_CNODE]), None);
        }
        let (a, b) = (root_cnode(&runs), root_cnode(&singles));
        let slots = |w: &World, c| w.k.table(c).expect("the root CNode").to_vec();
        assert_eq!(
            slots(&runs, a),
            slots(&singles, b),
            "after the run at {dest}"
        );
    }
}

#[test]
fn copy_run_copies_every_cap_or_none() {
    let mut w = World::new();
    let src = 200;
    assert_eq!(retype(&mut w, ObjectType::SmallPage, 0, src, 8), None);
    // Success: eight copies, rights masked, unmapped, each a child of its source.
    assert_eq!(copy_run(&mut w, 300, src, 8, CapRights::READ), Ok(()));
    for i in 0..8 {
        match (slot_cap(&w, 300 + i), slot_cap(&w, src + i)) {
            (
                Some(super::cap::Cap::Frame { paddr, rights, .. }),
                Some(super::cap::Cap::Frame { paddr: p, .. }),
            ) => {
                assert_eq!(paddr, p);
                assert_eq!(rights, CapRights::READ);
            }
            other => panic!("slot {}: {other:?}", 300 + i),
        }
    }
    // An occupied destination: the index at fault, nothing copied.
    assert_eq!(retype(&mut w, ObjectType::SmallPage, 0, 403, 1), None);
    assert_eq!(
        copy_run(&mut w, 400, src, 8, CapRights::ALL),
        Err((3, ErrorReply::DeleteFirst))
    );
    for i in [0, 1, 2, 4, 5, 6, 7] {
        assert_eq!(slot_cap(&w, 400 + i), None, "slot {}", 400 + i);
    }
    // An empty source in the middle of the run.
    assert_eq!(
        copy_run(&mut w, 500, src + 4, 8, CapRights::ALL),
        Err((
            4,
            ErrorReply::FailedLookup {
                source: true,
                failure: LookupFailure::MissingCapability { bits_left: 64 }
            }
        ))
    );
    assert!((500..508).all(|i| slot_cap(&w, i).is_none()));
    // Count out of range: the run as a whole (MR0 = Word::MAX).
    for count in [0, abi::invocation::MAX_COPY_RUN + 1] {
        assert_eq!(
            copy_run(&mut w, 500, src, count, CapRights::ALL),
            Err((u64::MAX, ErrorReply::RangeError { min: 1, max: 1024 }))
        );
    }
    // The run passes the end of the destination CNode (2^10 slots).
    assert_eq!(
        copy_run(&mut w, 1022, src, 4, CapRights::ALL),
        Err((u64::MAX, ErrorReply::RangeError { min: 1, max: 2 }))
    );
    assert!(slot_cap(&w, 1022).is_none() && slot_cap(&w, 1023).is_none());
    // A cap that cannot be copied: an Untyped with children.
    let ut = first_untyped(&w);
    let (label, mrs) = w.invoke(
        w.server,
        SLOT_CNODE,
        Invocation::CNodeCopyRun {
            dest_index: 600,
            dest_depth: 64,
            src_index: ut,
            src_depth: 64,
            count: 1,
            rights: CapRights::ALL.word(),
        },
        &[SLOT_CNODE],
    );
    assert_eq!(
        (mrs[0], ErrorReply::from_reply(label, &mrs[1..])),
        (0, Some(ErrorReply::RevokeFirst))
    );
    assert!(slot_cap(&w, 600).is_none());
    // A bad destination depth concerns the whole run.
    let (label, mrs) = w.invoke(
        w.server,
        SLOT_CNODE,
        Invocation::CNodeCopyRun {
            dest_index: 600,
            dest_depth: 0,
            src_index: src,
            src_depth: 64,
            count: 1,
            rights: CapRights::ALL.word(),
        },
        &[SLOT_CNODE],
    );
    assert_eq!(
        (mrs[0], ErrorReply::from_reply(label, &mrs[1..])),
        (u64::MAX, Some(ErrorReply::RangeError { min: 1, max: 64 }))
    );
    // The failed runs changed nothing: the same run now succeeds, and
    // deleting the sources' copies leaves the sources.
    assert_eq!(copy_run(&mut w, 400, src, 3, CapRights::ALL), Ok(()));
    let s = w.server;
    for i in 0..3 {
        assert_eq!(
            w.error(
                s,
                SLOT_CNODE,
                Invocation::CNodeDelete {
                    index: 400 + i,
                    depth: 64
                },
                &[]
            ),
            None
        );
        assert!(slot_cap(&w, src + i).is_some());
    }
    // Revoking a source deletes its copy.
    assert_eq!(
        w.error(
            s,
            SLOT_CNODE,
            Invocation::CNodeRevoke {
                index: src + 5,
                depth: 64
            },
            &[]
        ),
        None
    );
    assert!(slot_cap(&w, 305).is_none());
}

#[test]
fn the_configuration_blob_is_mapped_read_only_and_named_in_the_boot_info() {
    use crate::loader::{BOOT_INFO_VADDR, CONFIG_VADDR};
    use crate::machine::Machine;
    let mut w = World::new();
    let (asid, _) = w.k.thread_asid(w.server).unwrap();
    let t =
        w.k.translate(asid, CONFIG_VADDR)
            .expect("the blob is mapped");
    assert!(!t.descriptor.attrs().writable, "read-only");
    let mut bytes = [0u8; 27];
    w.k.machine.read_bytes(t.descriptor.address(), &mut bytes);
    assert_eq!(&bytes, b"configuration of the server");
    let info = w.k.translate(asid, BOOT_INFO_VADDR).unwrap();
    let base = info.descriptor.address();
    assert_eq!(w.k.machine.read_word(base + 6 * 8), CONFIG_VADDR);
    assert_eq!(w.k.machine.read_word(base + 7 * 8), 27);
    // A process without a blob has none mapped and none named.
    let (casid, _) = w.k.thread_asid(w.client).unwrap();
    assert!(w.k.translate(casid, CONFIG_VADDR).is_none());
    let cinfo = w.k.translate(casid, BOOT_INFO_VADDR).unwrap();
    assert_eq!(w.k.machine.read_word(cinfo.descriptor.address() + 6 * 8), 0);
}
