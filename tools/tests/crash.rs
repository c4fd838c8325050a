//! The crash harness (`strata crash`) in the default suite: at least 100 SIGKILLs of a child
//! running writers, a snapshot reader, flushes and compactions (a tenth aimed at recovery),
//! each followed by the contract oracle. `STRATA_TORTURE=1` runs 2,000;
//! `STRATA_CRASH_ITERS=N` any number; `STRATA_SEED=N` replays a seed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::process::Command;

#[test]
fn crash_harness_keeps_the_contract_across_100_kills() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let iterations = env("STRATA_CRASH_ITERS").unwrap_or(if env("STRATA_TORTURE") == Some(1) {
        2000
    } else {
        100
    });
    let seed = env("STRATA_SEED").unwrap_or(7);
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["crash", "--json", "--max-run-ms", "150"])
        .args(["--iterations", &iterations.to_string()])
        .args(["--seed", &seed.to_string()])
        .arg("--dir")
        .arg(tmp.path().join("work"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("{v}");
    assert_eq!(v["iterations"], iterations);
    assert!(v["acknowledged_ops"].as_u64().unwrap() > iterations);
    assert!(v["queries_checked"].as_u64().unwrap() > 0);
    assert!(
        v["recovery_kills_aimed"].as_u64().unwrap() > 0,
        "no kill aimed at recovery: {v}"
    );
}

#[test]
fn crash_harness_refuses_a_used_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("db")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["crash", "--iterations", "1", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a fresh directory"));
}

/// `strata crashsim`: a short seeded campaign through the CLI (faults fire, no violation) and
/// the one-seed replay a failure report points to. `STRATA_TORTURE=1` runs 100,000 seeds.
#[test]
fn crashsim_campaign_and_single_seed_replay() {
    let torture = std::env::var("STRATA_TORTURE").ok().as_deref() == Some("1");
    let seeds: u64 = if torture { 100_000 } else { 500 };
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["crashsim", "--json", "--start", "5000"])
        .args(["--seeds", &seeds.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["seeds"], seeds);
    assert_eq!(v["failures"].as_array().unwrap().len(), 0);
    let fired: u64 = v["fired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert!(
        fired * 2 > seeds,
        "only {fired} of {seeds} faults fired: {v}"
    );
    // Every fault kind fires somewhere in the campaign.
    for k in 1..4 {
        assert!(v["fired"][k].as_u64().unwrap() > 0, "fault kind {k}: {v}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["crashsim", "--json", "--seed", "5003"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let one: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(one["seed"], 5003);
    assert_eq!(one["ok"], true);
}
