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
