//! The live feed's encoding: Watch events as Server-Sent Events.
//!
//! Design note. The feed is a Watch stream (the same watchers, buffers and resyncs as
//! gRPC Watch), turned frame by frame into SSE. Every change carries `id: <revision>`,
//! so a client that reconnects sends it back as `Last-Event-ID` and the feed resumes
//! with Watch's `start_revision`, replaying what it missed. PROGRESS becomes a `progress`
//! event with its revision: it keeps idle connections alive through proxies and moves the
//! resume point forward. A RESYNC (the reader fell behind the watch buffer, or its
//! revision is older than the history) becomes a `resync` event; the snapshot that
//! follows it is not sent, because the page reloads its table page through the JSON API
//! instead of receiving 10,000 protectors it does not show. Until the SYNCED that ends
//! that snapshot no frame carries an id, so a reconnect meanwhile resumes from before the
//! resync. An error (shutdown, a failed replica) is sent as an `error` event and ends
//! the stream; the client reconnects.

use std::fmt::Write as _;

use futures_util::{Stream, StreamExt};
use resilient_circuit_api::v1::{self, watch_event::Event};
use serde_json::{Value, json};

use super::view;

/// One SSE frame: `event`, an optional `id` and one line of JSON `data`.
pub fn frame(event: &str, id: Option<u64>, data: &Value) -> String {
    let mut out = String::with_capacity(64);
    let _ = writeln!(out, "event: {event}");
    if let Some(id) = id {
        let _ = writeln!(out, "id: {id}");
    }
    // serde_json escapes every control character, so the data is one line.
    let _ = write!(out, "data: {data}\n\n");
    out
}

/// The first bytes of every feed: a comment, so proxies and the browser see the stream
/// open before the first change.
pub const OPENING: &str = ": circuitd live feed\n\n";

/// Turns Watch events into frames, dropping the snapshots after a resync (design note).
#[derive(Debug, Default)]
pub struct Encoder {
    /// Between a RESYNC and its SYNCED: snapshots are dropped and no id is sent.
    resyncing: bool,
}

