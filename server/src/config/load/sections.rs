//! The settings of two sections, each resolved from its layers and checked as a whole:
//! `[cluster]` (replicated mode on etcd) and `[connections]` (keepalives and timeouts).

use std::time::Duration;

use super::super::file::FileConfig;
use super::super::types::{ClusterSettings, ConnectionConfig};
use super::{Layers, between, positive};
use crate::config::error::{ConfigError, Source};

impl Layers<'_> {
    /// Replicated mode, if `--etcd` (or its variable or `cluster.etcd`) is set. Its state
    /// lives in etcd, so a data directory or in-memory setting alongside is a mistake.
    pub(super) fn cluster(&self) -> Result<Option<ClusterSettings>, ConfigError> {
        let text = |id: &str,
                    flag: &Option<String>,
                    key: &'static str,
                    file: fn(&FileConfig) -> &Option<String>,
                    default: &str| {
            self.pick(id, flag.clone(), key, |f| file(f).clone(), default.to_owned())
        };
        let args = &self.parsed.args;
        let etcd = text("etcd", &args.etcd, "cluster.etcd", |f| &f.cluster.etcd, "");
        let prefix = text(
            "etcd_prefix",
            &args.etcd_prefix,
            "cluster.prefix",
            |f| &f.cluster.prefix,
            ClusterSettings::DEFAULT_PREFIX,
        );
        let advertise = text(
            "advertise",
            &args.advertise,
            "cluster.advertise",
            |f| &f.cluster.advertise,
            "",
        );
        let advertise_admin = text(
            "advertise_admin",
            &args.advertise_admin,
            "cluster.advertise_admin",
            |f| &f.cluster.advertise_admin,
            "",
        );
        let ttl = pick!(
            self,
            etcd_lease_ttl,
            cluster.lease_ttl,
            ClusterSettings::DEFAULT_LEASE_TTL
        );
        let snapshot_bytes = positive(pick!(
            self,
            etcd_snapshot_bytes,
            cluster.snapshot_bytes,
            ClusterSettings::DEFAULT_SNAPSHOT_BYTES
        ))?;
        if etcd.value.trim().is_empty() {
            return Ok(None);
        }
        let invalid = |p_key: &'static str, origin: Source, rule: String| ConfigError::Invalid {
            setting: p_key,
            origin,
            rule,
        };
        let mut urls = Vec::new();
        for url in etcd.value.split(',').map(str::trim) {
            urls.push(etcd_url(url).map_err(|rule| invalid(etcd.key, etcd.origin.clone(), rule))?);
        }
        if !prefix.value.starts_with('/') || !prefix.value.ends_with('/') || prefix.value.len() < 2 {
            let rule = format!(
                "must start and end with '/' (e.g. /resilient-circuit/), so that no cluster's keys are a prefix of another's; got {:?}",
                prefix.value
            );
            return Err(invalid(prefix.key, prefix.origin, rule));
        }
        let advertise = match advertise.value.trim() {
            "" => None,
            a => Some(host_port(a).map_err(|rule| invalid(advertise.key, advertise.origin, rule))?),
        };
        let advertise_admin = match advertise_admin.value.trim() {
            "" => None,
            _ if self.parsed.args.admin_listen.is_none()
                && self.file.is_none_or(|(_, f)| f.admin_listen.is_none()) =>
            {
                let rule = "needs an admin listener (--admin-listen): it says where other replicas reach it"
                    .to_owned();
                return Err(invalid(advertise_admin.key, advertise_admin.origin, rule));
            }
            a => Some(
                host_port(a).map_err(|rule| invalid(advertise_admin.key, advertise_admin.origin, rule))?,
            ),
        };
        let secs = ttl.value.as_secs();
        if !(2..=60).contains(&secs) || ttl.value.subsec_nanos() != 0 {
            let rule = format!(
                "must be whole seconds from 2s to 60s (etcd leases count whole seconds), got {}",
                humantime::format_duration(ttl.value)
            );
            return Err(invalid(ttl.key, ttl.origin, rule));
        }
        for (id, key, set) in [
            (
                "data_dir",
                "store.data_dir",
                self.parsed.args.data_dir.is_some()
                    || self.file.is_some_and(|(_, f)| f.store.data_dir.is_some()),
            ),
            (
                "in_memory",
                "store.in_memory",
                self.parsed.args.in_memory.is_some()
                    || self.file.is_some_and(|(_, f)| f.store.in_memory.is_some()),
            ),
            ("repair", "store.repair", self.parsed.args.repair.is_some()),
        ] {
            if set {
                let flag = format!("--{}", id.replace('_', "-"));
                let rule = format!(
                    "is set together with {flag} ({key}): a replica keeps its state in etcd, not in a data directory; drop one of them"
                );
                return Err(invalid(etcd.key, etcd.origin, rule));
            }
        }
        Ok(Some(ClusterSettings {
            etcd: urls,
            prefix: prefix.value,
            advertise,
            advertise_admin,
            lease_ttl: ttl.value,
            snapshot_bytes,
        }))
    }

    pub(super) fn connections(&self, d: &ConnectionConfig) -> Result<ConnectionConfig, ConfigError> {
        const MS: Duration = Duration::from_millis(1);
        const SECOND: Duration = Duration::from_secs(1);
        const DAY: Duration = Duration::from_secs(24 * 60 * 60);
        // The kernel's limit on TCP_KEEPIDLE; it counts whole seconds.
        const KEEPIDLE_MAX: Duration = Duration::from_secs(32_767);
        let tcp_keepalive = pick!(self, tcp_keepalive, connections.tcp_keepalive, d.tcp_keepalive);
        if tcp_keepalive.value.subsec_nanos() != 0 {
            return Err(ConfigError::Invalid {
                setting: tcp_keepalive.key,
                origin: tcp_keepalive.origin,
                rule: format!(
                    "must be whole seconds, got {}",
                    humantime::format_duration(tcp_keepalive.value)
                ),
            });
        }
        Ok(ConnectionConfig {
            // Below a second, PINGs would cost more than the calls they guard.
            http2_keepalive_interval: between(
                pick!(
                    self,
                    http2_keepalive_interval,
                    connections.http2_keepalive_interval,
                    d.http2_keepalive_interval
                ),
                SECOND,
                DAY,
            )?,
            http2_keepalive_timeout: between(
                pick!(
                    self,
                    http2_keepalive_timeout,
                    connections.http2_keepalive_timeout,
                    d.http2_keepalive_timeout
                ),
                MS,
                DAY,
            )?,
            tcp_keepalive: between(tcp_keepalive, SECOND, KEEPIDLE_MAX)?,
            handshake_timeout: between(
                pick!(
                    self,
                    handshake_timeout,
                    connections.handshake_timeout,
                    d.handshake_timeout
                ),
                MS,
                DAY,
            )?,
            idle_timeout: between(
                pick!(self, idle_timeout, connections.idle_timeout, d.idle_timeout),
                MS,
                DAY,
            )?,
        })
    }
}

/// An etcd client URL: `http://host:port` or `host:port` (taken as http). TLS to etcd
/// is not supported yet, so `https://` is refused rather than silently sent in clear.
fn etcd_url(url: &str) -> Result<String, String> {
    let rest = match url.split_once("://") {
        None => url,
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{url:?}: scheme {scheme}:// is not supported (use http://host:port)"
            ));
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    host_port(rest)
        .map(|hp| format!("http://{hp}"))
        .map_err(|e| format!("{url:?}: {e}"))
}

/// `host:port` with a non-empty host and a port from 1 to 65535.
fn host_port(text: &str) -> Result<String, String> {
    let valid = text.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not host:port (e.g. 10.0.0.5:2379)"))
    }
}
