//! The calibration section of a segment (kind 9): what the planner measured about the segment
//! when its index was built, as data and bytes. Measuring is `query::calibrate`; choosing a
//! plan from it is `query::calibrated`.
//!
//! Layout of the section (little-endian; `docs/format.md`, "Calibration section"):
//!
//! ```text
//! 0   magic "STRACALB" | 8 u32 version (2; 1 is read) | 12 u32 k | 16 u32 levels |
//! 20  u32 samples | 24 f32 ns per exact distance | 28 u32 fine, 32 u32 coarse local share
//!     divisor (the nearest lists holding nodes / divisor members define `c` at each scale)
//! 36  samples × record: f32 s | f32 c_fine | f32 c_coarse | f32 c_near (version 2 only) |
//!                       f32 o | u32 matches | u32 flags (bit 0: filtered) |
//!                       f32 ns per match of the exact plan on this sample's matches,
//!                       then per plan (graph, partition, codes): levels × u8 found,
//!                       padded to 4, then levels × u32 ns
//! ```
//!
//! A version-1 section has no near scale: its samples' `c_near` reads their `c_fine`, and the
//! planner does not measure the near scale for queries on that segment either (it reads the
//! fine one; `Calibration::near` false).
//!
//! `found` is `0..=k`, [`FULL_BEFORE`] (an earlier level already found all `k`: not run), or
//! [`NOT_RUN`] (not run: costlier than exact, or the plan does not apply).

use crate::DecodeError;

/// Magic of the calibration section.
pub(crate) const MAGIC: [u8; 8] = *b"STRACALB";
/// Version of the calibration section written (2: samples carry the near-scale density).
pub(crate) const VERSION: u32 = 2;
/// Plans a sample measures, in record order.
pub(crate) const PLANS: usize = 3;
pub(crate) const GRAPH: usize = 0;
pub(crate) const PARTITION: usize = 1;
pub(crate) const CODES: usize = 2;
/// `found`: an earlier level already found all `k` (this one was not run).
pub(crate) const FULL_BEFORE: u8 = 254;
/// `found`: not run (costlier than the exact plan, or the plan does not apply).
pub(crate) const NOT_RUN: u8 = 255;
/// Most levels a section may hold (efforts up to `k · 2^31`).
pub(crate) const LEVELS_MAX: usize = 32;

const HEADER: usize = 36;
/// Bytes of a sample's fixed fields (version 2; version 1 lacks `c_near`).
const SAMPLE_FIXED: usize = 32;

/// What one sample measured for one plan at every level.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Curve {
    pub found: Vec<u8>,
    pub ns: Vec<u32>,
}

impl Curve {
    pub(crate) fn not_run(levels: usize) -> Curve {
        Curve {
            found: vec![NOT_RUN; levels],
            ns: vec![0; levels],
        }
    }
}

/// One calibration query with one filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// Selectivity: matches with a vector / nodes (1 unfiltered).
    pub s: f32,
    /// Local density, fine, coarse and near scale (1 unfiltered or without partitions; near
    /// reads fine where it was not measured, as in a version-1 section).
    pub c: [f32; 3],
    /// The query's position (1 without partitions).
    pub outside: f32,
    pub matches: u32,
    pub filtered: bool,
    /// The exact plan's time per match on this sample's matches (their access pattern: a
    /// sparse filter reads scattered vectors, measured up to twice slower per match than a
    /// dense one at 768-d).
    pub exact_ns: f32,
    pub curves: [Curve; PLANS],
}

/// A segment's calibration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Calibration {
    /// The `k` samples were measured at (efforts are `k · 2^level`).
    pub k: u32,
    pub levels: usize,
    /// Time of one exact distance (vector read + distance), measured.
    pub exact_ns: f32,
    /// `c` counts the nearest lists holding at least `nodes / local_div` members (fine,
    /// coarse).
    pub local_div: [u32; 2],
    /// The samples measured the near scale (version 2).
    pub near: bool,
    pub samples: Vec<Sample>,
}

