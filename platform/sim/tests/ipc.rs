//! Endpoint IPC as seL4's test suite states it: ordering, badges, rights,
//! one-shot replies, NBSend, cap transfer and unwrapping, notifications.

mod common;
use common::*;

use rt::{Badge, CPtr, CapRights, ErrorReply, MessageInfo};
use sim::{ExitReason, Pid};

#[test]
fn call_reply_round_trip_with_ordering_and_badges() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            let (mut info, mut badge) = rt::recv(ep);
            loop {
                let a = rt::get_mr(0);
                let b = rt::get_mr(1);
                rt::println!("from {} label {} args {a} {b}", badge.0, info.label());
                rt::set_mr(0, a + b);
                rt::set_mr(1, badge.0);
                (info, badge) = rt::reply_recv(ep, msg(0, 2));
            }
        })
        .unwrap();
    for (name, badge) in [("a", 7u64), ("b", 9)] {
        sim.process(name)
            .endpoint("ep", &ep, Badge(badge), CapRights::ALL)
            .spawn(move |boot| {
                let ep = cap(boot, "ep");
                for i in 0..3u64 {
                    rt::set_mr(0, i);
                    rt::set_mr(1, 100);
                    let r = rt::call(ep, msg(5, 2));
                    assert_eq!(r.length(), 2);
                    assert_eq!(rt::get_mr(0), i + 100);
                    assert_eq!(rt::get_mr(1), badge);
                }
            })
            .unwrap();
    }
    let report = sim.run().unwrap();
    assert_eq!(report.exits.len(), 2);
    let out = sim.console_of(Pid(0));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6);
    // As on seL4, Call and ReplyRecv switch directly between client and
    // server: the first client keeps the CPU until it is done.
    for (i, line) in lines.iter().enumerate() {
        let badge = if i < 3 { 7 } else { 9 };
        assert_eq!(*line, format!("from {badge} label 5 args {} 100", i % 3));
    }
}

#[test]
fn long_messages_use_the_ipc_buffer() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            let (info, _) = rt::recv(ep);
            let mut words = [0; 120];
            rt::get_mrs(&mut words[..info.length()]);
            let sum: u64 = words.iter().sum();
            rt::set_mr(0, sum);
            rt::set_mr(119, info.length() as u64);
            rt::reply(msg(0, 120));
            rt::recv(ep);
        })
        .unwrap();
    sim.process("client")
        .endpoint("ep", &ep, Badge(1), CapRights::ALL)
        .spawn(|boot| {
            let words: Vec<u64> = (1..=120).collect();
            rt::set_mrs(&words);
            let r = rt::call(cap(boot, "ep"), msg(1, 120));
            assert_eq!(r.length(), 120);
            assert_eq!(rt::get_mr(0), 120 * 121 / 2);
            assert_eq!(rt::get_mr(119), 120);
        })
        .unwrap();
    sim.run().unwrap();
}

#[test]
fn sends_queue_in_fifo_order() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    let go = sim.notification().unwrap();
    // Three senders block in order before the receiver looks.
    for i in 1..=3u64 {
        sim.process(&format!("s{i}"))
            .endpoint("ep", &ep, Badge(i), CapRights::ALL)
            .spawn(move |boot| {
                rt::set_mr(0, i * 10);
                rt::send(cap(boot, "ep"), msg(0, 1));
            })
            .unwrap();
    }
    sim.process("receiver")
        .priority(10)
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .notification("go", &go, Badge(1), CapRights::ALL)
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            for i in 1..=3u64 {
                let (_, badge) = rt::recv(ep);
                assert_eq!(badge.0, i);
                assert_eq!(rt::get_mr(0), i * 10);
            }
        })
        .unwrap();
    sim.run().unwrap();
}

#[test]
fn send_without_write_is_dropped_and_call_gets_invalid_capability() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            loop {
                let (_, badge) = rt::recv(ep);
                rt::println!("got {}", badge.0);
                rt::reply(msg(0, 0));
            }
        })
        .unwrap();
    sim.process("client")
        .endpoint("ro", &ep, Badge(1), CapRights::READ)
        .endpoint("rw", &ep, Badge(2), CapRights::ALL)
        .spawn(|boot| {
            rt::send(cap(boot, "ro"), msg(0, 0));
            let r = rt::call(cap(boot, "ro"), msg(0, 0));
            assert_eq!(r.label(), rt::Error::InvalidCapability.word());
            assert_eq!(rt::get_mr(0), 0);
            rt::call(cap(boot, "rw"), msg(0, 0));
        })
        .unwrap();
    sim.run().unwrap();
    assert_eq!(sim.console_of(Pid(0)), "got 2\n");
}

