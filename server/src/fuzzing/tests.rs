//! Every committed corpus and regression file through its entry point: `cargo test`
//! replays what the fuzzers found interesting, and every crash they found.

use std::path::PathBuf;

use super::*;

mod seeds;

/// A fuzz target's entry point.
type Target = fn(&[u8]);

/// The fuzz targets, by the name of their corpus directory.
const TARGETS: [(&str, Target); 5] = [
    ("requests", requests),
    ("journal", journal),
    ("snapshot", snapshot),
    ("page_token", page_token),
    ("tokens", tokens),
];

/// The files of `fuzz/<kind>/<target>/`, sorted.
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("a directory entry").path()).collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_file_runs_without_a_panic() {
    for (target, run) in TARGETS {
        let corpus = files("corpus", target);
        assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ holds no seed");
        for file in corpus.iter().chain(&files("regressions", target)) {
            let bytes = std::fs::read(file).expect("a corpus file");
            let ran = std::panic::catch_unwind(|| run(&bytes));
            assert!(ran.is_ok(), "{target}: {} panics", file.display());
        }
    }
}

/// Writes the seed corpora, valid inputs of every kind, into `fuzz/corpus/`; run it
/// after the formats change: `cargo test -p circuitd --lib fuzzing::tests::write_seeds
/// -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus/; run by hand"]
fn write_seeds() {
    for (target, seeds) in seeds::all() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        std::fs::create_dir_all(&dir).expect("the corpus directory");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).expect("a seed file");
        }
    }
}
