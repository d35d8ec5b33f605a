//! ASID pools, interrupts and device models, badged-send cancellation.

mod common;
use common::*;

use std::sync::{Arc, Mutex};

use rt::abi::boot::{SLOT_ASID_POOL, SLOT_CNODE, SLOT_IRQ_CONTROL, SLOT_TCB};
use rt::abi::object::ObjectType;
use rt::invoke::*;
use rt::{Badge, CPtr, CapRights, ErrorReply, Word};
use sim::{MmioDevice, Pid};

#[test]
fn vspaces_need_an_asid_before_use() {
    let sim = small();
    let ut = sim.untyped(20).unwrap();
    sim.process("loader")
        .asid_pool()
        .untyped("ut", &ut)
        .spawn(|boot| {
            let ut = cap(boot, "ut");
            let mut s = Slots(boot.first_free_slot);
            let vs = make(ut, ObjectType::VSpace, 0, &mut s);
            let pt = make(ut, ObjectType::PageTable, 0, &mut s);
            let tcb = make(ut, ObjectType::Tcb, 0, &mut s);
            let va: Word = 0x10_0000;
            assert_eq!(
                page_table_map(pt, vs, va, 0),
                Err(ErrorReply::InvalidCapability { index: 1 })
            );
            assert_eq!(
                tcb_configure(tcb, CPtr(0), CPtr(SLOT_CNODE), 0, vs, 0, 0, CPtr(0)),
                Err(ErrorReply::IllegalOperation)
            );
            // An unmapped VSpace cap cannot be copied either.
            assert_eq!(
                cnode_copy(ROOT, s.0, D, ROOT, vs.0, D, CapRights::ALL),
                Err(ErrorReply::IllegalOperation)
            );
            ok(asid_pool_assign(CPtr(SLOT_ASID_POOL), vs), "assign");
            assert_eq!(
                asid_pool_assign(CPtr(SLOT_ASID_POOL), vs),
                Err(ErrorReply::InvalidCapability { index: 1 })
            );
            ok(page_table_map(pt, vs, va, 0), "table");
            assert_eq!(
                page_table_map(pt, vs, va, 0),
                Err(ErrorReply::InvalidCapability { index: 0 })
            );
            // Unmapping a table another cap refers to needs a revoke first.
            let copy = s.next();
            ok(
                cnode_copy(ROOT, copy, D, ROOT, pt.0, D, CapRights::ALL),
                "copy table",
            );
            assert_eq!(page_table_unmap(pt), Err(ErrorReply::RevokeFirst));
            ok(cnode_delete(ROOT, copy, D), "delete copy");
            ok(page_table_unmap(pt), "unmap table");
            ok(
                tcb_configure(tcb, CPtr(0), CPtr(SLOT_CNODE), 0, vs, 0, 0, CPtr(0)),
                "configure",
            );
        })
        .unwrap();
    sim.run().unwrap();
}

#[test]
fn interrupts_signal_their_notification_until_acknowledged() {
    let sim = small();
    let n = sim.notification().unwrap();
    let ready = sim.notification().unwrap();
    let driver = sim
        .process("driver")
        .daemon()
        .irq_control()
        .notification("irq", &n, Badge(0b100), CapRights::ALL)
        .notification("ready", &ready, Badge(1), CapRights::ALL)
        .spawn(|boot| {
            let h = CPtr(boot.first_free_slot);
            assert_eq!(
                irq_control_get(CPtr(SLOT_IRQ_CONTROL), 64, ROOT, h.0, D),
                Err(ErrorReply::RangeError { min: 0, max: 63 })
            );
            ok(
                irq_control_get(CPtr(SLOT_IRQ_CONTROL), 5, ROOT, h.0, D),
                "get",
            );
            assert_eq!(
                irq_control_get(CPtr(SLOT_IRQ_CONTROL), 5, ROOT, h.0 + 1, D),
                Err(ErrorReply::RevokeFirst)
            );
            ok(irq_handler_set_notification(h, cap(boot, "irq")), "set");
            rt::signal(cap(boot, "ready"));
            let got = rt::wait(cap(boot, "irq"));
            rt::println!("irq {:#b}", got.0);
            ok(irq_handler_ack(h), "ack");
            // The second firing came while masked: it is delivered after the ack.
            let got = rt::wait(cap(boot, "irq"));
            rt::println!("irq again {:#b}", got.0);
            ok(irq_handler_clear(h), "clear");
            ok(cnode_delete(ROOT, h.0, D), "delete handler");
            ok(
                irq_control_get(CPtr(SLOT_IRQ_CONTROL), 5, ROOT, h.0, D),
                "get again",
            );
        })
        .unwrap();
    sim.run().unwrap(); // the driver waits for its first interrupt
    assert_eq!(sim.status(driver), None);
    sim.raise_irq(5);
    sim.raise_irq(5);
    sim.run().unwrap();
    assert_eq!(sim.status(driver), Some(sim::ExitReason::Exited(0)));
    assert_eq!(sim.console_of(Pid(0)), "irq 0b100\nirq again 0b100\n");
}

/// The writes a device saw: offset and bytes.
type WriteLog = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// A device that records writes and raises IRQ 7 on a write to offset 0.
struct Doorbell(WriteLog);

