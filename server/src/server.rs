//! [`prepare`] recovers the store and builds the registry; [`serve`] wires the registry,
//! the scheduler, the store's background work and the services to a listener, and shuts
//! them down in the order that keeps clients safe.
//!
//! Shutdown order: health turns NOT_SERVING, new calls get UNAVAILABLE, every Watch and
//! Session stream ends (with UNAVAILABLE, so clients reconnect), the transport drains
//! in-flight unary calls, batched state is flushed and the journal closed, and the
//! process is free to exit. An open stream would otherwise hold
//! the transport's graceful shutdown forever, so the whole sequence is also capped by
//! `shutdown_grace`, after which remaining connections are dropped.

use std::future::Future;
use std::sync::Arc;

use resilient_circuit_api::DESCRIPTOR_SET;
use resilient_circuit_api::v1::admin_service_server::AdminServiceServer;
use resilient_circuit_api::v1::protector_service_server::ProtectorServiceServer;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::Config;
use crate::cluster::Cluster;
use crate::registry::Registry;
use crate::service;

mod prepare;

use prepare::Replicated;
pub use prepare::{Prepared, prepare};

/// Why [`serve`] stopped with an error; defined with the daemon's other errors.
pub use crate::error::ServeError;

/// The cluster view the services read: the replica's, or this daemon alone.
fn cluster_of(
    replica: Option<&Replicated>,
    registry: &Arc<Registry>,
    advertise: String,
    admin: Option<String>,
) -> Arc<Cluster> {
    match replica {
        #[cfg(feature = "etcd")]
        Some(replica) => replica.cluster(),
        #[cfg(not(feature = "etcd"))]
        Some(replica) => match *replica {},
        None => Cluster::standalone(Arc::clone(registry), advertise, admin),
    }
}

/// Serves the v1 contract, health and reflection on `listener` until `shutdown`
/// completes, then ends every open stream and returns within `config.shutdown_grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    prepare(config).await?.serve(listener, shutdown).await
}

