//! The scheduler: ready queues by priority, and seL4's scheduling decisions.
//!
//! 256 priorities, each with a FIFO of runnable threads (linked through
//! the threads, so making a thread ready never allocates), and a two-level
//! bitmap of the non-empty ones. The running thread is not in a queue. After each kernel
//! entry the *action* decides what runs next, as in seL4 (non-MCS):
//! resume the current thread, switch to a thread just woken if it may run
//! before the others ([`Kernel::possible_switch_to`]), or choose the head of
//! the highest non-empty queue. Round robin within a priority comes from
//! the timer: a thread whose time slice runs out goes to the back of its
//! queue.

use super::Kernel;
use super::cap::ObjId;
use super::object::{Chain, ThreadQueue, ThreadState};
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
///
/// The queues are linked through the threads' TCBs ([`ThreadQueue`]), so
/// making a thread ready never allocates.
pub struct Scheduler {
    queues: [ThreadQueue; 256],
    /// Bit `p % 64` of word `p / 64`: priority `p` has a queued thread.
    bitmap: [u64; 4],
    /// Bit `w`: `bitmap[w]` is not zero (seL4's two-level bitmap).
    summary: u8,
    /// The running thread (`None`: idle).
    pub current: Option<ObjId>,
    /// The pending decision.
    pub action: Action,
    /// Ticks left in the current thread's time slice.
    pub ticks_left: u32,
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
            queues: [ThreadQueue {
                head: None,
                tail: None,
            }; 256],
            bitmap: [0; 4],
            summary: 0,
            current: None,
            action: Action::ResumeCurrent,
            ticks_left: TIME_SLICE_TICKS,
        }
    }

    /// The highest priority with a runnable thread queued.
    #[inline(always)]
    pub fn highest(&self) -> Option<u8> {
        if self.summary == 0 {
            return None;
        }
        let w = 7 - self.summary.leading_zeros() as usize;
        let bits = self.bitmap[w & 3];
        Some((w as u32 * 64 + 63 - bits.leading_zeros()) as u8)
    }

    /// Whether a thread of priority `prio` may run before every queued
    /// thread (none has a higher priority).
    #[inline(always)]
    pub fn may_run_first(&self, prio: u8) -> bool {
        self.summary == 0 || self.highest().is_none_or(|h| h <= prio)
    }

    fn mark(&mut self, prio: u8) {
        let (w, b) = (prio as usize / 64, prio as usize % 64);
        if self.queues[prio as usize].is_empty() {
            self.bitmap[w] &= !(1 << b);
        } else {
            self.bitmap[w] |= 1 << b;
        }
        if self.bitmap[w] == 0 {
            self.summary &= !(1 << w);
        } else {
            self.summary |= 1 << w;
        }
    }

    /// The ready queue of a priority.
    pub fn queue(&self, prio: u8) -> &ThreadQueue {
        &self.queues[prio as usize]
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
        let q = &mut self.sched.queues[prio as usize];
        if front {
            q.push_front(&mut self.tcbs, Chain::Ready, id);
        } else {
            q.push_back(&mut self.tcbs, Chain::Ready, id);
        }
        self.sched.mark(prio);
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
        self.sched.queues[prio as usize].remove(&mut self.tcbs, Chain::Ready, id);
        self.sched.mark(prio);
    }

    /// Drops every trace of a thread being destroyed from the scheduler.
    pub fn sched_forget(&mut self, id: ObjId) {
        self.sched_dequeue(id);
        if self.sched.action == Action::SwitchTo(id) {
            self.sched.action = Action::ChooseNew;
        }
        if self.sched.current == Some(id) {
            self.sched.current = None;
        }
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
        let next = self.sched.highest().and_then(|p| {
            let id = self.sched.queues[p as usize].pop_front(&mut self.tcbs, Chain::Ready);
            self.sched.mark(p);
            id
        });
        match next {
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
            && matches!(t.state, ThreadState::Restart)
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
