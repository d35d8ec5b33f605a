//! Per-frame metadata and the intrusive doubly linked lists threaded through it.
//!
//! Every managed zone keeps one [`FrameMeta`] per frame of its span (12
//! bytes). Free buddy blocks, per-CPU pages and pre-zeroed frames are linked
//! into lists through the `next`/`prev` fields of their first frame, as
//! `u32` indices into the zone's array, so every list operation is O(1) and
//! no memory besides the array is needed. [`NIL`] ends a list.

/// The index that ends a list.
pub(crate) const NIL: u32 = u32::MAX;

/// What a frame is. Only the first frame of a block carries the block's
/// state; the others are [`State::Tail`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// In the zone's span but not managed memory.
    Hole,
    /// Inside a block whose first frame holds the state.
    Tail,
    /// First frame of a free buddy block of `order`, on the free list of
    /// migratetype `mt`.
    Free,
    /// First frame of an allocated block of `order`, allocated as `mt`.
    Alloc,
    /// A free order-0 frame on CPU `aux`'s per-CPU list `mt`.
    Pcp,
    /// A free, zeroed order-0 frame in the zero pool `mt`.
    Zeroed,
    /// An order-0 frame reserved with `reserve_range`.
    Reserved,
}

/// One frame's bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameMeta {
    /// The next frame on this frame's list.
    pub next: u32,
    /// The previous frame on this frame's list.
    pub prev: u32,
    /// What the frame is.
    pub state: State,
    /// The block's order (for `Free` and `Alloc`).
    pub order: u8,
    /// The list's migratetype (`Free`, `Pcp`, `Zeroed`) or the allocation's.
    pub mt: u8,
    /// The CPU of a `Pcp` frame.
    pub aux: u8,
}

impl FrameMeta {
    /// A frame outside managed memory.
    pub const HOLE: FrameMeta = FrameMeta {
        next: NIL,
        prev: NIL,
        state: State::Hole,
        order: 0,
        mt: 0,
        aux: 0,
    };
    /// A frame inside a block.
    pub const TAIL: FrameMeta = FrameMeta {
        state: State::Tail,
        ..FrameMeta::HOLE
    };
}

/// The head, tail and length of one intrusive list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct List {
    /// The first frame, or [`NIL`].
    pub head: u32,
    /// The last frame, or [`NIL`].
    pub tail: u32,
    /// How many entries the list has.
    pub len: u32,
}

impl List {
    /// An empty list.
    pub const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };

    /// Whether the list is empty.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.head == NIL
    }

    /// Links `idx` in at the front.
    #[inline(always)]
    pub fn push_front(&mut self, frames: &mut [FrameMeta], idx: u32) {
        let old = self.head;
        let f = &mut frames[idx as usize];
        f.prev = NIL;
        f.next = old;
        if old == NIL {
            self.tail = idx;
        } else {
            frames[old as usize].prev = idx;
        }
        self.head = idx;
        self.len += 1;
    }

    /// Links `idx` in at the back.
    #[inline(always)]
    pub fn push_back(&mut self, frames: &mut [FrameMeta], idx: u32) {
        let old = self.tail;
        let f = &mut frames[idx as usize];
        f.next = NIL;
        f.prev = old;
        if old == NIL {
            self.head = idx;
        } else {
            frames[old as usize].next = idx;
        }
        self.tail = idx;
        self.len += 1;
    }

    /// Unlinks `idx`, which must be on this list.
    #[inline(always)]
    pub fn remove(&mut self, frames: &mut [FrameMeta], idx: u32) {
        let FrameMeta { next, prev, .. } = frames[idx as usize];
        if prev == NIL {
            self.head = next;
        } else {
            frames[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            frames[next as usize].prev = prev;
        }
        self.len -= 1;
    }

    /// Unlinks and returns the first entry.
    #[inline(always)]
    pub fn pop_front(&mut self, frames: &mut [FrameMeta]) -> Option<u32> {
        let idx = self.head;
        if idx == NIL {
            return None;
        }
        let next = frames[idx as usize].next;
        self.head = next;
        if next == NIL {
            self.tail = NIL;
        } else {
            frames[next as usize].prev = NIL;
        }
        self.len -= 1;
        Some(idx)
    }

    /// Unlinks and returns the last entry.
    #[inline]
    pub fn pop_back(&mut self, frames: &mut [FrameMeta]) -> Option<u32> {
        let idx = self.tail;
        if idx == NIL {
            return None;
        }
        self.remove(frames, idx);
        Some(idx)
    }

    /// Walks the list front to back, checking the back links and that it
    /// holds exactly `len` entries; calls `f` on each entry.
    pub fn check(
        &self,
        frames: &[FrameMeta],
        mut f: impl FnMut(u32) -> Result<(), alloc::string::String>,
    ) -> Result<(), alloc::string::String> {
        let mut prev = NIL;
        let mut cur = self.head;
        let mut n: u32 = 0;
        while cur != NIL {
            if n >= self.len {
                return Err(alloc::format!("list longer than its length {}", self.len));
            }
            let Some(m) = frames.get(cur as usize) else {
                return Err(alloc::format!("list entry {cur} out of the array"));
            };
            if m.prev != prev {
                return Err(alloc::format!(
                    "entry {cur}: prev {} expected {prev}",
                    m.prev
                ));
            }
            f(cur)?;
            prev = cur;
            cur = m.next;
            n += 1;
        }
        if n != self.len || self.tail != prev {
            return Err(alloc::format!(
                "list length {} tail {} but walked {n} ending at {prev}",
                self.len,
                self.tail
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn collect(l: &List, frames: &[FrameMeta]) -> Vec<u32> {
        let mut v = Vec::new();
        l.check(frames, |i| {
            v.push(i);
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn push_pop_remove() {
        let mut frames = vec![FrameMeta::TAIL; 8];
        let mut l = List::EMPTY;
        l.push_front(&mut frames, 3);
        l.push_back(&mut frames, 5);
        l.push_front(&mut frames, 1);
        assert_eq!(collect(&l, &frames), [1, 3, 5]);
        l.remove(&mut frames, 3);
        assert_eq!(collect(&l, &frames), [1, 5]);
        assert_eq!(l.pop_back(&mut frames), Some(5));
        assert_eq!(l.pop_front(&mut frames), Some(1));
        assert_eq!(l.pop_front(&mut frames), None);
        assert!(l.is_empty());
        assert_eq!(l, List::EMPTY);
    }

    #[test]
    fn check_catches_a_broken_link() {
        let mut frames = vec![FrameMeta::TAIL; 4];
        let mut l = List::EMPTY;
        l.push_back(&mut frames, 0);
        l.push_back(&mut frames, 1);
        frames[1].prev = 2;
        assert!(l.check(&frames, |_| Ok(())).is_err());
        frames[1].prev = 0;
        l.len = 3;
        assert!(l.check(&frames, |_| Ok(())).is_err());
    }
}
