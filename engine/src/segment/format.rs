//! Constants and the footer / section table of a segment file.

/// Last 8 bytes of the footer's magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STRATSEG";
/// Version of the segment layout (3: LZ4 document blocks; 2: zstd blocks, vectors only in
/// their section; 1: vectors also inline in document blocks).
pub const SEGMENT_FORMAT_VERSION: u32 = 3;
/// Oldest segment version this build reads (v1: vectors also inline in document blocks).
pub const SEGMENT_FORMAT_VERSION_MIN: u32 = 1;
/// Bytes of the footer at the end of the file.
pub(crate) const FOOTER_BYTES: usize = 64;
/// Bytes of one section table entry.
pub(crate) const TABLE_ENTRY_BYTES: usize = 24;
/// Every section starts at a multiple of this.
pub(crate) const SECTION_ALIGN: usize = 64;
/// Raw bytes per document block (target; a block holds at least one document). Small
/// blocks keep a point read to one small decompression.
pub(crate) const DOC_BLOCK_BYTES: usize = 4 * 1024;
/// How a segment's document blocks are compressed: the u32 after the docs section's block
/// count (written 0 — padding — before format 3, whose writers only knew zstd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocCodec {
    /// A zstd frame per block (formats 1 and 2).
    Zstd = 0,
    /// A u32 raw length, then an LZ4 block (format 3): a point read decompresses a 4 KiB
    /// block in about a microsecond, where zstd's per-block entropy tables cost several
    /// (`docs/benchmarks.md`, "Point gets").
    Lz4 = 1,
}

impl DocCodec {
    /// The codec a segment of format `version` declares as `code`, if that is valid.
    pub(crate) fn of(version: u32, code: u32) -> Option<DocCodec> {
        match (version, code) {
            (_, 0) => Some(DocCodec::Zstd),
            (3.., 1) => Some(DocCodec::Lz4),
            _ => None,
        }
    }
}

/// Documents per attribute min/max block.
pub(crate) const ATTR_BLOCK_DOCS: usize = 1024;

/// Section kinds. Unknown kinds are ignored by readers (sections are added, not redesigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SectionKind {
    /// Sorted keys: ordinal -> key.
    Keys = 1,
    /// Compressed blocks of whole documents (LZ4 from format 3, zstd before).
    Docs = 2,
    /// Presence bitset + f32 vectors, ordinal-major.
    Vectors = 3,
    /// Term dictionary + posting lists of ordinals.
    Terms = 4,
    /// Attribute columns with presence, values and per-block min/max.
    Attrs = 5,
    /// Bloom filter over the keys (optional).
    Bloom = 6,
    /// ANN codes: quantiser, node -> ordinal map, one code per graph node (optional, with 8).
    AnnCodes = 7,
    /// ANN graph: 4 KiB sectors of node records, per-sector CRCs (optional, with 7).
    AnnGraph = 8,
    /// The planner's calibration: recall and time per plan and effort, measured on the
    /// segment's own vectors and filters (optional, with 7 and 8).
    Calibration = 9,
    /// A CRC-32 per 64 KiB chunk of the vectors section, so an open need not read the
    /// vectors to verify them (optional; without it kind 3 is verified whole at open).
    VectorChunks = 10,
}

impl SectionKind {
    pub(crate) const ALL: [SectionKind; 10] = [
        SectionKind::Keys,
        SectionKind::Docs,
        SectionKind::Vectors,
        SectionKind::Terms,
        SectionKind::Attrs,
        SectionKind::Bloom,
        SectionKind::AnnCodes,
        SectionKind::AnnGraph,
        SectionKind::Calibration,
        SectionKind::VectorChunks,
    ];

    /// File alignment of the section's first byte.
    pub(crate) fn align(self) -> usize {
        match self {
            SectionKind::AnnGraph => crate::ann::disk::SECTOR,
            _ => SECTION_ALIGN,
        }
    }

    /// Bytes of a section of kind `kind` and length `len` that its table entry's CRC
    /// covers: all of it, except the ANN graph, checksummed per sector (its table CRC
    /// covers only sector 0, so an open need not read the graph).
    pub(crate) fn table_crc_bytes(kind: u32, len: usize) -> usize {
        if kind == SectionKind::AnnGraph as u32 {
            len.min(crate::ann::disk::SECTOR)
        } else {
            len
        }
    }
}

pub(crate) use strata_io::le::{i64_at as le_i64, u32_at as le_u32, u64_at as le_u64};

pub(crate) fn pad_to(out: &mut Vec<u8>, align: usize) {
    while !out.len().is_multiple_of(align) {
        out.push(0);
    }
}