impl Calibration {
    /// The section's bytes: version 2, or version 1 for a calibration without the near scale
    /// (one read from an old segment keeps its layout).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        let version: u32 = if self.near { VERSION } else { 1 };
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&self.k.to_le_bytes());
        out.extend_from_slice(&(self.levels as u32).to_le_bytes());
        out.extend_from_slice(&(self.samples.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.exact_ns.to_le_bytes());
        for d in self.local_div {
            out.extend_from_slice(&d.to_le_bytes());
        }
        for x in &self.samples {
            out.extend_from_slice(&x.s.to_le_bytes());
            let scales = if self.near { 3 } else { 2 };
            for c in x.c.iter().take(scales) {
                out.extend_from_slice(&c.to_le_bytes());
            }
            out.extend_from_slice(&x.outside.to_le_bytes());
            out.extend_from_slice(&x.matches.to_le_bytes());
            out.extend_from_slice(&u32::from(x.filtered).to_le_bytes());
            out.extend_from_slice(&x.exact_ns.to_le_bytes());
            for curve in &x.curves {
                out.extend_from_slice(&curve.found);
                out.resize(out.len() + pad4(self.levels), 0);
                for t in &curve.ns {
                    out.extend_from_slice(&t.to_le_bytes());
                }
            }
        }
        out
    }

    /// Parse and check a calibration section. Errors are the reason, for the caller's
    /// corruption error.
    pub(crate) fn decode(b: &[u8]) -> std::result::Result<Calibration, DecodeError> {
        use strata_io::le::u32_at as le_u32;
        if b.get(..8) != Some(&MAGIC[..]) {
            return Err(DecodeError::invalid("calibration: bad magic"));
        }
        let field =
            |at: usize| le_u32(b, at).ok_or(DecodeError::invalid("calibration: header truncated"));
        let version = field(8)?;
        if version != 1 && version != VERSION {
            return Err(DecodeError::Invalid(format!(
                "calibration: unsupported version {version}"
            )));
        }
        let k = field(12)?;
        let levels = field(16)? as usize;
        let count = field(20)? as usize;
        let exact_ns = f32::from_bits(field(24)?);
        let local_div = [field(28)?, field(32)?];
        if k == 0 || k > 250 {
            return Err(DecodeError::Invalid(format!(
                "calibration: k {k} outside 1..=250"
            )));
        }
        if levels == 0 || levels > LEVELS_MAX {
            return Err(DecodeError::Invalid(format!(
                "calibration: {levels} levels outside 1..={LEVELS_MAX}"
            )));
        }
        if !exact_ns.is_finite() || exact_ns < 0.0 || local_div.contains(&0) {
            return Err(DecodeError::invalid(
                "calibration: bad exact cost or local share",
            ));
        }
        let near = version >= 2;
        let fixed = if near { SAMPLE_FIXED } else { SAMPLE_FIXED - 4 };
        let per_curve = levels + pad4(levels) + levels * 4;
        let record = fixed + PLANS * per_curve;
        if record
            .checked_mul(count)
            .and_then(|l| l.checked_add(HEADER))
            != Some(b.len())
        {
            return Err(DecodeError::Invalid(format!(
                "calibration: {} bytes do not hold {count} samples of {levels} levels",
                b.len()
            )));
        }
        let mut samples = Vec::with_capacity(count);
        for i in 0..count {
            let at = HEADER + i * record;
            let s = f32::from_bits(field(at)?);
            // Version 2 inserts c_near after c_coarse; the fields after it move by 4.
            let shift = if near { 4 } else { 0 };
            // Version 1: the near scale reads the fine one, as for a query the planner does
            // not measure it on (`DiskIndex::query_features`).
            let fine = f32::from_bits(field(at + 4)?);
            let c = [
                fine,
                f32::from_bits(field(at + 8)?),
                if near {
                    f32::from_bits(field(at + 12)?)
                } else {
                    fine
                },
            ];
            let outside = f32::from_bits(field(at + 12 + shift)?);
            let matches = field(at + 16 + shift)?;
            let flags = field(at + 20 + shift)?;
            let exact_ns = f32::from_bits(field(at + 24 + shift)?);
            if !(s > 0.0 && s <= 1.0)
                || c.iter().any(|c| !(c.is_finite() && *c >= 0.0))
                || !(outside.is_finite() && outside >= 0.0)
                || flags > 1
                || !(exact_ns.is_finite() && exact_ns >= 0.0)
            {
                return Err(DecodeError::Invalid(format!(
                    "calibration: sample {i} has bad features"
                )));
            }
            let mut curves: [Curve; PLANS] = std::array::from_fn(|_| Curve::not_run(levels));
            for (p, curve) in curves.iter_mut().enumerate() {
                let cat = at + fixed + p * per_curve;
                let found = b
                    .get(cat..cat + levels)
                    .ok_or(DecodeError::invalid("calibration: truncated"))?;
                if found
                    .iter()
                    .any(|&f| u32::from(f) > k && f != FULL_BEFORE && f != NOT_RUN)
                {
                    return Err(DecodeError::Invalid(format!(
                        "calibration: sample {i} finds more than k"
                    )));
                }
                curve.found = found.to_vec();
                let nat = cat + levels + pad4(levels);
                curve.ns = (0..levels)
                    .map(|j| field(nat + j * 4))
                    .collect::<std::result::Result<_, _>>()?;
            }
            samples.push(Sample {
                s,
                c,
                matches,
                outside,
                filtered: flags == 1,
                exact_ns,
                curves,
            });
        }
        Ok(Calibration {
            k,
            levels,
            exact_ns,
            local_div,
            near,
            samples,
        })
    }
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// A filtered sample that found `found[l]` of `k` at level `l` by graph and by codes (not
/// run by partition), at 1 µs · 2^l (tests of the section and of the chooser).
#[cfg(test)]
pub(crate) fn sample(s: f32, found: &[u8]) -> Sample {
    let levels = found.len();
    let curve = Curve {
        found: found.to_vec(),
        ns: (0..levels as u32).map(|l| 1000 << l).collect(),
    };
    Sample {
        s,
        c: [1.0; 3],
        outside: 1.0,
        matches: 100,
        filtered: true,
        exact_ns: 300.0,
        curves: [curve.clone(), Curve::not_run(levels), curve],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_round_trips_and_damage_is_an_error() {
        let cal = Calibration {
            k: 10,
            levels: 3,
            exact_ns: 12.5,
            local_div: [256, 32],
            near: true,
            samples: vec![sample(0.5, &[7, 10, FULL_BEFORE]), sample(0.01, &[2, 5, 9])],
        };
        let b = cal.encode();
        assert_eq!(Calibration::decode(&b), Ok(cal.clone()));
        // Without the near scale (version 1) a sample's near density reads its fine one.
        let mut v1 = cal.clone();
        v1.near = false;
        v1.samples[0].c = [0.3, 0.8, 0.3];
        let back = Calibration::decode(&v1.encode()).unwrap();
        assert_eq!(back.samples[0].c, [0.3, 0.8, 0.3]);
        assert_eq!((back.near, v1.encode().len() + 4 * 2), (false, b.len()));
        for cut in [0, 7, 31, b.len() - 1] {
            assert!(
                Calibration::decode(b.get(..cut).unwrap()).is_err(),
                "cut {cut}"
            );
        }
        let mut bad = b.clone();
        bad[HEADER + SAMPLE_FIXED] = 11; // more than k found
        assert!(Calibration::decode(&bad).is_err());
        let mut bad = b.clone();
        bad[HEADER..HEADER + 4].copy_from_slice(&2.0f32.to_le_bytes()); // s > 1
        assert!(Calibration::decode(&bad).is_err());
        let mut bad = b;
        bad[16] = 40; // levels
        assert!(Calibration::decode(&bad).is_err());
    }

    #[test]
    fn the_spec_describes_the_layout_written() {
        let spec = include_str!("../../../docs/format.md");
        let at = spec.find("### Calibration (section kind 9)").unwrap();
        let section = spec.get(at..).unwrap();
        assert!(section.contains(&format!("| 8 | 4 | version `{VERSION}`")));
        assert!(section.contains(&format!(
            "`{HEADER} + S · ({SAMPLE_FIXED} + 3 · (L + pad + 4L))`"
        )));
        let cal = Calibration {
            k: 10,
            levels: 3,
            exact_ns: 1.0,
            local_div: [256, 32],
            near: true,
            samples: vec![sample(0.5, &[1, 2, 3])],
        };
        assert_eq!(cal.encode().len(), HEADER + SAMPLE_FIXED + 3 * (3 + 1 + 12));
    }

    #[test]
    fn the_committed_fixtures_decode() {
        // `docs/format.md`, "Calibration": the fuzz seeds after their decoder-picking byte.
        // Version 1 (no near scale) is still read: its samples' c_near reads 1.
        let v1 = include_bytes!("../../../fuzz/corpus/small_decoders/calibration-v1");
        let v2 = include_bytes!("../../../fuzz/corpus/small_decoders/calibration-v2");
        for (seed, near) in [(&v1[..], false), (&v2[..], true)] {
            let cal = Calibration::decode(&seed[1..]).unwrap();
            assert_eq!((cal.k, cal.levels, cal.local_div), (10, 2, [256, 32]));
            assert_eq!(cal.near, near);
            assert_eq!(cal.samples.len(), 1);
            let x = &cal.samples[0];
            let c_near = if near { 0.25 } else { 1.0 };
            assert_eq!(
                (x.s, x.c, x.outside, x.matches),
                (0.5, [1.0, 1.0, c_near], 1.2, 100)
            );
            assert!(x.filtered);
            assert_eq!(x.curves[GRAPH].found, vec![7, 10]);
            assert_eq!(x.curves[PARTITION].found, vec![NOT_RUN, NOT_RUN]);
            assert_eq!(x.curves[CODES].found, vec![3, FULL_BEFORE]);
            assert_eq!(x.curves[CODES].ns, vec![1000, 2000]);
            // Re-encoded, each keeps its version's layout.
            assert_eq!(cal.encode(), seed[1..].to_vec());
        }
    }
}
