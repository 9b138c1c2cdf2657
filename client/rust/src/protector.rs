//! [`Protector`]: acquire, run and report one call against a named protector.
//!
//! Design note. The daemon decides every call it can be asked about in time: each
//! Acquire runs under the client's deadline (default 50 ms). When the daemon is down,
//! slow, or the link is in its backoff period, the protector's [`Fallback`] decides at
//! once and the decision is counted and logged. A protector the daemon does not know
//! (it was created while the daemon was down, or the daemon restarted without its
//! state) is ensured again, with this handle's policy, within the same deadline.
//!
//! A [`CallPermit`] always ends in exactly one report: resolved explicitly, or IGNORED
//! from its `Drop` when it is dropped unresolved (a cancelled call future included), so
//! a trial permit is never held until it expires.
//!
//! Cached mode ([`ProtectorBuilder::cached`]): while the protector's own Watch stream is
//! synced and fresh and the protector is CLOSED with no override, decisions are taken
//! in this process and successes go to the daemon in batches; OPEN rejects here until
//! `open_until`; everything else is asked of the daemon as above. What this costs —
//! calls admitted between another client's trip and its arrival here — is spelled out
//! in the `cached` module's note, reproduced in the builder's docs.
//!
//! Layout, each part using only those after it: `builder` ([`ProtectorBuilder`]), `handle`
//! ([`Protector`] and how an Acquire is decided), `permit` ([`CallPermit`] and where its
//! report goes), `state` (what the handles of one protector share: the ensure, the
//! Watch task), `fallback` ([`Fallback`] and the LOCAL fallback's machine).

mod builder;
mod fallback;
mod handle;
mod permit;
mod state;

pub use self::builder::ProtectorBuilder;
pub use self::fallback::Fallback;
pub use self::handle::{Acquire, Decisions, Protector};
pub use self::permit::{CallPermit, Resolve, Resolved};
pub use crate::cached::DEFAULT_CACHED_STALENESS;
pub use crate::watcher::StatusChange;
