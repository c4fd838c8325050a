//! The `strata` binary end to end on tiny inputs, so the demo and every benchmark workload keep
//! working (no peers: the default build has none).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

mod common;

use common::{strata, strata_code};

/// `strata build --out DB --vectors V [--docs D] --metric l2 EXTRA…`.
fn build(
    db: &str,
    vectors: &std::path::Path,
    docs: Option<&std::path::Path>,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec!["build", "--out", db, "--vectors", vectors.to_str().unwrap()];
    if let Some(d) = docs {
        args.extend(["--docs", d.to_str().unwrap()]);
    }
    args.extend(["--metric", "l2"]);
    args.extend(extra);
    strata(&args)
}

#[test]
fn demo_json_reports_exact_answers() {
    let (ok, out, err) = strata(&["demo", "--docs", "800", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["docs"], 850, "800 posts and 50 users");
    // 800 posts stay below the graph threshold: every plan is exact and equals brute force.
    assert!(v["queries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|q| q["equals_brute_force"] == true));
}

#[test]
fn demo_runs_graph_plans_and_the_social_apply_operator() {
    let (ok, out, err) = strata(&["demo", "--docs", "12000", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], true);
    let qs = v["queries"].as_array().unwrap();
    let plans: Vec<String> = qs
        .iter()
        .flat_map(|q| q["stats"]["explain"].as_array().unwrap().iter())
        .map(|e| e["plan"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        plans.iter().any(|p| p == "Graph" || p == "Partition"),
        "{plans:?}"
    );
    // A filter-first plan for the selective filter (the demo forces it; exact, or scored by
    // codes from 500 matches on).
    assert!(
        plans.iter().any(|p| p.starts_with("FilterFirst")),
        "{plans:?}"
    );
    let social = qs
        .iter()
        .find(|q| {
            q["filter"]
                .as_str()
                .unwrap_or("")
                .contains("(apply author uid friend-of:42)")
        })
        .unwrap();
    assert!(social["stats"]["apply_fanout"].as_u64().unwrap() > 0);
    for q in qs {
        assert!(q["recall"].as_f64().unwrap() >= 0.8, "{q}");
    }
}

#[test]
fn bench_wal_and_store_smoke() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("wal.json");
    let (ok, out, err) = strata(&[
        "bench",
        "wal",
        "--dir",
        tmp.path().join("w").to_str().unwrap(),
        "--threads",
        "1,2",
        "--seconds",
        "0.2",
        "--replay-mib",
        "1",
        "--warm-only",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("records/s") && out.contains("replay of"),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        v["points"].as_array().unwrap().len(),
        3,
        "raw + strata at 1 and 2 writers"
    );
    assert!(v["replay"]["records"].as_u64().unwrap() > 0);

    // The ingest benchmark: three loads and the offline build, with its ratios.
    let json = tmp.path().join("ingest.json");
    let (ok, out, err) = strata(&[
        "bench",
        "ingest",
        "--dir",
        tmp.path().join("i").to_str().unwrap(),
        "--docs",
        "6000",
        "--queries",
        "10",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("index ready / strata build"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let loads = v["loads"].as_array().unwrap();
    assert_eq!(loads.len(), 3, "no vectors, never indexed, with vectors");
    let with = &loads[2];
    // Ready means indexed: one graph over the 6,000 documents, and it finds neighbours.
    assert_eq!(with["ann_segments"].as_u64(), Some(1), "{with}");
    assert!(with["recall_at_10"].as_f64().unwrap() > 0.5, "{with}");
    assert_eq!(loads[1]["ann_segments"].as_u64(), Some(0), "never indexed");
    assert!(v["ready_ratio"].as_f64().unwrap() > 0.0);

    let json = tmp.path().join("store.json");
    let (ok, out, err) = strata(&[
        "bench",
        "store",
        "--dir",
        tmp.path().join("s").to_str().unwrap(),
        "--threads",
        "1",
        "--seconds",
        "0.2",
        "--docs",
        "3000",
        "--gets",
        "2000",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("docs/s") && out.contains("gets/s"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        v["ingest"].as_array().unwrap().len(),
        2,
        "two sync modes at 1 writer"
    );
    assert!(v["get"][0]["gets_per_s"].as_f64().unwrap() > 0.0);
    // Both reports plot (with the `plot` feature; without it, the command says so).
    if !cfg!(feature = "plot") {
        let (ok, _, err) = strata(&["bench", "plot", "--input", "x", "--out", "y"]);
        assert!(!ok && err.contains("--features plot"), "{err}");
        return;
    }
    for name in ["wal", "store"] {
        let png = tmp.path().join(format!("{name}.png"));
        let input = tmp.path().join(format!("{name}.json"));
        let (ok, _, err) = strata(&[
            "bench",
            "plot",
            "--input",
            input.to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    }
}

/// Every other workload on tiny data (no peers) so the harness never rots: knn (warm and
/// cold), filtered on the generated social set, compaction, and PNG plots of the reports.
#[test]
fn bench_knn_filtered_compaction_and_plot_smoke() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (ok, out, err) = strata(&[
        "bench",
        "knn",
        "--n",
        "3000",
        "--dim",
        "16",
        "--queries",
        "20",
        "--lists",
        "16,64",
        "--degree",
        "16",
        "--dir",
        &p("knn"),
        "--json",
        &p("knn.json"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("recall"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("knn.json")).unwrap()).unwrap();
    assert!(v["points"].as_array().unwrap().len() >= 2);

    let (ok, out, err) = strata(&[
        "bench",
        "filtered",
        "--dataset",
        "social",
        "--posts",
        "20000",
        "--dim",
        "8",
        "--queries",
        "10",
        "--dir",
        &p("filtered/db"),
        "--json",
        &p("filtered.json"),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("filtered.json")).unwrap()).unwrap();
    let buckets = v["buckets"].as_array().unwrap();
    let families: std::collections::BTreeSet<&str> = buckets
        .iter()
        .map(|b| b["family"].as_str().unwrap())
        .collect();
    for f in [
        "tag",
        "correlated",
        "anti-correlated",
        "and2",
        "or",
        "not",
        "range",
        "friends",
    ] {
        assert!(families.contains(f), "family {f} missing: {out}");
    }
    for b in buckets {
        if b["selectivity"].as_f64().unwrap() > 0.0 {
            assert!(b["recall"].as_f64().unwrap() >= 0.9, "{b}");
        }
    }
    // The ground truth is cached next to the scratch directory and reused.
    assert!(tmp
        .path()
        .join("filtered/social-20000x8-q10-s1/gt.json")
        .exists());

    let (ok, _, err) = strata(&[
        "bench",
        "compaction",
        "--dir",
        &p("comp"),
        "--ops",
        "4000",
        "--keys",
        "800",
        "--dim",
        "8",
        "--json",
        &p("comp.json"),
    ]);
    assert!(ok, "{err}");

    if !cfg!(feature = "plot") {
        return;
    }
    for (input, png) in [("knn.json", "knn.png"), ("filtered.json", "filtered.png")] {
        let (ok, out, err) = strata(&["bench", "plot", "--input", &p(input), "--out", &p(png)]);
        assert!(ok, "{err}");
        assert!(out.contains("wrote"), "{out}");
        let bytes = std::fs::read(p(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        assert!(bytes.len() > 5_000, "an empty plot");
    }
    let (ok, _, err) = strata(&[
        "bench",
        "plot",
        "--input",
        &p("comp.json"),
        "--out",
        &p("x.png"),
    ]);
    assert!(
        !ok && err.contains("compaction reports are tables"),
        "{err}"
    );
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let (ok, _, err) = strata(&["demo", "--real-data", "/nonexistent"]);
    assert!(!ok);
    assert!(
        err.contains("strata: error") && err.contains("/nonexistent"),
        "{err}"
    );
}

/// Write `n` clustered 8-d vectors as .fvecs and matching JSONL documents.
fn sample_files(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::io::Write;
    let vec_path = dir.join("base.fvecs");
    let doc_path = dir.join("docs.jsonl");
    let mut vf = std::fs::File::create(&vec_path).unwrap();
    let mut df = std::fs::File::create(&doc_path).unwrap();
    for i in 0..n {
        vf.write_all(&8i32.to_le_bytes()).unwrap();
        for j in 0..8 {
            let x = ((i * 7 + j * 13) % 97) as f32 / 10.0 + (i % 5) as f32 * 20.0;
            vf.write_all(&x.to_le_bytes()).unwrap();
        }
        let lang = if i % 3 == 0 { "lang:de" } else { "lang:en" };
        writeln!(
            df,
            r#"{{"key": "doc-{i:05}", "terms": ["{lang}", "author:{}"], "attrs": {{"ts": {}}}, "value": "post {i}"}}"#,
            i % 7,
            1_700_000_000 + i
        )
        .unwrap();
    }
    (vec_path, doc_path)
}

fn write_query(dir: &std::path::Path, v: &[f32]) -> std::path::PathBuf {
    use std::io::Write;
    let p = dir.join("q.fvecs");
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(&(v.len() as i32).to_le_bytes()).unwrap();
    for x in v {
        f.write_all(&x.to_le_bytes()).unwrap();
    }
    p
}

#[test]
fn build_verify_query_put_delete_dump_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (vecs, docs) = sample_files(tmp.path(), 3000);
    let db = tmp.path().join("db");
    let dbs = db.to_str().unwrap();
    let (ok, out, err) = build(dbs, &vecs, Some(&docs), &["--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["documents"], 3000);
    assert_eq!(v["segments"], 1);

    let (ok, out, err) = strata(&["verify", dbs]);
    assert!(ok && out.starts_with("ok"), "{out}{err}");
    let (ok, out, err) = strata(&["inspect", dbs, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["schema"]["dim"], 8);
    assert_eq!(v["schema"]["attrs"][0], "ts");
    let g = &v["segments"][0]["ann"];
    assert_eq!(g["nodes"], 3000, "{v}");
    let hist: u64 = g["degree_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(hist, 3000);
    // The build calibrated the segment (samples with and without a filter, recall@10).
    let cal = &g["calibration"];
    assert!(
        cal["samples"].as_u64().unwrap() > cal["filtered"].as_u64().unwrap(),
        "{v}"
    );
    assert!(cal["filtered"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(cal["k"], 10);
    // --no-calibrate writes none.
    let uncal = tmp.path().join("uncal");
    let (ok, _, err) = build(
        uncal.to_str().unwrap(),
        &vecs,
        Some(&docs),
        &["--no-calibrate", "--codes", "sq8"],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = strata(&["inspect", uncal.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let u: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(u["segments"][0]["ann"]["calibration"].is_null(), "{u}");
    // --codes chose one byte per dimension (8 bytes per code); a malformed kind is refused.
    assert_eq!(u["segments"][0]["ann"]["code_bytes"], 8, "{u}");
    let bad = tmp.path().join("bad-codes");
    let (ok, _, err) = build(
        bad.to_str().unwrap(),
        &vecs,
        Some(&docs),
        &["--codes", "pq:0"],
    );
    assert!(!ok && err.contains("pq:M"), "{err}");

    // A stored vector finds itself at distance 0; the filter keeps only German posts.
    let first: Vec<f32> = (0..8).map(|j| ((j * 13) % 97) as f32 / 10.0).collect();
    let q = write_query(tmp.path(), &first);
    // At the default recall the calibrated planner reports its prediction; a recall outside
    // 0..=1 is refused.
    let (ok, out, err) = strata(&["query", dbs, "--vectors", q.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let seg = &r["stats"]["explain"][1];
    assert!(seg["predicted_recall"].as_f64().unwrap() >= 0.95, "{r}");
    // The open is lazy by default; --warm copies the graph first and answers alike; --lazy
    // (the old opt-in) is still accepted, but not with --warm.
    for flag in ["--warm", "--lazy"] {
        let (ok, o, err) = strata(&[
            "query",
            dbs,
            "--vectors",
            q.to_str().unwrap(),
            "--json",
            flag,
        ]);
        assert!(ok, "{flag}: {err}");
        let w: serde_json::Value = serde_json::from_str(o.lines().next().unwrap()).unwrap();
        assert_eq!(w["hits"], r["hits"], "{flag}");
    }
    let (ok, _, _) = strata(&[
        "query",
        dbs,
        "--vectors",
        q.to_str().unwrap(),
        "--warm",
        "--lazy",
    ]);
    assert!(!ok, "--warm with --lazy accepted");
    // Recalibration from a query log (one query, one filter): the segment's calibration now
    // has that query's samples only, the database verifies and answers the same.
    let fl = tmp.path().join("log-filters.txt");
    let calibrate = |filters: &str| {
        std::fs::write(&fl, filters).unwrap();
        let (q, f) = (q.to_str().unwrap(), fl.to_str().unwrap());
        strata(&["calibrate", dbs, "--queries", q, "--filters", f, "--json"])
    };
    let (ok, out, err) = calibrate("lang:de\n");
    assert!(ok, "{err}");
    let c: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(c["segments"], 1, "{c}");
    let samples = c["samples_per_segment"][0].as_u64().unwrap();
    assert!((1..=2).contains(&samples), "{c}");
    let (ok, out, err) = strata(&["verify", dbs]);
    assert!(ok && out.starts_with("ok"), "{out}{err}");
    let (ok, o, err) = strata(&["query", dbs, "--vectors", q.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let w: serde_json::Value = serde_json::from_str(o.lines().next().unwrap()).unwrap();
    assert_eq!(w["hits"], r["hits"]);
    // A filters file with the wrong number of lines is refused.
    let (ok, _, err) = calibrate("lang:de\nlang:en\n");
    assert!(!ok && err.contains("lines"), "{err}");
    let (ok, _, err) = strata(&[
        "query",
        dbs,
        "--vectors",
        q.to_str().unwrap(),
        "--recall",
        "1.5",
    ]);
    assert!(!ok && err.contains("recall"), "{err}");
    // The 5 nearest to `q` under a forced plan, as JSON or with `explain`.
    let query_with_plan = |plan: &str, output: &str| {
        strata(&[
            "query",
            dbs,
            "--vectors",
            q.to_str().unwrap(),
            "--k",
            "5",
            "--plan",
            plan,
            output,
        ])
    };
    let (ok, out, err) = query_with_plan("graph", "--json");
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["query"], 0);
    assert_eq!(v["hits"][0]["key"], "doc-00000");
    assert_eq!(v["hits"][0]["distance"], 0.0);
    assert_eq!(v["hits"].as_array().unwrap().len(), 5);
    assert!(v["stats"]["graph_segments"].as_u64().unwrap() == 1, "{v}");
    // The partition plan, forced, finds it too and says what it walked.
    let (ok, out, err) = query_with_plan("partition", "--explain");
    assert!(ok, "{err}");
    assert!(out.contains("doc-00000"), "{out}");
    assert!(
        out.contains("Partition (3000 docs)") && out.contains(" partitions ("),
        "{out}"
    );
    let (ok, out, err) = strata(&[
        "query",
        dbs,
        "--vector",
        "0,1,2,3,4,5,6,7",
        "--filter",
        "(and lang:de (range ts 1700000000 1700000100))",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 10);
    for h in hits {
        let n: usize = h["key"].as_str().unwrap()[4..].parse().unwrap();
        assert!(n.is_multiple_of(3) && n <= 100, "{h}");
    }

    // put (through the WAL), get, delete, dump.
    let more = tmp.path().join("more.jsonl");
    std::fs::write(
        &more,
        "{\"key\": \"new-1\", \"terms\": [\"lang:fr\"], \"value\": \"bonjour\", \"vector\": [1,1,1,1,1,1,1,1]}\n",
    )
    .unwrap();
    let (ok, _, err) = strata(&["put", dbs, "--docs", more.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = strata(&["get", dbs, "new-1"]);
    assert!(ok && out.contains("bonjour"), "{out}{err}");
    let keys = tmp.path().join("keys.txt");
    std::fs::write(&keys, "doc-00000\ndoc-00001\n").unwrap();
    let (ok, _, err) = strata(&["delete", dbs, "--keys", keys.to_str().unwrap()]);
    assert!(ok, "{err}");
    // The single-document forms, from a shell.
    let (ok, _, err) = strata(&[
        "put",
        dbs,
        "--doc",
        r#"{"key": "quick", "value": "edit", "vector": [0,0,0,0,0,0,0,1]}"#,
    ]);
    assert!(ok, "{err}");
    let (ok, out, _) = strata(&["get", dbs, "quick"]);
    assert!(ok && out.contains("edit"), "{out}");
    let (ok, _, err) = strata(&["delete", dbs, "--key", "quick"]);
    assert!(ok, "{err}");
    let (ok, _, _) = strata(&["get", dbs, "quick"]);
    assert!(!ok, "single-key delete did not delete");
    let (ok, _, err) = strata(&["put", dbs, "--doc", "{\"value\": \"no key\"}"]);
    assert!(!ok && err.contains("\"key\" is required"), "{err}");
    let (ok, _, _) = strata(&["get", dbs, "doc-00000"]);
    assert!(!ok, "deleted key still there");
    let (ok, out, err) = strata(&["dump", dbs]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3000 - 2 + 1);
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["key"], "new-1");
    // Ranges, prefixes, reverse order and keys only (the put sits in the log, the rest in
    // segments: both are merged).
    let (ok, out, err) = strata(&[
        "dump",
        dbs,
        "--prefix",
        "doc-0299",
        "--reverse",
        "--keys-only",
    ]);
    assert!(ok, "{err}");
    let want: Vec<String> = (2990..3000)
        .rev()
        .map(|i| format!("\"doc-{i:05}\""))
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    let (ok, out, err) = strata(&["dump", dbs, "--start", "doc-00001", "--end", "doc-00004"]);
    assert!(ok, "{err}");
    let keys: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key"].to_string())
        .collect();
    assert_eq!(keys, ["\"doc-00002\"", "\"doc-00003\""]);
    let (ok, out, err) = strata(&["dump", dbs, "--start", "n", "--keys-only"]);
    assert!(ok && out.trim() == "\"new-1\"", "{out}{err}");
    // compact: the put and the deletes fold into one segment; verify again.
    let (ok, out, err) = strata(&["compact", dbs, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["compacted"], true, "{v}");
    assert_eq!(v["segments_after"], 1, "{v}");
    let (ok, out, _) = strata(&["dump", dbs]);
    assert!(ok);
    assert_eq!(out.lines().count(), 3000 - 2 + 1);
    let (ok, out, err) = strata(&["verify", dbs]);
    assert!(ok && out.starts_with("ok"), "{out}{err}");
}

#[test]
fn build_rejects_bad_input_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let (vecs, docs) = sample_files(tmp.path(), 50);
    let db = tmp.path().join("db");
    let dbs = db.to_str().unwrap();
    // A malformed JSONL line names its line.
    let bad = tmp.path().join("bad.jsonl");
    let mut text = std::fs::read_to_string(&docs).unwrap();
    text = text.replacen("\"terms\"", "\"terms\" 7", 1);
    std::fs::write(&bad, text).unwrap();
    let (ok, _, err) = build(dbs, &vecs, Some(&bad), &[]);
    assert!(!ok && err.contains("line 1"), "{err}");
    // Dimension mismatch.
    let (ok, _, err) = build(dbs, &vecs, None, &["--dim", "9"]);
    assert!(!ok && err.contains("dimension 8"), "{err}");
    // A truncated vector file.
    let short = tmp.path().join("short.fvecs");
    let bytes = std::fs::read(&vecs).unwrap();
    std::fs::write(&short, &bytes[..bytes.len() - 3]).unwrap();
    let (ok, _, err) = build(dbs, &short, None, &[]);
    assert!(!ok && err.contains("short.fvecs"), "{err}");
    // Duplicate keys: the builder refuses after validation, nothing left behind.
    let dup = tmp.path().join("dup.jsonl");
    let text = std::fs::read_to_string(&docs)
        .unwrap()
        .replace("doc-00001", "doc-00000");
    std::fs::write(&dup, text).unwrap();
    let (ok, _, err) = build(dbs, &vecs, Some(&dup), &[]);
    assert!(!ok && err.contains("duplicate key"), "{err}");
    assert!(!db.exists(), "a failed build left {dbs}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("building"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Not a database.
    let (ok, _, err) = strata(&["verify", tmp.path().to_str().unwrap()]);
    assert!(!ok && err.contains("not a Strata database"), "{err}");
}

#[test]
fn verify_names_a_corrupt_graph_sector() {
    let tmp = tempfile::tempdir().unwrap();
    let (vecs, _) = sample_files(tmp.path(), 3000);
    let db = tmp.path().join("db");
    let dbs = db.to_str().unwrap();
    let (ok, _, err) = build(dbs, &vecs, None, &[]);
    assert!(ok, "{err}");
    let seg = std::fs::read_dir(db.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    // Flip a byte in the middle of the last graph sector: open still works (sectors are
    // checked when read), verify reads every sector and fails naming the file.
    let mut b = std::fs::read(&seg).unwrap();
    let table_at = u64::from_le_bytes(b[b.len() - 48..b.len() - 40].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(b[b.len() - 52..b.len() - 48].try_into().unwrap()) as usize;
    let graph = (0..count)
        .map(|i| &b[table_at + i * 24..table_at + i * 24 + 24])
        .find(|e| u32::from_le_bytes(e[0..4].try_into().unwrap()) == 8)
        .map(|e| {
            let at = u64::from_le_bytes(e[8..16].try_into().unwrap()) as usize;
            let len = u64::from_le_bytes(e[16..24].try_into().unwrap()) as usize;
            (at, len)
        })
        .unwrap();
    let at = graph.0 + graph.1 - 2000;
    b[at] ^= 0x55;
    std::fs::write(&seg, &b).unwrap();
    let (ok, _, err) = strata(&["verify", dbs]);
    assert!(!ok, "verify passed a corrupt sector");
    assert!(err.contains("sector") && err.contains(".seg"), "{err}");
}

/// `strata build --shards N` writes N databases and the set file; `--shard I/N` builds shard I
/// alone with the same keys; `inspect` and `verify` read the set, and `verify` names a shard
/// holding a key that is not its own, and refuses a damaged set file.
#[test]
fn shard_sets_build_inspect_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let (vecs, docs) = sample_files(tmp.path(), 1200);
    let set = tmp.path().join("set");
    let sets = set.to_str().unwrap();
    let (ok, out, err) = build(sets, &vecs, Some(&docs), &["--shards", "3", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["documents"], 1200);
    let sizes: Vec<u64> = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["documents"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 1200);
    assert!(sizes.iter().all(|&s| s > 300), "{sizes:?}");
    let (ok, out, err) = strata(&["verify", sets]);
    assert!(ok && out.starts_with("ok: shard set of 3"), "{out}{err}");
    let (ok, out, err) = strata(&["inspect", sets, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["shard_set"]["n"], 3);
    assert_eq!(v["schema"]["attrs"], serde_json::json!(["ts"]));
    assert_eq!(v["shards"][1]["segment_documents"], sizes[1]);

    // One shard alone: the same keys as the set's shard 1.
    let one = tmp.path().join("one");
    let (ok, _, err) = build(
        one.to_str().unwrap(),
        &vecs,
        Some(&docs),
        &["--shard", "1/3"],
    );
    assert!(ok, "{err}");
    let keys = |dir: &std::path::Path| {
        let (ok, out, err) = strata(&["dump", dir.to_str().unwrap(), "--keys-only"]);
        assert!(ok, "{err}");
        out
    };
    assert_eq!(keys(&one), keys(&set.join("shard-0001")));
    let (ok, _, err) = build("x", &vecs, Some(&docs), &["--shard", "3/3"]);
    assert!(!ok && err.contains("expected I/N"), "{err}");

    // A document put into the wrong shard: verify names the shard.
    let wrong_key = (0..)
        .map(|i| format!("stray-{i}"))
        .find(|k| strata::shards::shard_of(k.as_bytes(), 3).unwrap() != 2)
        .unwrap();
    let shard2 = set.join("shard-0002");
    let (ok, _, err) = strata(&[
        "put",
        shard2.to_str().unwrap(),
        "--doc",
        &format!(r#"{{"key": "{wrong_key}", "value": "misrouted"}}"#),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = strata(&["verify", sets]);
    assert!(
        !ok && err.contains("shard 2") && err.contains("belongs to shard"),
        "{out}{err}"
    );
    let (ok, _, err) = strata(&["delete", shard2.to_str().unwrap(), "--key", &wrong_key]);
    assert!(ok, "{err}");
    let (ok, out, err) = strata(&["verify", sets]);
    assert!(ok, "{out}{err}");

    // A damaged set file is refused, by its checksum.
    let file = set.join("SHARDS.json");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("shard-0002", "shard-0001")).unwrap();
    let (ok, _, err) = strata(&["verify", sets]);
    assert!(!ok && err.contains("checksum mismatch"), "{err}");
}

/// `strata create` makes an empty database that `put` fills; a query with only `--filter` is
/// boolean (keys in order, no distances), in S-expression or JSON form; failures exit with the
/// documented codes (2 usage or invalid input, 3 not found, 4 corruption).
#[test]
fn create_boolean_queries_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let dbs = db.to_str().unwrap();
    let (ok, out, err) = strata(&[
        "create", dbs, "--dim", "2", "--metric", "l2", "--attr", "ts", "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["attrs"], serde_json::json!(["ts"]));
    let docs = tmp.path().join("d.jsonl");
    std::fs::write(
        &docs,
        (0..20)
            .map(|i| {
                format!(
                    "{{\"key\": \"k{i:02}\", \"terms\": [\"{}\"], \"attrs\": {{\"ts\": {i}}}, \"vector\": [{i}, 0]}}\n",
                    if i % 2 == 0 { "even" } else { "odd" }
                )
            })
            .collect::<String>(),
    )
    .unwrap();
    let (ok, out, err) = strata(&["put", dbs, "--docs", docs.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["put"].as_u64(), v["batches"].as_u64()),
        (Some(20), Some(1))
    );
    let keys = |filter: &str| {
        let (ok, out, err) = strata(&["query", dbs, "--filter", filter, "--k", "100", "--json"]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                assert!(h["distance"].is_null(), "{h}");
                h["key"].as_str().unwrap().to_owned()
            })
            .collect::<Vec<_>>()
    };
    let want: Vec<String> = [12, 14, 16, 18].iter().map(|i| format!("k{i}")).collect();
    assert_eq!(keys("(and even (range ts 11 *))"), want);
    assert_eq!(
        keys(r#"{"and": [{"term": "even"}, {"range": {"ts": [11, null]}}]}"#),
        want
    );
    // Exit codes.
    assert_eq!(strata_code(&["get", dbs, "k00"]).0, Some(0));
    assert_eq!(strata_code(&["get", dbs, "absent"]).0, Some(3));
    let nowhere = tmp.path().join("nowhere");
    assert_eq!(
        strata_code(&["get", nowhere.to_str().unwrap(), "k"]).0,
        Some(3)
    );
    assert_eq!(strata_code(&["query", dbs, "--filter", "(and"]).0, Some(2));
    assert_eq!(strata_code(&["query", dbs, "--nonsense"]).0, Some(2));
    assert_eq!(
        strata_code(&["create", dbs, "--dim", "2", "--metric", "l2"]).0,
        Some(1)
    );
    let (ok, _, err) = strata(&["compact", dbs]);
    assert!(ok, "{err}");
    let seg_dir = db.join("segments");
    let seg = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let (code, err) = strata_code(&["verify", dbs]);
    assert_eq!(code, Some(4), "{err}");
    let (ok, out, _) = strata(&["--help"]);
    assert!(ok && out.contains("Exit codes"), "{out}");
}

/// `--hex` reads and prints binary keys (and values) as hex; without it, bytes that are not
/// UTF-8 are shown replaced, with a warning.
#[test]
fn hex_keys_round_trip_through_get_dump_query_and_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    {
        let db = strata::Db::create(&dir, strata::Schema::new(2, strata::Metric::L2)).unwrap();
        db.put(
            strata::Document::new(vec![0xffu8, 0x00, b'k'], vec![0x80u8, 1])
                .with_vector(vec![0.0, 0.0]),
        )
        .unwrap();
        db.put(strata::Document::new("plain", "text").with_vector(vec![1.0, 0.0]))
            .unwrap();
    }
    let d = dir.to_str().unwrap();
    let (ok, out, err) = strata(&["dump", d, "--keys-only", "--hex"]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["\"706c61696e\"", "\"ff006b\""]
    );
    let (ok, out, err) = strata(&["get", d, "ff006b", "--hex"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["key"].as_str(), v["value"].as_str()),
        (Some("ff006b"), Some("8001"))
    );
    let (ok, _, err) = strata(&["dump", d]);
    assert!(ok && err.contains("use --hex"), "{err}");
    let (ok, out, err) = strata(&["query", d, "--vector", "0,0", "--k", "1", "--hex", "--json"]);
    assert!(ok && out.contains("\"ff006b\""), "{out}{err}");
    let (ok, _, err) = strata(&["get", d, "zz", "--hex"]);
    assert!(!ok && err.contains("not hex"), "{err}");
    let (ok, out, err) = strata(&["delete", d, "--key", "ff006b", "--hex", "--json"]);
    assert!(ok && out.trim() == r#"{"deleted":1}"#, "{out}{err}");
    let (code, _) = strata_code(&["get", d, "ff006b", "--hex"]);
    assert_eq!(code, Some(3));
}
