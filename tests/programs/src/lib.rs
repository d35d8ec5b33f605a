//! Shared code of the QEMU test programs: a check-and-report harness, memory and thread helpers.
//!
//! Every program runs as an EL0 process on our kernel, written against
//! `rt` only. A test runner checks facts with [`Tester::check`], which
//! prints one line per check, and ends the run with [`Tester::finish`]:
//! `TEST_PASS`/`TEST_FAIL` and DebugHalt with status 0 or 1, which QEMU
//! passes on to `cargo xtask`.
#![cfg_attr(target_os = "none", no_std)]

use abi::boot::{BootInfo, CapKind, SLOT_CNODE, SLOT_TCB, SLOT_VSPACE};
use abi::invocation::{CONTEXT_PC, CONTEXT_SP, CONTEXT_TPIDR, CONTEXT_X0, USER_CONTEXT_WORDS};
use abi::object::ObjectType;
use abi::{CPtr, CapRights, ErrorReply, Word};
use rt::invoke;

/// Counts checks and reports them.
pub struct Tester {
    name: &'static str,
    passed: u32,
    failed: u32,
}

impl Tester {
    /// A tester for the named program.
    pub const fn new(name: &'static str) -> Self {
        Tester {
            name,
            passed: 0,
            failed: 0,
        }
    }

    /// Records one check, printing `ok <what>` or `FAIL <what>`.
    pub fn check(&mut self, what: &str, ok: bool) {
        if ok {
            self.passed += 1;
            rt::println!("ok {what}");
        } else {
            self.failed += 1;
            rt::println!("FAIL {what}");
        }
    }

    /// Checks that two values are equal, printing both when they are not.
    pub fn eq<T: PartialEq + core::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got == want {
            self.check(what, true);
        } else {
            self.failed += 1;
            rt::println!("FAIL {what}: got {got:?}, want {want:?}");
        }
    }

    /// How many checks failed so far.
    pub fn failed(&self) -> u32 {
        self.failed
    }

    /// Ends the test: prints the verdict and halts the system with status
    /// 0 when every check passed, 1 otherwise.
    pub fn finish(&self) -> ! {
        let verdict = if self.failed == 0 {
            "TEST_PASS"
        } else {
            "TEST_FAIL"
        };
        rt::println!(
            "{verdict} {}: {} passed, {} failed",
            self.name,
            self.passed,
            self.failed
        );
        rt::debug_halt(if self.failed == 0 { 0 } else { 1 })
    }
}

/// The depth of a plain CPtr (single-level CSpaces).
pub const DEPTH: Word = 64;

/// Memory and objects of a process that holds Untyped capabilities: a bump
/// allocator over one "ram" Untyped and the free slots of its CNode.
pub struct Objects {
    untyped: CPtr,
    next_slot: Word,
    slots_end: Word,
    /// The next free virtual address for [`Objects::map_pages`].
    pub next_vaddr: Word,
}

impl Objects {
    /// Uses the largest "ram" Untyped of the boot info and the free slots.
    pub fn new(info: &BootInfo) -> Option<Objects> {
        let ut = info
            .caps()
            .filter(|d| d.kind == CapKind::Untyped)
            .max_by_key(|d| d.size_bits)?;
        Some(Objects {
            untyped: CPtr(ut.slot),
            next_slot: info.first_free_slot,
            slots_end: 1 << info.cnode_radix,
            next_vaddr: 0x1000_0000,
        })
    }

    /// The Untyped objects are made from.
    pub fn untyped(&self) -> CPtr {
        self.untyped
    }

    /// A free slot.
    pub fn slot(&mut self) -> CPtr {
        assert!(self.next_slot < self.slots_end, "out of CNode slots");
        self.next_slot += 1;
        CPtr(self.next_slot - 1)
    }

