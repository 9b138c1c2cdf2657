//! Preparing to serve: tokens and TLS loaded, the store recovered (or the replica
//! started on etcd), the registry built with the configured protectors, and SIGHUP's
//! reloads armed, before the binary says that it listens.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::error::ServeError;
use crate::registry::Registry;
use crate::reload::{ProtectorsReload, Target};
use crate::sequencer::Sequencer;
use crate::store::{self, Journal, StoreConfig};
use crate::tls::Tls;
use crate::validate;
use crate::watch::Watchers;

/// What serving needs besides the registry: the journal and the lock on its directory.
pub(super) struct Durable {
    pub(super) journal: Arc<Journal>,
    _lock: std::fs::File,
}

/// Opens the store (if any), recovers, builds the sequencer and registry, and creates
/// the configured protectors.
async fn registry(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<(Arc<Registry>, Option<Durable>), ServeError> {
    let recovered = match &config.store {
        None => None,
        Some(settings) => {
            let store_config = StoreConfig {
                dir: settings.data_dir.clone(),
                repair: settings.repair,
                segment_bytes: settings.segment_bytes,
                faults: settings.faults.clone(),
            };
            let recovered = tokio::task::spawn_blocking(move || store::open(&store_config))
                .await
                .map_err(|e| ServeError::Config(format!("the store could not be opened: {e}")))??;
            tracing::info!(
                dir = %settings.data_dir.display(),
                protectors = recovered.protectors.len(),
                revision = recovered.revision,
                "recovered durable state"
            );
            Some(recovered)
        }
    };
    let revision = recovered.as_ref().map_or(0, |r| r.revision);
    let epoch = recovered.as_ref().map_or_else(store::new_epoch, |r| r.epoch);
    let sequencer = Arc::new(Sequencer::new(
        &config.watch,
        revision,
        epoch,
        recovered.is_some(),
    ));
    let watchers = Watchers::new(config.limits.max_watchers, shutdown.clone());
    let max_protectors = config.limits.max_protectors;
    let max_history = config.limits.max_history_entries;
    let (registry, durable) = match recovered {
        None => (
            Registry::new(max_protectors, sequencer, watchers, Clock::new(), None)
                .with_max_history(max_history),
            None,
        ),
        Some(r) => {
            sequencer.deliver_on_durable(&r.journal);
            let registry = Registry::new(
                max_protectors,
                sequencer,
                watchers,
                Clock::new(),
                Some(Arc::clone(&r.journal)),
            )
            .with_max_history(max_history);
            registry.restore(r.protectors).map_err(ServeError::Config)?;
            let durable = Durable {
                journal: r.journal,
                _lock: r.lock,
            };
            (registry, Some(durable))
        }
    };
    let registry = Arc::new(registry);
    for p in &config.protectors {
        let refuse = |e: String| ServeError::Config(format!("protector {:?}: {e}", p.name));
        let name = validate::name("name", p.name.clone(), config.limits.max_name_len)
            .map_err(|e| refuse(e.to_string()))?;
        let policy = p
            .checked_policy(&config.protector_rules)
            .map_err(|e| refuse(e.to_string()))?;
        registry
            .ensure(&name, policy)
            .await
            .map_err(|e| refuse(e.to_string()))?;
    }
    Ok((registry, durable))
}

/// A daemon whose state is recovered (and whose data directory is locked), ready to
/// serve. Preparing first lets the binary announce that it listens only once it can
/// answer, and refuse to start before that when the store is damaged.
#[derive(Debug)]
pub struct Prepared {
    pub(super) config: Config,
    pub(super) draining: CancellationToken,
    pub(super) registry: Arc<Registry>,
    pub(super) durable: Option<Durable>,
    /// Replicated mode: the replica and its cluster view.
    pub(super) replica: Option<Replicated>,
    /// The tokens in force (`--tokens`), or none: the API is open.
    pub(super) guard: Option<Arc<crate::auth::Guard>>,
    /// TLS on both listeners.
    pub(super) tls: Option<Arc<Tls>>,
    /// The task that re-reads the tokens and TLS files on SIGHUP, when either is on.
    pub(super) hangup: Option<tokio::task::JoinHandle<()>>,
}

/// A replica started on etcd (only with the `etcd` feature).
#[cfg(feature = "etcd")]
pub(super) type Replicated = crate::replica::Replica;
#[cfg(not(feature = "etcd"))]
#[derive(Debug)]
pub(super) enum Replicated {}

#[cfg(feature = "etcd")]
async fn replicate(config: &Config, draining: &CancellationToken) -> Result<Option<Replicated>, ServeError> {
    let Some(settings) = &config.cluster else {
        return Ok(None);
    };
    let Some(advertise) = settings.advertise.clone() else {
        return Err(ServeError::Config(
            "replicated mode needs the address other replicas and clients reach this one at: set --advertise"
                .into(),
        ));
    };
    // The library binds no listener: without the binary's bound address, an admin
    // listener on a fixed, dialable address advertises itself.
    let mut settings = settings.clone();
    if settings.advertise_admin.is_none()
        && let Some(admin) = config.admin_listen
    {
        if admin.ip().is_unspecified() || admin.port() == 0 {
            return Err(ServeError::Config(format!(
                "the admin listener is on {admin}, which other replicas cannot dial: set --advertise-admin HOST:PORT"
            )));
        }
        settings.advertise_admin = Some(admin.to_string());
    }
    let replica = crate::replica::start(config, &settings, advertise, draining.clone()).await?;
    Ok(Some(replica))
}

#[cfg(not(feature = "etcd"))]
async fn replicate(config: &Config, _draining: &CancellationToken) -> Result<Option<Replicated>, ServeError> {
    match &config.cluster {
        None => Ok(None),
        Some(_) => Err(ServeError::Config(
            "this circuitd was built without replicated mode: build it with `cargo build --release -p circuitd --features etcd` (needs protoc: apt-get install protobuf-compiler)".into(),
        )),
    }
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

/// Opens and recovers the store (if configured), builds the registry and creates the
/// configured protectors.
pub async fn prepare(config: Config) -> Result<Prepared, ServeError> {
    let draining = CancellationToken::new();
    // Checked before anything else starts: a bad tokens file refuses to start.
    let guard = match &config.tokens {
        None => None,
        Some(path) => Some(Arc::new(
            crate::auth::Guard::load(path, config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()))
                .map_err(|e| ServeError::Config(e.to_string()))?,
        )),
    };
    let tls = match &config.tls {
        None => None,
        Some(settings) => Some(Arc::new(
            Tls::load(settings).map_err(|e| ServeError::Config(e.to_string()))?,
        )),
    };
    // Installed before anything else can take time: until a process handles SIGHUP, the
    // signal would kill it.
    let hangups = hangup_signal(guard.is_some() || tls.is_some() || config.config_file.is_some())?;
    let (registry, durable, replica) = match replicate(&config, &draining).await? {
        #[cfg(feature = "etcd")]
        Some(replica) => (replica.cluster().registry(), None, Some(replica)),
        #[cfg(not(feature = "etcd"))]
        Some(replica) => match replica {},
        None => {
            let (registry, durable) = registry(&config, &draining).await?;
            (registry, durable, None)
        }
    };
    let protectors = config.config_file.clone().map(|path| ProtectorsReload {
        path,
        limits: config.limits.clone(),
        target: match cluster_of_replica(replica.as_ref()) {
            Some(cluster) => Target::Replica(cluster),
            None => Target::Standalone(Arc::clone(&registry)),
        },
    });
    let hangup =
        hangups.map(|hangups| reload_on_sighup(hangups, guard.clone(), tls.clone(), protectors, &draining));
    Ok(Prepared {
        config,
        draining,
        registry,
        durable,
        replica,
        guard,
        tls,
        hangup,
    })
}

/// The SIGHUP stream, when anything is reloaded on it.
fn hangup_signal(wanted: bool) -> Result<Option<tokio::signal::unix::Signal>, ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    if !wanted {
        return Ok(None);
    }
    signal(SignalKind::hangup())
        .map(Some)
        .map_err(|e| ServeError::Config(format!("cannot handle SIGHUP: {e}")))
}

/// The replica's cluster view, for a reload to apply only while it leads.
fn cluster_of_replica(replica: Option<&Replicated>) -> Option<Arc<Cluster>> {
    match replica {
        #[cfg(feature = "etcd")]
        Some(replica) => Some(replica.cluster()),
        #[cfg(not(feature = "etcd"))]
        Some(replica) => match *replica {},
        None => None,
    }
}

/// One task re-reads the tokens file and the TLS files, and applies the config file's
/// `[[protectors]]` again (`crate::reload`), on every SIGHUP until `stop`. A reload
/// that fails leaves what it would have replaced in force, and says so in the log.
fn reload_on_sighup(
    mut hangups: tokio::signal::unix::Signal,
    guard: Option<Arc<crate::auth::Guard>>,
    tls: Option<Arc<Tls>>,
    protectors: Option<ProtectorsReload>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let stop = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                got = hangups.recv() => if got.is_none() { return },
            }
            if let Some(guard) = &guard {
                guard.reload_logged();
            }
            if let Some(tls) = &tls {
                tls.reload_logged();
            }
            if let Some(protectors) = &protectors {
                protectors.run_logged().await;
            }
        }
    })
}
