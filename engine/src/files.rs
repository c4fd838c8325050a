//! Durable whole-file writes (temp file, fsync, rename, directory fsync). The names of the
//! files in a database directory live with their owners: `manifest.rs` (MANIFEST-*, segment
//! and deletion-bitmap names), `meta.rs` (SCHEMA), `db.rs` (LOCK, the segments directory).

use std::path::Path;

use strata_wal::io::SharedFs;

use crate::{Error, Result};

/// Write `bytes` to `path` atomically and durably: `path.tmp`, fsync, rename, directory fsync.
pub(crate) fn write_durably(fs: &SharedFs, path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    if fs.exists(&tmp) {
        fs.remove_file(&tmp)
            .map_err(|e| Error::io("remove", &tmp, e))?;
    }
    let f = fs
        .create_new(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all_at(bytes, 0)
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_data().map_err(|e| Error::io("fdatasync", &tmp, e))?;
    fs.rename(&tmp, path)
        .map_err(|e| Error::io("rename", &tmp, e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))
}
