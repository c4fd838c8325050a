//! Machine notes attached to every benchmark result.

use std::path::Path;

use serde::Serialize;

/// What the numbers were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct MachineNotes {
    pub cpu_model: String,
    pub cores_online: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub filesystem: String,
    pub device: String,
    pub strata_version: String,
    pub peers: Vec<String>,
}

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

impl MachineNotes {
    /// Gather notes; `dir` is where the benchmark writes.
    pub fn gather(dir: &Path, peers: Vec<String>) -> MachineNotes {
        let mem_kib: f64 = first_line_with("/proc/meminfo", "MemTotal")
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let (device, filesystem) = mount_of(dir).unwrap_or_default();
        MachineNotes {
            cpu_model: first_line_with("/proc/cpuinfo", "model name").unwrap_or_default(),
            cores_online: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: mem_kib / (1024.0 * 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            filesystem,
            device,
            strata_version: env!("CARGO_PKG_VERSION").to_owned(),
            peers,
        }
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        format!(
            "{} · {} cores · {:.1} GiB · Linux {} · {} on {}",
            self.cpu_model,
            self.cores_online,
            self.memory_gib,
            self.kernel,
            self.filesystem,
            self.device
        )
    }
}

/// (device, fs type) of the mount holding `dir` (longest mount-point prefix).
fn mount_of(dir: &Path) -> Option<(String, String)> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (dev, mp, fs) = (it.next()?, it.next()?, it.next()?);
            dir.starts_with(mp)
                .then(|| (mp.len(), dev.to_owned(), fs.to_owned()))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, d, f)| (d, f))
}
