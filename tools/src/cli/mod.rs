//! The database commands of the `strata` command-line contract (README, issue "Offline index
//! builder and the `strata` command-line tool").

pub mod build;
pub mod docs;
pub mod ops;
