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
        "the fastpath switched to the server"
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
            client: bool,
            number: i64,
            cptr: u64,
            label: u64,
            length: usize,
            extra: usize,
            mrs: [u64; 4],
        },
        Timer,
        Fault {
            client: bool,
            addr: u64,
        },
        /// Another thread resumes this one (TCB_Resume): blocked threads
        /// come back, so sequences do not stall.
        Resume {
            client: bool,
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

    fn step() -> impl Strategy<Value = Step> {
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
            8 => (any::<bool>(), number(), cptr, label, 0usize..7, prop_oneof![4 => Just(0usize), 1 => 0usize..3], any::<[u64; 4]>()).prop_map(
                |(client, number, cptr, label, length, extra, mrs)| Step::Sys {
                    client,
                    number,
                    cptr,
                    label,
                    length,
                    extra,
                    mrs,
                }
            ),
            1 => Just(Step::Timer),
            1 => (any::<bool>(), any::<u64>()).prop_map(|(client, addr)| Step::Fault { client, addr }),
            2 => any::<bool>().prop_map(|client| Step::Resume { client }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any sequence of system calls, faults and ticks, with any
        /// arguments, keeps the kernel's invariants and never panics.
        #[test]
        fn random_syscalls_keep_the_invariants(steps in proptest::collection::vec(step(), 1..60)) {
            let mut w = World::new();
            for s in steps {
                apply(&mut w, s);
            }
        }

        /// The fastpaths change nothing a thread can observe: the same
        /// random sequence with and without them leaves both threads with
        /// the same registers and states, and the same thread running.
        #[test]
        fn the_fastpaths_are_invisible(steps in proptest::collection::vec(step(), 1..60)) {
            let mut fast = World::new();
            let mut slow = World::new();
            slow.k.fastpath = false;
            for s in steps {
                apply(&mut fast, s.clone());
                apply(&mut slow, s);
                for (f, g) in [(fast.server, slow.server), (fast.client, slow.client)] {
                    let (a, b) = (fast.k.tcbs.get(f).unwrap(), slow.k.tcbs.get(g).unwrap());
                    prop_assert_eq!(a.state, b.state);
                    prop_assert_eq!(a.context, b.context);
                }
                prop_assert_eq!(fast.k.sched.current, slow.k.sched.current);
            }
        }
    }

    fn apply(w: &mut World, s: Step) {
        match s {
            Step::Sys {
                client,
                number,
                cptr,
                label,
                length,
                extra,
                mrs,
            } => {
                let t = if client { w.client } else { w.server };
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
            Step::Resume { client } => {
                let t = if client { w.client } else { w.server };
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
            Step::Fault { client, addr } => {
                let t = if client { w.client } else { w.server };
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
