//! The bytes of the two ANN sections (`docs/format.md`, "ANN codes" and "ANN graph"): one
//! place for the sector size, magic, versions and header fields, shared by the builder
//! (encode) and the index (decode).

use strata_io::le::{self, Cursor};

use crate::{DecodeError, Error, Result};

/// Sector size of the graph section (and its alignment in the file).
pub(crate) const SECTOR: usize = 4096;
/// Payload bytes of a sector (the last 4 hold its CRC).
pub(super) const PAYLOAD: usize = SECTOR - 4;
/// First bytes of the graph header (sector 0).
pub(super) const GRAPH_MAGIC: [u8; 8] = *b"STRAGRPH";
/// Graph layout version.
pub(super) const GRAPH_VERSION: u32 = 1;
/// Codes layout version. Version 2 added the coarse partitions (version 1 is still read: no
/// partitions).
pub(super) const CODES_VERSION: u32 = 2;
/// Bytes of the codes section header (eight u32 fields).
pub(super) const CODES_HEADER: usize = 32;
/// Bytes of the graph header's fields (magic, eight u32, sector count u64); the rest of
/// sector 0 is zero up to its CRC.
pub(super) const GRAPH_HEADER: usize = 48;
/// Largest degree bound a graph header may declare.
pub(super) const DEGREE_MAX: usize = 4096;
/// Code kind tag of SQ8 codes in the codes header.
pub(super) const KIND_SQ8: u32 = 1;
/// Code kind tag of PQ codes in the codes header.
pub(super) const KIND_PQ: u32 = 2;

pub(super) fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::invalid(format!("ANN index: {what} exceeds u32")))
}

/// The space tag of the codes header: 1 = L2 (and cosine), 2 = inner product.
pub(super) fn space_tag(space: super::Space) -> u32 {
    match space {
        super::Space::L2 => 1,
        super::Space::Ip => 2,
    }
}

/// The codes section header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CodesHeader {
    pub version: u32,
    /// [`space_tag`].
    pub space: u32,
    /// [`KIND_SQ8`] or [`KIND_PQ`].
    pub kind: u32,
    pub code_bytes: u32,
    pub nodes: u32,
    pub dim: u32,
    /// PQ sub-spaces (0 for SQ8).
    pub m: u32,
    /// Coarse partitions (0: none; always 0 in version 1).
    pub lists: u32,
}

impl CodesHeader {
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        for x in [
            self.version,
            self.space,
            self.kind,
            self.code_bytes,
            self.nodes,
            self.dim,
            self.m,
            self.lists,
        ] {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }

    /// The header at the start of `b` (`None`: shorter than [`CODES_HEADER`]).
    pub(super) fn decode(b: &[u8]) -> Option<CodesHeader> {
        let mut c = Cursor::new(b);
        Some(CodesHeader {
            version: c.u32().ok()?,
            space: c.u32().ok()?,
            kind: c.u32().ok()?,
            code_bytes: c.u32().ok()?,
            nodes: c.u32().ok()?,
            dim: c.u32().ok()?,
            m: c.u32().ok()?,
            lists: c.u32().ok()?,
        })
    }
}

/// The graph header (sector 0 of the graph section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GraphHeader {
    pub version: u32,
    pub dim: u32,
    /// Degree bound `R`.
    pub r: u32,
    pub nodes: u32,
    pub entry: u32,
    pub node_bytes: u32,
    pub nodes_per_sector: u32,
    pub sectors_per_node: u32,
    /// Sectors of the section, header included.
    pub sectors: u64,
}

impl GraphHeader {
    /// Magic and fields ([`GRAPH_HEADER`] bytes).
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GRAPH_HEADER);
        out.extend_from_slice(&GRAPH_MAGIC);
        for x in [
            self.version,
            self.dim,
            self.r,
            self.nodes,
            self.entry,
            self.node_bytes,
            self.nodes_per_sector,
            self.sectors_per_node,
        ] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&self.sectors.to_le_bytes());
        out
    }

    /// The header at the start of `b` (magic checked; the fields' values are the caller's).
    pub(super) fn decode(b: &[u8]) -> std::result::Result<GraphHeader, DecodeError> {
        let mut c = Cursor::new(b);
        if c.take(8)? != GRAPH_MAGIC {
            return Err(DecodeError::Magic);
        }
        let mut f = || c.u32();
        let h = GraphHeader {
            version: f()?,
            dim: f()?,
            r: f()?,
            nodes: f()?,
            entry: f()?,
            node_bytes: f()?,
            nodes_per_sector: f()?,
            sectors_per_node: f()?,
            sectors: 0,
        };
        Ok(GraphHeader {
            sectors: c.u64()?,
            ..h
        })
    }
}