    /// Creates `count` objects in consecutive slots; returns the first.
    pub fn retype(
        &mut self,
        ty: ObjectType,
        size_bits: Word,
        count: Word,
    ) -> Result<CPtr, ErrorReply> {
        let first = self.next_slot;
        invoke::untyped_retype(
            self.untyped,
            ty,
            size_bits,
            CPtr(SLOT_CNODE),
            0,
            0,
            first,
            count,
        )?;
        self.next_slot += count;
        Ok(CPtr(first))
    }

    /// Creates one object.
    pub fn create(&mut self, ty: ObjectType) -> CPtr {
        match self.retype(ty, 0, 1) {
            Ok(c) => c,
            Err(e) => panic!("retype {ty:?}: {e:?}"),
        }
    }

    /// Maps `frame` at `vaddr` in `vspace` as Normal cacheable memory,
    /// creating page tables as needed.
    pub fn map(
        &mut self,
        vspace: CPtr,
        frame: CPtr,
        vaddr: Word,
        rights: CapRights,
    ) -> Result<(), ErrorReply> {
        self.map_with(vspace, frame, vaddr, rights, abi::vm::DEFAULT_ATTRIBUTES)
    }

    /// Maps `frame` at `vaddr` in `vspace` with `attr` (`abi::vm`),
    /// creating page tables as needed.
    pub fn map_with(
        &mut self,
        vspace: CPtr,
        frame: CPtr,
        vaddr: Word,
        rights: CapRights,
        attr: Word,
    ) -> Result<(), ErrorReply> {
        loop {
            match invoke::page_map(frame, vspace, vaddr, rights, attr) {
                Err(ErrorReply::FailedLookup { .. }) => {
                    let pt = self.create(ObjectType::PageTable);
                    invoke::page_table_map(pt, vspace, vaddr, 0)?;
                }
                other => return other,
            }
        }
    }

    /// Maps `n` fresh zeroed pages read/write in our own address space;
    /// returns their address.
    pub fn map_pages(&mut self, n: Word) -> Word {
        let at = self.next_vaddr;
        for i in 0..n {
            let frame = self.create(ObjectType::SmallPage);
            if let Err(e) = self.map(
                CPtr(SLOT_VSPACE),
                frame,
                at + i * 4096,
                CapRights::READ_WRITE,
            ) {
                panic!("map page: {e:?}");
            }
        }
        self.next_vaddr += (n + 1) * 4096;
        at
    }

    /// Starts a thread in our own address space running `entry(arg)` at
    /// `priority`, with a fresh stack and IPC buffer and `fault_ep` as its
    /// fault endpoint (0: none). Returns its TCB.
    pub fn spawn(
        &mut self,
        entry: fn(Word) -> !,
        arg: Word,
        priority: Word,
        fault_ep: Word,
    ) -> CPtr {
        let tcb = self.create(ObjectType::Tcb);
        let stack = self.map_pages(4);
        let buffer_frame = self.create(ObjectType::SmallPage);
        let buffer = self.next_vaddr;
        self.next_vaddr += 2 * 4096;
        if let Err(e) = self.map(
            CPtr(SLOT_VSPACE),
            buffer_frame,
            buffer,
            CapRights::READ_WRITE,
        ) {
            panic!("map IPC buffer: {e:?}");
        }
        let r = invoke::tcb_configure(
            tcb,
            CPtr(fault_ep),
            CPtr(SLOT_CNODE),
            0,
            CPtr(SLOT_VSPACE),
            0,
            buffer,
            buffer_frame,
        );
        assert!(r.is_ok(), "configure thread: {r:?}");
        let r = invoke::tcb_set_priority(tcb, CPtr(SLOT_TCB), priority);
        assert!(r.is_ok(), "thread priority: {r:?}");
        let mut regs = [0; USER_CONTEXT_WORDS];
        regs[CONTEXT_PC] = thread_entry as extern "C" fn(Word, Word) -> ! as usize as Word;
        regs[CONTEXT_SP] = stack + 4 * 4096;
        regs[CONTEXT_X0] = entry as usize as Word;
        regs[CONTEXT_X0 + 1] = arg;
        regs[CONTEXT_TPIDR] = buffer;
        let r = invoke::tcb_write_registers(tcb, true, &regs);
        assert!(r.is_ok(), "start thread: {r:?}");
        tcb
    }
}

