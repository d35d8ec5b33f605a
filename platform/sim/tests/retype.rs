//! Untyped retype under seL4's rules: sizes, alignment, the watermark, errors
//! that change nothing, device Untyped, reuse after revoke, injected failures.

mod common;
use common::*;

use rt::abi::object::ObjectType;
use rt::invoke::*;
use rt::{Badge, CPtr, CapRights, ErrorReply};

#[test]
fn objects_are_aligned_past_the_watermark() {
    let sim = small();
    let ut = sim.untyped(16).unwrap();
    sim.process("p")
        .untyped("ut", &ut)
        .spawn(|boot| {
            let ut = cap(boot, "ut");
            let base = boot.find("ut").unwrap().value;
            let mut s = Slots(boot.first_free_slot);
            make(ut, ObjectType::Endpoint, 0, &mut s); // 16 bytes at 0
            let f = make(ut, ObjectType::SmallPage, 0, &mut s); // aligned up to 4 KiB
            assert_eq!(ok(page_get_address(f), "address"), base + 4096);
            // 14 more pages fit, 15 do not: NotEnoughMemory with the bytes left.
            let at = s.0;
            assert_eq!(
                untyped_retype(ut, ObjectType::SmallPage, 0, ROOT, 0, 0, at, 15),
                Err(ErrorReply::NotEnoughMemory {
                    available: 65536 - 8192
                })
            );
            ok(
                untyped_retype(ut, ObjectType::SmallPage, 0, ROOT, 0, 0, at, 14),
                "14 pages",
            );
            assert_eq!(
                ok(page_get_address(CPtr(at + 13)), "last"),
                base + 65536 - 4096
            );
            assert_eq!(
                untyped_retype(ut, ObjectType::Endpoint, 0, ROOT, 0, 0, at + 14, 1),
                Err(ErrorReply::NotEnoughMemory { available: 0 })
            );
        })
        .unwrap();
    sim.run().unwrap();
}

#[test]
fn bad_arguments_return_sel4_errors_and_change_nothing() {
    let sim = small();
    let ut = sim.untyped(16).unwrap();
    let ep = sim.endpoint().unwrap();
    sim.process("p")
        .cnode_bits(8)
        .untyped("ut", &ut)
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .spawn(|boot| {
            let ut = cap(boot, "ut");
            let s = boot.first_free_slot;
            let r = |ty: ObjectType, size, off, n| untyped_retype(ut, ty, size, ROOT, 0, 0, off, n);
            assert_eq!(
                untyped_retype(ut, ObjectType::Untyped, 3, ROOT, 0, 0, s, 1),
                Err(ErrorReply::InvalidArgument { index: 1 })
            );
            assert_eq!(
                r(ObjectType::Untyped, 48, s, 1),
                Err(ErrorReply::RangeError { min: 0, max: 47 })
            );
            assert_eq!(
                r(ObjectType::CNode, 0, s, 1),
                Err(ErrorReply::InvalidArgument { index: 1 })
            );
            assert_eq!(
                r(ObjectType::HugePage, 0, s, 1),
                Err(ErrorReply::InvalidArgument { index: 0 })
            );
            assert_eq!(
                r(ObjectType::Endpoint, 0, s, 0),
                Err(ErrorReply::RangeError {
                    min: 1,
                    max: 256 - s
                })
            );
            assert_eq!(
                r(ObjectType::Endpoint, 0, s, 257),
                Err(ErrorReply::RangeError { min: 1, max: 256 })
            );
            assert_eq!(
                r(ObjectType::Endpoint, 0, 256, 1),
                Err(ErrorReply::RangeError { min: 0, max: 255 })
            );
            assert_eq!(
                r(ObjectType::Endpoint, 0, 250, 7),
                Err(ErrorReply::RangeError { min: 1, max: 6 })
            );
            // An occupied slot in the window.
            let ep = cap(boot, "ep").0;
            assert_eq!(
                r(ObjectType::Endpoint, 0, ep - 1, 2),
                Err(ErrorReply::DeleteFirst)
            );
            assert_eq!(
                r(ObjectType::LargePage, 0, s, 1),
                Err(ErrorReply::NotEnoughMemory { available: 65536 })
            );
            // An unknown type number, through the raw interface.
            rt::set_mrs(&[99, 0, 0, 0, s, 1]);
            rt::set_cap(0, ROOT);
            let info = rt::call(ut, rt::MessageInfo::new(1, 0, 1, 6));
            assert_eq!(info.label(), rt::Error::InvalidArgument.word());
            assert_eq!(rt::get_mr(0), 0);
            // Too short a message.
            let info = rt::call(ut, rt::MessageInfo::new(1, 0, 1, 5));
            assert_eq!(info.label(), rt::Error::TruncatedMessage.word());
            // None of that used memory: the first page still goes at offset 0.
            let f = make(ut, ObjectType::SmallPage, 0, &mut Slots(s));
            assert_eq!(
                ok(page_get_address(f), "address"),
                boot.find("ut").unwrap().value
            );
        })
        .unwrap();
    sim.run().unwrap();
}

