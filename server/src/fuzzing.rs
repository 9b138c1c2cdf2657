//! Entry points for the fuzz targets (`fuzz/`, run with cargo-fuzz): each takes
//! arbitrary bytes, feeds them to the code that decodes untrusted input, and must never
//! panic, whatever the bytes. Not part of the daemon's interface; the unit tests below
//! feed every committed corpus and regression file through the same functions, so the
//! corpora are exercised by `cargo test` even without a fuzzer.
//!
//! Inputs that hold several messages are split by `pieces`: a kind byte (where the
//! target has kinds), a `u16` little-endian length, then that many bytes (fewer at the
//! end of the input).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use futures_util::FutureExt;
use prost::Message;
use resilient_circuit_api::v1;
use resilient_circuit_api::v1::admin_service_server::AdminService;
use resilient_circuit_api::v1::protector_service_server::ProtectorService;
use tokio_util::sync::CancellationToken;
use tonic::Request;

use crate::auth::Tokens;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::registry::Registry;
use crate::service::{self, AdminApi, ProtectorApi};
use crate::store::record::{LogEntry, Snapshot};
use crate::store::{self, Replay, format};

/// Requests (or records) one input may hold: each runs against the state the ones
/// before it left, so an input can create a protector, then drive it.
const MAX_PIECES: usize = 64;

/// The current-thread runtime every input runs on (the registry's clock and the
/// services need one); built once per process.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

/// Splits `data` into at most [`MAX_PIECES`] `(kind, bytes)`: with `kinds`, a kind byte
/// before each length (`0` otherwise).
fn pieces(mut data: &[u8], kinds: bool) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < MAX_PIECES {
        let kind = if kinds {
            let (&k, rest) = data.split_first().expect("not empty");
            data = rest;
            k
        } else {
            0
        };
        let len = match data {
            [a, b, rest @ ..] => {
                data = rest;
                usize::from(u16::from_le_bytes([*a, *b]))
            }
            _ => std::mem::take(&mut data).len(),
        };
        let (piece, rest) = data.split_at(len.min(data.len()));
        out.push((kind, piece));
        data = rest;
    }
    out
}

/// A fresh in-memory daemon: its registry and both services, as `circuitd --in-memory`
/// wires them (default limits), on a standalone cluster.
struct Daemon {
    registry: Arc<Registry>,
    protectors: ProtectorApi,
    admin: AdminApi,
}

impl Daemon {
    fn new() -> Daemon {
        let config = Config::default();
        let shutdown = CancellationToken::new();
        let registry = Arc::new(Registry::in_memory(&config, shutdown.clone()));
        let cluster = Cluster::standalone(Arc::clone(&registry), "127.0.0.1:1".into(), None);
        let (protectors, admin) = service::services(cluster, config.limits, config.watch, shutdown);
        Daemon {
            registry,
            protectors,
            admin,
        }
    }

    /// Serves `bytes` decoded as the request of kind `kind` (modulo the number of
    /// request types), if they decode; the answer, an error or not, is dropped.
    async fn serve(&self, kind: u8, bytes: &[u8]) {
        /// `bytes` as a request of type `$t`, or return: prost's refusal is the
        /// transport's INVALID_ARGUMENT, before any service code runs.
        macro_rules! decode {
            ($t:ty) => {
                match <$t>::decode(bytes) {
                    Ok(m) => Request::new(m),
                    Err(_) => return,
                }
            };
        }
        let (p, a) = (&self.protectors, &self.admin);
        match kind % 13 {
            0 => drop(p.ensure_protector(decode!(v1::EnsureProtectorRequest)).await),
            1 => drop(p.acquire(decode!(v1::AcquireRequest)).await),
            2 => drop(p.report(decode!(v1::ReportRequest)).await),
            3 => drop(p.report_batch(decode!(v1::ReportBatchRequest)).await),
            4 => {
                // A Watch answers with its snapshot first: take it, then close.
                if let Ok(stream) = p.watch(decode!(v1::WatchRequest)).await {
                    let mut stream = stream.into_inner();
                    drop(futures_util::StreamExt::next(&mut stream).now_or_never());
                }
            }
            5 => drop(p.get_protector(decode!(v1::GetProtectorRequest)).await),
            6 => drop(p.list_protectors(decode!(v1::ListProtectorsRequest)).await),
            7 => {
                // Read as a Session reads it (a request on the daemon, an answer on a
                // client), by the codec's hand-written paths where they can.
                codec_reads_as_prost::<v1::SessionRequest>(bytes);
                codec_reads_as_prost::<v1::SessionResponse>(bytes);
                // A session runs each message as the unary call would (`service::session`).
                match decode!(v1::SessionRequest).into_inner().request {
                    Some(v1::session_request::Request::Acquire(r)) => drop(p.acquire(Request::new(r)).await),
                    Some(v1::session_request::Request::Report(r)) => drop(p.report(Request::new(r)).await),
                    None => {}
                }
            }
            8 => drop(a.set_status(decode!(v1::SetStatusRequest)).await),
            9 => drop(a.set_override(decode!(v1::SetOverrideRequest)).await),
            10 => drop(a.update_policy(decode!(v1::UpdatePolicyRequest)).await),
            11 => drop(a.delete_protector(decode!(v1::DeleteProtectorRequest)).await),
            _ => drop(a.get_cluster(decode!(v1::GetClusterRequest)).await),
        }
    }

