//! SIGHUP applies the `[[protectors]]` of `--config` again (proto/SEMANTICS.md section
//! 2a, "Policy revision"): each declared protector is created if absent, its policy set
//! (as UpdatePolicy would, a new `policy_revision` and the same audit line) if it differs,
//! and left alone if it is the same; an entry marked `delete = true` is deleted if it
//! exists. Nothing else is ever deleted. A file that does not load (bad TOML, a bad name
//! or policy, a repeated name) is refused whole: nothing of it is applied, and the error
//! is logged. One protector the registry refuses (say `max_protectors` reached) is logged
//! and the others still applied.
//!
//! In a cluster only the leader applies its file: a follower logs that it skips, since
//! its changes would have to be forwarded and the leader's own file may say otherwise.
//! Send SIGHUP to the leader (or to every replica: only the leader acts).

use std::path::PathBuf;
use std::sync::Arc;

use crate::cluster::{Cluster, Role};
use crate::config::{Declared, Limits};
use crate::error::Error;
use crate::registry::Registry;
use crate::service::audit::audit_reload;

/// What a reload needs: the file, the limits it is checked against, and where to apply it.
#[derive(Debug, Clone)]
pub struct ProtectorsReload {
    /// The `--config` file.
    pub path: PathBuf,
    /// The daemon's limits, as it started.
    pub limits: Limits,
    /// Where the protectors live.
    pub target: Target,
}

/// Where a reload applies the file.
#[derive(Debug, Clone)]
pub enum Target {
    /// A standalone daemon's registry.
    Standalone(Arc<Registry>),
    /// A replica's view of the cluster: applied only while it leads, to the registry it
    /// serves then (a replica that wins an election serves a new one).
    Replica(Arc<Cluster>),
}

/// What one reload did, for its log line and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Protectors created.
    pub created: usize,
    /// Protectors whose policy was set anew.
    pub updated: usize,
    /// Protectors already as declared.
    pub unchanged: usize,
    /// Protectors deleted.
    pub deleted: usize,
    /// Protectors the registry refused (each logged).
    pub failed: usize,
}

impl ProtectorsReload {
    /// Reads the file and applies it, logging what happened; `None` when it did not
    /// (the file was refused, or this replica does not lead).
    pub async fn run_logged(&self) -> Option<Applied> {
        let file = self.path.display();
        if let Target::Replica(cluster) = &self.target
            && !matches!(cluster.role(), Role::Leader { .. } | Role::Standalone)
        {
            tracing::info!(%file, "SIGHUP: this replica does not lead; the leader applies the [[protectors]] of its own config file on its SIGHUP");
            return None;
        }
        let declared = match Declared::read(&self.path, &self.limits) {
            Ok(declared) => declared,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the config file was refused; no protector was changed");
                return None;
            }
        };
        let registry = match &self.target {
            Target::Standalone(registry) => Arc::clone(registry),
            Target::Replica(cluster) => cluster.registry(),
        };
        let applied = apply(&registry, &declared).await;
        let Applied {
            created,
            updated,
            unchanged,
            deleted,
            failed,
        } = applied;
        tracing::info!(%file, created, updated, unchanged, deleted, failed, "SIGHUP: [[protectors]] applied");
        Some(applied)
    }
}

/// Applies `declared` to `registry` (see the module note).
pub async fn apply(registry: &Registry, declared: &Declared) -> Applied {
    let mut applied = Applied::default();
    for p in &declared.protectors {
        let name = p.name.as_str();
        let policy = match p.checked_policy(&declared.rules) {
            Ok(policy) => policy,
            Err(e) => {
                // Checked when the file was read: only a broken invariant gets here.
                tracing::error!(name, error = %e, "SIGHUP: a declared policy was refused");
                applied.failed += 1;
                continue;
            }
        };
        let outcome = match registry.ensure(name, policy).await {
            Ok(e) if e.created => {
                audit_reload("EnsureProtector", name, policy.spec(), e.revision);
                applied.created += 1;
                Ok(())
            }
            Ok(e) if *e.view.protector.policy() == policy => {
                applied.unchanged += 1;
                Ok(())
            }
            Ok(_) => registry.update_policy(name, policy).await.map(|(_, revision)| {
                audit_reload("UpdatePolicy", name, policy.spec(), revision);
                applied.updated += 1;
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            tracing::error!(name, error = %e, "SIGHUP: a declared protector could not be applied");
            applied.failed += 1;
        }
    }
    for name in &declared.deleted {
        match registry.delete(name).await {
            Ok(revision) => {
                audit_reload("DeleteProtector", name, (), revision);
                applied.deleted += 1;
            }
            Err(Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::error!(name = %name, error = %e, "SIGHUP: a protector marked `delete` could not be deleted");
                applied.failed += 1;
            }
        }
    }
    applied
}
