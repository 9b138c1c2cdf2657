//! The window of recent outcomes (the library's execution log): a ring of bits, one per
//! outcome, so a window of 10 costs one word and 100,000 protectors cost little.

/// A count window of the last `size` SUCCESS/FAILURE outcomes, oldest dropped first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bit i set = the outcome in ring slot i was a failure.
    bits: Box<[u64]>,
    size: u32,
    /// Ring slot of the oldest outcome.
    head: u32,
    len: u32,
    failures: u32,
}

impl Window {
    /// An empty window of `size` slots (at least 1).
    pub fn new(size: u32) -> Window {
        let size = size.max(1);
        Window {
            bits: vec![0; size.div_ceil(64) as usize].into_boxed_slice(),
            size,
            head: 0,
            len: 0,
            failures: 0,
        }
    }

    /// A window of `size` slots holding `outcomes` (true = failure), oldest first; when
    /// there are more than `size`, only the newest are kept.
    pub fn from_outcomes(size: u32, outcomes: impl IntoIterator<Item = bool>) -> Window {
        let mut w = Window::new(size);
        for failed in outcomes {
            w.push(failed);
        }
        w
    }

    /// Appends an outcome, dropping the oldest when full.
    pub fn push(&mut self, failed: bool) {
        let slot = if self.len == self.size {
            let oldest = self.head;
            if self.bit(oldest) {
                self.failures -= 1;
            }
            self.head = (self.head + 1) % self.size;
            oldest
        } else {
            self.len += 1;
            (self.head + self.len - 1) % self.size
        };
        self.set_bit(slot, failed);
        if failed {
            self.failures += 1;
        }
    }

    /// The capacity.
    pub fn size(&self) -> u32 {
        self.size
    }
    /// Outcomes held.
    pub fn len(&self) -> u32 {
        self.len
    }
    /// Whether no outcome is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Whether the window holds `size` outcomes.
    pub fn is_full(&self) -> bool {
        self.len == self.size
    }
    /// Failures held.
    pub fn failures(&self) -> u32 {
        self.failures
    }
    /// Successes held.
    pub fn successes(&self) -> u32 {
        self.len - self.failures
    }
    /// The outcomes, oldest first (true = failure).
    pub fn iter(&self) -> impl Iterator<Item = bool> + '_ {
        (0..self.len).map(move |i| self.bit((self.head + i) % self.size))
    }

    fn bit(&self, slot: u32) -> bool {
        self.bits[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    fn set_bit(&mut self, slot: u32, on: bool) {
        let word = &mut self.bits[(slot / 64) as usize];
        if on {
            *word |= 1 << (slot % 64);
        } else {
            *word &= !(1 << (slot % 64));
        }
    }
}