#[test]
fn an_untyped_is_reused_after_revoke() {
    let sim = small();
    let ut = sim.untyped(14).unwrap();
    sim.process("p")
        .untyped("ut", &ut)
        .spawn(|boot| {
            let ut = cap(boot, "ut");
            let s = boot.first_free_slot;
            ok(
                untyped_retype(ut, ObjectType::SmallPage, 0, ROOT, 0, 0, s, 4),
                "fill",
            );
            let first = ok(page_get_address(CPtr(s)), "address");
            assert!(matches!(
                untyped_retype(ut, ObjectType::SmallPage, 0, ROOT, 0, 0, s + 4, 1),
                Err(ErrorReply::NotEnoughMemory { .. })
            ));
            // A copy of an Untyped with children is refused.
            assert_eq!(
                cnode_copy(ROOT, s + 10, D, ROOT, ut.0, D, CapRights::ALL),
                Err(ErrorReply::RevokeFirst)
            );
            ok(cnode_revoke(ROOT, ut.0, D), "revoke");
            ok(
                untyped_retype(ut, ObjectType::SmallPage, 0, ROOT, 0, 0, s, 4),
                "again",
            );
            assert_eq!(ok(page_get_address(CPtr(s)), "address"), first);
        })
        .unwrap();
    sim.run().unwrap();
}

#[test]
fn device_untyped_makes_only_frames() {
    let sim = small();
    let region = sim.mmio(0x0900_0000, 0x2000, None).unwrap();
    sim.process("driver")
        .mmio("uart", &region)
        .all_ram("ram")
        .spawn(|boot| {
            let dev = cap(boot, "uart");
            let ram = cap(boot, "ram");
            let mut s = Slots(boot.first_free_slot + 40);
            assert_eq!(
                untyped_retype(dev, ObjectType::Endpoint, 0, ROOT, 0, 0, s.0, 1),
                Err(ErrorReply::InvalidArgument { index: 1 })
            );
            assert_eq!(
                untyped_retype(dev, ObjectType::PageTable, 0, ROOT, 0, 0, s.0, 1),
                Err(ErrorReply::InvalidArgument { index: 1 })
            );
            let f = make(dev, ObjectType::SmallPage, 0, &mut s);
            assert_eq!(ok(page_get_address(f), "address"), 0x0900_0000);
            let vs = CPtr(rt::abi::boot::SLOT_VSPACE);
            let va = 0x1000_0000;
            tables(ram, vs, va, 3, &mut s);
            ok(page_map(f, vs, va, CapRights::READ_WRITE, 0), "map device");
            ok(
                rt::mem::write_u32(va + 8, 0xfeed_f00d).map_err(|_| ErrorReply::IllegalOperation),
                "mmio write",
            );
        })
        .unwrap();
    sim.run().unwrap();
    let mut b = [0; 4];
    assert!(sim.read_phys(0x0900_0008, &mut b));
    assert_eq!(u32::from_le_bytes(b), 0xfeed_f00d);
}

#[test]
fn injected_retype_failure_changes_nothing() {
    let sim = small();
    let ut = sim.untyped(16).unwrap();
    sim.fail_retype(2);
    sim.process("p")
        .untyped("ut", &ut)
        .spawn(|boot| {
            let ut = cap(boot, "ut");
            let base = boot.find("ut").unwrap().value;
            let s = boot.first_free_slot;
            ok(
                untyped_retype(ut, ObjectType::SmallPage, 0, ROOT, 0, 0, s, 1),
                "first",
            );
            assert_eq!(
                untyped_retype(ut, ObjectType::SmallPage, 0, ROOT, 0, 0, s + 1, 1),
                Err(ErrorReply::NotEnoughMemory {
                    available: 65536 - 4096
                })
            );
            assert_eq!(
                cnode_delete(CPtr(s + 1), 0, D),
                Err(ErrorReply::InvalidCapability { index: 0 }),
                "the destination stayed empty"
            );
            ok(
                untyped_retype(ut, ObjectType::SmallPage, 0, ROOT, 0, 0, s + 1, 1),
                "third",
            );
            assert_eq!(ok(page_get_address(CPtr(s + 1)), "address"), base + 4096);
        })
        .unwrap();
    sim.run().unwrap();
    assert_eq!(sim.retype_count(), 3);
}
