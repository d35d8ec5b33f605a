//! The harness: build a machine, create processes with their capabilities, run, inspect, kill.
//!
//! A [`Sim`] is one simulated machine. The harness plays the part of seL4's
//! boot code and of a process manager: it creates kernel objects from a
//! reserved boot region of RAM, builds each process (a CSpace of `2^n`
//! slots, a VSpace with an ASID, a TCB, an IPC buffer and the boot info
//! mapped near the top of the address space), hands out capabilities by name
//! (badged endpoints, Untyped for all free RAM, device Untyped, another
//! process's TCB/VSpace/CNode), and keeps the original of every object it
//! made, so that ending a process revokes and destroys everything that was
//! built for it. Fault injection, kill, exit notification, console capture
//! and traces are here too.

use std::sync::{Arc, Condvar, Mutex};

use abi::boot::{self, BootInfo, CapDescriptor, CapKind};
use abi::object::ObjectType;
use abi::{Badge, CapRights, Word};

use crate::kernel::*;
use crate::object::*;
use crate::ram::{Backing, MmioDevice, MmioRegion, PhysAlloc, RAM_BASE, Ram};
use crate::sched::{ReadyQueues, Rng, Schedule};
use crate::thread::{Shared, perform};

/// Virtual address where every harness-built process finds its boot info (read-only).
pub const BOOT_INFO_VADDR: Word = 0x7fff_ffe0_0000;
/// Virtual address of the initial thread's IPC buffer.
pub const IPC_BUFFER_VADDR: Word = 0x7fff_ffe1_0000;
/// Start of the region the harness reserves in each process's address
/// space (the last 2 MiB below `USER_VADDR_END`); everything below is free.
pub const RESERVED_VADDR: Word = 0x7fff_ffe0_0000;

/// How a [`Sim`] is built.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Bytes of simulated RAM (default 1 GiB).
    pub ram_size: u64,
    /// Bytes at the start of RAM the harness keeps for the objects it builds
    /// processes from (never handed out as Untyped).
    pub boot_reserve: u64,
    /// The scheduling policy.
    pub schedule: Schedule,
    /// Ticks (syscalls and memory accesses) before a run is stopped as a livelock.
    pub max_ticks: u64,
    /// Record every event in a trace.
    pub trace: bool,
    /// Echo the console on stderr (default: when `SIM_ECHO` is set).
    pub echo: bool,
    /// Interrupt lines.
    pub irq_lines: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            ram_size: 1 << 30,
            boot_reserve: 16 << 20,
            schedule: Schedule::Fifo { slice: 1000 },
            max_ticks: 200_000_000,
            trace: false,
            echo: std::env::var_os("SIM_ECHO").is_some(),
            irq_lines: 64,
        }
    }
}

impl SimConfig {
    /// A small machine for tests: 32 MiB of RAM, 4 MiB of it reserved.
    pub fn small() -> Self {
        SimConfig {
            ram_size: 32 << 20,
            boot_reserve: 4 << 20,
            ..Self::default()
        }
    }

    /// The same with a seeded schedule (the seed from `SIM_SEED` if set, to
    /// replay a failure, else `seed`), tracing on.
    pub fn seeded(mut self, seed: u64) -> Self {
        let seed = std::env::var("SIM_SEED")
            .ok()
            .and_then(|s| {
                let s = s.trim();
                match s.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16).ok(),
                    None => s.parse().ok(),
                }
            })
            .unwrap_or(seed);
        self.schedule = Schedule::Seeded {
            seed,
            preempt_one_in: 4,
        };
        self.trace = true;
        self
    }
}

/// An error in building a machine or a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The boot region (or the free-RAM pool) has no room for the object.
    OutOfMemory,
    /// A CNode size outside 4..=20 bits.
    BadCNodeSize,
    /// All free RAM was already handed out.
    RamAlreadyGiven,
    /// An MMIO region overlaps RAM or another region, or is not page aligned.
    BadRegion,
    /// No such process.
    NoProcess,
    /// More capabilities than the CNode or the boot info holds.
    TooManyCaps,
    /// No ASIDs left.
    OutOfAsids,
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for SetupError {}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No thread can run but processes that must finish have not.
    Deadlock {
        /// What each live thread of those processes waits for.
        waiting: Vec<String>,
    },
    /// A simulated process panicked.
    Panicked {
        /// The process.
        pid: Pid,
        /// Its name.
        name: String,
        /// The panic message.
        message: String,
    },
    /// The tick budget ran out.
    TickLimit(u64),
}