/// CRC of sector `index`: CRC-32 of the index (u64 LE) then the payload, so a sector
/// swapped with another fails.
pub(super) fn sector_crc(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Write every sector's CRC into its last 4 bytes (`g`: whole sectors, sector 0 first).
pub(super) fn seal_sectors(g: &mut [u8]) {
    for (s, sector) in g.chunks_exact_mut(SECTOR).enumerate() {
        let (payload, crc) = sector.split_at_mut(PAYLOAD);
        crc.copy_from_slice(&sector_crc(s as u64, payload).to_le_bytes());
    }
}

/// Whether `sector` (whole) is sector `index` of its section, undamaged.
pub(super) fn sector_ok(sector: &[u8], index: u64) -> bool {
    match (sector.get(..PAYLOAD), le::u32_at(sector, PAYLOAD)) {
        (Some(payload), Some(crc)) => crc == sector_crc(index, payload),
        _ => false,
    }
}

/// Geometry of node records in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
    pub dim: usize,
    pub r: usize,
    /// Bytes of a node record: vector (`dim` f32), degree u32, `r` neighbour ids u32.
    pub node_bytes: usize,
    /// Nodes per sector, or 0 when a node spans `spn` sectors.
    pub nps: usize,
    pub spn: usize,
}

impl Geometry {
    pub(super) fn new(dim: usize, r: usize) -> Geometry {
        let node_bytes = dim * 4 + 4 + r * 4;
        if node_bytes <= PAYLOAD {
            Geometry {
                dim,
                r,
                node_bytes,
                nps: PAYLOAD / node_bytes,
                spn: 1,
            }
        } else {
            Geometry {
                dim,
                r,
                node_bytes,
                nps: 0,
                spn: node_bytes.div_ceil(PAYLOAD),
            }
        }
    }

    /// First sector (counting the header as sector 0) and byte offset in its payload.
    pub(super) fn locate(&self, node: usize) -> (usize, usize) {
        match node.checked_div(self.nps) {
            Some(q) => (1 + q, (node % self.nps) * self.node_bytes),
            None => (1 + node * self.spn, 0),
        }
    }

    /// Sectors of a graph of `n` nodes, header included.
    pub(super) fn sectors(&self, n: usize) -> usize {
        if self.nps > 0 {
            1 + n.div_ceil(self.nps)
        } else {
            1 + n * self.spn
        }
    }
}

pub(super) fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    le::u32_at(b, at)
}

#[cfg(feature = "fuzzing")]
/// Recompute every sector CRC of a graph section at `at..at + len` of `b` (fuzzing: lets
/// mutations reach the structural checks).
pub(crate) fn fix_sector_crcs(b: &mut [u8], at: usize, len: usize) {
    if let Some(sec) = at.checked_add(len).and_then(|end| b.get_mut(at..end)) {
        seal_sectors(sec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_at_the_documented_sizes() {
        let c = CodesHeader {
            version: CODES_VERSION,
            space: 2,
            kind: KIND_PQ,
            code_bytes: 96,
            nodes: 7,
            dim: 384,
            m: 96,
            lists: 3,
        };
        let mut b = Vec::new();
        c.encode(&mut b);
        assert_eq!(b.len(), CODES_HEADER);
        assert_eq!(CodesHeader::decode(&b), Some(c));
        assert_eq!(CodesHeader::decode(&b[..CODES_HEADER - 1]), None);
        let g = GraphHeader {
            version: GRAPH_VERSION,
            dim: 128,
            r: 48,
            nodes: 1000,
            entry: 17,
            node_bytes: 708,
            nodes_per_sector: 5,
            sectors_per_node: 1,
            sectors: 201,
        };
        let b = g.encode();
        assert_eq!(b.len(), GRAPH_HEADER);
        assert_eq!(GraphHeader::decode(&b), Ok(g));
        assert!(matches!(
            GraphHeader::decode(&b[..GRAPH_HEADER - 1]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut bad = b.clone();
        bad[0] ^= 1;
        assert_eq!(GraphHeader::decode(&bad), Err(DecodeError::Magic));
        let mut sectors = vec![7u8; 3 * SECTOR];
        seal_sectors(&mut sectors);
        for (s, sec) in sectors.chunks(SECTOR).enumerate() {
            assert!(sector_ok(sec, s as u64));
            assert!(!sector_ok(sec, s as u64 + 1), "a moved sector fails");
        }
    }
}
