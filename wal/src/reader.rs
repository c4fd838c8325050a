//! Reading log files: scanning one file's frames, and [`WalReader`] replaying records in LSN
//! order across files.
//!
//! A bad frame is a *torn tail* only when no valid frame follows it in the same file; otherwise
//! bytes that were once durable were damaged and the reader stops with [`Error::Corruption`].

use std::path::{Path, PathBuf};

use crate::format::{
    decode_frame, FileHeader, Frame, RecordKind, RecordRef, FILE_HEADER_BYTES, RECORD_BYTES_LIMIT,
    RECORD_HEADER_BYTES,
};
use crate::options::SEGMENT_BYTES_LIMIT;
use crate::{Error, Lsn, Result};
use strata_io::SharedFs;

/// Largest log file a reader loads (a file is never written past this).
pub(crate) const FILE_READ_BYTES_MAX: u64 = SEGMENT_BYTES_LIMIT + RECORD_BYTES_LIMIT as u64 + 4096;

/// Name of the log file whose first record is `first_lsn`.
pub fn file_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}.wal")
}

/// Parse a log file name back to its first LSN.
pub fn parse_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A log file of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// LSN of its first record.
    pub first_lsn: Lsn,
    /// Its path.
    pub path: PathBuf,
}

/// The log files of `dir`, oldest first.
pub(crate) fn list_files(fs: &SharedFs, dir: &Path) -> Result<Vec<LogFile>> {
    let names = fs
        .list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?;
    let mut files: Vec<LogFile> = names
        .iter()
        .filter_map(|n| {
            Some(LogFile {
                first_lsn: parse_file_name(n)?,
                path: dir.join(n),
            })
        })
        .collect();
    files.sort_by_key(|f| f.first_lsn);
    Ok(files)
}

/// Why a scan stopped before the end of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Clean end of the file.
    End,
    /// A bad frame with nothing valid after it.
    Tail { offset: usize, reason: &'static str },
    /// Damage before the tail.
    Corrupt { offset: usize, reason: String },
}

/// Iterates the frames of one log file held in memory.
#[derive(Debug)]
pub(crate) struct FileScan {
    pub pos: usize,
    pub seed: u32,
    pub next_lsn: Lsn,
    /// The file's frame layout version.
    pub version: u32,
}

impl FileScan {
    /// Verify the header of `buf` (and that it matches the name's LSN) and start after it.
    pub(crate) fn start(buf: &[u8], path: &Path, name_lsn: Lsn) -> Result<FileScan> {
        let header = FileHeader::decode(buf)
            .map_err(|r| Error::corruption(path, 0, name_lsn, format!("file header: {r}")))?;
        if header.first_lsn != name_lsn {
            return Err(Error::corruption(
                path,
                0,
                name_lsn,
                format!("header says first LSN {}", header.first_lsn),
            ));
        }
        Ok(FileScan {
            pos: FILE_HEADER_BYTES,
            seed: header.crc_seed,
            next_lsn: header.first_lsn,
            version: header.version,
        })
    }

    /// The next record as (offset of payload, length, lsn, kind), or why there is none.
    pub(crate) fn next(&mut self, buf: &[u8]) -> Result<(usize, usize, Lsn, RecordKind), Stop> {
        let rest = buf.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Err(Stop::End);
        }
        match decode_frame(rest, self.seed, self.version) {
            Frame::Valid {
                record,
                frame_bytes,
            } => {
                if record.lsn != self.next_lsn {
                    return Err(Stop::Corrupt {
                        offset: self.pos,
                        reason: format!(
                            "valid frame carries LSN {} where {} was expected",
                            record.lsn, self.next_lsn
                        ),
                    });
                }
                let at = self.pos + RECORD_HEADER_BYTES;
                self.pos += frame_bytes;
                self.next_lsn += 1;
                Ok((at, record.payload.len(), record.lsn, record.kind))
            }
            Frame::Incomplete => self.bad(buf, "frame runs past the end of the file"),
            Frame::Invalid(reason) => self.bad(buf, reason),
        }
    }

    fn bad<T>(&self, buf: &[u8], reason: &'static str) -> Result<T, Stop> {
        // Zeros to the end of the file are preallocation padding: a clean end.
        if buf
            .get(self.pos..)
            .unwrap_or_default()
            .iter()
            .all(|&b| b == 0)
        {
            return Err(Stop::End);
        }
        match find_valid_frame(buf, self.pos + 1, self.seed, self.version) {
            Some(later) => Err(Stop::Corrupt {
                offset: self.pos,
                reason: format!("{reason}; a valid frame follows at offset {later}"),
            }),
            None => Err(Stop::Tail {
                offset: self.pos,
                reason,
            }),
        }
    }
}

/// Offset of the first valid frame (layout `version`) at or after `from`, if any.
pub(crate) fn find_valid_frame(buf: &[u8], from: usize, seed: u32, version: u32) -> Option<usize> {
    let last = buf.len().checked_sub(RECORD_HEADER_BYTES)?;
    (from..=last).find(|&off| {
        let Some(rest) = buf.get(off..) else {
            return false;
        };
        // Cheap filter before the CRC: a valid frame has a non-zero kind and zero reserved bytes.
        rest.get(8).is_some_and(|&k| k != 0)
            && rest.get(9..12) == Some(&[0, 0, 0][..])
            && matches!(decode_frame(rest, seed, version), Frame::Valid { .. })
    })
}