/// Where spawned threads start: x0 is the function (a `fn(Word) -> !`
/// written by [`Objects::spawn`]), x1 its argument.
extern "C" fn thread_entry(entry: Word, arg: Word) -> ! {
    // SAFETY: `entry` came from `entry as usize` in `spawn`, where it was a
    // `fn(Word) -> !` of this program; function pointers round-trip
    // through usize on AArch64.
    let f = unsafe { core::mem::transmute::<usize, fn(Word) -> !>(entry as usize) };
    f(arg)
}

/// The virtual counter (CNTVCT_EL0; under `-icount shift=0` it ticks once
/// per 16 instructions).
pub fn counter() -> u64 {
    #[cfg(target_arch = "aarch64")]
    {
        let v: u64;
        // SAFETY: reading the virtual counter has no side effects (the
        // kernel enables EL0 access in CNTKCTL_EL1).
        unsafe {
            core::arch::asm!("isb", "mrs {0}, cntvct_el0", out(reg) v, options(nomem, nostack))
        };
        v
    }
    #[cfg(not(target_arch = "aarch64"))]
    0
}

/// A page of shared memory two clients of the MM server talk through.
///
/// Clients hold no capability to each other, only to the MM server, so
/// the demo's clients coordinate through a shared object one creates and
/// grants to the other: word `i` of the page at `base` is a mailbox slot,
/// read and written with `rt::mem` (fresh loads and stores every time).
pub mod mailbox {
    use abi::Word;

    /// Slot: the state the demo asks for (see each program).
    pub const COMMAND: Word = 0;
    /// Slot: the state the peer reached.
    pub const STATE: Word = 1;
    /// Slots for values the peer reports (addresses, counts).
    pub const VALUE: Word = 2;

    /// Reads slot `i`.
    pub fn get(base: Word, i: Word) -> Word {
        rt::mem::read_u64(base + i * 8).unwrap_or(Word::MAX)
    }

    /// Writes slot `i`.
    pub fn put(base: Word, i: Word, value: Word) {
        let _ = rt::mem::write_u64(base + i * 8, value);
    }

    /// Yields between tries of `attempt` (each costs the MM server a
    /// message, so only every `YIELDS` yields) until it succeeds; gives up
    /// after `tries` attempts.
    pub fn poll<T, E>(tries: u64, mut attempt: impl FnMut() -> Result<T, E>) -> Result<T, E> {
        let mut last = attempt();
        for _ in 0..tries {
            if last.is_ok() {
                break;
            }
            for _ in 0..YIELDS {
                rt::yield_now();
            }
            last = attempt();
        }
        last
    }

    /// Maps the first shared object granted to this client, waiting until
    /// one is: `map(handle)` maps one (`Mm::shm_map`); handles are small
    /// numbers, so it tries the first 16 at each attempt.
    pub fn attach<M, E>(mut map: impl FnMut(u64) -> Result<M, E>) -> Result<M, E> {
        poll(10_000_000, || {
            let mut last = map(1);
            for handle in 2..=16 {
                if last.is_ok() {
                    break;
                }
                last = map(handle);
            }
            last
        })
    }

    /// Yields between two attempts of [`poll`].
    pub const YIELDS: u32 = 256;

    /// Yields until slot `i` holds `value` (at most `tries` yields);
    /// whether it did.
    pub fn wait(base: Word, i: Word, value: Word, tries: u64) -> bool {
        for _ in 0..tries {
            if get(base, i) == value {
                return true;
            }
            rt::yield_now();
        }
        get(base, i) == value
    }
}
