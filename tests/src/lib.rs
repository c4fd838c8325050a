//! Helpers shared by the integration suites in `tests/tests/` and their child processes in
//! `tests/src/bin/`.

/// Deterministic payload of `len` bytes (at least 8) for record `id`: the id, then filler.
pub fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// Parse an `ack LSN ID` line printed by a crash child.
pub fn parse_ack(line: &str) -> Option<(u64, u64)> {
    let mut it = line.split_ascii_whitespace();
    if it.next()? != "ack" {
        return None;
    }
    let lsn = it.next()?.parse().ok()?;
    let id = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((lsn, id))
}

/// Start `bin` with `args`, let it run for `run_for`, SIGKILL it, and return every complete
/// line it printed to stdout before dying.
pub fn run_and_kill(
    bin: &str,
    args: &[&str],
    run_for: std::time::Duration,
) -> std::io::Result<Vec<String>> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(bin)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("child has no stdout"))?;
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    std::thread::sleep(run_for);
    child.kill()?; // SIGKILL
    child.wait()?;
    reader
        .join()
        .map_err(|_| std::io::Error::other("stdout reader panicked"))
}

/// An integer from the environment (`STRATA_*` knobs), or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The run's seed: `STRATA_SEED` if set (to replay a failure), else random; printed with the
/// command that replays it.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand_seed);
    eprintln!("{test}: seed {seed} (replay with STRATA_SEED={seed})");
    seed
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// Print one acknowledgement line for the parent of a crash child and flush it at once, so a
/// SIGKILL cannot lose an acknowledgement that was made.
pub fn print_ack(line: std::fmt::Arguments<'_>) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}

/// How long a crash child runs before its SIGKILL: one run in ten dies within `early` (usually
/// inside open and recovery), the others between `early` and `late`.
pub fn kill_delay(
    rng: &mut impl rand::Rng,
    early: std::time::Duration,
    late: std::time::Duration,
) -> std::time::Duration {
    if rng.gen_ratio(1, 10) {
        rng.gen_range(std::time::Duration::ZERO..early)
    } else {
        rng.gen_range(early..late)
    }
}

/// Options of the store crash test, shared by `db_crash_child` and its parent: small memtables
/// (flushes all the time) and no 64 MiB WAL spare per incarnation (the WAL suites cover
/// preallocation), so each run spends its time writing.
pub fn db_crash_options() -> strata::Options {
    strata::Options::default()
        .with_flush_threshold_bytes(32 * 1024)
        .with_wal_preallocate(false)
        // Few segments allowed: background compactions run all the time, so kills land
        // inside them too.
        .with_segments_max(3)
}
