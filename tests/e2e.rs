//! The end-to-end tests: the whole system, through its real gRPC interface, against a
//! daemon the harness (`support`) starts in this process or as the real binary.
//!
//! One module per behaviour, each in `tests/<behaviour>.rs`; they are compiled into this
//! one test binary so the workspace links it once. Run one behaviour with
//! `cargo test -p resilient-circuit-tests -- <behaviour>::`.

mod admin_listener;
mod audit;
mod auth;
mod auth_forwarding;
mod bad_input;
mod certificate_roles;
mod cluster_admin;
mod cluster_config;
mod cluster_etcd;
mod cluster_failover;
mod cluster_harness;
mod cluster_watch;
mod config_reload;
mod connection_limit;
mod connection_timeouts;
mod coordination;
mod crash_recovery;
mod dashboard_replicated;
mod descriptors;
mod durability;
mod forwarded_trust;
mod forwarding;
mod identity_limits;
mod metrics;
mod metrics_tls;
mod permit_expiry;
mod permit_journal;
mod permit_release;
mod policy_rules;
mod policy_rules_input;
mod policy_rules_restart;
mod report_batch;
mod report_batch_bounds;
mod rpcs;
mod session;
mod shutdown;
mod simulate;
mod smoke;
mod stale_reports;
mod store_damage;
mod store_disk_full;
mod store_faults;
mod tls;
mod watch;
mod watch_resume;
mod watch_snapshot;
mod worker_threads;
