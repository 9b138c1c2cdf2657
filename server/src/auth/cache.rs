//! The last few valid tokens presented, so the hot path skips SHA-256.
//!
//! With `--tokens` every call would hash its bearer token; a fleet's clients present a
//! handful of distinct tokens over and over. This cache remembers up to [`CAPACITY`]
//! tokens that matched, each with the index of its entry, and is read without a lock (an
//! `ArcSwap` load); a miss hashes as before and, when the token is valid, publishes a
//! new list with it in place of the oldest one. Only valid tokens enter, so a caller
//! spraying guesses never evicts anyone and still pays the hash on every guess.
//!
//! Each lookup compares the presented token with every cached one in constant time (no
//! early exit on the first difference, nor on a match), so its time says nothing about
//! how close a guess came to a valid token. The cache lives beside the tokens it indexes
//! (`auth::Loaded`): a reload starts with an empty one, so a rotated token can never be
//! found in it.

use arc_swap::ArcSwap;
use subtle::ConstantTimeEq;

/// Distinct tokens remembered; a fleet rarely uses more, and each lookup compares all.
pub const CAPACITY: usize = 16;

/// Recently presented valid tokens and the index of their entry in the tokens file.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: ArcSwap<Vec<(Box<[u8]>, usize)>>,
}

impl TokenCache {
    /// The index of `presented`'s entry, if it is cached.
    pub fn get(&self, presented: &[u8]) -> Option<usize> {
        let entries = self.entries.load();
        let mut found = None;
        for (token, index) in entries.iter() {
            if bool::from(token.as_ref().ct_eq(presented)) {
                found = Some(*index);
            }
        }
        found
    }

    /// Remembers that `presented` is the token of entry `index`, forgetting the oldest
    /// when full. Two callers inserting at once may each lose the other's entry; the
    /// next call of that token inserts it again.
    pub fn insert(&self, presented: &[u8], index: usize) {
        let current = self.entries.load();
        if current.iter().any(|(token, _)| **token == *presented) {
            return;
        }
        let mut next: Vec<(Box<[u8]>, usize)> = Vec::with_capacity(CAPACITY);
        next.push((presented.into(), index));
        next.extend(current.iter().take(CAPACITY - 1).cloned());
        self.entries.store(std::sync::Arc::new(next));
    }

    /// How many tokens it holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.load().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_finds_what_it_was_given_and_keeps_only_the_newest() {
        let cache = TokenCache::default();
        assert_eq!(cache.get(b"a"), None);
        cache.insert(b"a", 0);
        cache.insert(b"a", 0);
        assert_eq!((cache.get(b"a"), cache.len()), (Some(0), 1));
        assert_eq!(cache.get(b"ab"), None);
        for i in 0..CAPACITY {
            cache.insert(format!("t{i}").as_bytes(), i + 1);
        }
        assert_eq!(cache.len(), CAPACITY);
        assert_eq!(cache.get(b"a"), None, "the oldest went");
        assert_eq!(cache.get(b"t0"), Some(1));
        assert_eq!(cache.get(format!("t{}", CAPACITY - 1).as_bytes()), Some(CAPACITY));
    }
}