#[test]
fn receive_without_read_is_a_cap_fault() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    let faults = sim.endpoint().unwrap();
    sim.process("handler")
        .endpoint("faults", &faults, Badge(0), CapRights::ALL)
        .spawn(|boot| {
            let (info, badge) = rt::recv(cap(boot, "faults"));
            let mut mrs = [0; 5];
            rt::get_mrs(&mut mrs);
            let f = rt::abi::fault::Fault::from_message(info.label(), &mrs[..info.length()]);
            match f {
                Some(rt::abi::fault::Fault::CapFault(c)) => {
                    assert!(c.in_receive_phase);
                    assert_eq!(badge.0, 33);
                    rt::println!("cap fault on {}", c.cptr);
                }
                other => panic!("unexpected {other:?}"),
            }
        })
        .unwrap();
    let victim = sim
        .process("victim")
        .endpoint("wo", &ep, Badge(0), CapRights::WRITE)
        .fault_handler(&faults, Badge(33))
        .daemon()
        .spawn(|boot| {
            rt::recv(cap(boot, "wo"));
            unreachable!("a receive without Read must not return");
        })
        .unwrap();
    sim.run().unwrap();
    assert_eq!(sim.console_of(Pid(0)), format!("cap fault on {}\n", 16));
    assert_eq!(sim.status(victim), None);
    sim.kill(victim).unwrap();
    assert_eq!(sim.status(victim), Some(ExitReason::Killed));
}

#[test]
fn caps_move_only_with_grant_and_own_endpoint_caps_unwrap() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    let n = sim.notification().unwrap();
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            let slot = boot.first_free_slot;
            rt::set_receive_path(ROOT, slot, D);
            // 1: sent without Grant: no cap arrives.
            let (info, _) = rt::recv(ep);
            assert_eq!(info.extra_caps(), 0);
            assert_eq!(
                rt::invoke::cnode_delete(ROOT, slot, D),
                Ok(()),
                "deleting an empty slot is fine"
            );
            // 2: with Grant: the notification cap arrives in the slot.
            let (info, _) = rt::recv(ep);
            assert_eq!(info.extra_caps(), 1);
            assert_eq!(info.caps_unwrapped(), 0);
            rt::signal(CPtr(slot));
            assert_eq!(rt::poll(CPtr(slot)).0, 5);
            // 3: a cap to this very endpoint arrives as its badge.
            let (info, badge) = rt::recv(ep);
            assert_eq!(badge.0, 2);
            assert_eq!(info.extra_caps(), 1);
            assert_eq!(info.caps_unwrapped(), 0b1);
            assert_eq!(rt::get_badge(0).0, 77);
            rt::println!("done");
            rt::recv(ep);
        })
        .unwrap();
    sim.process("client")
        .endpoint("nogrant", &ep, Badge(1), NO_GRANT)
        .endpoint("grant", &ep, Badge(2), CapRights::ALL)
        .endpoint("mine", &ep, Badge(77), CapRights::ALL)
        .notification("n", &n, Badge(5), CapRights::ALL)
        .spawn(|boot| {
            rt::set_cap(0, cap(boot, "n"));
            rt::send(cap(boot, "nogrant"), MessageInfo::new(0, 0, 1, 0));
            rt::set_cap(0, cap(boot, "n"));
            rt::send(cap(boot, "grant"), MessageInfo::new(0, 0, 1, 0));
            rt::set_cap(0, cap(boot, "mine"));
            rt::send(cap(boot, "grant"), MessageInfo::new(0, 0, 1, 0));
        })
        .unwrap();
    sim.run().unwrap();
    assert_eq!(sim.console_of(Pid(0)), "done\n");
}

#[test]
fn reply_caps_are_one_shot() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            let saved = boot.first_free_slot;
            rt::recv(ep);
            // Save the reply cap, reply through it, and try again.
            ok(rt::invoke::cnode_save_caller(ROOT, saved, D), "save caller");
            assert_eq!(
                rt::invoke::cnode_save_caller(ROOT, saved, D),
                Err(ErrorReply::DeleteFirst)
            );
            rt::set_mr(0, 1);
            rt::send(CPtr(saved), msg(0, 1));
            rt::set_mr(0, 2);
            rt::send(CPtr(saved), msg(0, 1)); // the slot is empty now: nothing happens
            rt::reply(msg(0, 1)); // no reply cap in the TCB either
            // The next call works as usual, and a second Reply is ignored.
            rt::recv(ep);
            rt::set_mr(0, 3);
            rt::reply(msg(0, 1));
            rt::set_mr(0, 4);
            rt::reply(msg(0, 1));
            rt::recv(ep);
        })
        .unwrap();
    sim.process("client")
        .endpoint("ep", &ep, Badge(1), CapRights::ALL)
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            rt::call(ep, msg(0, 0));
            assert_eq!(rt::get_mr(0), 1);
            rt::call(ep, msg(0, 0));
            assert_eq!(rt::get_mr(0), 3);
        })
        .unwrap();
    sim.run().unwrap();
}

