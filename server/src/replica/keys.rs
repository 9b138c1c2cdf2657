//! The cluster's keys in etcd, under its prefix `P`, and what they hold:
//! - `P/cluster`: [`ClusterMeta`], written once by the first replica: the format and the
//!   epoch every replica's revisions belong to.
//! - `P/leader`: [`MemberRecord`] of the leader, attached to its lease; created only when
//!   absent, so its create revision names one term of one leader. Every write a leader
//!   makes compares that create revision first (fencing).
//! - `P/replicas/<advertise>`: [`MemberRecord`] of each replica, attached to its lease.
//! - `P/log/<seq, 20 digits>`: a `LogEntry` (records and the events they published), the
//!   key named by the last sequence number in it, so keys sort in log order.
//! - `P/snapshot`: [`SnapshotPointer`] to the latest snapshot, whose pieces are
//!   `P/snapshots/<last seq>/<piece, 6 digits>`, each a `Snapshot` holding some of the
//!   protectors. Written piece by piece, then the pointer, in the transaction that also
//!   deletes the log up to the snapshot's last sequence number and the older pieces.

/// What `P/cluster` must say for the prefix to be ours.
pub const FORMAT: &str = "resilient-circuit/1";

/// `P/cluster`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClusterMeta {
    /// [`FORMAT`].
    #[prost(string, tag = "1")]
    pub format: String,
    /// The epoch of the cluster's history of revisions.
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
}

/// `P/snapshot`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotPointer {
    /// The last sequence number the snapshot covers; the log continues after it.
    #[prost(uint64, tag = "1")]
    pub last_seq: u64,
    /// The revision delivered when it was taken.
    #[prost(uint64, tag = "2")]
    pub revision: u64,
    /// How many pieces.
    #[prost(uint32, tag = "3")]
    pub pieces: u32,
}

/// A replica (or the leader) as registered.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberRecord {
    /// Unique for each run of a process.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Where clients and replicas reach it.
    #[prost(string, tag = "2")]
    pub advertise: String,
    /// Milliseconds since the Unix epoch: when it registered, or (leader key) when it
    /// started to lead.
    #[prost(uint64, tag = "3")]
    pub since_ms: u64,
    /// Where its admin listener is reached (`--advertise-admin`); empty without one.
    /// Added after the first release: a replica of the older build skips the field (an
    /// unknown protobuf field), and a record without it decodes as empty, so both
    /// builds read each other's records and the format string stays the same.
    #[prost(string, tag = "4")]
    pub admin: String,
}

impl MemberRecord {
    /// The admin address, if the replica has an admin listener.
    pub fn admin(&self) -> Option<String> {
        (!self.admin.is_empty()).then(|| self.admin.clone())
    }
}

/// The key layout under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (which ends with '/').
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P/cluster`.
    pub fn cluster(&self) -> String {
        format!("{}cluster", self.prefix)
    }

    /// `P/leader`.
    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    /// `P/replicas/`.
    pub fn replicas(&self) -> String {
        format!("{}replicas/", self.prefix)
    }

    /// `P/replicas/<advertise>`.
    pub fn replica(&self, advertise: &str) -> String {
        format!("{}replicas/{advertise}", self.prefix)
    }

    /// `P/log/`.
    pub fn log(&self) -> String {
        format!("{}log/", self.prefix)
    }

    /// `P/log/<seq>`.
    pub fn log_entry(&self, seq: u64) -> String {
        format!("{}log/{seq:020}", self.prefix)
    }

    /// `P/snapshot`.
    pub fn snapshot(&self) -> String {
        format!("{}snapshot", self.prefix)
    }

    /// `P/snapshots/`.
    pub fn snapshots(&self) -> String {
        format!("{}snapshots/", self.prefix)
    }

    /// `P/snapshots/<last_seq>/`.
    pub fn snapshot_pieces(&self, last_seq: u64) -> String {
        format!("{}snapshots/{last_seq:020}/", self.prefix)
    }

    /// `P/snapshots/<last_seq>/<piece>`.
    pub fn snapshot_piece(&self, last_seq: u64, piece: u32) -> String {
        format!("{}snapshots/{last_seq:020}/{piece:06}", self.prefix)
    }

    /// The end of a range covering every key starting with `prefix`.
    pub fn end_of(prefix: &str) -> Vec<u8> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        end
    }

    /// The sequence number a log key names.
    pub fn log_seq(&self, key: &[u8]) -> Option<u64> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.log())?
            .parse()
            .ok()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The instant `ms` milliseconds after the Unix epoch.
pub fn from_ms(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn log_keys_sort_in_log_order_and_name_their_sequence_number() {
        let keys = Keys::new("/rc/");
        assert_eq!(keys.log_entry(42), "/rc/log/00000000000000000042");
        assert!(keys.log_entry(9) < keys.log_entry(10));
        for (key, seq) in [
            (keys.log_entry(7), Some(7)),
            ("/rc/log/x".to_owned(), None),
            ("/other/log/00000000000000000007".to_owned(), None),
            (keys.leader(), None),
        ] {
            assert_eq!(keys.log_seq(key.as_bytes()), seq, "{key}");
        }
        // A range over a prefix ends just after every key that starts with it.
        assert_eq!(Keys::end_of("/rc/log/"), b"/rc/log0".to_vec());
        assert_eq!(
            keys.snapshot_piece(5, 2),
            "/rc/snapshots/00000000000000000005/000002"
        );
        assert!(keys.snapshot_pieces(5) < keys.snapshot_pieces(6));
    }
}