    /// Drives every protector once through the data plane and reads it back, so a
    /// restored state that the machine cannot run shows here rather than in production.
    async fn exercise(&self) {
        let list = v1::ListProtectorsRequest {
            page_size: MAX_PIECES as u32,
            ..Default::default()
        };
        let Ok(page) = self.protectors.list_protectors(Request::new(list)).await else {
            return;
        };
        for name in page.into_inner().protectors.into_iter().map(|p| p.name) {
            let acquired = self
                .protectors
                .acquire(Request::new(v1::AcquireRequest { name: name.clone() }))
                .await;
            if let Ok(answer) = acquired
                && let Some(permit) = answer.into_inner().permit
            {
                let report = v1::ReportRequest {
                    duration: None,
                    name: name.clone(),
                    permit: Some(permit),
                    outcome: v1::Outcome::Failure as i32,
                };
                drop(self.protectors.report(Request::new(report)).await);
            }
            drop(
                self.protectors
                    .get_protector(Request::new(v1::GetProtectorRequest { name }))
                    .await,
            );
        }
    }
}

/// `bytes` read as an `M` by the codec (`resilient_circuit_api::codec::decode_from`) and by
/// prost: the same message, or the same refusal.
fn codec_reads_as_prost<M: Message + Default + PartialEq + std::fmt::Debug + 'static>(bytes: &[u8]) {
    let by_codec = resilient_circuit_api::codec::decode_from::<M>(&mut &bytes[..]);
    let by_prost = M::decode(bytes);
    assert_eq!(
        by_codec.map_err(|e| e.to_string()),
        by_prost.map_err(|e| e.to_string()),
        "the codec and prost read a {} apart",
        std::any::type_name::<M>()
    );
}

/// Requests of every RPC (the kind byte of each piece picks the type: see
/// `Daemon::serve`), decoded with prost from arbitrary bytes and served in order by
/// a fresh in-memory daemon: validation, then whatever the registry does with them. A
/// Session request's bytes are also read by the codec, as a request and as an answer,
/// which must read them as prost does.
pub fn requests(data: &[u8]) {
    runtime().block_on(async {
        let daemon = Daemon::new();
        for (kind, bytes) in pieces(data, true) {
            daemon.serve(kind, bytes).await;
        }
    });
}

/// A journal segment, as recovery reads one (`store::open`): framing, records, replay,
/// then the recovered protectors restored into a registry and driven. The first byte
/// chooses how the rest is read: bit 0 and 1 pick raw segment bytes (`0`), or the
/// payloads of pieces framed with valid checksums after the current magic (`1`), the
/// legacy magic (`2`), or as entries of the replicated log (`3`, what a follower reads
/// from etcd); bit 2 says whether the segment is the last one.
pub fn journal(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 3 == 3 {
        return replicated_log(rest);
    }
    let bytes = match mode & 3 {
        0 => rest.to_vec(),
        1 => framed(format::SEGMENT_MAGIC, rest),
        _ => framed(format::LEGACY_SEGMENT_MAGIC, rest),
    };
    let (records, _end) = store::read_segment(&bytes, mode & 4 != 0);
    let mut replay = Replay::default();
    let (mut seq, mut revision) = (0, 0);
    // Damage refuses the start; whatever replayed before it is still restored here, to
    // reach the registry with more states.
    let _ = store::replay_records(&mut replay, &mut seq, &mut revision, records);
    restore(replay);
}