impl Encoder {
    /// The frame for one Watch event, if the page gets one.
    pub fn event(&mut self, event: v1::WatchEvent) -> Option<String> {
        let revision = event.revision;
        let id = (!self.resyncing).then_some(revision);
        match event.event? {
            Event::Snapshot(_) => None,
            Event::Synced(s) => {
                self.resyncing = false;
                Some(frame(
                    "synced",
                    Some(revision),
                    // A string: an epoch is a random u64, beyond a JavaScript number's
                    // exact range, and the page must send it back exactly.
                    &json!({ "revision": revision, "epoch": s.epoch.to_string() }),
                ))
            }
            Event::StatusChanged(c) => {
                let t = c.transition.unwrap_or_default();
                Some(frame("transition", id, &view::transition(&c.name, &t, revision)))
            }
            Event::Created(p) => Some(frame(
                "created",
                id,
                &json!({ "revision": revision, "protector": view::protector(&p) }),
            )),
            Event::Deleted(d) => Some(frame(
                "deleted",
                id,
                &json!({ "revision": revision, "name": d.name }),
            )),
            Event::PolicyUpdated(u) => Some(frame(
                "policy",
                id,
                &json!({ "revision": revision, "name": u.name }),
            )),
            Event::OverrideChanged(o) => Some(frame(
                "override",
                id,
                &json!({
                    "revision": revision,
                    "name": o.name,
                    "kind": view::override_kind(o.r#override.as_ref()),
                    "expires_ms": o.r#override.as_ref().and_then(|o| view::millis(o.expires_at.as_ref())),
                    "expired": o.expired,
                }),
            )),
            Event::Progress(_) => Some(frame("progress", id, &json!({ "revision": revision }))),
            Event::Resync(r) => {
                self.resyncing = true;
                let reason = v1::ResyncReason::try_from(r.reason).map_or_else(
                    |_| "unspecified".to_owned(),
                    |r| {
                        r.as_str_name()
                            .trim_start_matches("RESYNC_REASON_")
                            .to_ascii_lowercase()
                    },
                );
                Some(frame(
                    "resync",
                    None,
                    &json!({ "revision": revision, "reason": reason }),
                ))
            }
        }
    }

    /// The frame that ends a feed on an error.
    pub fn error(status: &tonic::Status) -> String {
        frame(
            "error",
            None,
            &json!({ "code": format!("{:?}", status.code()), "error": status.message() }),
        )
    }
}

/// The feed: the opening comment, then a frame per Watch event the page gets, ending
/// after the first error.
pub fn feed<S>(watch: S) -> impl Stream<Item = String> + Send + 'static
where
    S: Stream<Item = Result<v1::WatchEvent, tonic::Status>> + Send + Unpin + 'static,
{
    let frames = futures_util::stream::unfold(
        (watch, Encoder::default(), false),
        |(mut watch, mut encoder, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match watch.next().await? {
                    Ok(event) => {
                        if let Some(frame) = encoder.event(event) {
                            return Some((frame, (watch, encoder, false)));
                        }
                    }
                    Err(status) => return Some((Encoder::error(&status), (watch, encoder, true))),
                }
            }
        },
    );
    futures_util::stream::once(std::future::ready(OPENING.to_owned())).chain(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(revision: u64, event: Event) -> v1::WatchEvent {
        v1::WatchEvent {
            revision,
            event: Some(event),
        }
    }

    fn changed(name: &str) -> Event {
        Event::StatusChanged(v1::StatusChanged {
            name: name.into(),
            transition: Some(v1::Transition {
                from: v1::Status::Closed as i32,
                to: v1::Status::Open as i32,
                reason: v1::TransitionReason::FailureLimit as i32,
                generation: 2,
                ..Default::default()
            }),
        })
    }

    #[test]
    fn a_frame_is_event_id_and_one_line_of_data() {
        let f = frame("transition", Some(7), &json!({ "name": "a\nb" }));
        assert_eq!(f, "event: transition\nid: 7\ndata: {\"name\":\"a\\nb\"}\n\n");
        assert_eq!(frame("resync", None, &json!({})), "event: resync\ndata: {}\n\n");
    }

    #[test]
    fn a_transition_carries_its_revision_as_the_id() {
        let mut e = Encoder::default();
        let f = e.event(at(12, changed("payments"))).unwrap();
        assert!(f.starts_with("event: transition\nid: 12\n"), "{f}");
        assert!(
            f.contains("\"from\":\"closed\"") && f.contains("\"to\":\"open\""),
            "{f}"
        );
        assert!(f.contains("\"reason\":\"failure_limit\""), "{f}");
    }

    #[test]
    fn after_a_resync_snapshots_are_dropped_and_ids_wait_for_synced() {
        let mut e = Encoder::default();
        let resync = e
            .event(at(
                20,
                Event::Resync(v1::Resync {
                    reason: v1::ResyncReason::Lagged as i32,
                }),
            ))
            .unwrap();
        assert!(resync.starts_with("event: resync\ndata: "), "{resync}");
        assert!(resync.contains("\"reason\":\"lagged\""), "{resync}");
        assert_eq!(e.event(at(15, Event::Snapshot(v1::Protector::default()))), None);
        let during = e.event(at(21, changed("a"))).unwrap();
        assert!(!during.contains("id:"), "{during}");
        let synced = e.event(at(21, Event::Synced(v1::Synced { epoch: 3 }))).unwrap();
        assert!(synced.starts_with("event: synced\nid: 21\n"), "{synced}");
        let after = e.event(at(22, changed("a"))).unwrap();
        assert!(after.contains("id: 22\n"), "{after}");
    }

    #[tokio::test]
    async fn the_feed_opens_with_a_comment_and_ends_after_an_error() {
        let events = vec![
            Ok(at(5, changed("a"))),
            Err(tonic::Status::unavailable("circuitd is shutting down")),
            Ok(at(6, changed("a"))),
        ];
        let frames: Vec<String> = feed(futures_util::stream::iter(events)).collect().await;
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert_eq!(frames[0], OPENING);
        assert!(frames[1].contains("id: 5"));
        assert!(frames[2].starts_with("event: error\n") && frames[2].contains("Unavailable"));
    }
}