/// A failed run: what went wrong, and the seed that replays it. Both its
/// `Display` and its `Debug` (what `unwrap` prints) name the seed.
#[derive(Clone, PartialEq, Eq)]
pub struct SimError {
    /// What went wrong.
    pub failure: Failure,
    /// The schedule's seed (None for the FIFO schedule, which needs none).
    pub seed: Option<u64>,
    /// The state at the end of the run.
    pub report: Box<RunReport>,
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.failure {
            Failure::Deadlock { waiting } => write!(
                f,
                "deadlock: no thread can run; waiting: {}",
                waiting.join("; ")
            )?,
            Failure::Panicked { pid, name, message } => {
                write!(f, "process {} ({name}) panicked: {message}", pid.0)?
            }
            Failure::TickLimit(n) => write!(f, "no end after {n} ticks (livelock?)")?,
        }
        match self.seed {
            Some(s) => write!(f, " [seed {s:#x}; replay with SIM_SEED={s:#x}]"),
            None => write!(f, " [FIFO schedule]"),
        }
    }
}

impl std::fmt::Debug for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}; {:?}", self.report)
    }
}

impl std::error::Error for SimError {}

/// The state after a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    /// Why the machine stopped, if it did.
    pub halted: Option<Halt>,
    /// Every process that has ended, in order.
    pub exits: Vec<(Pid, ExitReason)>,
    /// Ticks so far.
    pub ticks: u64,
    /// A hash of every scheduling decision and syscall so far: equal runs have equal hashes.
    pub schedule_hash: u64,
}

/// A harness handle to an endpoint the harness made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointHandle(u32);
/// A harness handle to a notification the harness made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotificationHandle(u32);
/// A harness handle to an Untyped the harness made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UntypedHandle(u32);
/// A harness handle to an MMIO region and its device Untyped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmioHandle {
    untypeds: Vec<(u32, u64, u32)>,
}

/// One simulated machine.
pub struct Sim {
    pub(crate) shared: Arc<Shared>,
}

