//! A fake machine for host tests: sparse RAM, a console buffer, a recorded halt.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::machine::Machine;

/// RAM as a map from page address to page contents; pages read as zero until written.
#[derive(Default)]
pub struct FakeMachine {
    pages: BTreeMap<u64, Vec<u8>>,
    /// Everything written on the console.
    pub console: Vec<u8>,
    /// The status of DebugHalt, if called.
    pub halted: Option<u32>,
    /// Interrupt enable state.
    pub irq_enabled: BTreeMap<u32, bool>,
    /// TLB invalidations (asid, vaddr or u64::MAX for all).
    pub flushes: Vec<(u16, u64)>,
}

impl FakeMachine {
    fn page(&mut self, paddr: u64) -> &mut Vec<u8> {
        self.pages
            .entry(paddr & !0xfff)
            .or_insert_with(|| alloc::vec![0; 4096])
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
        let mut at = paddr;
        while at < paddr + len {
            self.pages.remove(&at);
            at += 4096;
        }
    }
    fn read_bytes(&self, paddr: u64, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            let a = paddr + i as u64;
            *b = self
                .pages
                .get(&(a & !0xfff))
                .map_or(0, |p| p[(a & 0xfff) as usize]);
        }
    }
    fn write_bytes(&mut self, paddr: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let a = paddr + i as u64;
            self.page(a)[(a & 0xfff) as usize] = b;
        }
    }
    fn tlb_flush_page(&mut self, asid: u16, vaddr: u64) {
        self.flushes.push((asid, vaddr));
    }
    fn tlb_flush_asid(&mut self, asid: u16) {
        self.flushes.push((asid, u64::MAX));
    }
    fn irq_set_enabled(&mut self, irq: u32, enabled: bool) {
        self.irq_enabled.insert(irq, enabled);
    }
    fn console_write(&mut self, bytes: &[u8]) {
        self.console.extend_from_slice(bytes);
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
}

/// Slot of the server's endpoint and of the client's badged cap to it.
pub const EP: u64 = 16;
/// The client's badge.
pub const BADGE: u64 = 5;

impl World {
    /// Boots two processes (tiny images) on 64 MiB of fake RAM.
    pub fn new() -> World {
        use crate::bootimage::{Archive, Process, Role, encode};
        use crate::devicetree::PhysRange;
        use crate::loader::BootMemory;
        let elf = crate::elf::tests::build(0x40_0000, &[(0x40_0000, &[0u8; 16], 0x1000, 5)]);
        let procs = [
            Process {
                name: "server",
                elf: &elf,
                role: Role::Server,
                priority: 100,
                cnode_radix: 10,
                stack_pages: 1,
                badge: 0,
            },
            Process {
                name: "client",
                elf: &elf,
                role: Role::Client,
                priority: 100,
                cnode_radix: 8,
                stack_pages: 1,
                badge: BADGE,
            },
        ];
        let blob = encode(&procs).unwrap();
        let archive = Archive::parse(&blob).unwrap();
        let mut k = super::Kernel::new(FakeMachine::default(), 64);
        let mut mem = BootMemory::new(&[PhysRange {
            base: 0x4000_0000,
            size: 64 << 20,
        }]);
        k.load_boot_processes(&archive, &mut mem, &[]).unwrap();
        k.schedule();
        let server = k.sched.current.unwrap();
        let client = k
            .tcbs
            .iter()
            .find(|(_, t)| t.name() == "client")
            .map(|(id, _)| id)
            .unwrap();
        let w = World { k, server, client };
        w.check();
        w
    }

    /// Asserts the kernel's invariants.
    pub fn check(&self) {
        if let Err(e) = self.k.check_cspace_invariants() {
            panic!("invariant broken: {e}");
        }
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
