//! The scheduler: ready queues by priority, and seL4's scheduling decisions.
//!
//! 256 priorities, each with a FIFO of runnable threads, and a bitmap of the
//! non-empty ones. The running thread is not in a queue. After each kernel
//! entry the *action* decides what runs next, as in seL4 (non-MCS):
//! resume the current thread, switch to a thread just woken if it may run
//! before the others ([`Kernel::possible_switch_to`]), or choose the head of
//! the highest non-empty queue. Round robin within a priority comes from
//! the timer: a thread whose time slice runs out goes to the back of its
//! queue.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::Kernel;
use super::cap::ObjId;
use super::object::ThreadState;
use crate::machine::Machine;

/// Timer ticks in a time slice.
pub const TIME_SLICE_TICKS: u32 = 5;

/// What to do on the way out of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Keep running the current thread.
    ResumeCurrent,
    /// Run the best runnable thread.
    ChooseNew,
    /// Consider switching to this thread, just woken.
    SwitchTo(ObjId),
}

/// The ready queues and the running thread.
pub struct Scheduler {
    queues: Vec<VecDeque<ObjId>>,
    bitmap: [u64; 4],
    /// The running thread (`None`: idle).
    pub current: Option<ObjId>,
    /// The pending decision.
    pub action: Action,
    /// Ticks left in the current thread's time slice.
    pub ticks_left: u32,
    /// A fastpath has already switched threads: nothing left to decide.
    pub fast_switched: bool,
    /// The address space (root table, ASID) of the thread a fastpath
    /// switched to, looked up already (taken by the context switch).
    pub next_space: Option<(u64, u16)>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    /// No threads.
    pub fn new() -> Self {
        Scheduler {
            queues: (0..256).map(|_| VecDeque::new()).collect(),
            bitmap: [0; 4],
            current: None,
            action: Action::ResumeCurrent,
            ticks_left: TIME_SLICE_TICKS,
            fast_switched: false,
            next_space: None,
        }
    }

    /// The highest priority with a runnable thread queued.
    pub fn highest(&self) -> Option<u8> {
        (0..4).rev().find_map(|w| {
            let bits = self.bitmap[w];
            (bits != 0).then(|| (w as u32 * 64 + 63 - bits.leading_zeros()) as u8)
        })
    }

    fn mark(&mut self, prio: u8) {
        let (w, b) = (prio as usize / 64, prio as usize % 64);
        if self.queues[prio as usize].is_empty() {
            self.bitmap[w] &= !(1 << b);
        } else {
            self.bitmap[w] |= 1 << b;
        }
    }

    fn push(&mut self, id: ObjId, prio: u8, front: bool) {
        let q = &mut self.queues[prio as usize];
        if front {
            q.push_front(id);
        } else {
            q.push_back(id);
        }
        self.mark(prio);
    }

    fn pop(&mut self, prio: u8) -> Option<ObjId> {
        let id = self.queues[prio as usize].pop_front();
        self.mark(prio);
        id
    }

    fn remove(&mut self, id: ObjId, prio: u8) {
        self.queues[prio as usize].retain(|&t| t != id);
        self.mark(prio);
    }

    /// Drops every trace of a destroyed thread.
    pub fn forget(&mut self, id: ObjId) {
        for prio in 0..=255u8 {
            if self.queues[prio as usize].contains(&id) {
                self.remove(id, prio);
            }
        }
        if self.action == Action::SwitchTo(id) {
            self.action = Action::ChooseNew;
        }
        if self.current == Some(id) {
            self.current = None;
        }
    }

    /// Asks for a new choice without queueing anything (the current thread
    /// is gone).
    pub fn reschedule_required_plain(&mut self) {
        self.action = Action::ChooseNew;
    }
}

impl<M: Machine> Kernel<M> {
    /// seL4 `tcbSchedEnqueue` (`front`) / `tcbSchedAppend`.
    pub fn sched_enqueue(&mut self, id: ObjId, front: bool) {
        let Some(t) = self.tcbs.get_mut(id) else {
            return;
        };
        if t.queued || !t.state.is_runnable() {
            return;
        }
        t.queued = true;
        let prio = t.priority;
        self.sched.push(id, prio, front);
    }

    /// seL4 `tcbSchedDequeue`.
    pub fn sched_dequeue(&mut self, id: ObjId) {
        let Some(t) = self.tcbs.get_mut(id) else {
            return;
        };
        if !t.queued {
            return;
        }
        t.queued = false;
        let prio = t.priority;
        self.sched.remove(id, prio);
    }

    /// seL4 `rescheduleRequired`.
    pub fn reschedule_required(&mut self) {
        if let Action::SwitchTo(t) = self.sched.action {
            self.sched_enqueue(t, true);
        }
        self.sched.action = Action::ChooseNew;
    }

