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

/// `name` as a `String`, in a spare buffer when this thread has one.
#[inline]
pub(super) fn owned(name: &str) -> String {
    let spare = SPARE.with_borrow_mut(Vec::pop);
    match spare {
        Some(mut buffer) => {
            buffer.push_str(name);
            buffer
        }
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> usize {
        SPARE.with(|spare| spare.borrow().len())
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