impl MmioDevice for Doorbell {
    fn read(&mut self, offset: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (offset as u8).wrapping_add(i as u8);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Option<u32> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((offset, data.to_vec()));
        (offset == 0).then_some(7)
    }
}

#[test]
fn device_models_see_mmio_accesses_and_raise_interrupts() {
    let sim = small();
    let log = Arc::new(Mutex::new(Vec::new()));
    let dev = sim
        .mmio(0x0a00_0000, 0x1000, Some(Box::new(Doorbell(log.clone()))))
        .unwrap();
    assert!(sim.mmio(0x0a00_0000, 0x1000, None).is_err(), "overlap");
    assert!(sim.mmio(sim::RAM_BASE, 0x1000, None).is_err(), "RAM");
    let n = sim.notification().unwrap();
    let ut = sim.untyped(16).unwrap();
    sim.process("driver")
        .irq_control()
        .mmio("dev", &dev)
        .untyped("ut", &ut)
        .notification("irq", &n, Badge(1), CapRights::ALL)
        .spawn(|boot| {
            let mut s = Slots(boot.first_free_slot);
            let h = CPtr(s.next());
            ok(
                irq_control_get(CPtr(SLOT_IRQ_CONTROL), 7, ROOT, h.0, D),
                "get",
            );
            ok(irq_handler_set_notification(h, cap(boot, "irq")), "set");
            let f = make(cap(boot, "dev"), ObjectType::SmallPage, 0, &mut s);
            let va = 0x100_0000;
            tables(
                cap(boot, "ut"),
                CPtr(rt::abi::boot::SLOT_VSPACE),
                va,
                3,
                &mut s,
            );
            ok(
                page_map(
                    f,
                    CPtr(rt::abi::boot::SLOT_VSPACE),
                    va,
                    CapRights::READ_WRITE,
                    0,
                ),
                "map",
            );
            assert_eq!(
                rt::mem::read_u32(va + 0x10),
                Ok(u32::from_le_bytes([0x10, 0x11, 0x12, 0x13]))
            );
            assert_eq!(rt::mem::write_u32(va + 4, 9), Ok(()));
            assert_eq!(rt::mem::write_u32(va, 1), Ok(()));
            assert_eq!(rt::wait(cap(boot, "irq")).0, 1);
        })
        .unwrap();
    sim.run().unwrap();
    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        log,
        vec![
            (4, 9u32.to_le_bytes().to_vec()),
            (0, 1u32.to_le_bytes().to_vec())
        ]
    );
}

#[test]
fn cancel_badged_sends_restarts_those_senders() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    for b in [1u64, 2, 1] {
        sim.process("sender")
            .endpoint("ep", &ep, Badge(b), CapRights::ALL)
            .daemon()
            .spawn(|boot| rt::send(cap(boot, "ep"), msg(0, 0)))
            .unwrap();
    }
    sim.process("owner")
        .priority(10)
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            let badged = boot.first_free_slot;
            ok(
                cnode_mint(ROOT, badged, D, ROOT, ep.0, D, CapRights::ALL, Badge(1)),
                "mint",
            );
            ok(cnode_cancel_badged_sends(ROOT, badged, D), "cancel");
            assert_eq!(
                cnode_cancel_badged_sends(ROOT, SLOT_TCB, D),
                Err(ErrorReply::IllegalOperation)
            );
            // The badge-1 senders restart their Send and queue again behind badge 2.
            let order: Vec<u64> = (0..3).map(|_| rt::recv(ep).1.0).collect();
            rt::println!("{order:?}");
        })
        .unwrap();
    sim.run().unwrap();
    assert_eq!(sim.console_of(Pid(3)), "[2, 1, 1]\n");
}

#[test]
fn a_server_given_a_clients_caps_fills_its_cspace_and_stops_it() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    let hello = sim.notification().unwrap();
    let client = sim
        .process("client")
        .endpoint("ep", &ep, Badge(1), CapRights::ALL)
        .spawn(|boot| {
            // Wait for the server to install a notification cap in slot 100.
            rt::call(cap(boot, "ep"), msg(0, 0));
            rt::signal(CPtr(100));
            loop {
                rt::yield_now();
            }
        })
        .unwrap();
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .notification("hello", &hello, Badge(9), CapRights::ALL)
        .process_caps(client)
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            rt::recv(ep);
            let their_cnode = cap(boot, "pid0/cnode");
            ok(
                cnode_copy(
                    their_cnode,
                    100,
                    D,
                    ROOT,
                    cap(boot, "hello").0,
                    D,
                    CapRights::WRITE,
                ),
                "copy into the client's CSpace",
            );
            rt::reply(msg(0, 0));
            assert_eq!(rt::wait(cap(boot, "hello")).0, 9);
            ok(tcb_suspend(cap(boot, "pid0/tcb")), "suspend the client");
            rt::println!("client stopped");
        })
        .unwrap();
    let err = sim.run().unwrap_err();
    // The suspended client cannot finish: reported, with its state.
    assert!(err.to_string().contains("Inactive"), "{err}");
    assert_eq!(sim.console_of(Pid(1)), "client stopped\n");
}
