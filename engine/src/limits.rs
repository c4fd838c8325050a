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
