//! The leader's journal target: each group commit becomes one or more `P/log/<seq>` keys,
//! each put in a transaction that first checks the leader key still has this term's
//! create revision. A deposed or partitioned leader's write is refused by etcd itself;
//! one that cannot hear from etcd before its lease could pass gives up first.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, DeleteOptions, KvClient, Txn, TxnOp};
use prost::Message;

use super::keys::{Keys, SnapshotPointer};
use crate::cluster::Fence;
use crate::store::GroupSink;
use crate::store::record::Snapshot;

/// etcd refuses requests over 1.5 MiB by default; a group larger than this is cut at
/// record boundaries into several keys.
const MAX_VALUE: usize = 1024 * 1024;

/// How long one attempt at a write may take before it is tried again.
const ATTEMPT: Duration = Duration::from_millis(500);
/// The pause between attempts.
const RETRY: Duration = Duration::from_millis(20);

/// Writes groups to etcd for one leadership term.
pub struct EtcdSink {
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) kv: KvClient,
    pub(super) keys: Keys,
    /// The create revision of this term's leader key.
    pub(super) term: i64,
    pub(super) fence: Arc<Fence>,
    /// Bytes of log written since the last snapshot.
    pub(super) since_snapshot: u64,
    /// How much log the leader writes before it snapshots and deletes what the snapshot
    /// covers, so that etcd holds about one snapshot and this much log (etcd frees the
    /// space once its own history is compacted: see README, "Running a cluster").
    pub(super) snapshot_bytes: u64,
}

impl EtcdSink {
    fn put(&mut self, key: String, value: &[u8]) -> Result<(), String> {
        self.since_snapshot += value.len() as u64;
        self.fenced([TxnOp::put(key, value.to_vec(), None)])
    }

    /// Runs `ops` if this term's leader key is still there. A call that fails in transit
    /// (an etcd member died, a connection broke) is tried again while the lease holds:
    /// each write is idempotent (the same key and value), and followers skip a log entry
    /// they already applied, so a write that did land the first time costs nothing.
    fn fenced<const N: usize>(&mut self, ops: [TxnOp; N]) -> Result<(), String> {
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.keys.leader(),
                CompareOp::Equal,
                self.term,
            )])
            .and_then(ops);
        loop {
            let remaining = self.fence.remaining();
            if remaining.is_zero() {
                return Err(
                    "etcd did not answer before the leader's lease could expire: it stopped writing".into(),
                );
            }
            let mut kv = self.kv.clone();
            let attempt = txn.clone();
            let answer = self
                .runtime
                .block_on(async move { tokio::time::timeout(remaining.min(ATTEMPT), kv.txn(attempt)).await });
            match answer {
                Ok(Ok(r)) if r.succeeded() => return Ok(()),
                Ok(Ok(_)) => {
                    return Err(
                        "this replica is no longer the leader (its leader key is gone or another's)".into(),
                    );
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "an etcd write failed; trying again while the lease holds")
                }
                Err(_) => tracing::warn!("an etcd write took too long; trying again while the lease holds"),
            }
            std::thread::sleep(RETRY.min(self.fence.remaining()));
        }
    }
}

/// Cuts a group whose appends end at `ends` (offset after each, and its sequence number)
/// into pieces of at most `max` bytes at append boundaries (an append larger than `max`
/// is a piece of its own), each with the last sequence number in it.
fn pieces(ends: &[(usize, u64)], max: usize) -> Vec<(std::ops::Range<usize>, u64)> {
    let mut pieces = Vec::new();
    let (mut start, mut cut, mut last_seq) = (0, 0, 0);
    for &(end, seq) in ends {
        if end - start > max && cut > start {
            pieces.push((start..cut, last_seq));
            start = cut;
        }
        cut = end;
        last_seq = seq;
    }
    if cut > start {
        pieces.push((start..cut, last_seq));
    }
    pieces
}

impl GroupSink for EtcdSink {
    fn write(&mut self, group: &[u8], ends: &[(usize, u64)]) -> Result<(), String> {
        for (range, last_seq) in pieces(ends, MAX_VALUE) {
            let key = self.keys.log_entry(last_seq);
            self.put(key, &group[range])?;
        }
        Ok(())
    }

    fn compaction_due(&mut self) -> bool {
        let due = self.since_snapshot > self.snapshot_bytes;
        if due {
            self.since_snapshot = 0;
        }
        due
    }

    fn snapshot(&mut self, snapshot: Snapshot) -> Result<(), String> {
        let last_seq = snapshot.last_seq;
        let mut pieces = 0u32;
        let mut piece = Snapshot::default();
        let mut size = 0;
        for protector in snapshot.protectors {
            let len = protector.encoded_len() + 8;
            if size + len > MAX_VALUE && !piece.protectors.is_empty() {
                let key = self.keys.snapshot_piece(last_seq, pieces);
                self.fenced([TxnOp::put(key, piece.encode_to_vec(), None)])?;
                pieces += 1;
                piece.protectors.clear();
                size = 0;
            }
            size += len;
            piece.protectors.push(protector);
        }
        let key = self.keys.snapshot_piece(last_seq, pieces);
        self.fenced([TxnOp::put(key, piece.encode_to_vec(), None)])?;
        pieces += 1;
        let pointer = SnapshotPointer {
            last_seq,
            revision: snapshot.revision,
            pieces,
        };
        // The pointer, and the log and older pieces it makes useless, in one step.
        let log_end = self.keys.log_entry(last_seq + 1);
        let older_end = self.keys.snapshot_pieces(last_seq);
        self.fenced([
            TxnOp::put(self.keys.snapshot(), pointer.encode_to_vec(), None),
            TxnOp::delete(self.keys.log(), Some(DeleteOptions::new().with_range(log_end))),
            TxnOp::delete(
                self.keys.snapshots(),
                Some(DeleteOptions::new().with_range(older_end)),
            ),
        ])?;
        self.since_snapshot = 0;
        tracing::info!(
            last_seq,
            pieces,
            "snapshot stored in etcd; the log it covers deleted"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::pieces;

    /// A group's appends, the largest piece, and the pieces expected.
    type Case<'a> = (&'a [(usize, u64)], usize, &'a [(std::ops::Range<usize>, u64)]);

    #[test]
    fn a_group_is_cut_at_append_boundaries_into_pieces_of_at_most_max_bytes() {
        let cases: &[Case<'_>] = &[
            (&[], 10, &[]),
            (&[(4, 1)], 10, &[(0..4, 1)]),
            // Everything fits: one piece named by the last sequence number.
            (&[(4, 1), (8, 2), (10, 3)], 10, &[(0..10, 3)]),
            // The third append would pass max: a new piece starts before it.
            (&[(4, 1), (8, 2), (12, 3)], 10, &[(0..8, 2), (8..12, 3)]),
            // An append larger than max is a piece of its own.
            (
                &[(3, 1), (20, 2), (22, 3)],
                10,
                &[(0..3, 1), (3..20, 2), (20..22, 3)],
            ),
            (&[(25, 7)], 10, &[(0..25, 7)]),
        ];
        for (ends, max, expected) in cases {
            assert_eq!(pieces(ends, *max), expected.to_vec(), "{ends:?} max {max}");
        }
    }
}
