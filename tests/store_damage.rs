//! A damaged store: the last journal record cut at every byte recovers the state
//! before it (with one warning); so does any tail that holds no valid frame after the
//! last good one (zeros where a crash left the file longer than its data); a flipped byte
//! either drops that last record or refuses the start with a message naming the file,
//! the byte and `--repair`, never a panic; and `--repair` keeps every record before
//! damage in the middle.
//!
//! Every offset and every byte goes through the store in-process (`circuitd::store::open`,
//! what the binary runs at start); every cut and every byte of the last record, and a
//! sample of the bytes before it, also go through the real binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use circuitd::store::format::{self, HEADER, SEGMENT_MAGIC};
use circuitd::store::record::{Body, Record, RecordGroup, StoredProtector};
use circuitd::store::{self, StoreConfig, StoreError};
use prost::Message;
use resilient_circuit_api::{convert, v1};
use resilient_circuit_breaker::{Policy, PolicySpec, Protector};
use support::process::{Circuitd, copy_dir, segments};
use support::*;

/// The whole state the daemon answers with: every protector and the revision.
type State = (Vec<v1::Protector>, u64);

/// A data directory built by the real binary, with the state after each change.
struct Built {
    dir: TempDir,
    /// `states[k]`: the state after the first `k` changes (each wrote one record).
    states: Vec<State>,
    /// The last journal segment and where each of its records starts.
    segment: PathBuf,
    starts: Vec<u64>,
    len: u64,
    /// The epoch watchers saw: the identity of this history of revisions.
    epoch: u64,
}

impl Built {
    fn last_start(&self) -> u64 {
        *self.starts.last().expect("records")
    }

    /// The record holding byte `at` of the segment, if any.
    fn record_at(&self, at: u64) -> Option<usize> {
        self.starts.iter().rposition(|&s| s <= at)
    }

    /// A copy of the data directory in `scratch` (emptied first); its segment's path.
    fn copy_into(&self, scratch: &Path) -> PathBuf {
        let _ = std::fs::remove_dir_all(scratch);
        copy_dir(self.dir.path(), scratch);
        scratch.join(self.segment.file_name().expect("a file name"))
    }
}

/// Starts the binary, makes changes that each write exactly one record (nothing is
/// left for a batch flush), recording the state after each, and stops it with SIGTERM.
async fn build() -> Built {
    let dir = TempDir::new("store-damage");
    let daemon = Circuitd::start(dir.path(), &["--flush-interval", "1h"]).await;
    let mut client = daemon.protectors().await;
    let mut admin = daemon.admin().await;
    let hour = Duration::from_secs(3600);
    let mut states = vec![list_all(&mut client).await];
    assert_eq!(states[0], (Vec::new(), 0));

    ensure(
        &mut client,
        "alpha",
        policy(Duration::from_secs(3600), (2, 2), None),
    )
    .await;
    states.push(list_all(&mut client).await);
    let beta = v1::Policy {
        trial_permits: Some(3),
        ..policy(Duration::from_secs(7), (3, 4), Some((1, 2)))
    };
    ensure(&mut client, "beta", beta).await;
    states.push(list_all(&mut client).await);
    set_override(&mut admin, "beta", v1::OverrideKind::Disabled, Some(hour)).await;
    states.push(list_all(&mut client).await);
    // The first outcome waits for a flush that never comes in time; the second trips
    // the protector and stores both.
    call(&mut client, "alpha", v1::Outcome::Failure).await;
    let trip = call(&mut client, "alpha", v1::Outcome::Failure).await;
    assert_eq!(trip.status, v1::Status::Open as i32);
    states.push(list_all(&mut client).await);
    ensure(&mut client, "gamma", Default::default()).await;
    states.push(list_all(&mut client).await);
    set_status(&mut admin, "gamma", v1::Status::Open, Some(hour)).await;
    states.push(list_all(&mut client).await);
    update_policy(&mut admin, "beta", policy(Duration::from_secs(9), (1, 3), None)).await;
    states.push(list_all(&mut client).await);
    set_override(&mut admin, "gamma", v1::OverrideKind::ForcedOpen, None).await;
    states.push(list_all(&mut client).await);
    let epoch = synced_epoch(&mut client).await;
    daemon.terminate().await;

    let segment = segments(dir.path()).pop().expect("a journal segment");
    let bytes = std::fs::read(&segment).expect("read the segment");
    let (groups, end) = format::read_frames::<RecordGroup>(&bytes, SEGMENT_MAGIC.len());
    assert_eq!(end, format::End::Clean);
    // Each change waited for its fsync before the next: one group commit, one frame and
    // one record per change.
    assert!(groups.iter().all(|(_, g)| g.records.len() == 1), "{groups:?}");
    let records: Vec<_> = groups
        .into_iter()
        .map(|(at, mut g)| (at, g.records.remove(0)))
        .collect();
    assert_eq!(
        records.len(),
        states.len() - 1,
        "one record per change: {records:?}"
    );
    for ((_, record), state) in records.iter().zip(&states[1..]) {
        assert_eq!(
            record.revision, state.1,
            "records are in the order of the changes"
        );
    }
    Built {
        dir,
        states,
        segment,
        epoch,
        starts: records.iter().map(|(at, _)| *at).collect(),
        len: bytes.len() as u64,
    }
}

