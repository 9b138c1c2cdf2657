//! A replica served in this process from the daemon's public pieces (`Cluster::replica`,
//! `service::services`, tonic's server) in a role the test chooses, for tests of what a
//! replica serves, forwards or refuses without etcd. Its registry is its own, empty and
//! in memory; it records the metadata of every call it receives, so a test can see what
//! arrived (a forwarded call's marker, deadline and credentials).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use circuitd::Config;
use circuitd::cluster::{Cluster, Leader, Member, Role};
use circuitd::registry::Registry;
use circuitd::service;
use resilient_circuit_api::v1::admin_service_server::AdminServiceServer;
use resilient_circuit_api::v1::protector_service_server::ProtectorServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Status};

use crate::fixtures::{AdminClient, DEADLINE, ProtectorClient};

/// A replica served in process from the daemon's public pieces, recording the metadata
/// of every call it receives. Dropping it stops it.
#[derive(Debug)]
pub struct Replica {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its place in the cluster: `set_role` changes what it serves and forwards.
    pub cluster: Arc<Cluster>,
    calls: Arc<Mutex<Vec<MetadataMap>>>,
    shutdown: CancellationToken,
}

impl Replica {
    /// Starts a replica with id `id` in `role` on a new loopback listener.
    pub async fn start(id: &str, role: Role) -> Replica {
        Replica::serve(bind().await, id, role)
    }

    /// A follower of the leader at `leader`.
    pub async fn following(id: &str, leader: SocketAddr) -> Replica {
        Replica::start(id, follower_of(leader)).await
    }

    /// Serves a replica with id `id` in `role` on `listener`.
    pub fn serve(listener: TcpListener, id: &str, role: Role) -> Replica {
        let addr = listener.local_addr().expect("local addr");
        let config = Config::default();
        let shutdown = CancellationToken::new();
        let registry = Arc::new(Registry::in_memory(&config, shutdown.clone()));
        let me = Member {
            id: id.to_owned(),
            advertise: addr.to_string(),
            admin: None,
            started: SystemTime::now(),
        };
        let cluster = Cluster::replica(registry, me, "/forwarding-test/".into(), role);
        let (protectors, admin) = service::services(
            Arc::clone(&cluster),
            config.limits.clone(),
            config.watch.clone(),
            shutdown.clone(),
        );
        let calls = Arc::<Mutex<Vec<MetadataMap>>>::default();
        let record = {
            let calls = Arc::clone(&calls);
            move |request: Request<()>| -> Result<Request<()>, Status> {
                calls.lock().expect("calls").push(request.metadata().clone());
                Ok(request)
            }
        };
        let server = Server::builder()
            .add_service(ProtectorServiceServer::with_interceptor(
                protectors,
                record.clone(),
            ))
            .add_service(AdminServiceServer::with_interceptor(admin, record))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.clone().cancelled_owned());
        tokio::spawn(server);
        Replica {
            addr,
            cluster,
            calls,
            shutdown,
        }
    }

    /// A data-plane client on a new connection.
    pub async fn protectors(&self) -> ProtectorClient {
        ProtectorClient::new(self.channel().await)
    }

    /// A control-plane client on a new connection.
    pub async fn admin(&self) -> AdminClient {
        AdminClient::new(self.channel().await)
    }

    /// A new connection.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect_timeout(DEADLINE)
            .connect()
            .await
            .expect("connect to the replica")
    }

    /// The metadata of every call received so far.
    pub fn calls(&self) -> Vec<MetadataMap> {
        self.calls.lock().expect("calls").clone()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A listener on an ephemeral loopback port, for replicas that must know each other's
/// address before either serves.
pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0")
}

/// The role of a leader since now.
pub fn leading() -> Role {
    Role::Leader {
        since: SystemTime::now(),
    }
}

/// The role of a follower of the leader at `leader` (its id made up from the address).
pub fn follower_of(leader: SocketAddr) -> Role {
    Role::Follower {
        leader: Some(Leader {
            id: format!("leader-at-{leader}"),
            advertise: leader.to_string(),
            admin: None,
            since: SystemTime::now(),
        }),
    }
}
