//! Property tests of the capability machinery against its invariants.
//!
//! Random sequences of CNode and Untyped invocations run on a kernel; after
//! every step the derivation tree, the slots and the object reference
//! counts must agree, and a step that failed must have changed nothing.

use std::collections::BTreeMap;

use abi::invocation::Label;
use abi::object::ObjectType;
use abi::{CapRights, Word};
use proptest::prelude::*;

use crate::kernel::Kernel;
use crate::object::*;
use crate::{Sim, SimConfig};

/// Every non-empty slot of the machine: where, what, and its tree identity.
fn slots(k: &Kernel) -> BTreeMap<SlotRef, Slot> {
    let mut out = BTreeMap::new();
    for o in k.objs.ids() {
        if let Some(c) = k.objs.cnode(o) {
            for (&i, s) in &c.slots {
                if !s.cap.is_null() {
                    out.insert(SlotRef::CNode(o, i), *s);
                }
            }
        }
        if let Some(t) = k.objs.tcb(o) {
            for (i, s) in t.slots.iter().enumerate() {
                if !s.cap.is_null() {
                    let which = [
                        TcbSlot::CSpace,
                        TcbSlot::VSpace,
                        TcbSlot::Buffer,
                        TcbSlot::Caller,
                    ][i];
                    out.insert(SlotRef::Tcb(o, which), *s);
                }
            }
        }
    }
    out
}

fn check_invariants(k: &Kernel) -> Result<(), String> {
    let all = slots(k);
    // Reference counts are the caps that name each object.
    let mut refs: BTreeMap<ObjId, u32> = BTreeMap::new();
    for s in all.values() {
        if let Some(o) = s.cap.obj() {
            *refs.entry(o).or_default() += 1;
        }
    }
    for o in k.objs.ids() {
        let obj = k.objs.get(o).ok_or("missing object")?;
        if o == k.harness || matches!(obj.kind, Kind::AsidPool { .. }) {
            continue;
        }
        let want = refs.get(&o).copied().unwrap_or(0);
        if obj.refs != want {
            return Err(format!("object {o}: refs {} but {want} caps", obj.refs));
        }
        if want == 0 {
            return Err(format!("object {o} alive with no cap"));
        }
    }
    for (o, n) in &refs {
        if k.objs.get(*o).is_none() {
            return Err(format!("{n} caps to destroyed object {o}"));
        }
    }
    // The tree and the slots agree.
    for (loc, s) in &all {
        let node = k
            .cdt
            .get(&s.id)
            .ok_or(format!("slot {loc:?} not in the tree"))?;
        if node.loc != *loc {
            return Err(format!("node {} at {:?}, slot at {loc:?}", s.id, node.loc));
        }
    }
    for (id, node) in &k.cdt {
        if all.get(&node.loc).map(|s| s.id) != Some(*id) {
            return Err(format!(
                "node {id} names {:?} which does not hold it",
                node.loc
            ));
        }
        if let Some(p) = node.parent {
            let pn = k.cdt.get(&p).ok_or(format!("node {id}: parent {p} gone"))?;
            if !pn.children.contains(id) {
                return Err(format!("node {id} missing from its parent's children"));
            }
        }
        for c in &node.children {
            if k.cdt.get(c).and_then(|n| n.parent) != Some(*id) {
                return Err(format!("child {c} of {id} names another parent"));
            }
        }
    }
    Ok(())
}

/// An operation on slots 16..48 of the process's CSpace.
#[derive(Clone, Debug)]
enum Op {
    Retype(u8, Word, Word),
    Copy(Word, Word, Word),
    Mint(Word, Word, Word),
    Move(Word, Word),
    Mutate(Word, Word, Word),
    Delete(Word),
    Revoke(Word),
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 16u64..48;
    prop_oneof![
        (0u8..6, slot.clone(), 1u64..4).prop_map(|(t, s, n)| Op::Retype(t, s, n)),
        (slot.clone(), slot.clone(), 0u64..16).prop_map(|(a, b, r)| Op::Copy(a, b, r)),
        (slot.clone(), slot.clone(), 0u64..4).prop_map(|(a, b, g)| Op::Mint(a, b, g)),
        (slot.clone(), slot.clone()).prop_map(|(a, b)| Op::Move(a, b)),
        (slot.clone(), slot.clone(), 0u64..200).prop_map(|(a, b, g)| Op::Mutate(a, b, g)),
        slot.clone().prop_map(Op::Delete),
        slot.prop_map(Op::Revoke),
    ]
}