    /// seL4 `possibleSwitchTo`: a thread became runnable.
    pub fn possible_switch_to(&mut self, id: ObjId) {
        if self.sched.action != Action::ResumeCurrent {
            self.reschedule_required();
            self.sched_enqueue(id, true);
        } else {
            self.sched.action = Action::SwitchTo(id);
        }
    }

    /// seL4 `setThreadState`, with `scheduleTCB`.
    pub fn set_thread_state(&mut self, id: ObjId, state: ThreadState) {
        if let Some(t) = self.tcbs.get_mut(id) {
            t.state = state;
            if !state.is_runnable() && t.queued {
                self.sched_dequeue(id);
            }
        }
        if self.sched.current == Some(id)
            && self.sched.action == Action::ResumeCurrent
            && !state.is_runnable()
        {
            self.reschedule_required();
        }
    }

    fn priority(&self, id: ObjId) -> u8 {
        self.tcbs.get(id).map_or(0, |t| t.priority)
    }

    fn is_runnable(&self, id: ObjId) -> bool {
        self.tcbs.get(id).is_some_and(|t| t.state.is_runnable())
    }

    /// seL4 `schedule`: carries out the pending action; afterwards
    /// `sched.current` is the thread to run (or `None`: idle).
    pub fn schedule(&mut self) {
        let action = self.sched.action;
        self.sched.action = Action::ResumeCurrent;
        match action {
            Action::ResumeCurrent => {
                if self.sched.current.is_some_and(|c| !self.is_runnable(c)) {
                    self.choose_thread();
                }
            }
            Action::ChooseNew => {
                if let Some(cur) = self.sched.current
                    && self.is_runnable(cur)
                {
                    self.sched_enqueue(cur, true);
                }
                self.choose_thread();
            }
            Action::SwitchTo(candidate) => {
                if !self.is_runnable(candidate) {
                    if let Some(cur) = self.sched.current
                        && self.is_runnable(cur)
                    {
                        self.sched_enqueue(cur, true);
                    }
                    self.choose_thread();
                    return;
                }
                let cur = self.sched.current.filter(|&c| self.is_runnable(c));
                if let Some(c) = cur {
                    self.sched_enqueue(c, true);
                }
                let cand_prio = self.priority(candidate);
                let fastfail = cur.is_none_or(|c| cand_prio < self.priority(c));
                let highest = self.sched.highest().is_none_or(|h| cand_prio >= h);
                if fastfail && !highest {
                    self.sched_enqueue(candidate, true);
                    self.choose_thread();
                } else if cur.is_some_and(|c| cand_prio == self.priority(c)) {
                    self.sched_enqueue(candidate, false);
                    self.choose_thread();
                } else {
                    self.switch_to(candidate);
                }
            }
        }
    }

    fn choose_thread(&mut self) {
        match self.sched.highest().and_then(|p| self.sched.pop(p)) {
            Some(id) => {
                if let Some(t) = self.tcbs.get_mut(id) {
                    t.queued = false;
                }
                self.switch_to(id);
            }
            None => self.sched.current = None,
        }
    }

    fn switch_to(&mut self, id: ObjId) {
        self.sched_dequeue(id);
        if self.sched.current != Some(id) {
            self.sched.ticks_left = TIME_SLICE_TICKS;
        }
        self.sched.current = Some(id);
    }

    /// seL4 `activateThread`: a restarted thread resumes at its restart point.
    pub fn activate(&mut self) {
        if let Some(cur) = self.sched.current
            && let Some(t) = self.tcbs.get_mut(cur)
            && t.state == ThreadState::Restart
        {
            t.context.pc = t.context.restart_pc;
            t.state = ThreadState::Running;
        }
    }

    /// A timer tick: the current thread's slice shortens; when it runs out
    /// the thread goes to the back of its queue.
    pub fn timer_tick(&mut self) {
        if self.sched.current.is_none() {
            return;
        }
        self.sched.ticks_left = self.sched.ticks_left.saturating_sub(1);
        if self.sched.ticks_left == 0 {
            self.sched.ticks_left = TIME_SLICE_TICKS;
            self.yield_current();
        }
    }

    /// seL4 `handleYield`: the current thread goes to the back of its queue.
    pub fn yield_current(&mut self) {
        if let Some(cur) = self.sched.current {
            self.sched_dequeue(cur);
            self.sched_enqueue(cur, false);
            self.reschedule_required();
        }
    }

    /// Whether any thread can run.
    pub fn anything_runnable(&self) -> bool {
        self.sched.highest().is_some() || self.sched.current.is_some_and(|c| self.is_runnable(c))
    }
}
