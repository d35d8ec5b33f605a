//! A fake machine for host tests: flat RAM, a console buffer, a recorded halt.

use alloc::vec::Vec;

use crate::machine::Machine;

/// A machine with `size` bytes of RAM at `base` (zeroed, allocated once:
/// the fake itself never allocates after creation, so the tests can count
/// the kernel's own allocations).
pub struct FakeMachine {
    base: u64,
    ram: Vec<u8>,
    /// What was written on the console (up to its capacity, 1 MiB).
    pub console: Vec<u8>,
    /// The status of DebugHalt, if called.
    pub halted: Option<u32>,
    /// Interrupt enable state, by line.
    pub irq_enabled: Vec<Option<bool>>,
    /// TLB invalidations made.
    pub flushes: u64,
}

impl FakeMachine {
    /// A machine with `size` bytes of RAM at `base`.
    pub fn new(base: u64, size: u64) -> FakeMachine {
        FakeMachine {
            base,
            ram: alloc::vec![0; size as usize],
            console: Vec::with_capacity(1 << 20),
            halted: None,
            irq_enabled: alloc::vec![None; 1024],
            flushes: 0,
        }
    }

    /// The RAM bytes `[paddr, paddr + len)`. Panics outside RAM: the
    /// kernel only names memory it was given (as on the real machine).
    fn range(&self, paddr: u64, len: usize) -> core::ops::Range<usize> {
        let at = paddr
            .checked_sub(self.base)
            .filter(|&o| o as usize + len <= self.ram.len())
            .unwrap_or_else(|| panic!("kernel access to non-RAM {paddr:#x}+{len:#x}"));
        at as usize..at as usize + len
    }
}

impl Machine for FakeMachine {
    fn read_word(&self, paddr: u64) -> u64 {
        let mut b = [0; 8];
        self.read_bytes(paddr, &mut b);
        u64::from_le_bytes(b)
    }
    fn write_word(&mut self, paddr: u64, value: u64) {
        self.write_bytes(paddr, &value.to_le_bytes());
    }
    fn zero(&mut self, paddr: u64, len: u64) {
        let r = self.range(paddr, len as usize);
        self.ram[r].fill(0);
    }
    fn read_bytes(&self, paddr: u64, out: &mut [u8]) {
        out.copy_from_slice(&self.ram[self.range(paddr, out.len())]);
    }
    fn write_bytes(&mut self, paddr: u64, data: &[u8]) {
        let r = self.range(paddr, data.len());
        self.ram[r].copy_from_slice(data);
    }
    fn tlb_flush_page(&mut self, _asid: u16, _vaddr: u64) {
        self.flushes += 1;
    }
    fn tlb_flush_asid(&mut self, _asid: u16) {
        self.flushes += 1;
    }
    fn irq_set_enabled(&mut self, irq: u32, enabled: bool) {
        if let Some(e) = self.irq_enabled.get_mut(irq as usize) {
            *e = Some(enabled);
        }
    }
    fn console_write(&mut self, bytes: &[u8]) {
        let room = self.console.capacity() - self.console.len();
        self.console
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
    fn halt(&mut self, status: u32) {
        self.halted = Some(status);
    }
}

/// A booted kernel with a server and a client, driven syscall by syscall.
pub struct World {
    /// The kernel.
    pub k: super::Kernel<FakeMachine>,
    /// The server's thread.
    pub server: super::cap::ObjId,
    /// The client's thread.
    pub client: super::cap::ObjId,
    /// Every boot process's thread: the server, the client, then any
    /// further clients (see [`World::with_clients`]).
    pub threads: Vec<super::cap::ObjId>,
}

/// Slot of the server's endpoint and of the client's badged cap to it.
pub const EP: u64 = 16;
/// The client's badge.
pub const BADGE: u64 = 5;

impl World {
    /// Boots two processes (tiny images) on 64 MiB of fake RAM.
    pub fn new() -> World {
        World::with_clients(1)
    }

