//! The scheduler: one runnable thread at a time, a baton passed between host threads.
//!
//! Every simulated thread is a host thread, but only the holder of the baton
//! (the kernel's current thread) runs; the others are parked. A thread gives
//! the baton up when it blocks, yields or is preempted, handing it directly
//! to the next thread (no intermediate scheduler thread): the hand-off is a
//! flag and an unpark, with a short spin first to catch a quick return.
//!
//! Which thread runs next follows seL4's rules — the highest priority first,
//! round robin within a priority, a woken thread of higher priority than
//! the current one preempts it — with the choice among equals either in
//! FIFO order ([`Schedule::Fifo`]) or drawn from a seeded RNG
//! ([`Schedule::Seeded`]), which also preempts at random syscalls and memory
//! accesses. Both are deterministic: a run replays exactly from its seed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use crate::object::ObjId;

/// How the scheduler chooses among runnable threads of equal priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// First in, first out, with a time slice of `slice` ticks (syscalls
    /// and memory accesses) before a thread goes to the back of its queue.
    Fifo {
        /// Ticks per time slice.
        slice: u32,
    },
    /// Every choice drawn from an RNG seeded with `seed`; at each tick the
    /// current thread is preempted with probability 1/`preempt_one_in`.
    Seeded {
        /// The seed.
        seed: u64,
        /// Preemption odds (0: never preempt).
        preempt_one_in: u32,
    },
}

impl Schedule {
    /// The seed, if seeded.
    pub fn seed(&self) -> Option<u64> {
        match self {
            Schedule::Seeded { seed, .. } => Some(*seed),
            Schedule::Fifo { .. } => None,
        }
    }
}

/// SplitMix64: a small, good, seedable generator.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// The parking place of one host thread.
pub(crate) struct HostCtl {
    go: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    /// Spin iterations before parking, adapted to how hand-offs go: doubled
    /// when spinning caught the baton, halved when it had to park anyway (on
    /// a loaded host the spinner takes the CPU the baton holder needs).
    spin: AtomicU32,
}

/// The spin budget's bounds and start, in iterations of 64 spin hints.
const SPIN_MIN: u32 = 1;
const SPIN_MAX: u32 = 256;
const SPIN_START: u32 = 32;

/// Whether the host lets this process run on more than one CPU. On one CPU
/// a waiter that spins only delays the thread it waits for, so it parks at once.
fn host_has_cpus_to_spin_on() -> bool {
    static MANY: OnceLock<bool> = OnceLock::new();
    *MANY.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

impl HostCtl {
    pub fn new() -> Arc<HostCtl> {
        Arc::new(HostCtl {
            go: AtomicBool::new(false),
            thread: OnceLock::new(),
            spin: AtomicU32::new(SPIN_START),
        })
    }

    /// Registers the calling host thread as the one this controls.
    pub fn register(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// Hands the baton to this thread.
    pub fn wake(&self) {
        self.go.store(true, Ordering::Release);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Waits for the baton: spins for the adaptive budget, then parks.
    pub fn wait(&self) {
        let budget = if host_has_cpus_to_spin_on() {
            self.spin.load(Ordering::Relaxed)
        } else {
            0
        };
        for _ in 0..budget {
            for _ in 0..64 {
                if self.go.load(Ordering::Relaxed) && self.go.swap(false, Ordering::Acquire) {
                    self.spin
                        .store((budget * 2).min(SPIN_MAX), Ordering::Relaxed);
                    return;
                }
                std::hint::spin_loop();
            }
        }
        if budget > 0 {
            self.spin
                .store((budget / 2).max(SPIN_MIN), Ordering::Relaxed);
        }
        loop {
            if self.go.swap(false, Ordering::Acquire) {
                return;
            }
            std::thread::park();
        }
    }
}

/// Ready queues, one per priority, and the choice of the next thread.
pub(crate) struct ReadyQueues {
    queues: Vec<VecDeque<ObjId>>,
    bitmap: [u64; 4],
}

impl ReadyQueues {
    pub fn new() -> ReadyQueues {
        ReadyQueues {
            queues: (0..256).map(|_| VecDeque::new()).collect(),
            bitmap: [0; 4],
        }
    }

    fn mark(&mut self, prio: u8) {
        let p = prio as usize;
        if self.queues[p].is_empty() {
            self.bitmap[p / 64] &= !(1 << (p % 64));
        } else {
            self.bitmap[p / 64] |= 1 << (p % 64);
        }
    }

    /// Appends at the back of its priority's queue.
    pub fn push_back(&mut self, prio: u8, t: ObjId) {
        self.queues[prio as usize].push_back(t);
        self.mark(prio);
    }

    /// Puts at the front (a preempted thread keeps its turn).
    pub fn push_front(&mut self, prio: u8, t: ObjId) {
        self.queues[prio as usize].push_front(t);
        self.mark(prio);
    }

    pub fn remove(&mut self, prio: u8, t: ObjId) {
        let q = &mut self.queues[prio as usize];
        if let Some(i) = q.iter().position(|&x| x == t) {
            q.remove(i);
        }
        self.mark(prio);
    }

    /// The highest priority with a ready thread.
    pub fn highest(&self) -> Option<u8> {
        (0..4).rev().find_map(|w| {
            let b = self.bitmap[w];
            (b != 0).then(|| (w * 64 + 63 - b.leading_zeros() as usize) as u8)
        })
    }

    /// Takes a thread of the highest priority: the first, or one drawn from `rng`.
    pub fn pop(&mut self, rng: Option<&mut Rng>) -> Option<ObjId> {
        let p = self.highest()?;
        let q = &mut self.queues[p as usize];
        let i = match rng {
            Some(r) => r.below(q.len() as u64) as usize,
            None => 0,
        };
        let t = q.remove(i);
        self.mark(p);
        t
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.highest().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_priority_first_fifo_within() {
        let mut q = ReadyQueues::new();
        q.push_back(3, 1);
        q.push_back(200, 2);
        q.push_back(200, 3);
        q.push_front(200, 4);
        assert_eq!(q.highest(), Some(200));
        assert_eq!(q.pop(None), Some(4));
        assert_eq!(q.pop(None), Some(2));
        q.remove(200, 3);
        assert_eq!(q.pop(None), Some(1));
        assert!(q.is_empty());
    }

    #[test]
    fn rng_is_deterministic() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let xs: Vec<u64> = (0..8).map(|_| a.next()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }
}
