//! Deterministic scheduling, replay from a seed, deadlock and panic reports,
//! fault injection, kill and exit notification, thread creation through TCBs.

mod common;
use common::*;

use rt::abi::boot::{SLOT_CNODE, SLOT_IPC_BUFFER, SLOT_TCB, SLOT_VSPACE};
use rt::abi::invocation::{CONTEXT_PC, CONTEXT_X0};
use rt::abi::object::ObjectType;
use rt::invoke::*;
use rt::{Badge, CPtr, CapRights, ErrorReply, Word};
use sim::{ExitReason, Failure, Pid, Sim, TraceEvent};

/// Three clients call a server, which keeps a shared counter in its memory;
/// every client prints what it saw. Returns the trace, the console and the hash.
fn scenario(sim: &Sim) -> (Vec<TraceEvent>, Vec<String>, u64) {
    let ep = sim.endpoint().unwrap();
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            let mut count = 0;
            loop {
                let (_, badge) = rt::recv(ep);
                count += 1;
                rt::set_mr(0, count * 100 + badge.0);
                rt::reply(msg(0, 1));
            }
        })
        .unwrap();
    for i in 1..=3u64 {
        sim.process(&format!("c{i}"))
            .endpoint("ep", &ep, Badge(i), CapRights::ALL)
            .spawn(move |boot| {
                for _ in 0..4 {
                    rt::call(cap(boot, "ep"), msg(0, 0));
                    rt::println!("c{i} got {}", rt::get_mr(0));
                    let v = rt::mem::read_u64(rt::abi::boot::SLOT_NULL + sim::IPC_BUFFER_VADDR);
                    assert!(v.is_ok());
                }
            })
            .unwrap();
    }
    let report = sim.run().unwrap();
    let console = sim.console().into_iter().map(|l| l.text).collect();
    (sim.trace(), console, report.schedule_hash)
}

#[test]
fn a_seeded_run_replays_exactly() {
    let a = scenario(&seeded(0x5eed));
    let b = scenario(&seeded(0x5eed));
    assert!(!a.0.is_empty());
    assert_eq!(a.0, b.0, "same seed, same trace");
    assert_eq!(a.1, b.1);
    assert_eq!(a.2, b.2);
    // Some other seed interleaves differently.
    let differs = (1..20).any(|s| scenario(&seeded(s)).0 != a.0);
    assert!(differs, "the seed drives the schedule");
    // And the FIFO schedule is deterministic too.
    let f1 = scenario(&small());
    let f2 = scenario(&small());
    assert_eq!((f1.1, f1.2), (f2.1, f2.2));
}

#[test]
fn a_deadlock_is_an_error_naming_the_seed() {
    let sim = seeded(99);
    let a = sim.endpoint().unwrap();
    let b = sim.endpoint().unwrap();
    for (name, mine) in [("x", a), ("y", b)] {
        sim.process(name)
            .endpoint("ep", &mine, Badge(0), CapRights::ALL)
            .spawn(|boot| {
                rt::recv(cap(boot, "ep"));
            })
            .unwrap();
    }
    let err = sim.run().unwrap_err();
    let Failure::Deadlock { waiting } = &err.failure else {
        panic!("{err}");
    };
    assert_eq!(waiting.len(), 2);
    assert_eq!(err.seed, Some(99));
    assert!(err.to_string().contains("SIM_SEED=0x63"), "{err}");
}

#[test]
fn a_panicking_process_fails_the_run() {
    let sim = small();
    sim.process("bad").spawn(|_| panic!("boom")).unwrap();
    let err = sim.run().unwrap_err();
    assert!(matches!(&err.failure, Failure::Panicked { message, .. } if message == "boom"));
}

#[test]
fn a_livelock_hits_the_tick_budget() {
    let mut cfg = sim::SimConfig::small();
    cfg.max_ticks = 10_000;
    let sim = Sim::new(cfg);
    sim.process("spin")
        .spawn(|_| {
            loop {
                rt::yield_now();
            }
        })
        .unwrap();
    let err = sim.run().unwrap_err();
    assert_eq!(err.failure, Failure::TickLimit(10_000));
}

