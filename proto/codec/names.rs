//! Spare name buffers, kept per thread: a Session request's name is copied into a
//! `String` when it is decoded and dropped once the request is decided, two of each a
//! decision. Whoever decides hands the name back with [`recycle`]; the next name decoded
//! on that thread is copied into it, with no allocation and no free.
//!
//! Bounded: at most [`SPARES`] buffers a thread, none longer than [`LONGEST`] bytes (a
//! longer name is freed as usual), so a thread keeps at most 16 KiB here. A thread that
//! never recycles (a client's) never keeps any.

use std::cell::RefCell;

/// Spare buffers kept per thread.
pub const SPARES: usize = 64;

/// The capacity of the longest buffer kept (the daemon's default longest name).
pub const LONGEST: usize = 256;

thread_local! {
    static SPARE: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `name`'s buffer for a name decoded later on this thread (or frees it, when
/// enough are kept or it is long).
#[inline]
pub fn recycle(mut name: String) {
    if name.capacity() > LONGEST {
        return;
    }
    name.clear();
    // Nothing runs while the pool is borrowed (no callback, no allocation that could
    // reach it), so the borrow never fails.
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < SPARES {
            spare.push(name);
        }
    });
}

/// Replaces what `field` holds with `name`: in its own buffer when it has one, else in a
/// spare buffer when this thread has one.
#[inline]
pub(super) fn fill(field: &mut String, name: &str) {
    if field.capacity() == 0
        && let Some(buffer) = SPARE.with_borrow_mut(Vec::pop)
    {
        *field = buffer;
    }
    field.clear();
    field.push_str(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> usize {
        SPARE.with(|spare| spare.borrow().len())
    }

    /// `name` in a new field, as the codec reads a request's name.
    fn owned(name: &str) -> String {
        let mut field = String::new();
        fill(&mut field, name);
        field
    }

    #[test]
    fn a_field_that_holds_a_name_is_refilled_in_its_own_buffer() {
        let mut field = String::with_capacity(32);
        field.push_str("an-earlier-name");
        let at = field.as_ptr();
        recycle(String::with_capacity(16));
        let spares = kept();
        fill(&mut field, "ledger");
        assert_eq!(field, "ledger", "replaced, not appended to");
        assert_eq!(field.as_ptr(), at, "its own buffer");
        assert_eq!(kept(), spares, "no spare taken");
    }

    #[test]
    fn a_recycled_buffer_holds_the_next_name_decoded() {
        let first = owned("payments");
        let at = first.as_ptr();
        recycle(first);
        assert_eq!(kept(), 1);
        let second = owned("ledger");
        assert_eq!(second, "ledger");
        assert_eq!(second.as_ptr(), at, "the same buffer, not a new one");
        assert_eq!(kept(), 0);
    }

    #[test]
    fn the_pool_is_bounded_in_count_and_length() {
        for _ in 0..SPARES + 10 {
            recycle(String::with_capacity(16));
        }
        assert_eq!(kept(), SPARES);
        recycle("x".repeat(LONGEST + 1));
        assert_eq!(kept(), SPARES, "a long buffer is freed, not kept");
        while kept() > 0 {
            let _ = owned("");
        }
        // Empty: a name is allocated as usual.
        assert_eq!(owned("checkout"), "checkout");
    }
}