/// A snapshot file, as recovery reads it, restored and driven like [`journal`]'s
/// states. The first byte: `0` raw file bytes, `1` one frame of the rest with a valid
/// checksum, `2` the rest as one piece of a replicated snapshot (what a follower reads
/// from etcd).
pub fn snapshot(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let decoded = match mode % 3 {
        0 => store::decode_snapshot(rest),
        1 => {
            let mut bytes = format::SNAPSHOT_MAGIC.to_vec();
            format::frame(rest, &mut bytes);
            store::decode_snapshot(&bytes)
        }
        _ => Snapshot::decode(rest).map_err(|e| e.to_string()),
    };
    let Ok(snapshot) = decoded else {
        return;
    };
    if mode % 3 == 2 {
        // A follower loading a snapshot piece makes each state its registry's.
        return runtime().block_on(async {
            let daemon = Daemon::new();
            for stored in &snapshot.protectors {
                let _ = daemon.registry.replicate_put(stored);
            }
            daemon.exercise().await;
        });
    }
    let mut replay = Replay::default();
    for stored in snapshot.protectors {
        replay.insert(stored);
    }
    restore(replay);
}

/// The current magic, then each piece of `rest` as one frame with valid checksums.
fn framed(magic: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_vec();
    for (_, payload) in pieces(rest, false) {
        format::frame(payload, &mut bytes);
    }
    bytes
}

/// Recovery's end: the replayed states restored into a fresh registry (a state that is
/// no valid protector refuses the start), then driven.
fn restore(replay: Replay) {
    runtime().block_on(async {
        let daemon = Daemon::new();
        if daemon.registry.restore(replay.finish()).is_ok() {
            daemon.exercise().await;
        }
    });
}

/// Entries of the replicated log, each applied as a follower applies it, then the
/// follower's registry driven.
fn replicated_log(data: &[u8]) {
    runtime().block_on(async {
        let daemon = Daemon::new();
        let mut replay = Replay::default();
        for (applied, (_, bytes)) in pieces(data, false).into_iter().enumerate() {
            let Ok(entry) = LogEntry::decode(bytes) else {
                break;
            };
            if daemon
                .registry
                .replicate_entry(&mut replay, entry, applied as u64)
                .is_err()
            {
                break;
            }
        }
        daemon.exercise().await;
    });
}

/// A ListProtectors `page_token` (the bytes as the request's string, when they are
/// UTF-8, as prost requires): decoded; a token that decodes must be the one the
/// daemon would have handed out for that name (a page token has one spelling), and a
/// page of a small registry is read after it.
pub fn page_token(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(after) = service::decode_token(token) {
        assert!(
            service::encode_token(&after).eq_ignore_ascii_case(token),
            "{token:?} decodes to {after:?}, whose token is another"
        );
    }
    runtime().block_on(async {
        let daemon = Daemon::new();
        for name in ["a", "b/c", "ü"] {
            let ensure = v1::EnsureProtectorRequest {
                name: name.into(),
                policy: None,
            };
            drop(daemon.protectors.ensure_protector(Request::new(ensure)).await);
        }
        let list = v1::ListProtectorsRequest {
            page_size: 1,
            page_token: token.to_owned(),
            ..Default::default()
        };
        drop(daemon.protectors.list_protectors(Request::new(list)).await);
    });
}

/// A tokens file (`--tokens`), as UTF-8 text (the daemon reads it as a string): checked;
/// a file that passes is looked up with a token.
pub fn tokens(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Tokens::parse(Path::new("tokens.toml"), text) {
        Ok(tokens) => {
            assert!(!tokens.is_empty(), "a checked tokens file with no token");
            let _ = tokens.find(data);
        }
        Err(e) => drop(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
