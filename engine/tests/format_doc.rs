//! `docs/format.md` checked against the bytes the code writes: for each documented layout
//! table (offset | size | field), the field at that offset and size in a freshly encoded file
//! holds the value the test put there. A change to an encoder that the spec does not follow
//! (or a spec edit that the code does not) fails here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed expectation is a test failure"
)]

use std::collections::BTreeMap;

use strata::manifest::{Manifest, SegmentMeta, MANIFEST_MAGIC};
use strata::meta::{encode_schema, SCHEMA_MAGIC};
use strata::segment::SEGMENT_MAGIC;
use strata::{Db, Document, Metric, Options, Schema};
use strata_wal::format::{FileHeader, FILE_HEADER_BYTES, FILE_MAGIC};

const SPEC: &str = include_str!("../../docs/format.md");

/// The rows `| offset | size | field |` of the first table after the heading line that starts
/// with `heading` (and, if given, after the first line after it containing `after`), keyed by
/// numeric offset: (size text, field text).
fn table(heading: &str, after: Option<&str>) -> BTreeMap<usize, (String, String)> {
    let mut lines = SPEC.lines().skip_while(|l| !l.starts_with(heading));
    assert!(
        lines.next().is_some(),
        "no heading {heading:?} in docs/format.md"
    );
    let mut lines: Vec<&str> = lines.collect();
    if let Some(a) = after {
        let at = lines
            .iter()
            .position(|l| l.contains(a))
            .unwrap_or_else(|| panic!("no {a:?} after {heading:?}"));
        lines.drain(..at);
    }
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for l in lines {
        if l.starts_with("| offset") {
            in_table = true;
            continue;
        }
        if !in_table || l.starts_with("|---") {
            continue;
        }
        if !l.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = l.split('|').map(str::trim).collect();
        if let (Some(off), Some(size), Some(field)) = (cells.get(1), cells.get(2), cells.get(3)) {
            if let Ok(o) = off.parse::<usize>() {
                rows.insert(o, (size.to_string(), field.to_string()));
            }
        }
    }
    assert!(!rows.is_empty(), "no layout table under {heading:?}");
    rows
}

/// The little-endian field the spec documents at `offset` (its size read from the row).
fn field(rows: &BTreeMap<usize, (String, String)>, bytes: &[u8], offset: usize, name: &str) -> u64 {
    let (size, text) = rows
        .get(&offset)
        .unwrap_or_else(|| panic!("no row at offset {offset} ({name})"));
    assert!(
        text.to_lowercase().contains(name),
        "row at {offset} is {text:?}, expected {name:?}"
    );
    let size: usize = size
        .parse()
        .unwrap_or_else(|_| panic!("size {size:?} at {offset}"));
    let b = &bytes[offset..offset + size];
    let mut x = [0u8; 8];
    x[..size.min(8)].copy_from_slice(&b[..size.min(8)]);
    u64::from_le_bytes(x)
}

#[test]
fn wal_file_header_matches_the_spec() {
    assert!(SPEC.contains(&format!(
        "### File header ({FILE_HEADER_BYTES} bytes, offset 0)"
    )));
    let h = FileHeader {
        version: 2,
        crc_seed: 0xDEAD_BEEF,
        first_lsn: 77,
    };
    let b = h.encode();
    assert_eq!(b.len(), FILE_HEADER_BYTES);
    let rows = table("### File header", None);
    assert_eq!(&b[0..8], &FILE_MAGIC, "magic at 0");
    assert_eq!(rows.get(&0).map(|r| r.0.as_str()), Some("8"));
    assert_eq!(field(&rows, &b, 8, "version"), 2);
    assert_eq!(field(&rows, &b, 12, "crc_seed"), 0xDEAD_BEEF);
    assert_eq!(field(&rows, &b, 16, "first_lsn"), 77);
    assert_eq!(field(&rows, &b, 24, "reserved"), 0);
    assert_eq!(
        field(&rows, &b, 28, "header_crc"),
        u64::from(crc32fast::hash(&b[..28]))
    );
}

