//! A real full filesystem: the real binary on a 512 KiB tmpfs, a fleet of protectors,
//! the disk filled, then every protector tripped at once. Whatever a client was told
//! (OPEN), a restart keeps; whatever could not be written was told to nobody (its
//! Report answered UNAVAILABLE); and the daemon exits non-zero naming the journal file
//! and the error. After space is freed, it starts again with every acknowledged change.
//!
//! Mounting a tmpfs needs root (CI runs as root); where the mount is refused the test
//! says so on stderr and passes without running (the in-process fault tests in
//! `store_faults.rs` cover the same rules everywhere).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use resilient_circuit_api::v1;
use support::process::Circuitd;
use support::*;

const PROTECTORS: usize = 150;

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = TempDir::new("disk-full");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes zeros to `path` until the filesystem is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create the filler");
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    // Whatever is left is smaller than a block: fill it byte by byte.
    while file.write_all(&[0]).is_ok() {}
    let _ = file.sync_all();
}

#[tokio::test]
async fn a_full_disk_takes_back_nothing_a_client_was_told() {
    let tmpfs = match Tmpfs::mount("512k") {
        Ok(t) => t,
        Err(why) => {
            eprintln!(
                "SKIPPED a_full_disk_takes_back_nothing_a_client_was_told: a tmpfs cannot be mounted here ({why}); \
                 run as root to test a real full disk"
            );
            return;
        }
    };
    let data: PathBuf = tmpfs.path().join("data");
    let daemon = Circuitd::start(&data, &["--flush-interval", "1h"]).await;
    let mut client = daemon.protectors().await;
    let names: Vec<String> = (0..PROTECTORS).map(|i| format!("p{i:03}")).collect();
    for name in &names {
        ensure(&mut client, name, policy(Duration::from_secs(3600), (1, 1), None)).await;
    }
    let permits: Vec<_> = {
        let mut permits = Vec::new();
        for name in &names {
            permits.push(acquire(&mut client, name).await.permit);
        }
        permits
    };

    fill(&tmpfs.path().join("filler"));
    let trips = names.iter().zip(permits).map(|(name, permit)| {
        let mut client = client.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let answer = client
                .report(v1::ReportRequest {
                    name: name.clone(),
                    permit,
                    outcome: v1::Outcome::Failure as i32,
                    ..Default::default()
                })
                .await;
            (name, answer)
        })
    });
    let mut told_open = BTreeSet::new();
    let mut refused = 0;
    for trip in trips.collect::<Vec<_>>() {
        let (name, answer) = trip.await.expect("join");
        match answer {
            Ok(r) => {
                assert_eq!(r.into_inner().status, v1::Status::Open as i32, "{name}");
                told_open.insert(name);
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{name}: {status:?}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the full disk refused no write");
    drop(client);

    let exit = daemon.exited().await;
    exit.assert_no_panic();
    assert!(!exit.status.success(), "exited with success:\n{}", exit.stderr);
    for needle in ["journal-", "space"] {
        assert!(exit.stderr.contains(needle), "no {needle:?} in:\n{}", exit.stderr);
    }

    // Space again: every protector a client was told is OPEN is OPEN.
    std::fs::remove_file(tmpfs.path().join("filler")).expect("remove the filler");
    let again = Circuitd::start(&data, &[]).await;
    let mut client = again.protectors().await;
    let (protectors, _) = list_all(&mut client).await;
    assert_eq!(
        protectors.len(),
        PROTECTORS,
        "created protectors were acknowledged"
    );
    let open: BTreeSet<String> = protectors
        .iter()
        .filter(|p| p.status() == v1::Status::Open)
        .map(|p| p.name.clone())
        .collect();
    let lost: Vec<_> = told_open.difference(&open).collect();
    assert!(lost.is_empty(), "told OPEN, CLOSED after the restart: {lost:?}");
    drop(client);
    again.terminate().await;
}
