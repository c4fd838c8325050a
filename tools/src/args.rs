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

/// Parse `pq`, `pq:M`, `auto` or `sq8`.
pub fn parse_codes(s: &str) -> Result<strata::CodeKind, String> {
    match s.trim() {
        "pq" => Ok(strata::CodeKind::Pq(0)),
        "auto" => Ok(strata::CodeKind::Auto),
        "sq8" => Ok(strata::CodeKind::Sq8),
        t => match t.strip_prefix("pq:").map(str::parse::<u32>) {
            Some(Ok(m)) if m > 0 => Ok(strata::CodeKind::Pq(m)),
            _ => Err(format!(
                "{s:?}: expected pq, pq:M (M ≥ 1 sub-spaces), auto or sq8"
            )),
        },
    }
}
