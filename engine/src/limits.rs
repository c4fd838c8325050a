//! Bounds on every input; exceeding one is `Error::InvalidInput` and writes nothing.
//! Documented in the crate docs and `docs/architecture.md`.

/// Longest key.
pub const KEY_BYTES_MAX: usize = 4096;
/// Longest value.
pub const VALUE_BYTES_MAX: usize = 4 << 20;
/// Longest term.
pub const TERM_BYTES_MAX: usize = 256;
/// Most terms on one document.
pub const TERMS_PER_DOC_MAX: usize = 1024;
/// Largest vector dimension.
pub const DIM_MAX: u32 = 4096;
/// Most declared attributes.
pub const ATTRS_MAX: usize = 64;
/// Longest attribute name.
pub const ATTR_NAME_BYTES_MAX: usize = 64;
/// Most operations in one write batch.
pub const BATCH_OPS_MAX: usize = 100_000;
/// Largest encoded batch (it is one WAL record).
pub const BATCH_BYTES_MAX: usize = 8 << 20;
/// Deepest filter nesting.
pub const FILTER_DEPTH_MAX: usize = 64;
/// Longest filter text.
pub const FILTER_BYTES_MAX: usize = 64 * 1024;
/// Largest `k` of a query (results returned). Buffers grow with the results found, not
/// with `k`, so a large `k` costs only what it returns.
pub const K_MAX: usize = 1_000_000;
/// Largest graph candidate list (`SearchParams::list`).
pub const SEARCH_LIST_MAX: usize = 1_000_000;
/// Largest Euclidean norm of a vector (stored or queried): distances between two such vectors
/// stay finite in `f32` (‖a − b‖² ≤ (2 · 10¹⁸)² = 4 · 10³⁶ < 3.4 · 10³⁸).
pub const VECTOR_NORM_MAX: f64 = 1e18;

/// Check a vector's components are finite and its norm within [`VECTOR_NORM_MAX`].
pub(crate) fn check_vector(what: &str, v: &[f32]) -> crate::Result<()> {
    // One pass over eight independent lanes (a single f64 running sum is a chain of dependent
    // adds — ~1 µs per 768-d vector on every write); positions are looked up only on error.
    let mut finite = true;
    let mut lanes = [0f64; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (acc, &x) in lanes.iter_mut().zip(c) {
            finite &= x.is_finite();
            *acc += f64::from(x) * f64::from(x);
        }
    }
    for &x in chunks.remainder() {
        finite &= x.is_finite();
        lanes[0] += f64::from(x) * f64::from(x);
    }
    if !finite {
        let i = v.iter().position(|x| !x.is_finite()).unwrap_or(0);
        return Err(crate::Error::invalid(format!(
            "{what} component {i} is not finite"
        )));
    }
    let norm2: f64 = lanes.iter().sum();
    if norm2 > VECTOR_NORM_MAX * VECTOR_NORM_MAX {
        return Err(crate::Error::invalid(format!(
            "{what} has norm {:.3e}, above the bound {VECTOR_NORM_MAX:.0e} (distances would overflow)",
            norm2.sqrt()
        )));
    }
    Ok(())
}

/// Most bytes of user input an error message quotes.
pub const QUOTE_BYTES_MAX: usize = 200;

/// `s` quoted for an error message: whole when short, else its first
/// [`QUOTE_BYTES_MAX`] bytes (on a character boundary) and its length.
pub fn quote(s: &str) -> String {
    if s.len() <= QUOTE_BYTES_MAX {
        return format!("{s:?}");
    }
    let mut end = QUOTE_BYTES_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{:?}… ({} bytes)",
        s.get(..end).unwrap_or_default(),
        s.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_checks_name_the_component_and_bound_the_norm() {
        for len in [1, 7, 8, 13, 768] {
            let ok = vec![0.5f32; len];
            assert!(check_vector("v", &ok).is_ok(), "{len}");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut v = ok.clone();
                v[len - 1] = bad;
                let e = check_vector("v", &v).unwrap_err().to_string();
                assert!(e.contains(&format!("component {} ", len - 1)), "{e}");
            }
        }
        // The norm bound holds whichever lane the large components land in.
        let big = (VECTOR_NORM_MAX * 0.6) as f32; // four of them: norm 1.2x the bound
        let v = [big, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, big, big, big];
        assert!(check_vector("v", &v).is_err());
        assert!(check_vector("v", &v[..1]).is_ok());
    }
}
