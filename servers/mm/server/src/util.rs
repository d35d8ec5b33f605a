//! Small containers the server needs: a bit set and an allocator of runs of slots.
//!
//! Both are plain safe Rust over `alloc`, sized once at start-up.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

/// A fixed-size set of bits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BitSet {
    words: Vec<u64>,
    len: u64,
}

impl BitSet {
    /// `len` bits, all clear.
    pub fn new(len: u64) -> BitSet {
        BitSet {
            words: vec![0; len.div_ceil(64) as usize],
            len,
        }
    }

    /// Whether bit `i` is set (false beyond the end).
    #[inline]
    pub fn get(&self, i: u64) -> bool {
        i < self.len && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Sets bit `i` to `v` (ignored beyond the end).
    #[inline]
    pub fn set(&mut self, i: u64, v: bool) {
        if i < self.len {
            let w = &mut self.words[(i / 64) as usize];
            if v {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// Sets bits `[start, end)` to `v`.
    pub fn set_range(&mut self, start: u64, end: u64, v: bool) {
        let end = end.min(self.len);
        let mut i = start;
        while i < end {
            if i.is_multiple_of(64) && end - i >= 64 {
                self.words[(i / 64) as usize] = if v { u64::MAX } else { 0 };
                i += 64;
            } else {
                self.set(i, v);
                i += 1;
            }
        }
    }

    /// The number of set bits.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }
}

/// An allocator of runs of consecutive indices in `[0, len)`, first fit,
/// coalescing on free (for extra capability slots, which a batched map wants
/// consecutive).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunAlloc {
    /// Free runs, start → length.
    free: BTreeMap<u64, u64>,
    len: u64,
    used: u64,
}

impl RunAlloc {
    /// All of `[0, len)` free.
    pub fn new(len: u64) -> RunAlloc {
        let mut free = BTreeMap::new();
        if len > 0 {
            free.insert(0, len);
        }
        RunAlloc { free, len, used: 0 }
    }

    /// A run of `n` consecutive indices, or `None`.
    pub fn alloc(&mut self, n: u64) -> Option<u64> {
        if n == 0 {
            return None;
        }
        let (&start, &len) = self.free.iter().find(|&(_, &l)| l >= n)?;
        self.free.remove(&start);
        if len > n {
            self.free.insert(start + n, len - n);
        }
        self.used += n;
        Some(start)
    }

    /// Returns the run `[start, start + n)`; it must have been allocated.
    pub fn free(&mut self, start: u64, n: u64) {
        if n == 0 || start.checked_add(n).is_none_or(|e| e > self.len) {
            return;
        }
        let mut s = start;
        let mut l = n;
        if let Some((&ps, &pl)) = self.free.range(..start).next_back()
            && ps + pl == start
        {
            self.free.remove(&ps);
            s = ps;
            l += pl;
        }
        if let Some(&nl) = self.free.get(&(start + n)) {
            self.free.remove(&(start + n));
            l += nl;
        }
        self.free.insert(s, l);
        self.used = self.used.saturating_sub(n);
    }

    /// Indices in use.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Whether the free runs and the used count agree with the size.
    pub fn check(&self) -> bool {
        let free: u64 = self.free.values().sum();
        free + self.used == self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        let mut b = BitSet::new(200);
        b.set_range(3, 190, true);
        assert_eq!(b.count(), 187);
        assert!(b.get(3) && b.get(189) && !b.get(190) && !b.get(2));
        b.set(100, false);
        assert!(!b.get(100));
        assert!(!b.get(1000));
        b.set(1000, true);
        assert_eq!(b.count(), 186);
    }

    #[test]
    fn runs() {
        let mut r = RunAlloc::new(10);
        let a = r.alloc(4).unwrap();
        let b = r.alloc(4).unwrap();
        assert_eq!((a, b), (0, 4));
        assert_eq!(r.alloc(3), None);
        r.free(a, 4);
        assert_eq!(r.alloc(3), Some(0));
        r.free(0, 3);
        r.free(b, 4);
        assert!(r.check());
        assert_eq!(r.alloc(10), Some(0));
        assert_eq!(r.used(), 10);
    }
}
