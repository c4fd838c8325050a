//! Durable whole-file writes: the temp-file-then-rename protocol every file Strata installs
//! follows (SCHEMA, MANIFEST, deletion bitmaps, segments, log file headers).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{FileHandle, Fs, IoError};

/// `path` with `.tmp` appended: where a file is written before it is renamed into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// A new, empty temp file for `path` (a stale one from a crash is removed first).
pub fn create_temp(fs: &dyn Fs, path: &Path) -> Result<(PathBuf, Arc<dyn FileHandle>), IoError> {
    let tmp = temp_path(path);
    if fs.exists(&tmp) {
        fs.remove_file(&tmp)
            .map_err(|e| IoError::new("remove", &tmp, e))?;
    }
    let f = fs
        .create_new(&tmp)
        .map_err(|e| IoError::new("create", &tmp, e))?;
    Ok((tmp, f))
}

/// Make `file` (written at `tmp`) durable and move it to `path`: fdatasync, rename, fsync of
/// the directory. After `Ok`, `path` holds exactly the file's bytes across a power loss;
/// before it, `path` is untouched.
pub fn install(fs: &dyn Fs, file: &dyn FileHandle, tmp: &Path, path: &Path) -> Result<(), IoError> {
    file.sync_data()
        .map_err(|e| IoError::new("fdatasync", tmp, e))?;
    fs.rename(tmp, path)
        .map_err(|e| IoError::new("rename", tmp, e))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs.sync_dir(dir)
        .map_err(|e| IoError::new("fsync directory", dir, e))
}

/// Write `bytes` to `path` atomically and durably: [`create_temp`], write, [`install`].
pub fn write_durably(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let (tmp, f) = create_temp(fs, path)?;
    f.write_all_at(bytes, 0)
        .map_err(|e| IoError::new("write", &tmp, e))?;
    install(fs, f.as_ref(), &tmp, path)
}
