//! The `strata` binary as a careless operator and a bad disk use it: read-only commands must
//! change no byte of the database, `verify` must report (not repair) a damaged log and exit
//! non-zero, a lost manifest must delete nothing, and `recover` is the one explicit repair.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

mod common;

use std::path::{Path, PathBuf};

use common::{same, strata, tree};

/// A built database of `n` 4-d documents, then `extra` documents put through the log.
fn database(tmp: &Path, n: usize, extra: usize) -> PathBuf {
    use std::io::Write;
    let vecs = tmp.join("v.fvecs");
    let docs = tmp.join("d.jsonl");
    let mut vf = std::fs::File::create(&vecs).unwrap();
    let mut df = std::fs::File::create(&docs).unwrap();
    for i in 0..n {
        vf.write_all(&4i32.to_le_bytes()).unwrap();
        for j in 0..4 {
            vf.write_all(&(((i * 7 + j * 3) % 31) as f32).to_le_bytes())
                .unwrap();
        }
        writeln!(df, r#"{{"key": "doc-{i:05}", "terms": ["lang:en"]}}"#).unwrap();
    }
    let db = tmp.join("db");
    let (ok, _, err) = strata(&[
        "build",
        "--out",
        db.to_str().unwrap(),
        "--vectors",
        vecs.to_str().unwrap(),
        "--docs",
        docs.to_str().unwrap(),
        "--metric",
        "l2",
    ]);
    assert!(ok, "{err}");
    if extra > 0 {
        let more = tmp.join("more.jsonl");
        let mut f = std::fs::File::create(&more).unwrap();
        for i in 0..extra {
            writeln!(
                f,
                r#"{{"key": "new-{i:05}", "value": "payload number {i} of the log tail", "vector": [1, 2, 3, {i}]}}"#
            )
            .unwrap();
        }
        let (ok, _, err) = strata(&[
            "put",
            db.to_str().unwrap(),
            "--docs",
            more.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
    }
    db
}

fn wal_file(db: &Path) -> PathBuf {
    std::fs::read_dir(db.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .max()
        .unwrap()
}

#[test]
fn read_only_commands_change_no_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let db = database(tmp.path(), 300, 40);
    let d = db.to_str().unwrap();
    // An operator's files, a temp file, a backup manifest, next to a live log tail.
    let seg = std::fs::read_dir(db.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    std::fs::copy(&seg, seg.with_extension("seg.bak")).unwrap();
    std::fs::write(db.join("segments/NOTES.txt"), b"notes").unwrap();
    std::fs::write(db.join("MANIFEST-backup"), b"backup").unwrap();
    std::fs::write(db.join("upload.tmp"), b"tmp").unwrap();
    let before = tree(&db);
    for args in [
        vec!["verify", d],
        vec!["verify", d, "--json"],
        vec!["inspect", d],
        vec!["inspect", d, "--json"],
        vec!["dump", d],
        vec!["get", d, "new-00003"],
        vec!["query", d, "--vector", "1,2,3,4", "--k", "5", "--explain"],
        vec![
            "query", d, "--vector", "1,2,3,4", "--filter", "lang:en", "--json",
        ],
        vec!["recover", d, "--dry-run"],
    ] {
        let (ok, out, err) = strata(&args);
        assert!(ok, "{args:?}: {out}{err}");
        same(&tree(&db), &before, &format!("{args:?}"));
    }
    let (_, out, _) = strata(&["get", d, "new-00039"]);
    assert!(out.contains("payload number 39"), "{out}");
}

#[test]
fn verify_reports_a_cut_log_and_recover_sets_it_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let db = database(tmp.path(), 50, 600);
    let d = db.to_str().unwrap();
    let wal = wal_file(&db);
    // Cut the log file at half of its records (preallocated zeros after them not counted).
    let bytes = std::fs::read(&wal).unwrap();
    let used = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(used as u64 / 2)
        .unwrap();
    let before = tree(&db);
    let (ok, out, err) = strata(&["verify", d]);
    assert!(!ok, "verify passed a cut log: {out}");
    assert!(
        out.contains("problem:") && out.contains("LSN"),
        "{out}{err}"
    );
    let (ok, out, _) = strata(&["verify", d, "--json"]);
    assert!(!ok);
    assert_eq!(
        common::strata_code(&["verify", d]).0,
        Some(4),
        "damage is exit code 4"
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["problems"][0]["lsn"].as_u64().unwrap() >= 1);
    same(&tree(&db), &before, "verify");
    // recover --dry-run says what it would drop, and drops nothing.
    let (ok, out, err) = strata(&["recover", d, "--dry-run"]);
    assert!(ok && out.contains("would set aside"), "{out}{err}");
    same(&tree(&db), &before, "recover --dry-run");
    let (ok, out, err) = strata(&["recover", d]);
    assert!(ok && out.contains("set aside"), "{out}{err}");
    let lost: Vec<PathBuf> = std::fs::read_dir(db.join("wal/lost+found"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
    let (ok, out, err) = strata(&["verify", d]);
    assert!(ok, "{out}{err}");
    let (ok, _, _) = strata(&["get", d, "doc-00001"]);
    assert!(ok);
}

#[test]
fn a_lost_manifest_fails_every_command_and_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = database(tmp.path(), 100, 0);
    let d = db.to_str().unwrap();
    for e in std::fs::read_dir(&db).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("MANIFEST-")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    let before = tree(&db);
    for args in [
        vec!["verify", d],
        vec!["inspect", d],
        vec!["get", d, "doc-00001"],
    ] {
        let (ok, out, err) = strata(&args);
        assert!(!ok, "{args:?}: {out}");
        assert!(err.contains("no MANIFEST"), "{args:?}: {err}");
        same(&tree(&db), &before, &format!("{args:?}"));
    }
    let (ok, _, err) = strata(&["put", d, "--doc", r#"{"key": "x"}"#]);
    assert!(!ok && err.contains("no MANIFEST"), "{err}");
    assert!(std::fs::read_dir(db.join("segments")).unwrap().count() > 0);
}

#[test]
fn a_put_after_a_damaged_checkpointed_log_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let db = database(tmp.path(), 30, 3);
    let d = db.to_str().unwrap();
    let (ok, _, err) = strata(&["compact", d]);
    assert!(ok, "{err}");
    let wal = wal_file(&db);
    let mut b = std::fs::read(&wal).unwrap();
    let last = b.iter().rposition(|&x| x != 0).unwrap();
    b[last] ^= 1;
    std::fs::write(&wal, b).unwrap();
    let (ok, out, err) = strata(&["put", d, "--doc", r#"{"key": "n", "value": "x"}"#]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = strata(&["get", d, "n"]);
    assert!(ok && out.contains(r#""value":"x""#), "{out}{err}");
}

#[test]
fn put_validates_every_line_first_and_batches_by_bytes() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let db = database(tmp.path(), 20, 0);
    let d = db.to_str().unwrap();
    let f = tmp.path().join("bad.jsonl");
    let mut w = std::fs::File::create(&f).unwrap();
    for i in 0..600 {
        if i == 550 {
            writeln!(w, r#"{{"key": "x", "terms": ["has space"]}}"#).unwrap();
        } else {
            writeln!(w, r#"{{"key": "p{i}"}}"#).unwrap();
        }
    }
    drop(w);
    let (ok, _, err) = strata(&["put", d, "--docs", f.to_str().unwrap()]);
    assert!(!ok && err.contains("line 551"), "{err}");
    let (ok, _, _) = strata(&["get", d, "p3"]);
    assert!(!ok, "a line before the bad one was committed");
    // Three 3 MiB documents: more than one batch holds, all written.
    let big = tmp.path().join("big.jsonl");
    let mut w = std::fs::File::create(&big).unwrap();
    for i in 0..3 {
        writeln!(
            w,
            r#"{{"key": "big{i}", "value": "{}"}}"#,
            "v".repeat(3 << 20)
        )
        .unwrap();
    }
    drop(w);
    let (ok, out, err) = strata(&["put", d, "--docs", big.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = strata(&["get", d, "big2"]);
    assert!(ok && out.len() > 3 << 20);
    // Duplicate fields are an error, not last-wins.
    let (ok, _, err) = strata(&["put", d, "--doc", r#"{"key": "a", "key": "b"}"#]);
    assert!(!ok && err.contains("duplicate field"), "{err}");
    let (ok, _, err) = strata(&[
        "put",
        d,
        "--doc",
        r#"{"key": "a", "attrs": {"t": 1, "t": 2}}"#,
    ]);
    assert!(!ok && err.contains("duplicate field"), "{err}");
    // An error quotes at most ~200 bytes of the input.
    let long = tmp.path().join("long.jsonl");
    std::fs::write(
        &long,
        format!(
            "{{\"key\": \"t\", \"terms\": [\"{}\"]}}\n",
            "x".repeat(10 << 20)
        ),
    )
    .unwrap();
    let (ok, _, err) = strata(&["put", d, "--docs", long.to_str().unwrap()]);
    assert!(!ok && err.len() < 1000, "{} bytes of error", err.len());
}

#[test]
fn huge_or_meaningless_query_parameters_are_errors_not_aborts() {
    let tmp = tempfile::tempdir().unwrap();
    let db = database(tmp.path(), 50, 0);
    let d = db.to_str().unwrap();
    for (args, want) in [
        (vec!["--k", "100000000"], "exceeds the bound"),
        (vec!["--k", "18446744073709551615"], "exceeds the bound"),
        (vec!["--radius", "NaN"], "not a finite number"),
        (vec!["--radius=-1"], "squared distance, >= 0"),
        (vec!["--list", "18446744073709551615"], "exceeds the bound"),
    ] {
        let mut a = vec!["query", d, "--vector", "1,2,3,4"];
        a.extend(args.iter());
        let (ok, out, err) = strata(&a);
        assert!(!ok && err.contains(want), "{args:?}: {out}{err}");
    }
    let (ok, _, err) = strata(&["query", d, "--vector", "3e38,1,1,1"]);
    assert!(!ok && err.contains("norm"), "{err}");
    // A large k is fine: it costs what it returns.
    let (ok, out, err) = strata(&["query", d, "--vector", "1,2,3,4", "--k", "1000000"]);
    assert!(ok && out.starts_with("query 0: 50 hit(s)"), "{out}{err}");
}

#[test]
fn query_restrict_admits_only_what_the_mandatory_filter_does() {
    let tmp = tempfile::tempdir().unwrap();
    let db = database(tmp.path(), 200, 30); // doc-* carry lang:en, new-* carry no term
    let d = db.to_str().unwrap();
    for plan in ["auto", "graph", "filter-first", "partition"] {
        let (ok, out, err) = strata(&[
            "query",
            d,
            "--vector",
            "1,2,3,4",
            "--k",
            "50",
            "--restrict",
            "(not lang:en)",
            "--plan",
            plan,
            "--json",
        ]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let hits = v["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 30, "{plan}: {out}");
        assert!(hits
            .iter()
            .all(|h| h["key"].as_str().unwrap().starts_with("new-")));
    }
    let (ok, _, err) = strata(&["query", d, "--vector", "1,2,3,4", "--restrict", "(bad"]);
    assert!(!ok && err.contains("filter syntax"), "{err}");
}
