//! `AdminService`, the control plane: thin, like the data plane.

use std::time::Duration;

use resilient_circuit_api::convert;
use resilient_circuit_api::v1::{self, admin_service_server::AdminService};
use resilient_circuit_breaker::policy::MAX_COOLDOWN;
use tonic::{Request, Response, Status};

use super::audit::{Origin, audit};
use super::{AdminApi, MIN_OVERRIDE, forward};
use crate::cluster::Role;
use crate::error::Error;
use crate::validate;

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn set_status(
        &self,
        request: Request<v1::SetStatusRequest>,
    ) -> Result<Response<v1::SetStatusResponse>, Status> {
        forward!(self.0, request, admin.set_status);
        let origin = Origin::of(&request);
        let req = request.into_inner();
        let name = self.0.name("name", req.name)?;
        let status = validate::status("status", req.status)?;
        let open_for =
            validate::duration_in("open_for", req.open_for.as_ref(), Duration::ZERO, MAX_COOLDOWN)?;
        if open_for.is_some() && status != resilient_circuit_breaker::Status::Open {
            return Err(Error::invalid("open_for", "only allowed with status STATUS_OPEN").into());
        }
        let (view, transition, revision) = self.0.registry().set_status(&name, status, open_for).await?;
        audit(origin, "SetStatus", &name, (status, open_for), revision);
        Ok(Response::new(v1::SetStatusResponse {
            protector: Some(view.to_proto()),
            transition: Some(transition.into()),
            revision,
        }))
    }

    async fn set_override(
        &self,
        request: Request<v1::SetOverrideRequest>,
    ) -> Result<Response<v1::SetOverrideResponse>, Status> {
        forward!(self.0, request, admin.set_override);
        let origin = Origin::of(&request);
        let req = request.into_inner();
        let name = self.0.name("name", req.name)?;
        let kind = validate::override_kind("kind", req.kind)?;
        let expires_after = validate::duration_in(
            "expires_after",
            req.expires_after.as_ref(),
            MIN_OVERRIDE,
            MAX_COOLDOWN,
        )?;
        if kind.is_none() && expires_after.is_some() {
            return Err(Error::invalid("expires_after", "not allowed with OVERRIDE_KIND_NONE").into());
        }
        let (view, revision) = self.0.registry().set_override(&name, kind, expires_after).await?;
        audit(origin, "SetOverride", &name, (kind, expires_after), revision);
        Ok(Response::new(v1::SetOverrideResponse {
            protector: Some(view.to_proto()),
            revision,
        }))
    }

    async fn update_policy(
        &self,
        request: Request<v1::UpdatePolicyRequest>,
    ) -> Result<Response<v1::UpdatePolicyResponse>, Status> {
        forward!(self.0, request, admin.update_policy);
        let origin = Origin::of(&request);
        let req = request.into_inner();
        let name = self.0.name("name", req.name)?;
        let policy = validate::policy("policy", req.policy.as_ref())?;
        let (view, revision) = self.0.registry().update_policy(&name, policy).await?;
        audit(origin, "UpdatePolicy", &name, policy.spec(), revision);
        Ok(Response::new(v1::UpdatePolicyResponse {
            protector: Some(view.to_proto()),
            revision,
        }))
    }

    async fn delete_protector(
        &self,
        request: Request<v1::DeleteProtectorRequest>,
    ) -> Result<Response<v1::DeleteProtectorResponse>, Status> {
        forward!(self.0, request, admin.delete_protector);
        let origin = Origin::of(&request);
        let req = request.into_inner();
        let name = self.0.name("name", req.name)?;
        let revision = self.0.registry().delete(&name).await?;
        audit(origin, "DeleteProtector", &name, (), revision);
        Ok(Response::new(v1::DeleteProtectorResponse { revision }))
    }

    async fn get_cluster(
        &self,
        _request: Request<v1::GetClusterRequest>,
    ) -> Result<Response<v1::GetClusterResponse>, Status> {
        let cluster = &self.0.cluster;
        let role = cluster.role();
        let me = cluster.me();
        let leader = match &role {
            Role::Leader { since } => Some((me.id.clone(), *since)),
            Role::Follower { leader: Some(l) } => Some((l.id.clone(), l.since)),
            _ => None,
        };
        let mut replicas: Vec<v1::Replica> = cluster
            .members()
            .into_iter()
            .map(|m| {
                let (role, since) = match (&role, &leader) {
                    (Role::Standalone, _) => (v1::ReplicaRole::Standalone, None),
                    (_, Some((id, since))) if *id == m.id => (v1::ReplicaRole::Leader, Some(*since)),
                    _ => (v1::ReplicaRole::Follower, None),
                };
                v1::Replica {
                    id: m.id,
                    advertise: m.advertise,
                    admin_advertise: m.admin.unwrap_or_default(),
                    role: role as i32,
                    leader_since: since.map(prost_types::Timestamp::from),
                    started: Some(prost_types::Timestamp::from(m.started)),
                }
            })
            .collect();
        // The leader first, then by address.
        replicas.sort_by(|a, b| {
            let leads = |r: &v1::Replica| r.role != v1::ReplicaRole::Leader as i32;
            (leads(a), &a.advertise).cmp(&(leads(b), &b.advertise))
        });
        let registry = self.0.registry();
        Ok(Response::new(v1::GetClusterResponse {
            replicas,
            answered_by: me.advertise.clone(),
            prefix: cluster.prefix().to_owned(),
            revision: registry.revision(),
            epoch: registry.epoch(),
        }))
    }

    async fn simulate_policy(
        &self,
        request: Request<v1::SimulatePolicyRequest>,
    ) -> Result<Response<v1::SimulatePolicyResponse>, Status> {
        // The leader alone keeps histories (a follower's protectors have none).
        forward!(self.0, request, admin.simulate_policy);
        let req = request.into_inner();
        let name = self.0.name("name", req.name)?;
        let candidate = validate::policy("policy", req.policy.as_ref())?;
        let done = self.0.registry().simulate(&name, candidate).await?;
        let simulation = |r: resilient_circuit_breaker::Replay| v1::Simulation {
            transitions: r.transitions.into_iter().map(Into::into).collect(),
            admitted: r.admitted,
            rejected: r.rejected,
        };
        Ok(Response::new(v1::SimulatePolicyResponse {
            calls: done.calls,
            first_at: done.span.map(|(first, _)| convert::timestamp(first)),
            last_at: done.span.map(|(_, last)| convert::timestamp(last)),
            candidate: Some(simulation(done.candidate)),
            current: Some(simulation(done.current)),
            policy: Some((&candidate).into()),
            revision: done.revision,
        }))
    }
}