/// Replays records in LSN order from a starting LSN up to (excluding) an end LSN.
///
/// It is a lending iterator: [`WalReader::next_record`] returns a record borrowing the reader's buffer.
#[derive(Debug)]
pub struct WalReader {
    fs: SharedFs,
    files: Vec<LogFile>,
    file_idx: usize,
    buf: Vec<u8>,
    scan: Option<FileScan>,
    from_lsn: Lsn,
    end_lsn: Lsn,
    known_kinds_max: u8,
    /// The LSN after the last file fully read.
    reached: Lsn,
}

impl WalReader {
    pub(crate) fn new(
        fs: SharedFs,
        files: Vec<LogFile>,
        from_lsn: Lsn,
        end_lsn: Lsn,
        known_kinds_max: u8,
    ) -> Result<WalReader> {
        let from_lsn = from_lsn.max(1);
        let oldest = files.first().map_or(end_lsn, |f| f.first_lsn);
        if from_lsn < oldest && from_lsn < end_lsn {
            return Err(Error::LsnTruncated {
                requested: from_lsn,
                oldest,
            });
        }
        // Start at the last file whose first LSN is <= from_lsn.
        let file_idx = files
            .iter()
            .rposition(|f| f.first_lsn <= from_lsn)
            .unwrap_or(0);
        Ok(WalReader {
            fs,
            files,
            file_idx,
            buf: Vec::new(),
            scan: None,
            from_lsn,
            end_lsn,
            known_kinds_max,
            reached: 0,
        })
    }

    /// LSN the next record will have (or the end when exhausted).
    pub fn end_lsn(&self) -> Lsn {
        self.end_lsn
    }

    fn load(&mut self, idx: usize) -> Result<Option<Lsn>> {
        let Some(f) = self.files.get(idx) else {
            return Ok(None);
        };
        let handle = self
            .fs
            .open(&f.path, false)
            .map_err(|e| Error::io("open", &f.path, e))?;
        self.buf = handle
            .read_all(FILE_READ_BYTES_MAX)
            .map_err(|e| Error::io("read", &f.path, e))?;
        let scan = FileScan::start(&self.buf, &f.path, f.first_lsn)?;
        let first = scan.next_lsn;
        self.scan = Some(scan);
        Ok(Some(first))
    }

    /// The next record, `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<RecordRef<'_>>> {
        loop {
            let Some(scan) = self.scan.as_mut() else {
                match self.load(self.file_idx)? {
                    Some(_) => continue,
                    None => return self.finish(),
                }
            };
            if scan.next_lsn >= self.end_lsn {
                return Ok(None);
            }
            let expected = scan.next_lsn;
            match scan.next(&self.buf) {
                Ok((at, len, lsn, kind)) => {
                    if lsn < self.from_lsn {
                        continue;
                    }
                    if kind.0 > self.known_kinds_max {
                        if kind.is_ignorable() {
                            continue;
                        }
                        return Err(Error::UnknownKind {
                            kind: kind.0,
                            lsn,
                            path: self.path(),
                        });
                    }
                    let payload = self.buf.get(at..at + len).unwrap_or_default();
                    return Ok(Some(RecordRef { lsn, kind, payload }));
                }
                Err(Stop::End) => {
                    let next_first = self.files.get(self.file_idx + 1).map(|f| f.first_lsn);
                    if let Some(next_first) = next_first {
                        if next_first != expected {
                            return Err(Error::corruption(
                                self.files
                                    .get(self.file_idx + 1)
                                    .map(|f| f.path.clone())
                                    .unwrap_or_default(),
                                0,
                                expected,
                                format!(
                                    "log files are not contiguous: previous file ends before LSN {expected}, this one starts at {next_first}"
                                ),
                            ));
                        }
                    }
                    self.reached = expected;
                    self.file_idx += 1;
                    self.scan = None;
                }
                Err(Stop::Tail { offset, reason }) => {
                    return Err(Error::corruption(
                        self.path(),
                        offset as u64,
                        expected,
                        reason,
                    ))
                }
                Err(Stop::Corrupt { offset, reason }) => {
                    return Err(Error::corruption(
                        self.path(),
                        offset as u64,
                        expected,
                        reason,
                    ))
                }
            }
        }
    }

    fn finish(&self) -> Result<Option<RecordRef<'_>>> {
        // Out of files: fine only if we reached the end the writer promised.
        let reached = self.reached;
        if reached < self.end_lsn && self.from_lsn < self.end_lsn {
            return Err(Error::corruption(
                self.files
                    .last()
                    .map(|f| f.path.clone())
                    .unwrap_or_default(),
                self.buf.len() as u64,
                reached,
                format!("log ends before LSN {}", self.end_lsn),
            ));
        }
        Ok(None)
    }

    fn path(&self) -> PathBuf {
        self.files
            .get(self.file_idx)
            .map(|f| f.path.clone())
            .unwrap_or_default()
    }
}