#[test]
fn kill_at_nth_syscall_and_exit_notification() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    let deaths = sim.notification().unwrap();
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            rt::recv(ep);
            loop {
                rt::reply_recv(ep, msg(0, 0));
            }
        })
        .unwrap();
    let victim = sim
        .process("victim")
        .endpoint("ep", &ep, Badge(1), CapRights::ALL)
        .spawn(|boot| {
            for i in 0.. {
                rt::println!("call {i}");
                rt::call(cap(boot, "ep"), msg(0, 0));
            }
        })
        .unwrap();
    sim.process("supervisor")
        .priority(10)
        .notification("deaths", &deaths, Badge(0), CapRights::ALL)
        .spawn(|boot| {
            let who = rt::wait(cap(boot, "deaths"));
            rt::println!("died: {:#x}", who.0);
        })
        .unwrap();
    sim.watch_exit(victim, &deaths, Badge(0x100)).unwrap();
    sim.kill_at_syscall(victim, 5).unwrap();
    sim.run().unwrap();
    assert_eq!(sim.status(victim), Some(ExitReason::KilledAtSyscall(5)));
    assert_eq!(sim.syscall_count(victim), 5);
    // The prints before the 5th syscall completed; the 5th never happened.
    assert_eq!(sim.console_of(victim), "call 0\ncall 1\n");
    assert_eq!(sim.console_of(Pid(2)), "died: 0x100\n");
}

#[test]
fn the_harness_kills_a_blocked_process() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    let p = sim
        .process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            rt::recv(cap(boot, "ep"));
            unreachable!();
        })
        .unwrap();
    sim.run().unwrap();
    assert_eq!(sim.status(p), None);
    sim.kill(p).unwrap();
    assert_eq!(sim.exits(), vec![(p, ExitReason::Killed)]);
    // A later client finds nobody: its Send blocks forever (a deadlock).
    sim.process("client")
        .endpoint("ep", &ep, Badge(1), CapRights::ALL)
        .spawn(|boot| rt::send(cap(boot, "ep"), msg(0, 0)))
        .unwrap();
    assert!(matches!(
        sim.run().unwrap_err().failure,
        Failure::Deadlock { .. }
    ));
}

#[test]
fn exit_status_and_return() {
    let sim = small();
    let a = sim.process("a").spawn(|_| rt::exit(3)).unwrap();
    let b = sim.process("b").spawn(|_| {}).unwrap();
    sim.run().unwrap();
    assert_eq!(sim.status(a), Some(ExitReason::Exited(3)));
    assert_eq!(sim.status(b), Some(ExitReason::Exited(0)));
}

