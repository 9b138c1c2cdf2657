//! The status machine of one protector.
//!
//! Design note. All state lives in [`Protector`], a plain value: the daemon keeps one per
//! name in a map, a client keeps one per LOCAL fallback. Every public operation first
//! applies, in chronological order, the expiries due by `now` (trial permits, the
//! override, `open_until` under `auto_half_open`), each at its own instant, then does its
//! own work. The caller publishes the returned [`Change`]s in order.
//!
//! Edge cases decided here:
//! - Trial permits exist only in HALF_OPEN; every transition drops them (their generation
//!   is gone, so their reports are stale anyway).
//! - A permit with id 0 is untracked: valid while its generation is current and the
//!   protector is CLOSED or under DISABLED. A report of a DISABLED call after DISABLED
//!   ended in OPEN or HALF_OPEN is therefore stale, as proto/SEMANTICS.md asks.
//! - While an override holds nothing is evaluated: outcomes, expired trials included, go
//!   into the window, and the rule is next checked on an outcome recorded after it ends.
//! - With `auto_half_open`, OPEN moves to HALF_OPEN at `open_until`, or at the instant an
//!   override ended if that is later.
//! - `now` earlier than an instant already seen is tolerated: durations saturate at zero.

mod judge;
mod protector;
mod state;
mod trials;
mod types;

pub use protector::Protector;
pub use state::{InvalidState, ProtectorState};
pub use trials::TrialPermits;
pub use types::*;
