//! CNode operations and their errors, as seL4 reports them, and object lifetime.

mod common;
use common::*;

use rt::abi::error::LookupFailure;
use rt::invoke::*;
use rt::{Badge, CPtr, CapRights, ErrorReply, Word};
use sim::Pid;

#[test]
fn copy_errors_come_destination_first() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    sim.process("p")
        .cnode_bits(6)
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .spawn(|boot| {
            let src = cap(boot, "ep").0;
            let free = boot.first_free_slot;
            let empty = free + 1;
            // Occupied destination and empty source: DeleteFirst wins.
            assert_eq!(
                cnode_copy(ROOT, src, D, ROOT, empty, D, CapRights::ALL),
                Err(ErrorReply::DeleteFirst)
            );
            // Empty destination, empty source: the source lookup fails.
            assert_eq!(
                cnode_copy(ROOT, free, D, ROOT, empty, D, CapRights::ALL),
                Err(ErrorReply::FailedLookup {
                    source: true,
                    failure: LookupFailure::MissingCapability { bits_left: 64 }
                })
            );
            // Depth out of range.
            assert_eq!(
                cnode_copy(ROOT, free, 0, ROOT, src, D, CapRights::ALL),
                Err(ErrorReply::RangeError { min: 1, max: 64 })
            );
            // A slot beyond the CNode: the guard does not match.
            assert!(matches!(
                cnode_copy(ROOT, 1 << 20, D, ROOT, src, D, CapRights::ALL),
                Err(ErrorReply::FailedLookup {
                    source: false,
                    failure: LookupFailure::GuardMismatch { .. }
                })
            ));
            // A source root that is not a CNode.
            assert_eq!(
                cnode_copy(ROOT, free, D, CPtr(src), src, D, CapRights::ALL),
                Err(ErrorReply::FailedLookup {
                    source: true,
                    failure: LookupFailure::InvalidRoot
                })
            );
            // A partial depth that ends inside the CNode's guard.
            assert!(matches!(
                cnode_delete(ROOT, free, 3),
                Err(ErrorReply::FailedLookup { source: false, .. })
            ));
            // Nothing changed: the copy now works.
            ok(
                cnode_copy(ROOT, free, D, ROOT, src, D, CapRights::ALL),
                "copy",
            );
            // Invoking a CNode operation on another kernel object's cap.
            assert_eq!(
                cnode_delete(CPtr(rt::abi::boot::SLOT_TCB), 1, D),
                Err(ErrorReply::IllegalOperation)
            );
            // An empty slot as the invoked cap.
            assert_eq!(
                cnode_delete(CPtr(empty), 1, D),
                Err(ErrorReply::InvalidCapability { index: 0 })
            );
        })
        .unwrap();
    sim.run().unwrap();
}

#[test]
fn mint_sets_a_badge_once_and_masks_rights() {
    let sim = small();
    let ep = sim.endpoint().unwrap();
    sim.process("p")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .spawn(|boot| {
            let ep = cap(boot, "ep");
            let a = boot.first_free_slot;
            let b = a + 1;
            let c = a + 2;
            ok(
                cnode_mint(ROOT, a, D, ROOT, ep.0, D, CapRights::WRITE, Badge(42)),
                "mint",
            );
            // A badged cap cannot be badged again.
            assert_eq!(
                cnode_mint(ROOT, b, D, ROOT, a, D, CapRights::ALL, Badge(43)),
                Err(ErrorReply::IllegalOperation)
            );
            // Mutate cannot change an endpoint badge either.
            assert_eq!(
                cnode_mutate(ROOT, b, D, ROOT, a, D, Badge(1)),
                Err(ErrorReply::IllegalOperation)
            );
            ok(cnode_move(ROOT, c, D, ROOT, a, D), "move");
            // The badged write-only cap sends with its badge; it cannot receive.
            rt::nb_send(CPtr(c), msg(0, 0));
            rt::set_mr(0, 9);
            assert_eq!(rt::nb_recv(ep).1.0, 0, "nobody was waiting");
            assert_eq!(
                rt::call(CPtr(c), msg(0, 0)).label(),
                0,
                "nobody receives: this would block"
            );
        })
        .unwrap();
    // The process blocks forever in its last Call: a deadlock, reported.
    let err = sim.run().unwrap_err();
    assert!(
        matches!(err.failure, sim::Failure::Deadlock { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("BlockedOnSend"), "{err}");
}

#[test]
fn revoke_deletes_derived_caps_and_the_last_cap_destroys_the_object() {
    let sim = small();
    let ut = sim.untyped(16).unwrap();
    let pid = sim
        .process("p")
        .untyped("ut", &ut)
        .spawn(|boot| {
            let ut = cap(boot, "ut");
            let s = boot.first_free_slot;
            ok(
                untyped_retype(
                    ut,
                    rt::abi::object::ObjectType::Notification,
                    0,
                    ROOT,
                    0,
                    0,
                    s,
                    1,
                ),
                "retype",
            );
            ok(
                cnode_mint(ROOT, s + 1, D, ROOT, s, D, CapRights::ALL, Badge(1)),
                "mint 1",
            );
            ok(
                cnode_mint(ROOT, s + 2, D, ROOT, s, D, CapRights::ALL, Badge(2)),
                "mint 2",
            );
            ok(
                cnode_copy(ROOT, s + 3, D, ROOT, s + 1, D, CapRights::ALL),
                "copy",
            );
            rt::signal(CPtr(s + 3));
            assert_eq!(rt::poll(CPtr(s)).0, 1);
            // Revoking the badged cap takes its copy; revoking the original takes the rest.
            ok(cnode_revoke(ROOT, s + 1, D), "revoke badged");
            assert_eq!(
                rt::invoke::cnode_delete(CPtr(s + 3), 0, D),
                Err(ErrorReply::InvalidCapability { index: 0 })
            );
            rt::signal(CPtr(s + 1));
            ok(cnode_revoke(ROOT, s, D), "revoke");
            rt::signal(CPtr(s + 2)); // gone: nothing happens
            assert_eq!(rt::poll(CPtr(s)).0, 1);
            rt::println!("objects");
            ok(cnode_delete(ROOT, s, D), "delete the last cap");
            rt::println!("deleted");
        })
        .unwrap();
    let before = sim.object_count();
    sim.run().unwrap();
    assert_eq!(sim.console_of(pid), "objects\ndeleted\n");
    // The process is gone and so is everything made for it and by it.
    assert!(sim.object_count() < before);
}

#[test]
fn ending_a_process_destroys_its_objects() {
    let sim = small();
    let boot_free = sim.boot_available();
    let objects = sim.object_count();
    let ep = sim.endpoint().unwrap();
    let p = sim
        .process("p")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            rt::recv(cap(boot, "ep"));
        })
        .unwrap();
    sim.run().unwrap();
    assert!(sim.boot_available() < boot_free);
    sim.kill(p).unwrap();
    assert_eq!(sim.status(Pid(0)), Some(sim::ExitReason::Killed));
    // Only the harness's endpoint and the ASID pool it assigns from remain.
    assert_eq!(sim.object_count(), objects + 2);
    assert_eq!(sim.boot_available() + 16, boot_free);
}

