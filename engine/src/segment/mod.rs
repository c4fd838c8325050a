//! Immutable segments: one file per segment holding a flushed memtable's live documents in key
//! order (ordinal = rank of the key), in checksummed sections (`docs/format.md`, "Segment").
//!
//! Invariants: a segment file is complete and fsynced before its name exists and before a
//! manifest names it; a reader verifies the footer, the section table and every section's CRC
//! (the graph's sectors and, with kind 10, the vectors' 64 KiB chunks on their first read
//! instead), then the structure (counts, monotone offsets, sorted keys and postings) before
//! serving a single read, so accessors never see out-of-range offsets.

mod bloom;
mod cache;
pub(crate) mod calibration;
pub(crate) mod chunks;
pub(crate) mod deletes;
mod format;
mod reader;
mod writer;

pub(crate) use cache::BlockCache;
pub use format::{SectionKind, SEGMENT_FORMAT_VERSION, SEGMENT_MAGIC};
pub(crate) use reader::Segment;
pub(crate) use writer::{with_calibration, write_segment_with};

#[cfg(feature = "fuzzing")]
/// Encode a segment in memory (fuzz seeds); errors give an empty buffer.
pub(crate) fn encode_for_fuzz(
    docs: &[std::sync::Arc<crate::Document>],
    schema: &crate::Schema,
    ann: Option<&crate::AnnOptions>,
) -> Vec<u8> {
    writer::encode_segment(docs, schema, ann).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::writer::encode_segment;
    use super::*;
    use crate::bitset::Bitset;
    use crate::mmap::FileBytes;
    use crate::{Document, Filter, Metric, Schema};

    const TERMS: [&str; 5] = ["a", "b:1", "b:2", "spam", "zz"];

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(3, Metric::L2).with_attr("ts").with_attr("n"))
    }

    fn docs(n: usize, seed: u64) -> Vec<Arc<Document>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let s = schema();
        (0..n)
            .map(|i| {
                let mut d = Document::new(format!("key{i:05}"), vec![b'v'; rng.gen_range(0..3000)]);
                if rng.gen_bool(0.8) {
                    d.vector = Some((0..3).map(|_| rng.gen_range(-1.0..1.0)).collect());
                }
                for t in TERMS {
                    if rng.gen_bool(0.4) {
                        d.terms.push(t.into());
                    }
                }
                if rng.gen_bool(0.6) {
                    d.attrs.insert("ts".into(), rng.gen_range(0..100));
                }
                Arc::new(d.validate(&s).unwrap())
            })
            .collect()
    }

    fn open(bytes: Vec<u8>) -> crate::Result<Segment> {
        Segment::from_bytes(FileBytes::Owned(bytes), Path::new("test.seg"), 1, schema())
    }

    #[test]
    fn round_trip_lookup_and_filters_equal_brute_force() {
        for n in [0usize, 1, 7, 1500] {
            let ds = docs(n, n as u64);
            let seg = open(encode_segment(&ds, &schema(), None).unwrap()).unwrap();
            assert_eq!(seg.len(), n);
            let mut v = Vec::new();
            for (i, d) in ds.iter().enumerate() {
                assert_eq!(seg.find(&d.key), Some(i));
                assert_eq!(&seg.doc(i).unwrap(), d.as_ref());
                assert_eq!(seg.vector_into(i, &mut v).unwrap(), d.vector.is_some());
                if let Some(want) = &d.vector {
                    assert_eq!(&v, want);
                }
            }
            assert_eq!(seg.find(b"nope"), None);
            let filters = [
                "a",
                "(not spam)",
                "(and a (or b:1 b:2))",
                "(range ts 10 50)",
                "(or zz (not (range ts 0 99)))",
                "missing-term",
            ];
            for f in filters {
                let f = Filter::parse(f).unwrap();
                let got: Vec<usize> = seg.eval(&f).iter().collect();
                let want: Vec<usize> = (0..n).filter(|&i| f.matches(&ds[i])).collect();
                assert_eq!(got, want, "filter {f} over {n} docs");
            }
        }
    }

    /// A flush streams its sections to the file; the file is byte for byte the one assembled
    /// in memory (padding included), with and without a graph.
    #[test]
    fn a_streamed_segment_equals_the_assembled_one() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = strata_io::StdFs::shared();
        let ann = crate::AnnOptions {
            min_vectors: 2,
            calibrate: false,
            ..crate::AnnOptions::default()
        };
        for (n, ann) in [(0usize, None), (7, None), (300, None), (300, Some(&ann))] {
            let ds = docs(n, 3 + n as u64);
            let want = encode_segment(&ds, &schema(), ann).unwrap();
            let path = tmp.path().join(format!("{n}-{}.seg", ann.is_some()));
            let len =
                writer::write_segment_with(&fs, &path, &ds, &schema(), ann, None, None, &|_| true)
                    .unwrap();
            let got = std::fs::read(&path).unwrap();
            assert_eq!(len, got.len() as u64);
            assert!(got == want, "{n} documents, graph {}", ann.is_some());
        }
    }

    #[test]
    fn every_bit_flip_and_truncation_is_detected() {
        let bytes = encode_segment(&docs(40, 9), &schema(), None).unwrap();
        for i in 0..bytes.len() {
            let mut c = bytes.clone();
            c[i] ^= 1 << (i % 8);
            assert!(
                open(c).is_err(),
                "flip in byte {i} of {} undetected",
                bytes.len()
            );
        }
        for cut in (0..bytes.len()).step_by(7) {
            assert!(open(bytes[..cut].to_vec()).is_err(), "truncation to {cut}");
        }
    }

    #[test]
    fn deletion_bitmap_round_trip_and_checks() {
        let mut b = Bitset::new(70);
        b.set(3);
        b.set(69);
        let enc = deletes::encode(&b);
        assert_eq!(deletes::decode(&enc, 70).unwrap(), b);
        assert!(deletes::decode(&enc, 71).is_err());
        for i in 0..enc.len() {
            let mut c = enc.clone();
            c[i] ^= 0x20;
            assert!(deletes::decode(&c, 70).is_err(), "byte {i}");
        }
    }
}
