//! Helpers shared by the engine's integration tests (each test binary uses some of them).
#![allow(dead_code, reason = "not every test binary uses every helper")]

use std::path::Path;

use strata::manifest::Manifest;
use strata::SEGMENTS_DIR;
use strata_io::{FaultConfig, FaultFs, Fs};

/// After an open: at most one manifest, and every segment-directory file is named by it.
/// Returns the manifest, if there is one.
pub fn assert_no_orphans(fs: &FaultFs, dir: &Path, ctx: &str) -> Option<Manifest> {
    let names = fs.list_dir(&dir.join(SEGMENTS_DIR)).unwrap();
    let manifests: Vec<String> = fs
        .list_dir(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("MANIFEST-"))
        .collect();
    assert!(manifests.len() <= 1, "{ctx}: {manifests:?}");
    let m = Manifest::decode(&fs.read_file(&dir.join(manifests.first()?)).unwrap()).unwrap();
    let keep = m.file_names();
    for n in &names {
        assert!(keep.contains(n), "{ctx}: orphan {n} survived the open");
    }
    Some(m)
}

/// The process dies now: every later file operation fails (background threads stop touching
/// the disk), `db` is dropped, and the disk keeps a random image of its unsynced data.
pub fn power_loss(fs: &FaultFs, db: strata::Db, seed: u64) {
    fs.set_faults(FaultConfig {
        crash_after_ops: Some(0),
        ..FaultConfig::default()
    });
    drop(db);
    fs.crash(seed);
}

/// Copy a directory tree (database fixtures), leaving out the `LOCK` file.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else if e.file_name() != strata::LOCK_FILE {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Every file under `dir` with its bytes (directories as `<dir>`): the listing and contents.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Assert two [`tree`]s are equal, naming the paths that differ.
pub fn same(
    now: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
    before: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
    what: &str,
) {
    let diff: Vec<&std::path::PathBuf> = now
        .keys()
        .chain(before.keys())
        .filter(|k| now.get(*k) != before.get(*k))
        .collect();
    assert!(diff.is_empty(), "{what} changed {diff:?}");
}

/// The keys `doc-NNNNNN` of the `k` nearest of `scored` (distance, ordinal), nearest first,
/// ties by ordinal: the brute-force answer the planner tests compare with.
pub fn nearest_keys(mut scored: Vec<(f32, usize)>, k: usize) -> Vec<Vec<u8>> {
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored
        .iter()
        .take(k)
        .map(|x| format!("doc-{:06}", x.1).into_bytes())
        .collect()
}