/// Recovers `dir` in-process as the binary would at start.
fn recover(dir: &Path, repair: bool) -> Result<State, StoreError> {
    let recovered = store::open(&StoreConfig {
        dir: dir.to_owned(),
        repair,
        segment_bytes: 64 * 1024 * 1024,
        faults: None,
    })?;
    recovered.journal.close();
    let mut protectors: Vec<v1::Protector> = recovered
        .protectors
        .iter()
        .map(|s| v1::Protector {
            // The daemon's own, stored beside the machine's state.
            policy_revision: s.policy_revision.unwrap_or_default(),
            ..convert::protector(
                &s.name,
                &s.protector().expect("a valid stored protector"),
                s.mod_revision,
            )
        })
        .collect();
    protectors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((protectors, recovered.revision))
}

fn truncate(path: &Path, len: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the segment");
    file.set_len(len).expect("truncate the segment");
}

fn flip(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).expect("read the segment");
    bytes[at as usize] ^= 0x5a;
    std::fs::write(path, bytes).expect("write the segment");
}

fn warnings(stderr: &str) -> usize {
    stderr
        .lines()
        // Not the warning that the API is open (no --tokens), which every start logs.
        .filter(|l| l.contains(" WARN ") && !l.contains("no --tokens"))
        .count()
}

/// What a refusal must say: the file, the byte, and the remedy.
#[track_caller]
fn assert_refusal(exit: &process::Exit, segment: &Path, offset: u64) {
    exit.assert_no_panic();
    assert!(!exit.status.success(), "refused with success:\n{}", exit.stderr);
    for needle in [
        segment.display().to_string(),
        format!("at byte {offset}"),
        "--repair".into(),
    ] {
        assert!(
            exit.stderr.contains(&needle),
            "no {needle:?} in:\n{}",
            exit.stderr
        );
    }
}

/// Up to `n` values spread evenly over `from..=to`, both ends included.
fn spread(from: u64, to: u64, n: u64) -> Vec<u64> {
    let mut out: Vec<u64> = (0..n).map(|i| from + (to - from) * i / (n - 1)).collect();
    out.dedup();
    out
}

#[tokio::test]
async fn every_cut_of_the_last_record_recovers_the_state_before_it() {
    let built = build().await;
    let n = built.states.len() - 1;
    let (last, len) = (built.last_start(), built.len);
    let scratch = TempDir::new("store-damage-cut");
    for cut in last..=len {
        let segment = built.copy_into(scratch.path());
        truncate(&segment, cut);
        let state = recover(scratch.path(), false).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let expected = if cut == len {
            &built.states[n]
        } else {
            &built.states[n - 1]
        };
        assert_eq!(&state, expected, "cut at {cut} of {len}");
        let kept = std::fs::metadata(&segment).expect("segment").len();
        assert_eq!(
            kept,
            if cut == len { len } else { last },
            "cut at {cut}: the torn bytes stay"
        );
    }

    // The binary starts in milliseconds: every cut goes through it too.
    let twice = spread(last + 1, len - 1, 5);
    for cut in last..=len {
        let segment = built.copy_into(scratch.path());
        truncate(&segment, cut);
        let daemon = Circuitd::start(scratch.path(), &[]).await;
        let mut client = daemon.protectors().await;
        let torn = cut != last && cut != len;
        let expected = if cut == len {
            &built.states[n]
        } else {
            &built.states[n - 1]
        };
        assert_eq!(&list_all(&mut client).await, expected, "cut at {cut} of {len}");
        let exit = daemon.terminate().await;
        assert_eq!(
            warnings(&exit.stderr),
            usize::from(torn),
            "cut at {cut}:\n{}",
            exit.stderr
        );
        if torn {
            assert!(exit.stderr.contains("torn"), "cut at {cut}:\n{}", exit.stderr);
        }
        if twice.contains(&cut) {
            // The cut was made durable: the next start is clean and the same.
            let again = Circuitd::start(scratch.path(), &[]).await;
            let mut client = again.protectors().await;
            assert_eq!(
                &list_all(&mut client).await,
                expected,
                "cut at {cut}, second start"
            );
            let exit = again.terminate().await;
            assert_eq!(
                warnings(&exit.stderr),
                0,
                "cut at {cut}, second start:\n{}",
                exit.stderr
            );
        }
    }
}

