//! Argument types shared by the commands and the benchmarks (so that neither depends on the
//! other).

use clap::ValueEnum;

/// `--plan`: force a plan on every indexed segment, or let the planner choose.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlanArg {
    /// The cost model chooses (default).
    Auto,
    /// Graph search (filtered when there is a filter).
    Graph,
    /// Score the filter's matches, by code from 500 on, and re-rank.
    FilterFirst,
    /// Walk the coarse partitions nearest the query.
    Partition,
}

impl PlanArg {
    pub fn hint(self) -> strata::PlanHint {
        match self {
            PlanArg::Auto => strata::PlanHint::Auto,
            PlanArg::Graph => strata::PlanHint::Graph,
            PlanArg::FilterFirst => strata::PlanHint::FilterFirst,
            PlanArg::Partition => strata::PlanHint::Partition,
        }
    }
}
