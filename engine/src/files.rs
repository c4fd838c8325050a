//! Every file and directory a database holds, by name ([`FileType`]), and durable whole-file
//! writes (the protocol itself lives in `strata_io::durable`, shared with the log).
//!
//! ```text
//! DIR/SCHEMA                              FileType::Schema      (meta.rs)
//! DIR/LOCK                                FileType::Lock        (db, directory lock)
//! DIR/MANIFEST-<n:016x>                   FileType::Manifest    (manifest.rs)
//! DIR/segments/<id:016x>.seg              FileType::Segment     (segment/)
//! DIR/segments/<id:016x>-<gen:08x>.del    FileType::Deletes     (segment/deletes.rs)
//! DIR/wal/…                               the log (strata-wal names its own files)
//! any of them + ".tmp"                    a write in progress (removed at open)
//! ```

use std::path::Path;

use strata_io::SharedFs;

use crate::Result;

/// File name of the schema.
pub const SCHEMA_FILE: &str = "SCHEMA";
/// File name of the directory lock.
pub const LOCK_FILE: &str = "LOCK";
/// Prefix of manifest file names (`MANIFEST-<n:016x>`).
pub const MANIFEST_PREFIX: &str = "MANIFEST-";
/// Subdirectory holding the write-ahead log.
pub const WAL_DIR: &str = "wal";
/// Subdirectory holding segment files and their deletion bitmaps.
pub const SEGMENTS_DIR: &str = "segments";

/// A file the engine writes, as its name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// `SCHEMA`.
    Schema,
    /// `LOCK`.
    Lock,
    /// `MANIFEST-<number:016x>`.
    Manifest {
        /// The manifest's number.
        number: u64,
    },
    /// `segments/<id:016x>.seg`.
    Segment {
        /// The segment id.
        id: u64,
    },
    /// `segments/<id:016x>-<gen:08x>.del`.
    Deletes {
        /// The segment id.
        id: u64,
        /// The bitmap's generation.
        gen: u32,
    },
}

fn hex(s: &str, len: usize) -> Option<u64> {
    let ok = s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    ok.then(|| u64::from_str_radix(s, 16).ok()).flatten()
}

impl FileType {
    /// The file's name (in the database directory or, for segments and bitmaps, in
    /// [`SEGMENTS_DIR`]).
    pub fn file_name(&self) -> String {
        match *self {
            FileType::Schema => SCHEMA_FILE.to_owned(),
            FileType::Lock => LOCK_FILE.to_owned(),
            FileType::Manifest { number } => format!("{MANIFEST_PREFIX}{number:016x}"),
            FileType::Segment { id } => format!("{id:016x}.seg"),
            FileType::Deletes { id, gen } => format!("{id:016x}-{gen:08x}.del"),
        }
    }

    /// What `name` is, if it is one of the engine's own names (exact: lower-case hex of the
    /// full width; anything else, a temp file included, is `None`).
    pub fn parse(name: &str) -> Option<FileType> {
        match name {
            SCHEMA_FILE => return Some(FileType::Schema),
            LOCK_FILE => return Some(FileType::Lock),
            _ => {}
        }
        if let Some(n) = name.strip_prefix(MANIFEST_PREFIX) {
            return Some(FileType::Manifest {
                number: hex(n, 16)?,
            });
        }
        if let Some(id) = name.strip_suffix(".seg") {
            return Some(FileType::Segment { id: hex(id, 16)? });
        }
        let (id, gen) = name.strip_suffix(".del")?.split_once('-')?;
        Some(FileType::Deletes {
            id: hex(id, 16)?,
            gen: u32::try_from(hex(gen, 8)?).ok()?,
        })
    }

    /// Whether the file lives in [`SEGMENTS_DIR`] (else in the database directory).
    pub fn in_segments_dir(&self) -> bool {
        matches!(self, FileType::Segment { .. } | FileType::Deletes { .. })
    }
}

/// Write `bytes` to `path` atomically and durably: `path.tmp`, fsync, rename, directory fsync.
pub(crate) fn write_durably(fs: &SharedFs, path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(strata_io::durable::write_durably(fs.as_ref(), path, bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_file_and_nothing_else_does() {
        let all = [
            FileType::Schema,
            FileType::Lock,
            FileType::Manifest { number: 0 },
            FileType::Manifest { number: u64::MAX },
            FileType::Segment { id: 0x1f },
            FileType::Deletes {
                id: 7,
                gen: u32::MAX,
            },
        ];
        for t in all {
            assert_eq!(FileType::parse(&t.file_name()), Some(t), "{t:?}");
        }
        for bad in [
            "SCHEMA.tmp",
            "MANIFEST-000000000000000A",
            "MANIFEST-1",
            "000000000000001f.seg.tmp",
            "000000000000001F.seg",
            "0000000000000007-ffffffff.del.tmp",
            "0000000000000007-fffffffff.del",
            "0000000000000007.del",
            "notes.txt",
            "",
        ] {
            assert_eq!(FileType::parse(bad), None, "{bad}");
        }
        assert_eq!(
            FileType::Deletes { id: 1, gen: 2 }.file_name(),
            "0000000000000001-00000002.del"
        );
        assert!(FileType::Segment { id: 1 }.in_segments_dir());
        assert!(!FileType::Manifest { number: 1 }.in_segments_dir());
    }
}