/// What a flip at `at` must come to: `None` when the start drops the last record (any
/// byte of it: header or payload, it cannot be told from a crash during its write),
/// else the refusal's offset.
fn expected_refusal(built: &Built, at: u64) -> Option<u64> {
    let Some(r) = built.record_at(at) else {
        return Some(0);
    };
    let last = r + 1 == built.starts.len();
    (!last).then_some(built.starts[r])
}

#[tokio::test]
async fn a_flipped_byte_drops_the_last_record_or_refuses_naming_the_file_and_repair() {
    let built = build().await;
    let n = built.states.len() - 1;
    let scratch = TempDir::new("store-damage-flip");
    for at in 0..built.len {
        let segment = built.copy_into(scratch.path());
        flip(&segment, at);
        match (recover(scratch.path(), false), expected_refusal(&built, at)) {
            (Ok(state), None) => assert_eq!(state, built.states[n - 1], "flip at {at}"),
            (Err(StoreError::Damaged { file, offset, .. }), Some(expected)) => {
                assert_eq!((file, offset), (segment, expected), "flip at {at}");
            }
            (got, expected) => panic!("flip at {at}: {got:?}, expected a refusal at {expected:?}"),
        }
    }

    // Through the binary: every byte of the last record, and every fifth before it.
    let last = built.last_start();
    let flips = (0..last).step_by(5).chain(last..built.len);
    for at in flips {
        let segment = built.copy_into(scratch.path());
        flip(&segment, at);
        match (
            Circuitd::launch(scratch.path(), &[]).await,
            expected_refusal(&built, at),
        ) {
            (process::Launch::Serving(daemon), None) => {
                let mut client = daemon.protectors().await;
                assert_eq!(list_all(&mut client).await, built.states[n - 1], "flip at {at}");
                let exit = daemon.terminate().await;
                assert_eq!(warnings(&exit.stderr), 1, "flip at {at}:\n{}", exit.stderr);
            }
            (process::Launch::Refused(exit), Some(offset)) => assert_refusal(&exit, &segment, offset),
            (launch, expected) => panic!("flip at {at}: {launch:?}, expected a refusal at {expected:?}"),
        }
    }
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open the segment");
    file.write_all(bytes).expect("append to the segment");
}

#[tokio::test]
async fn a_tail_with_no_valid_frame_is_torn_and_every_acknowledged_record_stays() {
    let built = build().await;
    let n = built.states.len() - 1;
    let scratch = TempDir::new("store-damage-tail");
    // What a crash leaves when the file grew before its data reached the disk: zeros, or
    // a group commit whose frame is cut and filled with zeros in the middle.
    let cut_group = {
        let bytes = std::fs::read(&built.segment).expect("read the segment");
        let mut last = bytes[built.last_start() as usize..].to_vec();
        let middle = last.len() / 2;
        last[HEADER + 1..middle].fill(0);
        last
    };
    for (label, tail) in [
        ("300 zero bytes", vec![0u8; 300]),
        ("a zero-filled header", vec![0u8; HEADER]),
        ("a group commit zeroed in its middle", cut_group),
    ] {
        let segment = built.copy_into(scratch.path());
        append(&segment, &tail);
        let state = recover(scratch.path(), false).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(state, built.states[n], "{label}");
        assert_eq!(
            std::fs::metadata(&segment).expect("segment").len(),
            built.len,
            "{label}: the tail is cut off"
        );
    }

    // The reproduction: the real binary killed, 300 zero bytes after its last record.
    let segment = built.copy_into(scratch.path());
    append(&segment, &[0u8; 300]);
    let daemon = Circuitd::start(scratch.path(), &[]).await;
    let mut client = daemon.protectors().await;
    assert_eq!(list_all(&mut client).await, built.states[n]);
    let exit = daemon.kill().await;
    assert_eq!(warnings(&exit.stderr), 1, "{}", exit.stderr);
    assert!(exit.stderr.contains("torn"), "{}", exit.stderr);

    // Damage with a valid frame after it is damage to acknowledged records: refused.
    let segment = built.copy_into(scratch.path());
    let second_last = built.starts[n - 2];
    flip(&segment, second_last + 1);
    append(&segment, &[0u8; 300]);
    match recover(scratch.path(), false) {
        Err(StoreError::Damaged { offset, .. }) => assert_eq!(offset, second_last),
        other => panic!("damage before the last record: {other:?}"),
    }
}

