//! How many existing protectors each identity created, for
//! `--max-protectors-per-identity`.
//!
//! Why counted from the registry rather than kept apart: each protector's state records
//! the identity that created it (`StoredProtector::creator`, written with the create
//! and carried by every later state, so snapshots keep it). The count is therefore
//! rebuilt from the states themselves whenever a registry is (recovery, a follower
//! applying the leader's log, a new leader), and it survives restarts and failovers with
//! no record of its own. Deleting a protector frees its creator one place.
//!
//! Bounded: an identity has an entry only while it has a protector, so there are never
//! more entries than protectors. The mutex is taken on create, delete and recovery only,
//! never on the hot path, and never across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Error;

/// Who is creating a protector, and how many it may have.
#[derive(Debug, Clone)]
pub struct Creator {
    /// Its key, as recorded (`auth::Identity::key`).
    pub key: Arc<str>,
    /// How many existing protectors it may have created.
    pub max: usize,
    /// How messages name it, e.g. `token "deploy-bot"`.
    pub display: String,
}

/// Existing protectors per creating identity.
#[derive(Debug, Default)]
pub(super) struct Creators(Mutex<HashMap<Arc<str>, usize>>);

impl Creators {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for one more protector of `creator`, or RESOURCE_EXHAUSTED naming
    /// the limit and the identity. Given back with [`Creators::remove`] if the create
    /// fails.
    pub(super) fn reserve(&self, creator: &Creator) -> Result<(), Error> {
        let mut counts = self.counts();
        let count = counts.get(&creator.key).copied().unwrap_or(0);
        if count >= creator.max {
            return Err(Error::ResourceExhausted {
                limit: "max_protectors_per_identity",
                description: format!(
                    "{} created {count} protectors that exist, the most it may ({}); delete one to create another",
                    creator.display, creator.max
                ),
            });
        }
        counts.insert(Arc::clone(&creator.key), count + 1);
        Ok(())
    }

    /// Counts a protector of `key` that exists (recovery, a replica's copy).
    pub(super) fn add(&self, key: Option<&str>) {
        if let Some(key) = key {
            *self.counts().entry(key.into()).or_insert(0) += 1;
        }
    }

    /// A protector of `key` is gone; its entry goes at zero.
    pub(super) fn remove(&self, key: Option<&str>) {
        let Some(key) = key else { return };
        let mut counts = self.counts();
        if let Some(count) = counts.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(key);
            }
        }
    }

    /// How many existing protectors `key` created.
    pub(super) fn count(&self, key: &str) -> usize {
        self.counts().get(key).copied().unwrap_or(0)
    }

    /// How many identities have a protector.
    #[cfg(test)]
    pub(super) fn identities(&self) -> usize {
        self.counts().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_maximum_and_forgets_an_identity_at_zero() {
        let creators = Creators::default();
        let bot = Creator {
            key: "token:bot".into(),
            max: 2,
            display: "token \"bot\"".into(),
        };
        creators.reserve(&bot).expect("first");
        creators.add(Some("token:bot"));
        let e = creators.reserve(&bot).expect_err("third");
        assert!(
            e.to_string().contains("token \"bot\" created 2 protectors")
                && e.to_string().contains("max_protectors_per_identity"),
            "{e}"
        );
        creators.remove(Some("token:bot"));
        assert_eq!(creators.count("token:bot"), 1);
        creators.remove(Some("token:bot"));
        creators.remove(None);
        assert_eq!((creators.count("token:bot"), creators.identities()), (0, 0));
    }
}
