//! The calling side of a simulated thread: syscalls, the IPC buffer and memory access.
//!
//! Each simulated thread runs ordinary Rust on a host thread that holds a
//! thread-local context naming its TCB. `platform/rt`'s simulator backend
//! calls the functions of [`crate::this_thread`], which enter the kernel
//! through that context; they panic only when called from a host thread that
//! is not a simulated thread (a misuse of the runtime, not bad input).
//!
//! A thread that is killed — its process ended, its TCB destroyed, its pc
//! changed under it — unwinds its host stack with a private payload the
//! thread's wrapper catches; a syscall made while unwinding returns at once.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use abi::boot::BootInfo;
use abi::ipc_buffer::IpcBuffer;
use abi::{MessageInfo, Syscall, Word};

use crate::ipc::SysOut;
use crate::kernel::{ExitReason, Kernel, Next, Spawn, TraceEvent};
use crate::object::{ObjId, ThreadState, Wake};
use crate::sched::HostCtl;

/// What the harness and the threads share.
pub(crate) struct Shared {
    pub kernel: Mutex<Kernel>,
    pub idle: Condvar,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Kernel> {
        self.kernel.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the next thread, as the kernel decided.
pub(crate) fn perform(shared: &Arc<Shared>, next: Next) {
    match next {
        Next::Wake(h) => h.wake(),
        Next::Idle => shared.idle.notify_all(),
        Next::Spawn(s) => {
            s.host.wake();
            let sh = shared.clone();
            let name = format!("sim-thread-{}", s.tid);
            let spawned = std::thread::Builder::new()
                .name(name)
                .spawn(move || host_main(sh, s));
            if spawned.is_err() {
                // The host cannot make a thread: the simulated one dies.
                let mut k = shared.lock();
                if let Some(t) = k.current {
                    k.kill_thread(t);
                }
                let next = k.switch();
                drop(k);
                perform(shared, next);
            }
        }
    }
}

/// The unwinding payloads of a simulated thread.
#[derive(Debug)]
pub(crate) enum Unwind {
    /// The process called exit.
    Exit(i32),
    /// The thread was killed.
    Killed,
}

/// The context of the simulated thread a host thread runs.
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    pub tid: ObjId,
    pub host: Arc<HostCtl>,
    pub ipc: Arc<Mutex<IpcBuffer>>,
    pub boot: &'static BootInfo,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Ctx>>> = const { RefCell::new(None) };
}

fn ctx() -> Rc<Ctx> {
    CURRENT
        .with(|c| c.borrow().clone())
        .expect("sim: the runtime was called outside a simulated thread")
}

/// Whether the calling host thread is a simulated thread.
pub fn in_simulation() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

impl Ctx {
    /// Whether this host thread still embodies its TCB.
    fn alive(&self, k: &Kernel) -> bool {
        k.objs.tcb(self.tid).is_some_and(|t| {
            t.state != ThreadState::Dead
                && t.host.as_ref().is_some_and(|h| Arc::ptr_eq(h, &self.host))
        })
    }

    fn holds_baton(&self, k: &Kernel) -> bool {
        k.current_host
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(h, &self.host))
    }

    /// Gives up the CPU and waits to run again.
    fn give_up(&self, mut k: MutexGuard<'_, Kernel>) -> MutexGuard<'_, Kernel> {
        let next = k.switch();
        drop(k);
        perform(&self.shared, next);
        self.host.wait();
        self.shared.lock()
    }

    /// The thread is dead: release the CPU if held, then unwind.
    fn die(&self, mut k: MutexGuard<'_, Kernel>) {
        if self.holds_baton(&k) {
            let next = k.switch();
            drop(k);
            perform(&self.shared, next);
        } else {
            drop(k);
        }
        if !std::thread::panicking() {
            resume_unwind(Box::new(Unwind::Killed));
        }
    }
}

/// The value a syscall of a dying thread returns (while it unwinds).
const DEAD: (Word, Word) = (0, MessageInfo::new(3, 0, 0, 0).word());

/// Makes a syscall as the current simulated thread.
pub fn syscall(sys: Syscall, dest: Word, info: Word, mrs: &mut [Word; 4]) -> (Word, Word) {
    let c = ctx();
    loop {
        let mut k = c.shared.lock();
        if !c.alive(&k) {
            c.die(k);
            return DEAD;
        }
        let out = k.syscall(c.tid, sys, dest, info, *mrs);
        if !c.alive(&k) {
            c.die(k);
            return DEAD;
        }
        match out {
            SysOut::Return { x0, x1, mrs: m } => {
                *mrs = m;
                if k.tick() {
                    k = c.give_up(k);
                    if !c.alive(&k) {
                        c.die(k);
                        return DEAD;
                    }
                }
                return (x0, x1);
            }
            SysOut::Block => {
                k = c.give_up(k);
                if !c.alive(&k) {
                    c.die(k);
                    return DEAD;
                }
                let wake = k
                    .objs
                    .tcb_mut(c.tid)
                    .map(|t| std::mem::replace(&mut t.wake, Wake::None));
                match wake {
                    Some(Wake::Done { x0, x1, mrs: m }) => {
                        *mrs = m;
                        return (x0, x1);
                    }
                    _ => continue,
                }
            }
        }
    }
}

/// Runs `f` on the current thread's IPC buffer.
pub fn with_ipc_buffer<R>(f: impl FnOnce(&mut IpcBuffer) -> R) -> R {
    let c = ctx();
    let mut b = c.ipc.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut b)
}