impl Sim {
    /// Builds a machine.
    pub fn new(config: SimConfig) -> Sim {
        let ram = Ram::new(config.ram_size);
        let reserve = config.boot_reserve.min(config.ram_size);
        let ram_end = RAM_BASE + config.ram_size;
        let seed = config.schedule.seed().unwrap_or(0);
        let slice = match config.schedule {
            Schedule::Fifo { slice } => slice.max(1),
            _ => 1,
        };
        let schedule = match config.schedule {
            Schedule::Fifo { .. } => Schedule::Fifo { slice },
            s => s,
        };
        let mut k = Kernel {
            ram,
            objs: Arena::default(),
            cdt: Default::default(),
            next_cap: 0,
            ready: ReadyQueues::new(),
            current: None,
            current_host: None,
            yield_back: false,
            harness_pools: Vec::new(),
            ram_untypeds: None,
            candidate: None,
            preempt: false,
            schedule,
            rng: Rng::new(seed),
            ticks: 0,
            slice_left: slice,
            max_ticks: config.max_ticks,
            halted: None,
            asids: Default::default(),
            next_pool_base: 0,
            irqs: vec![IrqLine::default(); config.irq_lines as usize],
            procs: Vec::new(),
            entries: Default::default(),
            next_pc: 0x40_0000,
            harness: 0,
            harness_free: Vec::new(),
            boot_alloc: PhysAlloc::new(RAM_BASE, RAM_BASE + reserve),
            pool_alloc: PhysAlloc::new(RAM_BASE + reserve, ram_end),
            nonce: 0,
            retypes: 0,
            fail_retypes: Default::default(),
            trace: config.trace.then(Vec::new),
            hash: 0xcbf2_9ce4_8422_2325,
            console: Vec::new(),
            echo: config.echo,
            deaths: Vec::new(),
            empty_boot: Box::leak(Box::new(BootInfo::new(0, 0, Word::MAX))),
        };
        k.harness = k.objs.insert(Object {
            kind: Kind::CNode(CNodeSlots::new(32)),
            paddr: 0,
            size_bits: 0,
            refs: 1,
            origin: Origin::Host,
        });
        Sim {
            shared: Arc::new(Shared {
                kernel: Mutex::new(k),
                idle: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kernel> {
        self.shared.lock()
    }

    /// Makes an endpoint (from the boot region).
    pub fn endpoint(&self) -> Result<EndpointHandle, SetupError> {
        let mut k = self.lock();
        let (s, _) = k.harness_object(ObjectType::Endpoint, 0, Origin::Boot)?;
        Ok(EndpointHandle(s))
    }

    /// Makes a notification (from the boot region).
    pub fn notification(&self) -> Result<NotificationHandle, SetupError> {
        let mut k = self.lock();
        let (s, _) = k.harness_object(ObjectType::Notification, 0, Origin::Boot)?;
        Ok(NotificationHandle(s))
    }

    /// Makes an Untyped of `2^size_bits` bytes from free RAM.
    pub fn untyped(&self, size_bits: u32) -> Result<UntypedHandle, SetupError> {
        let mut k = self.lock();
        if !(abi::object::MIN_UNTYPED_BITS..=abi::object::MAX_UNTYPED_BITS).contains(&size_bits) {
            return Err(SetupError::OutOfMemory);
        }
        let p = k
            .pool_alloc
            .alloc(size_bits)
            .ok_or(SetupError::OutOfMemory)?;
        let s = k.harness_slot();
        let h = k.harness;
        k.insert_cap(
            SlotRef::CNode(h, s),
            Cap::Untyped {
                paddr: p,
                size_bits: size_bits as u8,
                device: false,
                free: 0,
            },
            None,
            true,
        );
        Ok(UntypedHandle(s))
    }

    /// Adds an MMIO region at `base` (page aligned, outside RAM) backed by
    /// plain memory or by a device model; device Untyped caps cover it.
    pub fn mmio(
        &self,
        base: u64,
        size: u64,
        device: Option<Box<dyn MmioDevice>>,
    ) -> Result<MmioHandle, SetupError> {
        let mut k = self.lock();
        let end = base.checked_add(size).ok_or(SetupError::BadRegion)?;
        let ram_end = RAM_BASE + k.ram.size();
        let overlaps = |a: u64, b: u64| base < b && a < end;
        if size == 0
            || !base.is_multiple_of(4096)
            || !size.is_multiple_of(4096)
            || overlaps(RAM_BASE, ram_end)
            || k.ram.mmio.iter().any(|r| overlaps(r.base, r.base + r.size))
        {
            return Err(SetupError::BadRegion);
        }
        k.ram.mmio.push(MmioRegion {
            base,
            size,
            backing: match device {
                Some(d) => Backing::Device(d),
                None => Backing::Memory(vec![0; size as usize]),
            },
        });
        let mut untypeds = Vec::new();
        for (p, bits) in crate::ram::power_of_two_blocks(base, end) {
            let s = k.harness_slot();
            let h = k.harness;
            k.insert_cap(
                SlotRef::CNode(h, s),
                Cap::Untyped {
                    paddr: p,
                    size_bits: bits as u8,
                    device: true,
                    free: 0,
                },
                None,
                true,
            );
            untypeds.push((s, p, bits));
        }
        Ok(MmioHandle { untypeds })
    }

    /// Starts describing a process.
    pub fn process(&self, name: &str) -> ProcessBuilder<'_> {
        ProcessBuilder {
            sim: self,
            name: name.to_string(),
            cnode_bits: 12,
            priority: 100,
            mcp: 255,
            daemon: false,
            grants: Vec::new(),
            fault: None,
            irq_control: false,
            asid_pool: false,
        }
    }

    /// Registers an entry function for threads a process creates: a TCB
    /// whose pc is the returned value runs `f(x0)` when resumed.
    pub fn register_entry(&self, f: impl Fn(Word) + Send + Sync + 'static) -> Word {
        self.lock().register_entry(Arc::new(f))
    }

    /// Runs until no thread can run (or the machine halts). A run that ends
    /// with a process that is not a daemon still alive is a deadlock; a
    /// panicking process or an exhausted tick budget fails the run too. The
    /// error names the seed that replays it.
    pub fn run(&self) -> Result<RunReport, SimError> {
        assert!(
            !crate::thread::in_simulation(),
            "sim: run() must be called by the harness, not by a simulated thread"
        );
        let mut k = self.lock();
        if k.current.is_none() && k.halted.is_none() {
            k.candidate = None;
            let next = k.switch();
            drop(k);
            perform(&self.shared, next);
            k = self.lock();
        }
        while k.current.is_some() {
            k = self.shared.idle.wait(k).unwrap_or_else(|e| e.into_inner());
        }
        let report = RunReport {
            halted: k.halted.clone(),
            exits: k.deaths.clone(),
            ticks: k.ticks,
            schedule_hash: k.hash,
        };
        let seed = k.schedule.seed();
        let fail = |failure| {
            Err(SimError {
                failure,
                seed,
                report: Box::new(report.clone()),
            })
        };
        for (pid, r) in &k.deaths {
            if let ExitReason::Panicked(m) = r {
                return fail(Failure::Panicked {
                    pid: *pid,
                    name: k.procs[pid.0].name.clone(),
                    message: m.clone(),
                });
            }
        }
        match &k.halted {
            Some(Halt::TickLimit(n)) => return fail(Failure::TickLimit(*n)),
            Some(Halt::Requested(_)) => return Ok(report),
            None => {}
        }
        let mut waiting = Vec::new();
        for (i, p) in k.procs.iter().enumerate() {
            if p.status.is_some() || p.daemon {
                continue;
            }
            for &t in &p.threads {
                let what = match k.objs.tcb(t) {
                    Some(x) => match (x.state, x.dead_fault) {
                        (ThreadState::Inactive, Some(f)) => format!("stopped after fault {f:?}"),
                        (s, _) => format!("{s:?}"),
                    },
                    None => "gone".into(),
                };
                waiting.push(format!("{} (pid {i}) thread {t}: {what}", p.name));
            }
        }
        if !waiting.is_empty() {
            return fail(Failure::Deadlock { waiting });
        }
        Ok(report)
    }

    /// Ends a process now: its threads stop and everything built for it is destroyed.
    pub fn kill(&self, pid: Pid) -> Result<(), SetupError> {
        let mut k = self.lock();
        if pid.0 >= k.procs.len() {
            return Err(SetupError::NoProcess);
        }
        k.end_process(pid.0, ExitReason::Killed);
        Ok(())
    }

    /// How a process ended, or `None` while it lives.
    pub fn status(&self, pid: Pid) -> Option<ExitReason> {
        self.lock().procs.get(pid.0).and_then(|p| p.status.clone())
    }

    /// Every process that has ended so far, in order.
    pub fn exits(&self) -> Vec<(Pid, ExitReason)> {
        self.lock().deaths.clone()
    }

    /// When `pid` ends, `ntfn` is signalled with `badge` (how a supervisor
    /// process inside the simulation learns of a death).
    pub fn watch_exit(
        &self,
        pid: Pid,
        ntfn: &NotificationHandle,
        badge: Badge,
    ) -> Result<(), SetupError> {
        let mut k = self.lock();
        let p = k.procs.get_mut(pid.0).ok_or(SetupError::NoProcess)?;
        p.watchers.push((ntfn.0, badge));
        Ok(())
    }

    /// Fault injection: the process dies at its `n`th syscall (counted from its start).
    pub fn kill_at_syscall(&self, pid: Pid, n: u64) -> Result<(), SetupError> {
        let mut k = self.lock();
        let p = k.procs.get_mut(pid.0).ok_or(SetupError::NoProcess)?;
        p.kill_at = Some(n);
        Ok(())
    }

    /// Fault injection: the `n`th Untyped_Retype of the machine (counting
    /// those that would succeed, from the start) fails with NotEnoughMemory
    /// and changes nothing.
    pub fn fail_retype(&self, n: u64) {
        self.lock().fail_retypes.insert(n);
    }

    /// Retypes performed (or failed by injection) so far.
    pub fn retype_count(&self) -> u64 {
        self.lock().retypes
    }

    /// Syscalls a process has made.
    pub fn syscall_count(&self, pid: Pid) -> u64 {
        self.lock()
            .procs
            .get(pid.0)
            .map(|p| p.syscalls)
            .unwrap_or(0)
    }

    /// Signals a notification from outside (an external event).
    pub fn signal(&self, ntfn: &NotificationHandle, badge: Badge) {
        let mut k = self.lock();
        if let Cap::Notification { obj, .. } = k.cap(SlotRef::CNode(k.harness, ntfn.0)) {
            k.signal(obj, badge.0);
        }
    }

    /// Raises an interrupt line.
    pub fn raise_irq(&self, irq: u32) {
        self.lock().raise_irq(irq);
    }

    /// Every console line so far.
    pub fn console(&self) -> Vec<ConsoleLine> {
        self.lock().console.clone()
    }

    /// A process's console output, lines joined with newlines.
    pub fn console_of(&self, pid: Pid) -> String {
        let k = self.lock();
        let mut out = String::new();
        for l in k.console.iter().filter(|l| l.pid == Some(pid)) {
            out.push_str(&l.text);
            out.push('\n');
        }
        out
    }

    /// The trace (empty unless tracing is on).
    pub fn trace(&self) -> Vec<TraceEvent> {
        self.lock().trace.clone().unwrap_or_default()
    }

    /// The hash of the run so far.
    pub fn schedule_hash(&self) -> u64 {
        self.lock().hash
    }

    /// The schedule's seed.
    pub fn seed(&self) -> Option<u64> {
        self.lock().schedule.seed()
    }

    /// Bytes of free RAM not yet handed out.
    pub fn ram_available(&self) -> u64 {
        self.lock().pool_alloc.available()
    }

    /// Bytes of the boot region still free.
    pub fn boot_available(&self) -> u64 {
        self.lock().boot_alloc.available()
    }

    /// Reads physical memory (RAM or MMIO); false if the range is not memory.
    pub fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> bool {
        self.lock().ram.read(paddr, buf)
    }

    /// Live kernel objects (for leak checks).
    pub fn object_count(&self) -> usize {
        self.lock().objs.ids().count()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let mut k = self.lock();
        k.halted.get_or_insert(Halt::Requested(0));
        let tcbs: Vec<ObjId> = k.objs.ids().collect();
        k.current = None;
        k.current_host = None;
        for t in tcbs {
            if let Some(tcb) = k.objs.tcb_mut(t) {
                tcb.state = ThreadState::Dead;
                tcb.start = None;
                if let Some(h) = tcb.host.take() {
                    h.wake();
                }
            }
        }
    }
}

/// A capability a process is given.
enum Grant {
    Cap {
        name: String,
        src: u32,
        badge: Option<Word>,
        rights: CapRights,
        kind: CapKind,
    },
    AllRam(String),
    Mmio(String, MmioHandle),
    ProcessCaps(Pid),
}

/// Describes a process to create; [`ProcessBuilder::spawn`] creates it.
pub struct ProcessBuilder<'s> {
    sim: &'s Sim,
    name: String,
    cnode_bits: u8,
    priority: u8,
    mcp: u8,
    daemon: bool,
    grants: Vec<Grant>,
    fault: Option<(u32, Word)>,
    irq_control: bool,
    asid_pool: bool,
}

impl ProcessBuilder<'_> {
    /// Its CSpace has `2^bits` slots (4..=20; default 12).
    pub fn cnode_bits(mut self, bits: u8) -> Self {
        self.cnode_bits = bits;
        self
    }

    /// Its main thread's priority (default 100).
    pub fn priority(mut self, p: u8) -> Self {
        self.priority = p;
        self
    }

    /// Its main thread's maximum controlled priority (default 255).
    pub fn mcp(mut self, p: u8) -> Self {
        self.mcp = p;
        self
    }

    /// A server: a run may end with it still waiting.
    pub fn daemon(mut self) -> Self {
        self.daemon = true;
        self
    }

    /// Gives it a cap to `ep` with `badge` (0: unbadged) and `rights`.
    pub fn endpoint(
        mut self,
        name: &str,
        ep: &EndpointHandle,
        badge: Badge,
        rights: CapRights,
    ) -> Self {
        self.grants.push(Grant::Cap {
            name: name.into(),
            src: ep.0,
            badge: Some(badge.0),
            rights,
            kind: CapKind::Endpoint,
        });
        self
    }

    /// Gives it a cap to `n` with `badge` and `rights`.
    pub fn notification(
        mut self,
        name: &str,
        n: &NotificationHandle,
        badge: Badge,
        rights: CapRights,
    ) -> Self {
        self.grants.push(Grant::Cap {
            name: name.into(),
            src: n.0,
            badge: Some(badge.0),
            rights,
            kind: CapKind::Notification,
        });
        self
    }

    /// Gives it (a copy of) an Untyped.
    pub fn untyped(mut self, name: &str, u: &UntypedHandle) -> Self {
        self.grants.push(Grant::Cap {
            name: name.into(),
            src: u.0,
            badge: None,
            rights: CapRights::ALL,
            kind: CapKind::Untyped,
        });
        self
    }

    /// Gives it Untyped caps covering all free RAM (each named `name`); only
    /// one process can receive them.
    pub fn all_ram(mut self, name: &str) -> Self {
        self.grants.push(Grant::AllRam(name.into()));
        self
    }

    /// Gives it the device Untyped caps of an MMIO region.
    pub fn mmio(mut self, name: &str, region: &MmioHandle) -> Self {
        self.grants.push(Grant::Mmio(name.into(), region.clone()));
        self
    }

    /// Gives it caps to another process's TCB, VSpace and CNode, named
    /// `pid<N>/tcb`, `pid<N>/vspace`, `pid<N>/cnode` (value: N).
    pub fn process_caps(mut self, pid: Pid) -> Self {
        self.grants.push(Grant::ProcessCaps(pid));
        self
    }

    /// Its threads' faults go to `ep` with `badge` (a cap named `fault`).
    pub fn fault_handler(mut self, ep: &EndpointHandle, badge: Badge) -> Self {
        self.fault = Some((ep.0, badge.0));
        self
    }

    /// Gives it the IRQ control cap (slot 4).
    pub fn irq_control(mut self) -> Self {
        self.irq_control = true;
        self
    }

    /// Gives it an ASID pool of its own (slot 6).
    pub fn asid_pool(mut self) -> Self {
        self.asid_pool = true;
        self
    }

    /// Creates the process; its main thread runs `main(boot_info)` from the next run.
    pub fn spawn(
        self,
        main: impl FnOnce(&'static BootInfo) + Send + 'static,
    ) -> Result<Pid, SetupError> {
        let mut k = self.sim.lock();
        let mut made = Vec::new();
        let r = k.build_process(&self, &mut made, Box::new(main));
        if r.is_err() {
            for s in made.into_iter().rev() {
                k.drop_original(s);
            }
        }
        r
    }
}

impl Kernel {
    /// A free slot of the harness CNode.
    pub(crate) fn harness_slot(&mut self) -> u32 {
        if let Some(s) = self.harness_free.pop() {
            return s;
        }
        let n = self
            .objs
            .cnode(self.harness)
            .and_then(|c| c.slots.keys().next_back().copied())
            .map(|x| x + 1)
            .unwrap_or(1);
        // Slots are handed out in increasing order; gaps come back through `harness_free`.
        n.max(self.harness_high() + 1)
    }

    fn harness_high(&self) -> u32 {
        self.objs
            .cnode(self.harness)
            .and_then(|c| c.slots.keys().next_back().copied())
            .unwrap_or(0)
    }

    /// Creates an object from the boot region (or the pool) with its original cap in a harness slot.
    fn harness_object(
        &mut self,
        ty: ObjectType,
        size_arg: u8,
        origin: Origin,
    ) -> Result<(u32, Cap), SetupError> {
        let bits = match ty {
            ObjectType::CNode => size_arg as u32 + abi::object::SLOT_BITS,
            t => t.size_bits(0).ok_or(SetupError::OutOfMemory)?,
        };
        let p = self.boot_alloc.alloc(bits).ok_or(SetupError::OutOfMemory)?;
        let cap = self.create_object(ty, p, bits, size_arg, false, origin);
        if let Some(o) = cap.obj().and_then(|o| self.objs.get_mut(o)) {
            o.origin = origin;
        }
        let s = self.harness_slot();
        self.insert_cap(SlotRef::CNode(self.harness, s), cap, None, true);
        Ok((s, cap))
    }

    /// Revokes and deletes a harness original.
    pub(crate) fn drop_original(&mut self, s: u32) {
        let r = SlotRef::CNode(self.harness, s);
        self.revoke(r);
        self.delete_slot(r);
        self.harness_free.push(s);
    }

    fn hcap(&self, s: u32) -> Cap {
        self.cap(SlotRef::CNode(self.harness, s))
    }

    /// An ASID for a harness-built VSpace.
    fn harness_asid(&mut self, v: ObjId) -> Result<u16, SetupError> {
        for i in 0..self.harness_pools.len() {
            let pool = self.harness_pools[i];
            if let Some(a) = self.assign_asid(pool, v) {
                return Ok(a);
            }
        }
        let pool = self.new_pool().ok_or(SetupError::OutOfAsids)?;
        self.harness_pools.push(pool);
        self.assign_asid(pool, v).ok_or(SetupError::OutOfAsids)
    }

    /// A new ASID pool of 512 ASIDs.
    fn new_pool(&mut self) -> Option<ObjId> {
        if self.next_pool_base >= 1 << 16 {
            return None;
        }
        let base = self.next_pool_base as u16;
        self.next_pool_base += 512;
        Some(self.objs.insert(Object {
            kind: Kind::AsidPool {
                base,
                entries: vec![None; 512],
            },
            paddr: 0,
            size_bits: 0,
            refs: 0,
            origin: Origin::Host,
        }))
    }

    fn build_process(
        &mut self,
        b: &ProcessBuilder<'_>,
        made: &mut Vec<u32>,
        main: Box<dyn FnOnce(&'static BootInfo) + Send>,
    ) -> Result<Pid, SetupError> {
        if !(4..=20).contains(&b.cnode_bits) {
            return Err(SetupError::BadCNodeSize);
        }
        let pid = self.procs.len();
        let radix = b.cnode_bits;
        let mut obj = |k: &mut Kernel, ty, arg| -> Result<(u32, Cap), SetupError> {
            let r = k.harness_object(ty, arg, Origin::Boot)?;
            made.push(r.0);
            Ok(r)
        };
        let (cn_s, cn) = obj(self, ObjectType::CNode, radix)?;
        let (vs_s, vs) = obj(self, ObjectType::VSpace, 0)?;
        let (tcb_s, tcb_cap) = obj(self, ObjectType::Tcb, 0)?;
        let mut pts = Vec::new();
        for _ in 0..3 {
            pts.push(obj(self, ObjectType::PageTable, 0)?);
        }
        let (ipc_s, _) = obj(self, ObjectType::SmallPage, 0)?;
        let (bi0_s, _) = obj(self, ObjectType::SmallPage, 0)?;
        let (bi1_s, _) = obj(self, ObjectType::SmallPage, 0)?;
        let Cap::VSpace {
            obj: vobj,
            paddr: root,
        } = vs
        else {
            return Err(SetupError::OutOfMemory);
        };
        let asid = self.harness_asid(vobj)?;
        let Cap::CNode { obj: cobj, .. } = cn else {
            return Err(SetupError::OutOfMemory);
        };
        let Cap::Tcb { obj: tid } = tcb_cap else {
            return Err(SetupError::OutOfMemory);
        };
        // Page tables for the top 2 MiB, then the IPC buffer and boot info frames.
        for (s, cap) in &pts {
            if let Cap::PageTable { obj, paddr, .. } = *cap {
                let level = vmsa::install_table(&mut self.ram, root, RESERVED_VADDR, paddr)
                    .map_err(|_| SetupError::OutOfMemory)?;
                let cover = 1u64 << vmsa::level_shift(level - 1);
                self.set_cap(
                    SlotRef::CNode(self.harness, *s),
                    Cap::PageTable {
                        obj,
                        paddr,
                        mapped: Some((asid, RESERVED_VADDR & !(cover - 1), level)),
                    },
                );
            }
        }
        let map = |k: &mut Kernel, s: u32, va: Word, writable: bool| {
            if let Cap::Frame {
                obj,
                paddr,
                size_bits,
                device,
                ..
            } = k.hcap(s)
            {
                let rights = if writable {
                    CapRights::READ_WRITE
                } else {
                    CapRights::READ
                };
                let attrs = vmsa::PageAttrs {
                    writable,
                    ..vmsa::PageAttrs::USER_RW
                };
                let _ = vmsa::map_frame(&mut k.ram, root, va, paddr, 4096, attrs);
                k.set_cap(
                    SlotRef::CNode(k.harness, s),
                    Cap::Frame {
                        obj,
                        paddr,
                        size_bits,
                        rights,
                        device,
                        mapped: Some((asid, va)),
                    },
                );
            }
        };
        map(self, ipc_s, IPC_BUFFER_VADDR, true);
        map(self, bi0_s, BOOT_INFO_VADDR, false);
        map(self, bi1_s, BOOT_INFO_VADDR + 4096, false);

        let h = self.harness;
        let slot = |i: Word| SlotRef::CNode(cobj, i as u32);
        let guarded = Cap::CNode {
            obj: cobj,
            radix,
            guard: 0,
            guard_size: 64 - radix,
        };
        let copy = |k: &mut Kernel, s: u32, dest: SlotRef| -> Result<(), SetupError> {
            let src = SlotRef::CNode(h, s);
            let c = k
                .derive(src, k.cap(src))
                .map_err(|_| SetupError::RamAlreadyGiven)?;
            k.derive_insert(src, c, dest);
            Ok(())
        };
        copy(self, tcb_s, slot(boot::SLOT_TCB))?;
        self.derive_insert(SlotRef::CNode(h, cn_s), guarded, slot(boot::SLOT_CNODE));
        copy(self, vs_s, slot(boot::SLOT_VSPACE))?;
        copy(self, bi0_s, slot(boot::SLOT_BOOT_INFO_FRAME))?;
        copy(self, ipc_s, slot(boot::SLOT_IPC_BUFFER))?;
        if b.irq_control {
            self.insert_cap(slot(boot::SLOT_IRQ_CONTROL), Cap::IrqControl, None, true);
        }
        if b.asid_pool {
            let pool = self.new_pool().ok_or(SetupError::OutOfAsids)?;
            let s = self.harness_slot();
            self.insert_cap(
                SlotRef::CNode(h, s),
                Cap::AsidPool { obj: pool },
                None,
                true,
            );
            made.push(s);
            copy(self, s, slot(boot::SLOT_ASID_POOL))?;
        }

        let mut info = BootInfo::new(radix, IPC_BUFFER_VADDR, pid as Word);
        let mut next = boot::FIRST_GRANTED_SLOT;
        let cap_slots = 1u64 << radix;
        let mut give = |k: &mut Kernel,
                        info: &mut BootInfo,
                        src: u32,
                        cap: Cap,
                        name: &str,
                        kind: CapKind,
                        size_bits: u8,
                        value: Word|
         -> Result<Word, SetupError> {
            if next >= cap_slots {
                return Err(SetupError::TooManyCaps);
            }
            let dest = slot(next);
            let srcr = SlotRef::CNode(h, src);
            let c = k
                .derive(srcr, cap)
                .map_err(|_| SetupError::RamAlreadyGiven)?;
            k.derive_insert(srcr, c, dest);
            info.push(CapDescriptor {
                slot: next,
                kind,
                size_bits,
                value,
                name: CapDescriptor::name_bytes(name),
            })
            .map_err(|_| SetupError::TooManyCaps)?;
            next += 1;
            Ok(next - 1)
        };
        for g in &b.grants {
            match g {
                Grant::Cap {
                    name,
                    src,
                    badge,
                    rights,
                    kind,
                } => {
                    let base = self.hcap(*src);
                    let (cap, value, size) = match base {
                        Cap::Endpoint { obj, rights: r, .. } => (
                            Cap::Endpoint {
                                obj,
                                badge: badge.unwrap_or(0),
                                rights: r.intersect(*rights),
                            },
                            badge.unwrap_or(0),
                            0,
                        ),
                        Cap::Notification { obj, rights: r, .. } => (
                            Cap::Notification {
                                obj,
                                badge: badge.unwrap_or(0),
                                rights: r.intersect(*rights),
                            },
                            badge.unwrap_or(0),
                            0,
                        ),
                        Cap::Untyped {
                            paddr, size_bits, ..
                        } => (base, paddr, size_bits),
                        _ => return Err(SetupError::NoProcess),
                    };
                    give(self, &mut info, *src, cap, name, *kind, size, value)?;
                }
                Grant::AllRam(name) => {
                    if self.ram_untypeds.is_none() {
                        let blocks = self.pool_alloc.take_all();
                        let mut list = Vec::new();
                        for (p, bits) in blocks {
                            let s = self.harness_slot();
                            self.insert_cap(
                                SlotRef::CNode(h, s),
                                Cap::Untyped {
                                    paddr: p,
                                    size_bits: bits as u8,
                                    device: false,
                                    free: 0,
                                },
                                None,
                                true,
                            );
                            list.push((s, p, bits));
                        }
                        self.ram_untypeds = Some(list);
                    }
                    let list = self.ram_untypeds.clone().unwrap_or_default();
                    for (s, p, bits) in list {
                        let cap = self.hcap(s);
                        give(
                            self,
                            &mut info,
                            s,
                            cap,
                            name,
                            CapKind::Untyped,
                            bits as u8,
                            p,
                        )?;
                    }
                }
                Grant::Mmio(name, region) => {
                    for &(s, p, bits) in &region.untypeds {
                        let cap = self.hcap(s);
                        give(
                            self,
                            &mut info,
                            s,
                            cap,
                            name,
                            CapKind::DeviceUntyped,
                            bits as u8,
                            p,
                        )?;
                    }
                }
                Grant::ProcessCaps(other) => {
                    let o = self.procs.get(other.0).ok_or(SetupError::NoProcess)?;
                    if o.status.is_some() {
                        return Err(SetupError::NoProcess);
                    }
                    let origs = o.originals.clone();
                    // originals: [cnode, vspace, tcb, ...]
                    let names = [
                        ("cnode", CapKind::CNode),
                        ("vspace", CapKind::VSpace),
                        ("tcb", CapKind::Tcb),
                    ];
                    for (i, (n, kind)) in names.iter().enumerate() {
                        let Some(&s) = origs.get(i) else {
                            return Err(SetupError::NoProcess);
                        };
                        let cap = match self.hcap(s) {
                            // With the guard that makes a slot number a CPtr, as in slot 2.
                            Cap::CNode { obj, radix, .. } => Cap::CNode {
                                obj,
                                radix,
                                guard: 0,
                                guard_size: 64 - radix,
                            },
                            c => c,
                        };
                        let name = format!("pid{}/{n}", other.0);
                        give(self, &mut info, s, cap, &name, *kind, 0, other.0 as Word)?;
                    }
                }
            }
        }
        let mut fault_slot = 0;
        if let Some((ep, badge)) = b.fault
            && let Cap::Endpoint { obj, rights, .. } = self.hcap(ep)
        {
            {
                let cap = Cap::Endpoint { obj, badge, rights };
                fault_slot = give(
                    self,
                    &mut info,
                    ep,
                    cap,
                    "fault",
                    CapKind::Endpoint,
                    0,
                    badge,
                )?;
            }
        }
        // The TCB: its CSpace, VSpace and IPC buffer.
        self.derive_insert(
            SlotRef::CNode(h, cn_s),
            guarded,
            SlotRef::Tcb(tid, TcbSlot::CSpace),
        );
        copy(self, vs_s, SlotRef::Tcb(tid, TcbSlot::VSpace))?;
        copy(self, ipc_s, SlotRef::Tcb(tid, TcbSlot::Buffer))?;
        // The boot info, encoded into its frames as in QEMU.
        let mut words = Box::new([0u64; boot::BOOT_INFO_WORDS]);
        info.encode(&mut words);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        for (i, s) in [bi0_s, bi1_s].into_iter().enumerate() {
            if let Cap::Frame { paddr, .. } = self.hcap(s) {
                let _ = self.ram.write(paddr, &bytes[i * 4096..(i + 1) * 4096]);
            }
        }
        let boot: &'static BootInfo = Box::leak(Box::new(info));
        let t = self.objs.tcb_mut(tid).ok_or(SetupError::OutOfMemory)?;
        t.fault_ep = fault_slot;
        t.ipc_buffer = IPC_BUFFER_VADDR;
        t.priority = b.priority;
        t.mcp = b.mcp;
        t.process = Some(pid);
        t.start = Some(Box::new(move || main(boot)));
        let mut originals = vec![cn_s, vs_s, tcb_s];
        originals.extend(
            made.iter()
                .copied()
                .filter(|s| ![cn_s, vs_s, tcb_s].contains(s)),
        );
        self.procs.push(Process {
            name: b.name.clone(),
            status: None,
            threads: vec![tid],
            originals,
            boot,
            daemon: b.daemon,
            syscalls: 0,
            kill_at: None,
            watchers: Vec::new(),
            partial_line: String::new(),
        });
        made.clear();
        self.wake(tid, Wake::Restart);
        self.candidate = None;
        Ok(Pid(pid))
    }

    /// Ends a process: threads stop, its objects are destroyed, watchers are signalled.
    pub fn end_process(&mut self, p: usize, reason: ExitReason) {
        let Some(pr) = self.procs.get_mut(p) else {
            return;
        };
        if pr.status.is_some() {
            return;
        }
        pr.status = Some(reason.clone());
        let line = std::mem::take(&mut pr.partial_line);
        let threads = pr.threads.clone();
        let originals = std::mem::take(&mut pr.originals);
        let watchers = std::mem::take(&mut pr.watchers);
        if !line.is_empty() {
            self.emit_line(Some(p), line);
        }
        self.record(TraceEvent::Exit(p));
        self.deaths.push((Pid(p), reason));
        for t in threads {
            self.kill_thread(t);
        }
        for s in originals {
            self.drop_original(s);
        }
        for (n, badge) in watchers {
            if let Cap::Notification { obj, .. } = self.hcap(n) {
                self.signal(obj, badge.0);
            }
        }
    }
}