    /// Boots a server and `clients` clients (badges 5, 6, ...).
    pub fn with_clients(clients: usize) -> World {
        use crate::bootimage::{Archive, Process, Role, encode};
        use crate::devicetree::PhysRange;
        use crate::loader::BootMemory;
        let elf = crate::elf::tests::build(0x40_0000, &[(0x40_0000, &[0u8; 16], 0x1000, 5)]);
        const NAMES: [&str; 4] = ["client", "client2", "client3", "client4"];
        let mut procs = alloc::vec![Process {
            name: "server",
            elf: &elf,
            role: Role::Server,
            priority: 100,
            cnode_radix: 10,
            stack_pages: 1,
            badge: 0,
            config: b"configuration of the server",
        }];
        for (i, name) in NAMES.iter().enumerate().take(clients) {
            procs.push(Process {
                name,
                elf: &elf,
                role: Role::Client,
                priority: 100,
                cnode_radix: 8,
                stack_pages: 1,
                badge: BADGE + i as u64,
                config: &[],
            });
        }
        let blob = encode(&procs).unwrap();
        let archive = Archive::parse(&blob).unwrap();
        let mut k = super::Kernel::new(FakeMachine::new(0x4000_0000, 64 << 20), 64);
        let mut mem = BootMemory::new(&[PhysRange {
            base: 0x4000_0000,
            size: 64 << 20,
        }]);
        k.load_boot_processes(&archive, &mut mem, &[]).unwrap();
        k.schedule();
        let server = k.sched.current.unwrap();
        let find = |name: &str| {
            k.tcbs
                .iter()
                .find(|(_, t)| t.name() == name)
                .map(|(id, _)| id)
                .unwrap()
        };
        let mut threads = alloc::vec![server];
        threads.extend(NAMES.iter().take(clients).map(|n| find(n)));
        let client = threads[1];
        let w = World {
            k,
            server,
            client,
            threads,
        };
        w.check();
        w
    }

    /// The slot of the server's first "ram" Untyped of at least 1 MiB.
    pub fn first_untyped(&self) -> u64 {
        use super::cap::Cap;
        use super::object::SlotRef;
        let root = self
            .k
            .slot(SlotRef::tcb(self.server, super::object::tcb_slot::CSPACE))
            .cap;
        let Cap::CNode { id, .. } = root else {
            panic!("the server has a CNode")
        };
        (0..1024u32)
            .find(|&i| {
                matches!(
                    self.k.slot(SlotRef { cnode: id, index: i }).cap,
                    Cap::Untyped { device: false, size_bits, .. } if size_bits >= 20
                )
            })
            .expect("the server has Untyped memory") as u64
    }

    /// Retypes `n` objects of `ty` into the server's slots from `slot`;
    /// returns the error, if any.
    pub fn retype(
        &mut self,
        ty: abi::object::ObjectType,
        size: u64,
        slot: u64,
        n: u64,
    ) -> Option<abi::ErrorReply> {
        let untyped = self.first_untyped();
        self.error(
            self.server,
            untyped,
            abi::invocation::Invocation::UntypedRetype {
                object_type: ty.word(),
                size_bits: size,
                node_index: 0,
                node_depth: 0,
                node_offset: slot,
                num_objects: n,
            },
            &[abi::boot::SLOT_CNODE],
        )
    }

    /// Makes a thread in the server's CSpace and VSpace, with the server's
    /// endpoint as its fault endpoint, and starts it (priority 100): its
    /// TCB cap goes in the server's `slot`. Returns the thread.
    pub fn spawn_thread(&mut self, slot: u64) -> super::cap::ObjId {
        use abi::boot::{SLOT_CNODE, SLOT_IPC_BUFFER, SLOT_TCB, SLOT_VSPACE};
        use abi::invocation::Invocation;
        let s = self.server;
        assert_eq!(self.retype(abi::object::ObjectType::Tcb, 0, slot, 1), None);
        let configure = Invocation::TcbConfigure {
            fault_ep: EP,
            cspace_root_data: 0,
            vspace_root_data: 0,
            buffer: 0,
        };
        let caps = [SLOT_CNODE, SLOT_VSPACE, SLOT_IPC_BUFFER];
        assert_eq!(self.error(s, slot, configure, &caps), None);
        let priority = Invocation::TcbSetPriority { priority: 100 };
        assert_eq!(self.error(s, slot, priority, &[SLOT_TCB]), None);
        assert_eq!(self.error(s, slot, Invocation::TcbResume, &[]), None);
        let r = super::object::SlotRef::tcb(s, super::object::tcb_slot::CSPACE);
        let super::cap::Cap::CNode { id, .. } = self.k.slot(r).cap else {
            panic!("the server has a CNode")
        };
        let tcb = super::object::SlotRef {
            cnode: id,
            index: slot as u32,
        };
        match self.k.slot(tcb).cap {
            super::cap::Cap::Tcb { id } => id,
            other => panic!("slot {slot} holds {other:?}"),
        }
    }