#[tokio::test]
async fn repair_keeps_every_record_before_the_damage() {
    let built = build().await;
    let n = built.states.len() - 1;
    let scratch = TempDir::new("store-damage-repair");
    // In-process, damage in each record before the last: the records before it stay.
    for (r, &start) in built.starts.iter().enumerate().take(n - 1) {
        for at in [start + 1, start + HEADER as u64 + 1] {
            built.copy_into(scratch.path());
            flip(&scratch.path().join(built.segment.file_name().expect("name")), at);
            let state = recover(scratch.path(), true).unwrap_or_else(|e| panic!("flip at {at}: {e}"));
            assert_eq!(
                state, built.states[r],
                "--repair after a flip at {at} (record {r})"
            );
        }
    }

    let r = n / 2;
    let at = built.starts[r] + HEADER as u64 + 2;
    let segment = built.copy_into(scratch.path());
    flip(&segment, at);
    let refused = Circuitd::launch(scratch.path(), &[]).await.refused();
    assert_refusal(&refused, &segment, built.starts[r]);
    let repaired = Circuitd::start(scratch.path(), &["--repair"]).await;
    let mut client = repaired.protectors().await;
    let expected = &built.states[r];
    assert_eq!(
        &list_all(&mut client).await,
        expected,
        "--repair after record {r}"
    );
    let exit = repaired.terminate().await;
    assert!(exit.stderr.contains("--repair"), "{}", exit.stderr);

    // The repair is durable, and the revision continues from what was kept.
    let after = Circuitd::start(scratch.path(), &[]).await;
    let mut client = after.protectors().await;
    assert_eq!(&list_all(&mut client).await, expected, "the start after --repair");
    let created = client
        .ensure_protector(v1::EnsureProtectorRequest {
            name: "delta".into(),
            policy: None,
        })
        .await
        .expect("EnsureProtector")
        .into_inner();
    assert_eq!(created.revision, expected.1 + 1);
    after.terminate().await;
}

#[tokio::test]
async fn after_repair_a_watcher_resuming_from_the_lost_history_resyncs() {
    let built = build().await;
    let n = built.states.len() - 1;
    let scratch = TempDir::new("store-damage-epoch");
    let r = n / 2;
    let segment = built.copy_into(scratch.path());
    flip(&segment, built.starts[r] + HEADER as u64 + 2);
    let repaired = Circuitd::start(scratch.path(), &["--repair"]).await;
    let mut client = repaired.protectors().await;
    // Watchers saw revisions up to `seen` before the damage; the repaired daemon reuses
    // the revisions after `kept` for new changes, so a watcher holding `seen` from the
    // old history must not be handed a replay that silently skips them.
    let (kept, seen) = (built.states[r].1, built.states[n].1);
    for i in kept..=seen {
        let created = client
            .ensure_protector(v1::EnsureProtectorRequest {
                name: format!("new-{i}"),
                policy: None,
            })
            .await
            .expect("EnsureProtector")
            .into_inner();
        assert_eq!(created.revision, i + 1);
    }
    let mut resumed = Watcher::open(
        &mut client,
        v1::WatchRequest {
            start_revision: Some(seen),
            start_epoch: Some(built.epoch),
            ..watch_all()
        },
    )
    .await;
    let first = resumed.next().await;
    assert!(
        matches!(first.event, Some(v1::watch_event::Event::Resync(ref r)) if r.reason == v1::ResyncReason::Compacted as i32),
        "revisions {}..={seen} were rewritten by --repair, yet a watcher resuming from {seen} got {first:?}",
        kept + 1
    );
    repaired.terminate().await;
}