/// `CNode_CopyRun`: every cap of the run copied, or on any error none, with
/// the index at fault reported as the aarch64 kernel reports it (its host
/// test `copy_run_copies_every_cap_or_none` makes the same checks).
#[test]
fn copy_run_copies_every_cap_or_none() {
    use rt::abi::object::ObjectType;
    let sim = small();
    let ut = sim.untyped(20).unwrap();
    sim.process("p")
        .cnode_bits(10)
        .untyped("ut", &ut)
        .spawn(|boot| {
            let ut = cap(boot, "ut");
            let src = 200;
            ok(
                untyped_retype(ut, ObjectType::SmallPage, 0, ROOT, 0, 0, src, 8),
                "frames",
            );
            let run = |dest: Word, src: Word, count: Word| {
                cnode_copy_run(ROOT, dest, D, ROOT, src, D, count, CapRights::ALL)
                    .map_err(|e| (e.frame, e.error))
            };
            let empty = |slot: Word| page_get_address(CPtr(slot)).is_err();
            // Success, rights masked.
            cnode_copy_run(ROOT, 300, D, ROOT, src, D, 8, CapRights::READ).unwrap();
            for i in 0..8 {
                assert_eq!(
                    page_get_address(CPtr(300 + i)),
                    page_get_address(CPtr(src + i))
                );
            }
            // An occupied destination.
            ok(
                untyped_retype(ut, ObjectType::SmallPage, 0, ROOT, 0, 0, 403, 1),
                "blocker",
            );
            assert_eq!(run(400, src, 8), Err((Some(3), ErrorReply::DeleteFirst)));
            assert!([0, 1, 2, 4, 5, 6, 7].iter().all(|i| empty(400 + i)));
            // An empty source in the middle of the run.
            assert_eq!(
                run(500, src + 4, 8),
                Err((
                    Some(4),
                    ErrorReply::FailedLookup {
                        source: true,
                        failure: LookupFailure::MissingCapability { bits_left: 64 }
                    }
                ))
            );
            assert!((500..508).all(empty));
            // Count out of range.
            for count in [0, rt::abi::invocation::MAX_COPY_RUN + 1] {
                assert_eq!(
                    run(500, src, count),
                    Err((None, ErrorReply::RangeError { min: 1, max: 1024 }))
                );
            }
            // Past the end of the destination CNode (2^10 slots).
            assert_eq!(
                run(1022, src, 4),
                Err((None, ErrorReply::RangeError { min: 1, max: 2 }))
            );
            assert!(empty(1022) && empty(1023));
            // An Untyped with children cannot be copied.
            assert_eq!(run(600, ut.0, 1), Err((Some(0), ErrorReply::RevokeFirst)));
            // A bad destination depth concerns the whole run.
            assert_eq!(
                cnode_copy_run(ROOT, 600, 0, ROOT, src, D, 1, CapRights::ALL)
                    .map_err(|e| (e.frame, e.error)),
                Err((None, ErrorReply::RangeError { min: 1, max: 64 }))
            );
            // Nothing changed: the run now succeeds; copies are children.
            run(400, src, 3).unwrap();
            for i in 0..3 {
                ok(cnode_delete(ROOT, 400 + i, D), "delete copy");
                assert!(!empty(src + i));
            }
            ok(cnode_revoke(ROOT, src + 5, D), "revoke");
            assert!(empty(305));
        })
        .unwrap();
    sim.run().unwrap();
}
