//! Constants and the footer / section table of a segment file.

/// Last 8 bytes of the footer's magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STRATSEG";
/// Version of the segment layout.
pub const SEGMENT_FORMAT_VERSION: u32 = 2;
/// Oldest segment version this build reads (v1: vectors also inline in document blocks).
pub const SEGMENT_FORMAT_VERSION_MIN: u32 = 1;
/// Bytes of the footer at the end of the file.
pub(crate) const FOOTER_BYTES: usize = 64;
/// Bytes of one section table entry.
pub(crate) const TABLE_ENTRY_BYTES: usize = 24;
/// Every section starts at a multiple of this.
pub(crate) const SECTION_ALIGN: usize = 64;
/// Raw bytes per zstd document block (target; a block holds at least one document). Small
/// blocks keep a point read to one small decompression.
pub(crate) const DOC_BLOCK_BYTES: usize = 4 * 1024;
/// Documents per attribute min/max block.
pub(crate) const ATTR_BLOCK_DOCS: usize = 1024;

/// Section kinds. Unknown kinds are ignored by readers (sections are added, not redesigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SectionKind {
    /// Sorted keys: ordinal -> key.
    Keys = 1,
    /// zstd-compressed blocks of whole documents.
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