#[test]
fn a_pending_reply_cap_survives_polls_and_failed_receives() {
    // seL4's handleRecv deletes the caller cap only when it goes on to
    // receive on an endpoint: polling a notification or a receive whose
    // lookup fails leaves it, so the server can still reply.
    let sim = small();
    let ep = sim.endpoint().unwrap();
    let n = sim.notification().unwrap();
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .notification("n", &n, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            rt::recv(ep);
            let _ = rt::poll(cap(boot, "n"));
            rt::set_mr(0, 42);
            rt::reply(msg(0, 1));
            rt::recv(ep);
        })
        .unwrap();
    sim.process("client")
        .endpoint("ep", &ep, Badge(1), CapRights::ALL)
        .spawn(|boot| {
            rt::call(cap(boot, "ep"), msg(0, 0));
            assert_eq!(rt::get_mr(0), 42);
        })
        .unwrap();
    sim.run().unwrap();
}

#[test]
fn nbsend_drops_when_no_receiver_waits() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    let n = sim.notification().unwrap();
    sim.process("server")
        .priority(150)
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .notification("n", &n, Badge(0), CapRights::ALL)
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            assert_eq!(rt::nb_recv(ep).1.0, 0);
            let (_, b) = rt::recv(ep);
            assert_eq!((b.0, rt::get_mr(0)), (1, 11));
            rt::wait(cap(boot, "n"));
            // The second NBSend came while nobody waited: gone.
            let (info, b) = rt::nb_recv(ep);
            assert_eq!((info.word(), b.0), (0, 0));
            rt::println!("ok");
        })
        .unwrap();
    sim.process("client")
        .priority(50)
        .endpoint("ep", &ep, Badge(1), CapRights::ALL)
        .notification("n", &n, Badge(1), CapRights::ALL)
        .spawn(|boot| {
            rt::set_mr(0, 11);
            rt::nb_send(cap(boot, "ep"), msg(0, 1));
            rt::set_mr(0, 22);
            rt::nb_send(cap(boot, "ep"), msg(0, 1));
            rt::signal(cap(boot, "n"));
        })
        .unwrap();
    sim.run().unwrap();
    assert_eq!(sim.console_of(Pid(0)), "ok\n");
}

#[test]
fn notifications_or_badges_poll_and_wait() {
    let sim = small();
    let n = sim.notification().unwrap();
    let turn = sim.notification().unwrap();
    sim.process("signaller")
        .priority(150)
        .notification("a", &n, Badge(1), CapRights::ALL)
        .notification("b", &n, Badge(2), CapRights::ALL)
        .notification("c", &n, Badge(4), CapRights::ALL)
        .notification("turn", &turn, Badge(1), CapRights::ALL)
        .spawn(|boot| {
            rt::signal(cap(boot, "a"));
            rt::signal(cap(boot, "c"));
            rt::signal(cap(boot, "a"));
            rt::wait(cap(boot, "turn"));
            rt::signal(cap(boot, "b"));
        })
        .unwrap();
    sim.process("waiter")
        .priority(100)
        .notification("n", &n, Badge(0), CapRights::READ)
        .notification("turn", &turn, Badge(1), CapRights::WRITE)
        .spawn(|boot| {
            let n = cap(boot, "n");
            assert_eq!(rt::poll(n).0, 0b101);
            assert_eq!(rt::poll(n).0, 0);
            rt::signal(cap(boot, "turn"));
            assert_eq!(rt::wait(n).0, 0b010);
        })
        .unwrap();
    sim.run().unwrap();
}

#[test]
fn a_bound_notification_wakes_a_recv() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    let n = sim.notification().unwrap();
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .notification("n", &n, Badge(0), CapRights::ALL)
        .spawn(|boot| {
            let tcb = CPtr(rt::abi::boot::SLOT_TCB);
            ok(
                rt::invoke::tcb_bind_notification(tcb, cap(boot, "n")),
                "bind",
            );
            assert_eq!(
                rt::invoke::tcb_bind_notification(tcb, cap(boot, "n")),
                Err(ErrorReply::IllegalOperation)
            );
            let (_, badge) = rt::recv(cap(boot, "ep"));
            assert_eq!(badge.0, 0x40);
            ok(rt::invoke::tcb_unbind_notification(tcb), "unbind");
        })
        .unwrap();
    sim.process("client")
        .priority(50)
        .notification("n", &n, Badge(0x40), CapRights::WRITE)
        .spawn(|boot| rt::signal(cap(boot, "n")))
        .unwrap();
    sim.run().unwrap();
}
