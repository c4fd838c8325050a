//! The `strata` binary end to end on tiny inputs, so the demo and every benchmark workload keep
//! working (no peers: the default build has none).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::process::Command;

fn strata(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_json_reports_exact_answers() {
    let (ok, out, err) = strata(&["demo", "--docs", "800", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["docs"], 800);
    assert!(v["queries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|q| q["equals_brute_force"] == true));
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
