//! The leader's journal target: each group commit becomes one or more `P/log/<seq>` keys,
//! each put in a transaction that first checks the leader key still has this term's
//! create revision. A deposed or partitioned leader's write is refused by etcd itself;
//! one that cannot hear from etcd before its lease could pass gives up first.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, KvClient, Txn, TxnOp};

use super::keys::Keys;
use crate::cluster::Fence;
use crate::store::GroupSink;

/// etcd refuses requests over 1.5 MiB by default; a group larger than this is cut at
/// record boundaries into several keys.
const MAX_VALUE: usize = 1024 * 1024;

/// Writes groups to etcd for one leadership term.
pub struct EtcdSink {
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) kv: KvClient,
    pub(super) keys: Keys,
    /// The create revision of this term's leader key.
    pub(super) term: i64,
    pub(super) fence: Arc<Fence>,
}

impl EtcdSink {
    fn put(&mut self, key: String, value: &[u8]) -> Result<(), String> {
        let remaining = self.fence.remaining();
        if remaining.is_zero() {
            return Err("the leader's lease may have expired: it stopped writing".into());
        }
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.keys.leader(),
                CompareOp::Equal,
                self.term,
            )])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let mut kv = self.kv.clone();
        let answer = self.runtime.block_on(async move {
            tokio::time::timeout(remaining.max(Duration::from_millis(1)), kv.txn(txn)).await
        });
        match answer {
            Err(_) => Err("etcd did not answer before the leader's lease could expire".into()),
            Ok(Err(e)) => Err(format!("etcd refused the write: {e}")),
            Ok(Ok(r)) if !r.succeeded() => {
                Err("this replica is no longer the leader (its leader key is gone or another's)".into())
            }
            Ok(Ok(_)) => Ok(()),
        }
    }
}

impl GroupSink for EtcdSink {
    fn write(&mut self, group: &[u8], ends: &[(usize, u64)]) -> Result<(), String> {
        let mut start = 0;
        let mut cut = 0;
        let mut last_seq = 0;
        for &(end, seq) in ends {
            if end - start > MAX_VALUE && cut > start {
                let key = self.keys.log_entry(last_seq);
                self.put(key, &group[start..cut])?;
                start = cut;
            }
            cut = end;
            last_seq = seq;
        }
        if cut > start {
            let key = self.keys.log_entry(last_seq);
            self.put(key, &group[start..cut])?;
        }
        Ok(())
    }
}