#[test]
fn a_segment_of_the_older_layout_is_read_and_never_appended_to() {
    let dir = TempDir::new("store-legacy");
    let config = StoreConfig {
        dir: dir.path().to_owned(),
        repair: false,
        segment_bytes: 64 * 1024 * 1024,
        faults: None,
    };
    let protector = Protector::new(Policy::try_new(PolicySpec::default()).expect("a valid policy"));
    // One record per frame, as segments were written before group frames.
    let mut bytes = format::LEGACY_SEGMENT_MAGIC.to_vec();
    for seq in 1..=3 {
        let name = format!("p{seq}");
        let record = Record {
            seq,
            revision: seq,
            body: Some(Body::Put(StoredProtector::new(&name, &protector, seq, seq))),
        };
        format::frame(&record.encode_to_vec(), &mut bytes);
    }
    let legacy = dir.path().join("journal-0000000000000001.log");
    std::fs::write(&legacy, &bytes).expect("write the segment");

    let recovered = store::open(&config).expect("a legacy segment is read");
    assert_eq!((recovered.protectors.len(), recovered.revision), (3, 3));
    recovered
        .journal
        .append(|seq| Record {
            seq,
            revision: 4,
            body: Some(Body::Delete("p1".into())),
        })
        .expect("append");
    recovered.journal.close();
    drop(recovered);

    assert_eq!(
        std::fs::read(&legacy).expect("read"),
        bytes,
        "the legacy segment is untouched"
    );
    let present = segments(dir.path());
    assert_eq!(present.len(), 2, "{present:?}");
    assert!(
        std::fs::read(&present[1])
            .expect("read")
            .starts_with(SEGMENT_MAGIC)
    );
    let again = store::open(&config).expect("both layouts are read");
    assert_eq!((again.protectors.len(), again.revision), (2, 4));
    again.journal.close();
}

/// The record that puts a new protector `name` at `revision`, for `Journal::append`.
fn put(name: &str, revision: u64) -> impl FnOnce(u64) -> Record {
    let protector = Protector::new(Policy::try_new(PolicySpec::default()).expect("a valid policy"));
    let name = name.to_owned();
    move |seq| Record {
        seq,
        revision,
        body: Some(Body::Put(StoredProtector::new(&name, &protector, revision, seq))),
    }
}

/// A store in `dir` whose journal's writes and fsyncs go through `faults`.
fn faulty_store(dir: &Path, faults: &circuitd::store::faults::Faults) -> StoreConfig {
    StoreConfig {
        dir: dir.to_owned(),
        repair: false,
        segment_bytes: 64 * 1024 * 1024,
        faults: Some(faults.clone()),
    }
}

#[tokio::test]
async fn a_write_that_fails_acknowledges_nothing_and_keeps_everything_before_it() {
    use circuitd::store::faults::{Faults, WriteFault};
    for fault in [WriteFault::DiskFull, WriteFault::Io, WriteFault::Short] {
        let dir = TempDir::new("store-faults");
        let faults = Faults::new();
        let config = faulty_store(dir.path(), &faults);
        let recovered = store::open(&config).expect("open an empty store");
        let journal = &recovered.journal;
        let kept = journal.append(put("kept", 1)).expect("append");
        journal.durable(kept).await.expect("durable before the fault");

        faults.fail_writes(fault);
        let lost = journal.append(put("lost", 2)).expect("append");
        assert!(journal.durable(lost).await.is_err(), "{fault:?}: acknowledged");
        assert!(
            journal.append(put("after", 3)).is_err(),
            "{fault:?}: the journal goes on"
        );
        recovered.journal.close();
        drop(recovered);

        // The disk has room again: a restart finds what was acknowledged, nothing else.
        faults.clear();
        let again = store::open(&config).unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        let names: Vec<&str> = again.protectors.iter().map(|p| p.name.as_str()).collect();
        assert_eq!((names, again.revision), (vec!["kept"], 1), "{fault:?}");
        again.journal.close();
    }
}

#[tokio::test]
async fn an_fsync_that_fails_once_fails_the_journal_and_a_held_one_acknowledges_nothing_yet() {
    use circuitd::store::faults::Faults;
    let dir = TempDir::new("store-fsync");
    let faults = Faults::new();
    let recovered = store::open(&faulty_store(dir.path(), &faults)).expect("open an empty store");
    let journal = std::sync::Arc::clone(&recovered.journal);

    // A slow disk: the fsync waits at the gate, and so does the acknowledgement.
    faults.hold_syncs();
    let slow = journal.append(put("slow", 1)).expect("append");
    let waiting = tokio::spawn({
        let journal = std::sync::Arc::clone(&journal);
        async move { journal.durable(slow).await }
    });
    let held = {
        let faults = faults.clone();
        tokio::task::spawn_blocking(move || faults.wait_until_held(1, DEADLINE))
            .await
            .expect("join")
    };
    assert!(held, "the fsync never reached the gate");
    assert!(!waiting.is_finished(), "acknowledged before its fsync");
    faults.release_syncs();
    waiting
        .await
        .expect("join")
        .expect("durable once the fsync is done");

    // An fsync that fails once: after a failed fsync the page cache cannot be trusted,
    // so the journal takes nothing more.
    faults.fail_next_sync();
    let failed = journal.append(put("failed", 2)).expect("append");
    assert!(journal.durable(failed).await.is_err());
    assert!(journal.append(put("after", 3)).is_err());
    journal.close();
    drop(recovered);
}
