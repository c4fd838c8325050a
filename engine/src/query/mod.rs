//! The read path's home for k-NN on indexed segments: the executors (one per plan, effort as
//! a knob: `exec`), the uncalibrated cost model (`plan`), each segment's calibration and the
//! planner that reads it (`calibrated`), and the measurement that writes it (`calibrate`).
//! `ann/` keeps the mechanisms (graph, codes, partitions); `version.rs` runs a query over a
//! snapshot's memtable and segments and asks this module what to do on each segment.

pub(crate) mod calibrate;
pub(crate) mod calibrated;
pub(crate) mod exec;
pub(crate) mod plan;
