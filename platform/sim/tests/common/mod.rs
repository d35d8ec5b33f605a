//! Helpers shared by the simulator's integration tests.
#![allow(dead_code)]

use rt::abi::boot::{BootInfo, SLOT_CNODE};
use rt::{CPtr, CapRights, ErrorReply, MessageInfo, Word};
use sim::{Sim, SimConfig};

/// A small FIFO-scheduled machine.
pub fn small() -> Sim {
    Sim::new(SimConfig::small())
}

/// A small machine with a seeded schedule (exactly this seed: `SIM_SEED`
/// does not override it), tracing on.
pub fn seeded(seed: u64) -> Sim {
    Sim::new(SimConfig {
        schedule: sim::Schedule::Seeded {
            seed,
            preempt_one_in: 4,
        },
        trace: true,
        ..SimConfig::small()
    })
}

/// The slot of the capability named `name`.
pub fn cap(boot: &BootInfo, name: &str) -> CPtr {
    CPtr(boot.find(name).map(|d| d.slot).unwrap_or(0))
}

/// The process's root CNode.
pub const ROOT: CPtr = CPtr(SLOT_CNODE);
/// Depth of a plain slot number.
pub const D: Word = 64;

/// A message tag with `len` registers.
pub fn msg(label: Word, len: usize) -> MessageInfo {
    MessageInfo::new(label, 0, 0, len)
}

/// All rights but Grant.
pub const NO_GRANT: CapRights = CapRights::new(true, false, true, true);

/// Unwraps a result inside a simulated process with a message naming the step.
pub fn ok<T>(r: Result<T, ErrorReply>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

use rt::abi::object::ObjectType;

/// A slot allocator over the process's boot CSpace.
pub struct Slots(pub Word);

impl Slots {
    /// The next free slot.
    pub fn next(&mut self) -> Word {
        self.0 += 1;
        self.0 - 1
    }
}

/// Retypes one object of `ty` from `ut` into a fresh slot.
pub fn make(ut: CPtr, ty: ObjectType, size: Word, slots: &mut Slots) -> CPtr {
    let s = slots.next();
    ok(
        rt::invoke::untyped_retype(ut, ty, size, ROOT, 0, 0, s, 1),
        "retype",
    );
    CPtr(s)
}

/// Installs page tables in `vspace` until a page at `vaddr` can be mapped
/// (`levels` tables: 3 for a 4 KiB page from scratch, 2 for a 2 MiB block).
pub fn tables(ut: CPtr, vspace: CPtr, vaddr: Word, levels: usize, slots: &mut Slots) {
    for _ in 0..levels {
        let pt = make(ut, ObjectType::PageTable, 0, slots);
        ok(
            rt::invoke::page_table_map(pt, vspace, vaddr, 0),
            "page table map",
        );
    }
}