/// The current process's boot info.
pub fn boot_info() -> &'static BootInfo {
    ctx().boot
}

/// Why a memory access cannot be made at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// The range is not a user address range (not canonical, or it wraps).
    BadRange,
    /// The thread is being killed.
    Dead,
}

/// One memory operation over a range, chunk by chunk.
enum Op<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
    Fill(u8),
}

fn access(vaddr: Word, len: u64, mut op: Op<'_>) -> Result<(), AccessError> {
    if len == 0 {
        return Ok(());
    }
    let end = vaddr.checked_add(len - 1).ok_or(AccessError::BadRange)?;
    if !vmsa::is_user_canonical(vaddr) || !vmsa::is_user_canonical(end) {
        return Err(AccessError::BadRange);
    }
    let write = !matches!(op, Op::Read(_));
    let c = ctx();
    let mut done: u64 = 0;
    let mut k = c.shared.lock();
    if !c.alive(&k) {
        c.die(k);
        return Err(AccessError::Dead);
    }
    k.record(TraceEvent::Access(c.tid, vaddr));
    loop {
        let mut faulted = false;
        while done < len {
            match k.translate(c.tid, vaddr + done, write) {
                Ok((pa, left)) => {
                    let n = left.min(len - done);
                    let (a, b) = (done as usize, (done + n) as usize);
                    let irq = match &mut op {
                        Op::Read(buf) => {
                            k.ram.read(pa, &mut buf[a..b]);
                            None
                        }
                        Op::Write(data) => k.ram.write(pa, &data[a..b]).ok().flatten(),
                        Op::Fill(byte) => {
                            k.ram.fill(pa, n, *byte);
                            None
                        }
                    };
                    if let Some(i) = irq {
                        k.raise_irq(i);
                    }
                    done += n;
                }
                Err(f) => {
                    k.send_fault(c.tid, f);
                    faulted = true;
                    break;
                }
            }
        }
        if !faulted {
            if k.tick() {
                k = c.give_up(k);
                if !c.alive(&k) {
                    c.die(k);
                    return Err(AccessError::Dead);
                }
            }
            return Ok(());
        }
        // Blocked on the fault (or stopped): continue when the handler replies.
        k = c.give_up(k);
        if !c.alive(&k) {
            c.die(k);
            return Err(AccessError::Dead);
        }
        if let Some(t) = k.objs.tcb_mut(c.tid) {
            t.wake = Wake::None;
        }
    }
}

/// Reads the current process's memory through its page tables.
pub fn read_bytes(vaddr: Word, buf: &mut [u8]) -> Result<(), AccessError> {
    let len = buf.len() as u64;
    access(vaddr, len, Op::Read(buf))
}

/// Writes the current process's memory through its page tables.
pub fn write_bytes(vaddr: Word, data: &[u8]) -> Result<(), AccessError> {
    access(vaddr, data.len() as u64, Op::Write(data))
}

/// Fills the current process's memory with a byte.
pub fn fill_bytes(vaddr: Word, len: Word, byte: u8) -> Result<(), AccessError> {
    access(vaddr, len, Op::Fill(byte))
}

/// Writes text on the simulated console. Like QEMU's DebugPutString, it is
/// a syscall: it counts for fault injection and is a scheduling point.
pub fn console_write(text: &str) {
    let c = ctx();
    let mut k = c.shared.lock();
    if !c.alive(&k) {
        return c.die(k);
    }
    k.record(TraceEvent::Syscall(c.tid, Syscall::DebugPutString.number()));
    if k.count_syscall(c.tid) {
        return c.die(k);
    }
    k.console_write(c.tid, text);
    if k.tick() {
        k = c.give_up(k);
        if !c.alive(&k) {
            c.die(k);
        }
    }
}

/// Ends the current process with a status.
pub fn exit(status: i32) -> ! {
    resume_unwind(Box::new(Unwind::Exit(status)))
}

/// The body of the host thread of a simulated thread.
fn host_main(shared: Arc<Shared>, s: Spawn) {
    s.host.register();
    s.host.wait();
    let c = Rc::new(Ctx {
        shared: shared.clone(),
        tid: s.tid,
        host: s.host,
        ipc: s.ipc,
        boot: s.boot,
    });
    CURRENT.with(|x| *x.borrow_mut() = Some(c.clone()));
    let result = catch_unwind(AssertUnwindSafe(s.start));
    let mut k = shared.lock();
    let alive = c.alive(&k);
    let proc = k.objs.tcb(c.tid).and_then(|t| t.process);
    let is_main = proc
        .and_then(|p| k.procs.get(p))
        .and_then(|p| p.threads.first())
        == Some(&c.tid);
    let reason = match result {
        Ok(()) if is_main => Some(ExitReason::Exited(0)),
        Ok(()) => {
            // A thread that returns from its entry function stops.
            if alive && let Some(t) = k.objs.tcb_mut(c.tid) {
                t.state = ThreadState::Inactive;
                t.host = None;
            }
            None
        }
        Err(p) => match p.downcast_ref::<Unwind>() {
            Some(Unwind::Exit(s)) => Some(ExitReason::Exited(*s)),
            Some(Unwind::Killed) => None,
            None => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                Some(ExitReason::Panicked(msg))
            }
        },
    };
    if let (Some(r), Some(p), true) = (reason, proc, alive) {
        k.end_process(p, r);
    }
    if c.holds_baton(&k) {
        let next = k.switch();
        drop(k);
        perform(&shared, next);
    }
    CURRENT.with(|x| *x.borrow_mut() = None);
}
