//! Streams open per identity: `--max-watchers-per-identity` and
//! `--max-sessions-per-identity`.
//!
//! One [`Streams`] per kind of stream counts the streams each identity
//! (`auth::Identity::key`) has open. Opening one takes a [`Slot`], or answers
//! RESOURCE_EXHAUSTED naming the limit and the identity; the slot lives inside the
//! response stream, so it is given back when the stream is dropped however it ends (the
//! client closing it or cancelling, a reset, shutdown, an error). An identity's entry is
//! removed when its count reaches zero, so the map holds only identities with a stream
//! open, never more than the streams themselves. The mutex is held for a map update,
//! never across an `.await`. (The protector cap counts differently, from the registry:
//! see `registry/creators.rs`.)
//!
//! In replicated mode a Session forwarded to the leader is counted on the replica the
//! client reached, and again on the leader under the identity the leader sees (see
//! `auth`).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::auth::Identity;
use crate::error::Error;

/// The open streams of one kind, per identity.
#[derive(Debug)]
pub struct Streams {
    /// What they are, for messages: "Watch streams".
    what: &'static str,
    /// The limit's setting name.
    limit: &'static str,
    open: Mutex<HashMap<Arc<str>, usize>>,
}

impl Streams {
    /// No stream open yet; `what` names them in messages, `limit` is the setting.
    pub fn new(what: &'static str, limit: &'static str) -> Arc<Streams> {
        Arc::new(Streams {
            what,
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, usize>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one more stream of `identity`, which may have `max` open.
    pub fn take(self: &Arc<Self>, identity: &Identity, max: usize) -> Result<Slot, Error> {
        let key: Arc<str> = identity.key().into();
        let mut counts = self.counts();
        let count = counts.get(&key).copied().unwrap_or(0);
        if count >= max {
            return Err(Error::ResourceExhausted {
                limit: self.limit,
                description: format!(
                    "{identity} has {count} {} open, the most it may ({max}); close one first",
                    self.what
                ),
            });
        }
        counts.insert(Arc::clone(&key), count + 1);
        Ok(Slot {
            streams: Arc::clone(self),
            key,
        })
    }

    /// How many streams the identity of `key` has open.
    pub fn open(&self, key: &str) -> usize {
        self.counts().get(key).copied().unwrap_or(0)
    }

    /// How many identities have one open.
    pub fn identities(&self) -> usize {
        self.counts().len()
    }
}

/// One open stream's place, given back on drop.
#[derive(Debug)]
pub struct Slot {
    streams: Arc<Streams>,
    key: Arc<str>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.streams.counts();
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// `stream`, holding `slot` for as long as it lives.
pub fn hold<S: Stream + Unpin>(stream: S, slot: Slot) -> Holding<S> {
    Holding { stream, _slot: slot }
}

/// A stream and its [`Slot`].
#[derive(Debug)]
pub struct Holding<S> {
    stream: S,
    _slot: Slot,
}

impl<S: Stream + Unpin> Stream for Holding<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.get_mut().stream).poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Credential, Overrides, Role};

    fn who(name: &str) -> Identity {
        Identity {
            name: name.into(),
            role: Role::Read,
            credential: Credential::Token,
            limits: Overrides::default(),
        }
    }

    #[test]
    fn slots_are_counted_per_identity_and_given_back_on_drop() {
        let watches = Streams::new("Watch streams", "max_watchers_per_identity");
        let (a, b) = (who("a"), who("b"));
        let first = watches.take(&a, 2).expect("1 of 2");
        let second = watches.take(&a, 2).expect("2 of 2");
        let e = watches.take(&a, 2).expect_err("3 of 2").to_string();
        assert!(
            e.contains("max_watchers_per_identity") && e.contains("token \"a\" has 2 Watch streams open"),
            "{e}"
        );
        let other = watches.take(&b, 2).expect("b has its own");
        drop(first);
        let again = watches.take(&a, 2).expect("a place was freed");
        assert_eq!((watches.open("token:a"), watches.identities()), (2, 2));
        drop((second, again, other));
        assert_eq!(watches.identities(), 0, "no entry is kept at zero");
        assert!(watches.take(&a, 0).is_err(), "zero forbids");
    }

    #[test]
    fn a_held_stream_gives_its_slot_back_when_dropped() {
        let sessions = Streams::new("Session streams", "max_sessions_per_identity");
        let slot = sessions.take(&who("a"), 1).expect("first");
        let stream = hold(futures_util::stream::iter([1, 2]), slot);
        assert!(sessions.take(&who("a"), 1).is_err());
        drop(stream);
        assert!(sessions.take(&who("a"), 1).is_ok());
    }
}