    /// Asserts the kernel's invariants.
    pub fn check(&self) {
        if let Err(e) = self.k.check_cspace_invariants() {
            panic!("invariant broken: {e}");
        }
        assert_eq!(
            self.k.sched.action,
            super::sched::Action::ResumeCurrent,
            "between kernel entries the scheduler has decided"
        );
        for (id, t) in self.k.tcbs.iter() {
            assert_eq!(
                t.queued,
                self.k.sched.current != Some(id) && t.state.is_runnable(),
                "thread {id} ({}) in state {:?}: queued {}, current {:?}",
                t.name(),
                t.state,
                t.queued,
                self.k.sched.current
            );
        }
    }

    /// Thread `t` (made current if it is not) traps with `sys`; returns
    /// its registers x0..x5 afterwards.
    pub fn sys(
        &mut self,
        t: super::cap::ObjId,
        sys: abi::Syscall,
        x0: u64,
        info: abi::MessageInfo,
        mrs: [u64; 4],
    ) -> [u64; 6] {
        self.make_current(t);
        let c = &mut self.k.tcbs.get_mut(t).unwrap().context;
        c.x[0] = x0;
        c.x[1] = info.word();
        c.x[2..6].copy_from_slice(&mrs);
        c.x[7] = sys.number() as u64;
        c.restart_pc = c.pc;
        c.pc += 4;
        self.k.handle_event(super::syscall::Event::Syscall);
        self.check();
        self.regs(t)
    }

    /// A thread's x0..x5.
    pub fn regs(&self, t: super::cap::ObjId) -> [u64; 6] {
        let x = &self.k.tcbs.get(t).unwrap().context.x;
        [x[0], x[1], x[2], x[3], x[4], x[5]]
    }

    /// Makes `t` the running thread (as if the scheduler had chosen it).
    pub fn make_current(&mut self, t: super::cap::ObjId) {
        if self.k.sched.current != Some(t) {
            assert!(
                self.k.tcbs.get(t).unwrap().state.is_runnable(),
                "thread {t} cannot run"
            );
            if let Some(cur) = self.k.sched.current {
                self.k.sched_enqueue(cur, true);
            }
            self.k.sched_dequeue(t);
            self.k.sched.current = Some(t);
        }
    }

    /// Invokes a kernel object as `t` with a Call; returns the reply's
    /// label and MRs (from registers and IPC buffer).
    pub fn invoke(
        &mut self,
        t: super::cap::ObjId,
        cap: u64,
        inv: abi::invocation::Invocation,
        extra: &[u64],
    ) -> (u64, [u64; 8]) {
        let mut words = [0; 8];
        let (label, n, _) = inv.encode(&mut words);
        let buffer = self.k.lookup_ipc_buffer(t, false).unwrap();
        for (i, &w) in words.iter().enumerate().take(n).skip(4) {
            self.k
                .set_buffer_word(buffer, abi::ipc_buffer::MSG_OFFSET + i, w);
        }
        for (i, &c) in extra.iter().enumerate() {
            self.k
                .set_buffer_word(buffer, abi::ipc_buffer::CAPS_OFFSET + i, c);
        }
        let info = abi::MessageInfo::new(label.word(), 0, extra.len(), n);
        let r = self.sys(
            t,
            abi::Syscall::Call,
            cap,
            info,
            [words[0], words[1], words[2], words[3]],
        );
        let reply = abi::MessageInfo::from_word(r[1]);
        let mut mrs = [0; 8];
        for (i, m) in mrs.iter_mut().enumerate().take(reply.length().min(8)) {
            *m = self.k.get_mr(t, Some(buffer), i);
        }
        (reply.label(), mrs)
    }

    /// The result of an invocation as an error reply (None: success).
    pub fn error(
        &mut self,
        t: super::cap::ObjId,
        cap: u64,
        inv: abi::invocation::Invocation,
        extra: &[u64],
    ) -> Option<abi::ErrorReply> {
        let (label, mrs) = self.invoke(t, cap, inv, extra);
        if label == 0 {
            None
        } else {
            Some(abi::ErrorReply::from_reply(label, &mrs).expect("a valid error reply"))
        }
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}
