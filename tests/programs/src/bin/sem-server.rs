//! The test runner of the semantics image: seL4's IPC, capability, memory and fault semantics.
//!
//! It holds all free RAM as Untyped and runs two suites: one inside its own
//! address space with its own threads (retype and CNode errors, revoke,
//! IPC ordering and badges, NBSend, notifications, one-shot replies,
//! rights, page tables, faults, priorities), and one across address spaces
//! with the client `sem-client` (register and buffer messages, unwrapping,
//! cap transfer, invocations on caps it does not hold, cap faults,
//! isolation, demand paging), whose fault handler it is.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use core::sync::atomic::{AtomicU64, Ordering};

    use abi::boot::{SLOT_ASID_POOL, SLOT_CNODE, SLOT_TCB, SLOT_VSPACE};
    use abi::error::LookupFailure;
    use abi::fault::{Fault, FaultLabel};
    use abi::invocation::{CONTEXT_PC, USER_CONTEXT_WORDS};
    use abi::object::ObjectType;
    use abi::{Badge, CPtr, CapRights, ErrorReply, MessageInfo, Word};
    use qemu_test_programs::{DEPTH, Objects, Tester};
    use rt::{BootInfo, invoke};

    const CNODE: CPtr = CPtr(SLOT_CNODE);
    const VSPACE: CPtr = CPtr(SLOT_VSPACE);

    static SEEN: AtomicU64 = AtomicU64::new(0);
    static FLAG: AtomicU64 = AtomicU64::new(0);
    static ENDPOINT: AtomicU64 = AtomicU64::new(0);
    static NTFN: AtomicU64 = AtomicU64::new(0);

    fn mint(o: &mut Objects, src: CPtr, rights: CapRights, badge: Word) -> CPtr {
        let dest = o.slot();
        let r = invoke::cnode_mint(
            CNODE,
            dest.0,
            DEPTH,
            CNODE,
            src.0,
            DEPTH,
            rights,
            Badge(badge),
        );
        assert!(r.is_ok(), "mint: {r:?}");
        dest
    }

    static PARK: AtomicU64 = AtomicU64::new(0);

    /// Blocks the calling helper thread for good (on a notification
    /// nobody signals).
    fn park() -> ! {
        loop {
            rt::wait(CPtr(PARK.load(Ordering::SeqCst)));
        }
    }

    fn retype_errors(t: &mut Tester, o: &mut Objects) {
        let slot = o.slot();
        let untyped = o.untyped();
        let retype =
            |ty, size, offset, n| invoke::untyped_retype(untyped, ty, size, CNODE, 0, 0, offset, n);
        t.eq(
            "retype: CNode of radix 0 is InvalidArgument 1",
            retype(ObjectType::CNode, 0, slot.0, 1),
            Err(ErrorReply::InvalidArgument { index: 1 }),
        );
        t.eq(
            "retype: Untyped below the minimum size is InvalidArgument 1",
            retype(ObjectType::Untyped, 3, slot.0, 1),
            Err(ErrorReply::InvalidArgument { index: 1 }),
        );
        t.eq(
            "retype: huge sizes are RangeError",
            retype(ObjectType::Untyped, 60, slot.0, 1),
            Err(ErrorReply::RangeError { min: 0, max: 47 }),
        );
        t.eq(
            "retype: zero objects is RangeError",
            retype(ObjectType::Endpoint, 0, slot.0, 0),
            Err(ErrorReply::RangeError { min: 1, max: 256 }),
        );
        t.eq(
            "retype: an occupied destination is DeleteFirst",
            retype(ObjectType::Endpoint, 0, SLOT_CNODE, 1),
            Err(ErrorReply::DeleteFirst),
        );
        t.eq(
            "retype: a CNode too big for memory is NotEnoughMemory, not a crash",
            retype(ObjectType::CNode, 22, slot.0, 1).map_err(|e| e.code()),
            Err(abi::Error::NotEnoughMemory),
        );
        let radix = rt::boot_info().cnode_radix as Word;
        t.eq(
            "retype: an offset past the CNode is RangeError",
            retype(ObjectType::Endpoint, 0, 1 << radix, 1),
            Err(ErrorReply::RangeError {
                min: 0,
                max: (1 << radix) - 1,
            }),
        );
        // A 4 KiB Untyped holds one page and no more.
        let small = o.slot();
        t.eq(
            "retype: a 4 KiB Untyped",
            retype(ObjectType::Untyped, 12, small.0, 1),
            Ok(()),
        );
        let pages = o.slot();
        let _ = o.slot();
        t.eq(
            "retype: two pages from 4 KiB is NotEnoughMemory",
            invoke::untyped_retype(small, ObjectType::SmallPage, 0, CNODE, 0, 0, pages.0, 2),
            Err(ErrorReply::NotEnoughMemory { available: 4096 }),
        );
        t.eq(
            "retype: one page fits",
            invoke::untyped_retype(small, ObjectType::SmallPage, 0, CNODE, 0, 0, pages.0, 1),
            Ok(()),
        );
        t.eq(
            "retype: then nothing is left",
            invoke::untyped_retype(small, ObjectType::Endpoint, 0, CNODE, 0, 0, pages.0 + 1, 1),
            Err(ErrorReply::NotEnoughMemory { available: 0 }),
        );
        // Revoking the Untyped deletes the page and resets the watermark.
        t.eq(
            "revoke: the small Untyped",
            invoke::cnode_revoke(CNODE, small.0, DEPTH),
            Ok(()),
        );
        t.eq(
            "revoke: its page is gone",
            invoke::page_get_address(pages),
            Err(ErrorReply::InvalidCapability { index: 0 }),
        );
        t.eq(
            "retype: after revoke the Untyped is whole again",
            invoke::untyped_retype(small, ObjectType::SmallPage, 0, CNODE, 0, 0, pages.0, 1),
            Ok(()),
        );
        t.eq(
            "retype: device-less frames come zeroed (GetAddress works)",
            invoke::page_get_address(pages).map(|a| a % 4096),
            Ok(0),
        );
    }

    fn cnode_errors(t: &mut Tester, o: &mut Objects) {
        let ep = o.create(ObjectType::Endpoint);
        let empty = o.slot();
        let dest = o.slot();
        t.eq(
            "cnode: copy into an occupied slot is DeleteFirst",
            invoke::cnode_copy(CNODE, ep.0, DEPTH, CNODE, SLOT_TCB, DEPTH, CapRights::ALL),
            Err(ErrorReply::DeleteFirst),
        );
        t.eq(
            "cnode: copy from an empty slot is FailedLookup (source)",
            invoke::cnode_copy(CNODE, dest.0, DEPTH, CNODE, empty.0, DEPTH, CapRights::ALL),
            Err(ErrorReply::FailedLookup {
                source: true,
                failure: LookupFailure::MissingCapability { bits_left: 64 },
            }),
        );
        t.eq(
            "cnode: depth 0 is RangeError",
            invoke::cnode_delete(CNODE, dest.0, 0),
            Err(ErrorReply::RangeError { min: 1, max: 64 }),
        );
        t.eq(
            "cnode: a source root that is no CNode is FailedLookup InvalidRoot",
            invoke::cnode_copy(CNODE, dest.0, DEPTH, ep, ep.0, DEPTH, CapRights::ALL),
            Err(ErrorReply::FailedLookup {
                source: true,
                failure: LookupFailure::InvalidRoot,
            }),
        );
        let badged = mint(o, ep, CapRights::ALL, 7);
        t.eq(
            "cnode: re-badging a badged cap is IllegalOperation",
            invoke::cnode_mint(
                CNODE,
                dest.0,
                DEPTH,
                CNODE,
                badged.0,
                DEPTH,
                CapRights::ALL,
                Badge(8),
            ),
            Err(ErrorReply::IllegalOperation),
        );
        t.eq(
            "cnode: Mutate of an endpoint is IllegalOperation",
            invoke::cnode_mutate(CNODE, dest.0, DEPTH, CNODE, ep.0, DEPTH, Badge(3)),
            Err(ErrorReply::IllegalOperation),
        );
        // Move keeps the cap working; the source empties.
        t.eq(
            "cnode: move",
            invoke::cnode_move(CNODE, dest.0, DEPTH, CNODE, badged.0, DEPTH),
            Ok(()),
        );
        t.eq(
            "cnode: the moved-from slot is empty",
            invoke::cnode_delete(CNODE, badged.0, DEPTH),
            Ok(()),
        );
        // Revoke deletes derived (badged) caps, not the original.
        let copy = o.slot();
        t.eq(
            "cnode: copy of the badged cap",
            invoke::cnode_copy(CNODE, copy.0, DEPTH, CNODE, dest.0, DEPTH, CapRights::ALL),
            Ok(()),
        );
        t.eq(
            "cnode: revoke the original endpoint",
            invoke::cnode_revoke(CNODE, ep.0, DEPTH),
            Ok(()),
        );
        let gone =
            |c: CPtr| invoke::cnode_copy(CNODE, empty.0, DEPTH, CNODE, c.0, DEPTH, CapRights::ALL);
        t.eq(
            "cnode: the badged cap was revoked",
            gone(dest).map_err(|e| e.code()),
            Err(abi::Error::FailedLookup),
        );
        t.eq(
            "cnode: and its copy too",
            gone(copy).map_err(|e| e.code()),
            Err(abi::Error::FailedLookup),
        );
        t.eq("cnode: the original survives", gone(ep), Ok(()));
        t.eq(
            "cnode: delete",
            invoke::cnode_delete(CNODE, empty.0, DEPTH),
            Ok(()),
        );
    }

    fn sender(badge: Word) -> ! {
        let ep = CPtr(ENDPOINT.load(Ordering::SeqCst));
        rt::set_mr(0, badge * 10);
        rt::send(ep, MessageInfo::new(badge, 0, 0, 1));
        park()
    }

    fn ipc_ordering(t: &mut Tester, o: &mut Objects) {
        let ep = o.create(ObjectType::Endpoint);
        let mut badged = [CPtr(0); 3];
        for (i, b) in badged.iter_mut().enumerate() {
            *b = mint(o, ep, CapRights::ALL, i as Word + 1);
        }
        // Higher-priority senders run at once and queue on the endpoint in order.
        for (i, b) in badged.into_iter().enumerate() {
            ENDPOINT.store(b.0, Ordering::SeqCst);
            o.spawn(sender, i as Word + 1, 120, 0);
        }
        let mut got = [(0, 0, 0); 3];
        for g in got.iter_mut() {
            let (info, badge) = rt::recv(ep);
            *g = (badge.0, info.label(), rt::get_mr(0));
        }
        t.eq(
            "ipc: queued senders arrive in order, with their badges",
            got,
            [(1, 0, 0), (2, 0, 0), (3, 0, 0)].map(|(b, _, _): (Word, Word, Word)| (b, b, b * 10)),
        );
        // NBSend with no receiver is dropped.
        rt::nb_send(ep, MessageInfo::new(7, 0, 0, 0));
        let (info, badge) = rt::nb_recv(ep);
        t.eq(
            "ipc: NBSend without a receiver is dropped",
            (badge.0, info.label()),
            (0, 0),
        );
        // A cap without Write cannot send: a Call gets InvalidCapability.
        let read_only = mint(o, ep, CapRights::READ, 0);
        let r = rt::call(read_only, MessageInfo::new(1, 0, 0, 0));
        t.eq(
            "ipc: Call through a cap without Write is InvalidCapability",
            (r.label(), rt::get_mr(0)),
            (abi::Error::InvalidCapability.word(), 0),
        );
    }

    fn bound_receiver(_: Word) -> ! {
        let ep = CPtr(ENDPOINT.load(Ordering::SeqCst));
        let (_, badge) = rt::recv(ep);
        SEEN.store(badge.0, Ordering::SeqCst);
        park()
    }

    fn notifications(t: &mut Tester, o: &mut Objects) {
        let n = o.create(ObjectType::Notification);
        let n1 = mint(o, n, CapRights::ALL, 0b01);
        let n2 = mint(o, n, CapRights::ALL, 0b10);
        rt::signal(n1);
        rt::signal(n2);
        t.eq(
            "ntfn: signals accumulate (OR of badges)",
            rt::wait(n).0,
            0b11,
        );
        t.eq("ntfn: a poll with nothing pending is 0", rt::poll(n).0, 0);
        rt::signal(n2);
        t.eq("ntfn: poll takes a pending signal", rt::poll(n).0, 0b10);
        // A bound notification wakes a thread blocked on an endpoint.
        let ep = o.create(ObjectType::Endpoint);
        ENDPOINT.store(ep.0, Ordering::SeqCst);
        let bn = o.create(ObjectType::Notification);
        let bn1 = mint(o, bn, CapRights::ALL, 0b100);
        let tcb = o.spawn(bound_receiver, 0, 90, 0);
        t.eq("ntfn: bind", invoke::tcb_bind_notification(tcb, bn), Ok(()));
        t.eq(
            "ntfn: binding twice is IllegalOperation",
            invoke::tcb_bind_notification(tcb, n),
            Err(ErrorReply::IllegalOperation),
        );
        rt::yield_now();
        rt::signal(bn1);
        // The receiver has lower priority: let it run.
        let mut spins = 0;
        while SEEN.load(Ordering::SeqCst) == 0 && spins < 100 {
            rt::yield_now();
            let _ = invoke::tcb_set_priority(tcb, CPtr(SLOT_TCB), 110);
            spins += 1;
        }
        t.eq(
            "ntfn: the bound thread received the badge",
            SEEN.load(Ordering::SeqCst),
            0b100,
        );
    }

    fn caller(_: Word) -> ! {
        let ep = CPtr(ENDPOINT.load(Ordering::SeqCst));
        let r = rt::call(ep, MessageInfo::new(30, 0, 0, 0));
        SEEN.store(r.label(), Ordering::SeqCst);
        FLAG.fetch_add(1, Ordering::SeqCst);
        park()
    }

    fn one_shot_reply(t: &mut Tester, o: &mut Objects) {
        let ep = o.create(ObjectType::Endpoint);
        ENDPOINT.store(ep.0, Ordering::SeqCst);
        SEEN.store(0, Ordering::SeqCst);
        o.spawn(caller, 0, 120, 0);
        let (info, _) = rt::recv(ep);
        t.eq("reply: the Call arrives", info.label(), 30);
        let saved = o.slot();
        t.eq(
            "reply: SaveCaller",
            invoke::cnode_save_caller(CNODE, saved.0, DEPTH),
            Ok(()),
        );
        rt::reply(MessageInfo::new(31, 0, 0, 0));
        t.eq(
            "reply: Reply with no caller does nothing",
            FLAG.load(Ordering::SeqCst),
            0,
        );
        rt::send(saved, MessageInfo::new(32, 0, 0, 0));
        t.eq(
            "reply: the saved reply cap replies",
            SEEN.load(Ordering::SeqCst),
            32,
        );
        let r = rt::call(saved, MessageInfo::new(33, 0, 0, 0));
        t.eq(
            "reply: a reply cap is one-shot",
            r.label(),
            abi::Error::InvalidCapability.word(),
        );
        t.eq(
            "reply: the caller woke once",
            FLAG.load(Ordering::SeqCst),
            1,
        );
    }

    fn page_tables(t: &mut Tester, o: &mut Objects) {
        let va = 0x6000_0000;
        let f = o.create(ObjectType::SmallPage);
        let rw = CapRights::READ_WRITE;
        let attr = abi::vm::DEFAULT_ATTRIBUTES;
        t.eq(
            "vm: map without page tables is FailedLookup",
            invoke::page_map(f, VSPACE, va, rw, attr).map_err(|e| e.code()),
            Err(abi::Error::FailedLookup),
        );
        t.eq(
            "vm: map misaligned is AlignmentError",
            invoke::page_map(f, VSPACE, va + 8, rw, attr),
            Err(ErrorReply::AlignmentError),
        );
        t.eq(
            "vm: map outside user space is InvalidArgument 0",
            invoke::page_map(f, VSPACE, 1 << 47, rw, attr),
            Err(ErrorReply::InvalidArgument { index: 0 }),
        );
        t.eq("vm: map with tables", o.map(VSPACE, f, va, rw), Ok(()));
        let g = o.create(ObjectType::SmallPage);
        t.eq(
            "vm: a second frame at a mapped address is DeleteFirst",
            invoke::page_map(g, VSPACE, va, rw, attr),
            Err(ErrorReply::DeleteFirst),
        );
        t.eq(
            "vm: a frame cap maps at one place",
            invoke::page_map(f, VSPACE, va + 0x1000, rw, attr),
            Err(ErrorReply::InvalidArgument { index: 0 }),
        );
        t.eq(
            "vm: remap changes rights",
            invoke::page_map(f, VSPACE, va, CapRights::READ, attr),
            Ok(()),
        );
        let pt = o.create(ObjectType::PageTable);
        t.eq(
            "vm: a page table where one is is DeleteFirst",
            invoke::page_table_map(pt, VSPACE, va, 0),
            Err(ErrorReply::DeleteFirst),
        );
        t.eq("vm: unmap", invoke::page_unmap(f), Ok(()));
        t.eq(
            "vm: the other frame maps now",
            invoke::page_map(g, VSPACE, va, rw, attr),
            Ok(()),
        );
        rt::mem::write_u64(va, 42).ok();
        t.eq("vm: and holds data", rt::mem::read_u64(va), Ok(42));
        // A new address space needs an ASID before it maps anything.
        let vs = o.create(ObjectType::VSpace);
        let pt2 = o.create(ObjectType::PageTable);
        t.eq(
            "vm: a VSpace without ASID is InvalidCapability 1",
            invoke::page_table_map(pt2, vs, va, 0),
            Err(ErrorReply::InvalidCapability { index: 1 }),
        );
        t.eq(
            "vm: assign an ASID",
            invoke::asid_pool_assign(CPtr(SLOT_ASID_POOL), vs),
            Ok(()),
        );
        t.eq(
            "vm: then tables map",
            invoke::page_table_map(pt2, vs, va, 0),
            Ok(()),
        );
        t.eq(
            "vm: a VSpace is assigned once",
            invoke::asid_pool_assign(CPtr(SLOT_ASID_POOL), vs),
            Err(ErrorReply::InvalidCapability { index: 1 }),
        );
        // Batched map: all or nothing.
        let frames = o.retype(ObjectType::SmallPage, 0, 4).expect("four frames");
        let bva = 0x6100_0000;
        let pt3 = o.create(ObjectType::PageTable);
        let _ = invoke::page_table_map(pt3, VSPACE, bva, 0);
        let r = invoke::vspace_map_frames(VSPACE, frames, 4, bva + 0x1000, rw, attr);
        t.eq(
            "vm: batched map of four frames",
            r.map_err(|e| e.error),
            Ok(()),
        );
        t.eq(
            "vm: mapped",
            rt::mem::write_u64(bva + 0x4000, 9).and(rt::mem::read_u64(bva + 0x4000)),
            Ok(9),
        );
        let r = invoke::vspace_unmap_frames(VSPACE, frames, 4);
        t.eq("vm: batched unmap", r.map_err(|e| e.error), Ok(()));
        let more = o.retype(ObjectType::SmallPage, 0, 2).expect("two frames");
        let _ = invoke::page_map(CPtr(more.0 + 1), VSPACE, bva + 0x2000, rw, attr);
        let r = invoke::vspace_map_frames(VSPACE, frames, 4, bva + 0x1000, rw, attr);
        t.eq(
            "vm: a batch hitting a mapped page fails at that frame, mapping none",
            r.map_err(|e| (e.frame, e.error)),
            Err((Some(1), ErrorReply::DeleteFirst)),
        );
        let r = invoke::page_map(frames, VSPACE, bva + 0x1000, rw, attr);
        t.eq("vm: so the first frame is still free to map", r, Ok(()));
    }

    fn faulter(_: Word) -> ! {
        let v = rt::mem::read_u64(0x5000_0000).unwrap_or(0);
        SEEN.store(v, Ordering::SeqCst);
        rt::signal(CPtr(NTFN.load(Ordering::SeqCst)));
        park()
    }

    fn faults_and_priorities(t: &mut Tester, o: &mut Objects) {
        let ep = o.create(ObjectType::Endpoint);
        let fault_ep = mint(o, ep, CapRights::ALL, 9);
        let done = o.create(ObjectType::Notification);
        NTFN.store(done.0, Ordering::SeqCst);
        SEEN.store(0, Ordering::SeqCst);
        o.spawn(faulter, 0, 120, fault_ep.0);
        let (info, badge) = rt::recv(ep);
        let mrs: [Word; 4] = core::array::from_fn(rt::get_mr);
        let fault = Fault::from_message(info.label(), &mrs);
        t.eq(
            "fault: a VM fault arrives with the handler's badge",
            badge.0,
            9,
        );
        match fault {
            Some(Fault::VmFault(f)) => {
                t.eq("fault: at the address touched", f.addr, 0x5000_0000);
                t.check(
                    "fault: a translation fault on a read",
                    f.is_translation() && !f.is_write(),
                );
            }
            other => t.check(alloc_free_fmt(other), false),
        }
        // Map the page, write a value, reply: the thread retries and reads it.
        let frame = o.create(ObjectType::SmallPage);
        let r = o.map(VSPACE, frame, 0x5000_0000, CapRights::READ_WRITE);
        t.eq("fault: handler maps the page", r, Ok(()));
        let _ = rt::mem::write_u64(0x5000_0000, 0xabc);
        rt::reply(MessageInfo::new(0, 0, 0, 0));
        rt::wait(done);
        t.eq(
            "fault: the thread resumed and read the value",
            SEEN.load(Ordering::SeqCst),
            0xabc,
        );
        t.eq("fault: label", info.label(), FaultLabel::VmFault as Word);

        // A higher-priority thread runs as soon as it is woken.
        FLAG.store(0, Ordering::SeqCst);
        let n = o.create(ObjectType::Notification);
        NTFN.store(n.0, Ordering::SeqCst);
        o.spawn(high, 0, 150, 0);
        rt::signal(n);
        t.eq(
            "sched: a woken higher-priority thread preempts at once",
            FLAG.load(Ordering::SeqCst),
            1,
        );
    }

    fn high(_: Word) -> ! {
        rt::wait(CPtr(NTFN.load(Ordering::SeqCst)));
        FLAG.store(1, Ordering::SeqCst);
        park()
    }

    fn alloc_free_fmt(_f: Option<Fault>) -> &'static str {
        "fault: a VM fault message"
    }

    /// Skips the client's faulting instruction and lets it continue.
    fn skip_and_resume(t: &mut Tester, client_tcb: CPtr, pc: Word) {
        let regs = invoke::tcb_read_registers(client_tcb, false, USER_CONTEXT_WORDS as Word);
        let Ok(mut regs) = regs else {
            t.check("client: read registers", false);
            return;
        };
        regs[CONTEXT_PC] = pc + 4;
        let r = invoke::tcb_write_registers(client_tcb, false, &regs);
        t.eq("client: write registers", r, Ok(()));
        rt::reply(MessageInfo::new(0, 0, 0, 0));
    }

    fn serve_client(t: &mut Tester, o: &mut Objects, info: &BootInfo) {
        let ep = CPtr(info.find("mm").map_or(16, |d| d.slot));
        let client_tcb = CPtr(info.find("client/tcb").map_or(0, |d| d.slot));
        let client_vs = CPtr(info.find("client/vspace").map_or(0, |d| d.slot));
        let badge = 5;

        let (m, b) = rt::recv(ep);
        t.eq("client 1: label and badge", (m.label(), b.0), (1, badge));
        t.eq(
            "client 1: registers",
            [rt::get_mr(0), rt::get_mr(1), rt::get_mr(2), rt::get_mr(3)],
            [11, 22, 33, 44],
        );
        for (i, v) in [44, 33, 22, 11].into_iter().enumerate() {
            rt::set_mr(i, v);
        }
        let (m, _) = rt::reply_recv(ep, MessageInfo::new(2, 0, 0, 4));
        t.eq("client 2: ten words", (m.label(), m.length()), (3, 10));
        let words: [Word; 10] = core::array::from_fn(rt::get_mr);
        t.eq(
            "client 2: buffer words",
            words,
            core::array::from_fn(|i| 100 + i as Word),
        );
        for (i, w) in words.iter().enumerate() {
            rt::set_mr(i, 2 * w);
        }
        let (m, _) = rt::reply_recv(ep, MessageInfo::new(4, 0, 0, 10));
        t.eq(
            "client 3: our own endpoint comes back unwrapped",
            (
                m.label(),
                m.extra_caps(),
                m.caps_unwrapped(),
                rt::get_badge(0).0,
            ),
            (5, 1, 1, badge),
        );
        let granted = o.slot();
        rt::set_receive_path(CNODE, granted.0, DEPTH);
        let (m, _) = rt::reply_recv(ep, MessageInfo::new(6, 0, 0, 0));
        t.eq(
            "client 4: a granted cap arrives",
            (m.label(), m.extra_caps(), m.caps_unwrapped()),
            (7, 1, 0),
        );
        // Map a page into the client through the granted VSpace cap.
        let frame = o.create(ObjectType::SmallPage);
        let copy = o.slot();
        let _ = invoke::cnode_copy(
            CNODE,
            copy.0,
            DEPTH,
            CNODE,
            frame.0,
            DEPTH,
            CapRights::READ_WRITE,
        );
        t.eq(
            "client 4: map into its VSpace",
            o.map(granted, frame, 0x3000_0000, CapRights::READ_WRITE),
            Ok(()),
        );
        let mine = o.map_pages(0);
        t.eq(
            "client 4: and into ours",
            o.map(VSPACE, copy, mine, CapRights::READ_WRITE),
            Ok(()),
        );
        o.next_vaddr += 0x2000;
        let _ = rt::mem::write_u64(mine, 0xfeed);
        rt::set_receive_path(CPtr(0), 0, 0);
        let (m, b) = rt::reply_recv(ep, MessageInfo::new(8, 0, 0, 0));

        // A cap fault in the receive phase (the client has no Read right).
        let mrs: [Word; 8] = core::array::from_fn(rt::get_mr);
        match Fault::from_message(m.label(), &mrs[..m.length()]) {
            Some(Fault::CapFault(f)) => {
                t.check(
                    "client 6: cap fault in the receive phase",
                    f.in_receive_phase && b.0 == badge,
                );
                skip_and_resume(t, client_tcb, f.pc);
            }
            _ => t.check("client 6: cap fault expected", false),
        }
        // Three isolation faults.
        let secret = 0x1000_0000;
        let _ = rt::mem::write_u64(secret, 0x5ec);
        for (what, addr, write) in [
            ("kernel memory", 0xffff_ff80_4020_0000u64, false),
            ("kernel memory (write)", 0xffff_ff80_4100_0000u64, true),
            ("the server's address", secret, false),
            ("its own text", 0, true),
        ] {
            let (m, b) = rt::recv(ep);
            let mrs: [Word; 4] = core::array::from_fn(rt::get_mr);
            match Fault::from_message(m.label(), &mrs) {
                Some(Fault::VmFault(f)) => {
                    let expected = if addr == 0 {
                        f.is_permission() && f.is_write()
                    } else {
                        f.addr == addr && f.is_write() == write
                    };
                    t.check(what_line(what), expected && b.0 == badge);
                    skip_and_resume(t, client_tcb, f.ip);
                }
                _ => t.check(what_line(what), false),
            }
        }
        // Demand paging.
        let (m, _) = rt::recv(ep);
        let mrs: [Word; 4] = core::array::from_fn(rt::get_mr);
        match Fault::from_message(m.label(), &mrs) {
            Some(Fault::VmFault(f)) if f.addr == 0x4000_0000 => {
                let frame = o.create(ObjectType::SmallPage);
                let copy = o.slot();
                let _ = invoke::cnode_copy(
                    CNODE,
                    copy.0,
                    DEPTH,
                    CNODE,
                    frame.0,
                    DEPTH,
                    CapRights::READ_WRITE,
                );
                t.eq(
                    "client 8: map the faulting page",
                    o.map(client_vs, frame, 0x4000_0000, CapRights::READ_WRITE),
                    Ok(()),
                );
                let mine = o.map_pages(0);
                let _ = o.map(VSPACE, copy, mine, CapRights::READ_WRITE);
                o.next_vaddr += 0x2000;
                let _ = rt::mem::write_u64(mine, 0xd00d);
                rt::reply(MessageInfo::new(0, 0, 0, 0));
            }
            _ => t.check("client 8: demand fault expected", false),
        }
        let (m, _) = rt::recv(ep);
        t.eq(
            "client: finished with no failures",
            (m.label(), rt::get_mr(0)),
            (99, 0),
        );
        rt::reply(MessageInfo::new(100, 0, 0, 0));
    }

    fn what_line(what: &str) -> &'static str {
        match what {
            "kernel memory" => "client 7: reading kernel memory faults to the handler",
            "kernel memory (write)" => "client 7: writing kernel memory faults to the handler",
            "the server's address" => "client 7: the server's memory is not in its address space",
            _ => "client 7: writing its own text is a permission fault",
        }
    }

    fn main(info: &'static BootInfo) {
        let mut t = Tester::new("semantics");
        let Some(mut o) = Objects::new(info) else {
            t.check("the server has Untyped memory", false);
            t.finish();
        };
        PARK.store(o.create(ObjectType::Notification).0, Ordering::SeqCst);
        retype_errors(&mut t, &mut o);
        cnode_errors(&mut t, &mut o);
        ipc_ordering(&mut t, &mut o);
        notifications(&mut t, &mut o);
        one_shot_reply(&mut t, &mut o);
        page_tables(&mut t, &mut o);
        faults_and_priorities(&mut t, &mut o);
        serve_client(&mut t, &mut o, info);
        t.finish();
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