#[test]
fn threads_made_from_tcbs_run_registered_entries() {
    let sim = small();
    let ut = sim.untyped(18).unwrap();
    let done = sim.notification().unwrap();
    let entry = sim.register_entry(|arg| {
        // The new thread: report its argument through the shared notification.
        let boot = rt::boot_info();
        rt::signal(CPtr(boot.find("done").map(|d| d.slot).unwrap_or(0)));
        rt::println!("thread arg {arg}");
    });
    sim.process("parent")
        .untyped("ut", &ut)
        .notification("done", &done, Badge(1), CapRights::ALL)
        .spawn(move |boot| {
            let ut = cap(boot, "ut");
            let mut s = Slots(boot.first_free_slot);
            let tcb = make(ut, ObjectType::Tcb, 0, &mut s);
            let buf = make(ut, ObjectType::SmallPage, 0, &mut s);
            let va: Word = 0x1000_0000;
            tables(ut, CPtr(SLOT_VSPACE), va, 3, &mut s);
            ok(
                page_map(buf, CPtr(SLOT_VSPACE), va, CapRights::READ_WRITE, 0),
                "map buffer",
            );
            assert_eq!(
                tcb_configure(
                    tcb,
                    CPtr(0),
                    CPtr(SLOT_CNODE),
                    0,
                    CPtr(SLOT_VSPACE),
                    0,
                    va + 8,
                    buf
                ),
                Err(ErrorReply::AlignmentError)
            );
            assert_eq!(
                tcb_configure(
                    tcb,
                    CPtr(0),
                    CPtr(SLOT_VSPACE),
                    0,
                    CPtr(SLOT_VSPACE),
                    0,
                    va,
                    buf
                ),
                Err(ErrorReply::IllegalOperation)
            );
            ok(
                tcb_configure(
                    tcb,
                    CPtr(0),
                    CPtr(SLOT_CNODE),
                    0,
                    CPtr(SLOT_VSPACE),
                    0,
                    va,
                    buf,
                ),
                "configure",
            );
            assert_eq!(
                tcb_set_priority(tcb, CPtr(SLOT_TCB), 256),
                Err(ErrorReply::RangeError { min: 0, max: 255 })
            );
            ok(tcb_set_priority(tcb, CPtr(SLOT_TCB), 100), "priority");
            let mut regs = [0; 4];
            regs[CONTEXT_PC] = entry;
            regs[CONTEXT_X0] = 7;
            ok(tcb_write_registers(tcb, true, &regs), "write registers");
            assert_eq!(rt::wait(cap(boot, "done")).0, 1);
            let ctx = ok(tcb_read_registers(tcb, false, 4), "read registers");
            assert_eq!(ctx[CONTEXT_PC], entry);
            assert_eq!(
                tcb_read_registers(CPtr(SLOT_TCB), false, 1),
                Err(ErrorReply::IllegalOperation)
            );
            assert_eq!(
                tcb_read_registers(tcb, false, 36),
                Err(ErrorReply::RangeError { min: 1, max: 35 })
            );
            // A thread whose pc names no function takes an instruction fault
            // (no handler: it stops), and suspend/resume accept it.
            let t2 = make(ut, ObjectType::Tcb, 0, &mut s);
            ok(
                tcb_configure(
                    t2,
                    CPtr(0),
                    CPtr(SLOT_CNODE),
                    0,
                    CPtr(SLOT_VSPACE),
                    0,
                    0,
                    CPtr(0),
                ),
                "configure t2",
            );
            ok(tcb_write_registers(t2, true, &[0xdead_0000]), "bad pc");
            rt::yield_now();
            ok(tcb_suspend(t2), "suspend");
            ok(tcb_resume(t2), "resume");
            let _ = SLOT_IPC_BUFFER;
        })
        .unwrap();
    sim.run().unwrap();
    assert_eq!(sim.console_of(Pid(0)), "thread arg 7\n");
}

#[test]
fn many_clients_under_random_schedules_all_complete() {
    for seed in [1, 2, 3] {
        let sim = seeded(seed);
        let ep = sim.endpoint().unwrap();
        sim.process("server")
            .endpoint("ep", &ep, Badge(0), CapRights::ALL)
            .daemon()
            .spawn(|boot| {
                let ep = cap(boot, "ep");
                let mut served = [0u64; 9];
                let (_, mut badge) = rt::recv(ep);
                loop {
                    served[badge.0 as usize] += 1;
                    rt::set_mr(0, served[badge.0 as usize]);
                    (_, badge) = rt::reply_recv(ep, msg(0, 1));
                }
            })
            .unwrap();
        for i in 1..=8u64 {
            sim.process(&format!("c{i}"))
                .endpoint("ep", &ep, Badge(i), CapRights::ALL)
                .spawn(move |boot| {
                    for n in 1..=20 {
                        rt::call(cap(boot, "ep"), msg(0, 0));
                        assert_eq!(rt::get_mr(0), n, "client {i} call {n}");
                    }
                })
                .unwrap();
        }
        let report = sim.run().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.exits.len(), 8);
    }
}