#[test]
fn schema_file_matches_the_spec() {
    let s = Schema::new(384, Metric::Cosine)
        .with_attr("ts")
        .with_attr("likes");
    let b = encode_schema(&s);
    let rows = table("## Schema", None);
    assert_eq!(&b[0..8], &SCHEMA_MAGIC);
    assert_eq!(field(&rows, &b, 8, "format version"), 1);
    assert_eq!(field(&rows, &b, 12, "dimension"), 384);
    assert_eq!(field(&rows, &b, 16, "metric"), 3, "cosine is 3");
    assert_eq!(field(&rows, &b, 17, "attribute count"), 2);
    // 19: u16 length + name, per attribute.
    assert_eq!(&b[19..21], &2u16.to_le_bytes());
    assert_eq!(&b[21..23], b"ts");
    let n = b.len();
    assert_eq!(&b[n - 4..], &crc32fast::hash(&b[..n - 4]).to_le_bytes());
}

#[test]
fn manifest_matches_the_spec() {
    let m = Manifest {
        number: 5,
        next_segment_id: 9,
        checkpoint_lsn: 1234,
        segments: vec![SegmentMeta {
            id: 3,
            doc_count: 40,
            deletes_gen: 2,
            file_bytes: Some(4096),
        }],
    };
    let b = m.encode();
    let rows = table("## Manifest", Some("Version 2"));
    assert_eq!(&b[0..8], &MANIFEST_MAGIC);
    assert_eq!(field(&rows, &b, 8, "format version"), 2);
    assert_eq!(field(&rows, &b, 12, "manifest number"), 5);
    assert_eq!(field(&rows, &b, 20, "next segment id"), 9);
    assert_eq!(field(&rows, &b, 28, "checkpoint"), 1234);
    assert_eq!(field(&rows, &b, 36, "segment count"), 1);
    assert_eq!(rows.get(&40).map(|r| r.0.as_str()), Some("24·count"));
    assert_eq!(&b[40..48], &3u64.to_le_bytes());
    assert_eq!(&b[48..52], &40u32.to_le_bytes());
    assert_eq!(&b[52..56], &2u32.to_le_bytes());
    assert_eq!(&b[56..64], &4096u64.to_le_bytes());
    assert_eq!(b.len(), 40 + 24 + 4);
    assert_eq!(&b[64..], &crc32fast::hash(&b[..64]).to_le_bytes());
}

#[test]
fn segment_footer_matches_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::new(4, Metric::L2);
    let db = Db::create_with(dir.path(), schema, Options::default()).unwrap();
    for i in 0..30u32 {
        db.put(Document::new(format!("k{i:03}"), "v").with_vector(vec![i as f32; 4]))
            .unwrap();
    }
    db.flush().unwrap();
    let seg_dir = dir.path().join(strata::SEGMENTS_DIR);
    let seg = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment after the flush");
    let file = std::fs::read(seg).unwrap();
    assert!(SPEC.contains("then a 64-byte footer"));
    let b = &file[file.len() - 64..];
    let rows = table("## Segment", Some("Footer (last 64 bytes)"));
    assert_eq!(&b[0..8], &SEGMENT_MAGIC);
    assert_eq!(
        field(&rows, b, 8, "format version"),
        u64::from(strata::segment::SEGMENT_FORMAT_VERSION)
    );
    assert!(rows[&8]
        .1
        .contains(&format!("`{}`", strata::segment::SEGMENT_FORMAT_VERSION)));
    let sections = field(&rows, b, 12, "section count");
    let table_at = field(&rows, b, 16, "section table offset") as usize;
    assert_eq!(
        table_at + sections as usize * 24,
        file.len() - 64,
        "24-byte table entries"
    );
    assert_eq!(
        field(&rows, b, 24, "crc-32 of the section table"),
        u64::from(crc32fast::hash(&file[table_at..file.len() - 64]))
    );
    // The docs section (kind 2) declares its codec after the block count: LZ4 (1).
    let docs = (0..sections as usize)
        .map(|i| &file[table_at + i * 24..table_at + i * 24 + 24])
        .find(|e| u32::from_le_bytes(e[0..4].try_into().unwrap()) == 2)
        .expect("a docs section");
    let docs_at = u64::from_le_bytes(docs[8..16].try_into().unwrap()) as usize;
    assert!(SPEC.contains("codec u32 (`1`: LZ4, written by version 3"));
    assert_eq!(file[docs_at + 4..docs_at + 8], 1u32.to_le_bytes());
    assert_eq!(field(&rows, b, 28, "document count"), 30);
    assert_eq!(field(&rows, b, 32, "vector dimension"), 4);
    assert_eq!(b[36..60], [0u8; 24], "reserved, zero");
    assert_eq!(
        field(&rows, b, 60, "crc-32 of footer"),
        u64::from(crc32fast::hash(&b[..60]))
    );
}