impl Prepared {
    /// Serves until `shutdown` completes; see [`serve`].
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        self.serve_apart(listener, None, None, shutdown).await
    }

    /// Serves until `shutdown` completes, AdminService only on `admin` when given (with
    /// health and reflection there too), the rest on `listener`, and `/metrics` and the
    /// dashboard on `http` when given; see [`serve`].
    pub async fn serve_apart(
        self,
        listener: tokio::net::TcpListener,
        admin: Option<tokio::net::TcpListener>,
        http: Option<tokio::net::TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Prepared {
            config,
            draining,
            registry,
            durable,
            replica,
            guard,
            tls,
            hangup,
        } = self;
        if guard.is_none() {
            tracing::warn!(
                "no --tokens: the API, AdminService included, is open to anyone who can reach this port"
            );
        }
        // A replica runs its scheduler and store for each term it leads itself.
        let standalone = replica.is_none();
        let scheduler =
            standalone.then(|| tokio::spawn(Arc::clone(&registry).run_scheduler(draining.clone())));
        let flush_interval = config
            .store
            .as_ref()
            .map_or(std::time::Duration::from_millis(100), |s| s.flush_interval);
        let store_task = standalone
            .then(|| tokio::spawn(Arc::clone(&registry).run_store(flush_interval, draining.clone())));

        let advertise = listener
            .local_addr()
            .map_or_else(|_| config.listen.to_string(), |a| a.to_string());
        let admin_advertise = admin
            .as_ref()
            .and_then(|a| a.local_addr().ok())
            .map(|a| a.to_string());
        let cluster = cluster_of(replica.as_ref(), &registry, advertise, admin_advertise);
        // Whose forwarding marks are believed (see `service::forward::trust`).
        let replicas = service::forward::trust::Replicas::of(
            &cluster,
            crate::tls::replicas_by_certificate(config.tls.as_ref()),
        );
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let (protector_api, admin_api) = service::services_with_peer_tls(
            Arc::clone(&cluster),
            config.limits.clone(),
            config.watch.clone(),
            draining.clone(),
            crate::tls::peer(&config)?,
        );
        let http_task = match http {
            None => None,
            Some(http) => {
                let ctx = crate::http::HttpContext {
                    cluster: Arc::clone(&cluster),
                    guard: guard.clone(),
                    metrics: Arc::clone(&metrics),
                    limits: config.limits.clone(),
                    watch: config.watch.clone(),
                    draining: draining.clone(),
                    metrics_max_protectors: config.metrics_max_protectors,
                    protectors: protector_api.clone(),
                    admin: admin_api.clone(),
                };
                let task = crate::http::spawn(
                    http,
                    ctx,
                    config.limits.max_connections,
                    &config.connections,
                    tls.clone(),
                )
                .map_err(|e| ServeError::Config(format!("the HTTP listener: {e}")))?;
                Some(task)
            }
        };
        let max_message = config.limits.max_message_bytes;
        let protector_service =
            ProtectorServiceServer::new(protector_api).max_decoding_message_size(max_message);
        let admin_service = AdminServiceServer::new(admin_api).max_decoding_message_size(max_message);

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<ProtectorServiceServer<service::ProtectorApi>>()
            .await;
        health
            .set_serving::<AdminServiceServer<service::AdminApi>>()
            .await;
        health.set_service_status("", ServingStatus::Serving).await;
        // A replica that lost etcd (or is loading) is NOT_SERVING; leader and followers
        // serve (a follower forwards what it does not answer itself).
        let health_task = (!standalone).then(|| {
            let mut role = cluster.watch_role();
            let health = health.clone();
            let draining = draining.clone();
            tokio::spawn(async move {
                loop {
                    let serving = !matches!(*role.borrow_and_update(), crate::cluster::Role::Unavailable);
                    let status = if serving {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    };
                    health.set_service_status("", status).await;
                    tokio::select! {
                        () = draining.cancelled() => return,
                        changed = role.changed() => if changed.is_err() { return },
                    }
                }
            })
        });

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        // The journal failing is the other way to stop: after a failed write or fsync
        // nothing more can be made durable, and the page cache can no longer be trusted
        // to match the disk, so the daemon stops deciding and exits; a restart recovers
        // exactly what was acknowledged (see the store's design note).
        let journal = durable.as_ref().map(|d| Arc::clone(&d.journal));
        let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let begin_drain = {
            let draining = draining.clone();
            let health = health.clone();
            let failure = Arc::clone(&failure);
            async move {
                let journal_failed = async {
                    match &journal {
                        Some(journal) => {
                            journal.failed().await;
                            journal
                                .failure()
                                .unwrap_or_else(|| "the journal failed".to_owned())
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = shutdown => {
                        tracing::info!("shutting down: health NOT_SERVING, new calls UNAVAILABLE, watches ending");
                    }
                    why = journal_failed => {
                        tracing::error!(failure = %why, "the journal failed: circuitd stops deciding (health NOT_SERVING, calls UNAVAILABLE) and exits; every acknowledged change is on disk");
                        *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                    }
                }
                health.set_service_status("", ServingStatus::NotServing).await;
                health
                    .set_not_serving::<ProtectorServiceServer<service::ProtectorApi>>()
                    .await;
                health
                    .set_not_serving::<AdminServiceServer<service::AdminApi>>()
                    .await;
                draining.cancel();
            }
        };

        let time_calls = match http_task {
            Some(_) => metrics.time_calls(),
            None => crate::metrics::TimeCalls::default(),
        };
        let builder = || {
            Server::builder()
                .max_concurrent_streams(config.limits.max_concurrent_streams)
                .http2_max_pending_accept_reset_streams(Some(64))
                .http2_keepalive_interval(Some(config.connections.http2_keepalive_interval))
                .http2_keepalive_timeout(Some(config.connections.http2_keepalive_timeout))
                // Latency by method and code, of refused calls too (times nothing
                // without an HTTP listener to show it).
                .layer(time_calls.clone())
                // Counts the calls on each connection, for its idle timeout.
                .layer(crate::connections::CountCalls)
                // Inside the count: a refused call is a call too, and ends at once.
                .layer(crate::auth::Authenticate::new(guard.clone()))
                .layer(service::forward::trust::TrustForwarded(replicas.clone()))
        };
        // With an admin listener, the control plane is served there alone: a client of
        // the data listener finds no AdminService (UNIMPLEMENTED).
        let admin_transport = match admin {
            None => None,
            Some(admin_listener) => {
                let admin_incoming = crate::connections::incoming(
                    admin_listener,
                    config.limits.max_connections,
                    &config.connections,
                    tls.clone(),
                );
                Some(
                    builder()
                        .add_service(admin_service.clone())
                        .add_service(health_service.clone())
                        .add_service(reflection().build_v1()?)
                        .add_service(reflection().build_v1alpha()?)
                        .serve_with_incoming_shutdown(admin_incoming, draining.clone().cancelled_owned()),
                )
            }
        };
        let admin_on_data = admin_transport.is_none().then_some(admin_service);
        let data_router = builder()
            .add_service(protector_service)
            .add_optional_service(admin_on_data)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        // Each data connection is served to its end on one thread of a few
        // (connections/threads.rs); the acceptor, like everything else, runs here.
        let threads = crate::connections::threads::serve(
            listener,
            config.connection_threads,
            config.limits.max_connections,
            &config.connections,
            tls.clone(),
            draining.clone(),
            || {
                let router = data_router.clone();
                let stop = draining.clone();
                move |incoming| router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            },
        )
        .map_err(|e| ServeError::Threads(format!("cannot start them: {e}")))?;
        let data_transport = async move {
            let finished = threads.finished();
            tokio::pin!(finished);
            // The threads end only on `draining`, unless one fails: that stops the daemon.
            tokio::select! {
                finished = &mut finished => return finished,
                () = begin_drain => {}
            }
            finished.await
        };
        let transport = async move {
            match admin_transport {
                None => data_transport.await,
                Some(admin_transport) => {
                    let admin_transport = async move { admin_transport.await.map_err(ServeError::from) };
                    tokio::try_join!(data_transport, admin_transport).map(|_| ())
                }
            }
        };

        let grace = config.shutdown_grace;
        let result = tokio::select! {
            result = transport => result,
            () = async {
                draining.cancelled().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(?grace, "shutdown grace elapsed; dropping the remaining connections");
                Ok(())
            }
        };
        draining.cancel();
        if let Some(mut task) = http_task {
            // Its responses end on `draining`; past the grace, it is dropped like gRPC's.
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                task.abort();
            }
        }
        if let Some(task) = scheduler {
            let _ = task.await;
        }
        if let Some(task) = store_task {
            let _ = task.await;
        }
        if let Some(task) = health_task {
            let _ = task.await;
        }
        if let Some(task) = hangup {
            let _ = task.await;
        }
        #[cfg(feature = "etcd")]
        if let Some(replica) = replica {
            replica.stopped().await;
        }
        let failure = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(why) = failure {
            if let Some(durable) = durable {
                let journal = Arc::clone(&durable.journal);
                let _ = tokio::task::spawn_blocking(move || journal.close()).await;
            }
            return Err(ServeError::JournalFailed(why));
        }
        if let Some(durable) = durable {
            // Calls that finished while the transport drained may have left batched state.
            if let Err(e) = registry.flush_dirty() {
                tracing::error!(error = %e, "final flush failed");
            }
            let journal = Arc::clone(&durable.journal);
            let _ = tokio::task::spawn_blocking(move || journal.close()).await;
        }
        tracing::info!("stopped");
        result
    }
}