fn setup() -> (Sim, ObjId, ObjId) {
    let sim = Sim::new(SimConfig {
        ram_size: 8 << 20,
        boot_reserve: 2 << 20,
        ..SimConfig::default()
    });
    let ut = sim.untyped(16).unwrap_or_else(|e| panic!("{e}"));
    sim.process("p")
        .cnode_bits(6)
        .untyped("ut", &ut)
        .spawn(|_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    let (tid, cnode) = {
        let k = sim.shared.lock();
        let tid = k.procs[0].threads[0];
        let Cap::CNode { obj, .. } = k.cspace_root(tid) else {
            panic!("no CSpace")
        };
        (tid, obj)
    };
    (sim, tid, cnode)
}

fn run_op(k: &mut Kernel, me: ObjId, cnode: ObjId, op: &Op) -> bool {
    let root_slot = SlotRef::CNode(cnode, abi::boot::SLOT_CNODE as u32);
    let root = k.cap(root_slot);
    let (target, label, args): (Word, Label, Vec<Word>) = match *op {
        Op::Retype(t, s, n) => {
            let ty = [
                ObjectType::Endpoint,
                ObjectType::Notification,
                ObjectType::SmallPage,
                ObjectType::CNode,
                ObjectType::Untyped,
                ObjectType::PageTable,
            ][t as usize];
            (
                16,
                Label::UntypedRetype,
                vec![ty.word(), if t == 4 { 12 } else { 2 }, 0, 0, s, n],
            )
        }
        Op::Copy(d, s, r) => (2, Label::CNodeCopy, vec![d, 64, s, 64, r]),
        Op::Mint(d, s, b) => (
            2,
            Label::CNodeMint,
            vec![d, 64, s, 64, CapRights::ALL.word(), b],
        ),
        Op::Move(d, s) => (2, Label::CNodeMove, vec![d, 64, s, 64]),
        Op::Mutate(d, s, g) => (2, Label::CNodeMutate, vec![d, 64, s, 64, g]),
        Op::Delete(s) => (2, Label::CNodeDelete, vec![s, 64]),
        Op::Revoke(s) => (2, Label::CNodeRevoke, vec![s, 64]),
    };
    let slot = SlotRef::CNode(cnode, target as u32);
    let cap = k.cap(slot);
    let extra = [(root_slot, root)];
    k.invoke(me, slot, cap, label.word(), &args, &extra).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cap_operations_keep_the_tree_counts_and_slots_consistent(ops in prop::collection::vec(op(), 1..60)) {
        let (sim, me, cnode) = setup();
        let mut k = sim.shared.lock();
        check_invariants(&k).map_err(TestCaseError::fail)?;
        for op in &ops {
            let before = format!("{:?}", slots(&k));
            let objects = k.objs.ids().count();
            let ok = run_op(&mut k, me, cnode, op);
            if !ok {
                // A failed invocation changes nothing.
                prop_assert_eq!(&before, &format!("{:?}", slots(&k)), "{:?}", op);
                prop_assert_eq!(objects, k.objs.ids().count());
            }
            check_invariants(&k).map_err(|e| TestCaseError::fail(format!("after {op:?}: {e}")))?;
        }
        // Revoking the Untyped takes every object made from it.
        let ut = SlotRef::CNode(cnode, 16);
        if matches!(k.cap(ut), Cap::Untyped { .. }) {
            k.revoke(ut);
            check_invariants(&k).map_err(TestCaseError::fail)?;
            prop_assert!(!k.has_children(ut));
        }
    }
}

#[test]
fn guards_and_depths_resolve_like_sel4() {
    let (sim, me, cnode) = setup();
    let k = sim.shared.lock();
    // Slot 16 of a 6-bit CNode with a 58-bit zero guard.
    let (slot, rem) = k
        .resolve(k.cspace_root(me), 16, 64)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((slot, rem), (SlotRef::CNode(cnode, 16), 0));
    assert!(matches!(
        k.resolve(k.cspace_root(me), 1 << 63, 64),
        Err(abi::error::LookupFailure::GuardMismatch {
            bits_left: 64,
            guard_size: 58,
            ..
        })
    ));
    assert!(matches!(
        k.resolve(k.cspace_root(me), 0, 60),
        Err(abi::error::LookupFailure::DepthMismatch {
            bits_left: 60,
            bits_found: 64
        })
    ));
    assert!(matches!(
        k.lookup_for_op(false, k.cspace_root(me), 16, 65),
        Err(abi::ErrorReply::RangeError { min: 1, max: 64 })
    ));
}
