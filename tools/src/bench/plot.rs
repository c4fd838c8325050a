//! `strata bench plot`: PNG plots of a benchmark's `--json` output, for `docs/benchmarks.md`.
//!
//! - a `wal` report → acknowledged records/s by writer threads, one line per system;
//! - a `store` report → documents/s by writer threads, one line per system and sync mode;
//! - a `knn` report → recall@k (x) vs QPS (y, log), one line per system and mode;
//! - a `filtered` report → selectivity (x, log) vs QPS (y, log): Strata's QPS on every filter,
//!   and per peer its best QPS at recall ≥ 0.95 on the same filter (absent where it never
//!   gets there), one marker series per system.
//!
//! Labels need a TrueType font; plotters' `ab_glyph` backend takes one from the file system
//! (`STRATA_FONT`, or DejaVu/Liberation at their usual Debian/Fedora/Arch paths), so the build
//! needs no system font library.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use serde_json::Value;

use crate::CliResult;

pub use super::PlotArgs;

const FONT_PATHS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
];

/// Register a sans-serif font once per process.
fn font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("STRATA_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .collect();
        let (path, bytes) = candidates
            .iter()
            .find_map(|p| std::fs::read(p).ok().map(|b| (p.clone(), b)))
            .ok_or_else(|| {
                "no TrueType font found for plot labels: install fonts-dejavu-core or set \
                 STRATA_FONT=/path/to/font.ttf"
                    .to_string()
            })?;
        // plotters keeps registered fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{}: not a usable TrueType font", path.display()))
    })
    .clone()
}

/// A named series of (x, y) points.
type Series = BTreeMap<String, Vec<(f64, f64)>>;

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn text(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// knn: recall → `y` (`qps`, or `disk_kib_per_query` of the cold points that measured it)
/// per "system mode".
fn knn_series(r: &Value, y: &str) -> Series {
    let mut s = Series::new();
    for p in r
        .get("points")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| y == "qps" || num(p, y) > 0.0)
    {
        let name = format!("{} ({})", text(p, "system"), text(p, "mode"));
        s.entry(name)
            .or_default()
            .push((num(p, "recall"), num(p, y)));
    }
    for pts in s.values_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    s
}

/// filtered: selectivity → QPS, Strata and each peer's best at recall ≥ 0.95.
fn filtered_series(r: &Value) -> Series {
    let mut s = Series::new();
    let buckets: Vec<&Value> = r
        .get("buckets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let peers: Vec<&Value> = r
        .get("peers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    for b in buckets {
        let sel = num(b, "selectivity").max(1e-6);
        s.entry("strata".into())
            .or_default()
            .push((sel, num(b, "qps")));
        let tag = text(b, "tag");
        let mut best: BTreeMap<String, f64> = BTreeMap::new();
        for p in peers
            .iter()
            .filter(|p| text(p, "tag") == tag && num(p, "recall") >= 0.95)
        {
            let e = best.entry(text(p, "system")).or_insert(0.0);
            *e = e.max(num(p, "qps"));
        }
        for (sys, qps) in best {
            s.entry(sys).or_default().push((sel, qps));
        }
    }
    for pts in s.values_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    s
}

/// Throughput by thread count, one line per `name(point)`, from `r[key]`'s points.
fn threads_series(r: &Value, key: &str, y: &str, name: &dyn Fn(&Value) -> String) -> Series {
    let mut s = Series::new();
    for p in r.get(key).and_then(Value::as_array).into_iter().flatten() {
        let x = num(p, "threads").max(1.0);
        s.entry(name(p)).or_default().push((x, num(p, y)));
    }
    for pts in s.values_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    s
}

/// Axes of a plot.
struct Axes<'a> {
    x: &'a str,
    y: &'a str,
    log_x: bool,
    lines: bool,
    /// x labels as whole numbers (thread counts), fewer of them.
    int_x: bool,
}

/// Draw `series` to `out`: log-scale y; log-scale x when `log_x`.
fn draw(out: &Path, title: &str, axes: &Axes<'_>, series: &Series) -> CliResult {
    let (x_desc, log_x, lines) = (axes.x, axes.log_x, axes.lines);
    font()?;
    let all: Vec<(f64, f64)> = series.values().flatten().copied().collect();
    if all.is_empty() {
        return Err("the report holds no points to plot".into());
    }
    let (mut x0, mut x1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (y0, y1) = ((y0 * 0.7).max(1e-3), y1 * 1.5);
    if log_x {
        x0 = (x0 * 0.5).max(1e-7);
        x1 *= 2.0;
    } else if x1 > 1.0 {
        x0 = 0.0;
        x1 *= 1.1;
    } else {
        x0 = (x0 - 0.02).max(0.0);
        x1 = (x1 + 0.01).min(1.0);
    }
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::new(out, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let palette = |i: usize| Palette99::pick(i).to_rgba();
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(axes.y)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .x_labels(if axes.int_x { 6 } else { 10 })
                .x_label_formatter(&|v| {
                    if axes.int_x {
                        format!("{v:.0}")
                    } else if v.abs() >= 0.01 {
                        // Two decimals: a tick at 0.65 printed as 0.6500000000000001.
                        format!("{v:.2}")
                    } else {
                        format!("{v:.0e}")
                    }
                })
                .label_style(("sans-serif", 15))
                .draw()
                .map_err(|x| e(&x))?;
            for (i, (name, pts)) in series.iter().enumerate() {
                let c = palette(i);
                if lines {
                    chart
                        .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                        .map_err(|x| e(&x))?;
                }
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                    .map_err(|x| e(&x))?
                    .label(name.as_str())
                    .legend(move |(x, y)| Circle::new((x + 8, y), 5, c.filled()));
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|x| e(&x))?;
        }};
    }
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80);
    if log_x {
        body!(builder
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(|x| e(&x))?);
    } else {
        body!(builder
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(|x| e(&x))?);
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

pub fn run(a: &PlotArgs) -> CliResult {
    let r: Value = serde_json::from_slice(&std::fs::read(&a.input)?)
        .map_err(|e| format!("{}: {e}", a.input.display()))?;
    let workload = r.get("workload").and_then(Value::as_str).unwrap_or("");
    let log_threads = Axes {
        x: "writer threads",
        y: "",
        log_x: true,
        lines: true,
        int_x: true,
    };
    if workload == "wal" {
        let title = a.title.clone().unwrap_or_else(|| {
            "WAL group commit, Sync::Always: records/s by writer threads".into()
        });
        let series = threads_series(&r, "points", "records_per_s", &|p| text(p, "system"));
        let axes = Axes {
            y: "acknowledged records per second",
            ..log_threads
        };
        draw(&a.out, &title, &axes, &series)?;
    } else if workload == "store" {
        let title = a
            .title
            .clone()
            .unwrap_or_else(|| "document ingest: docs/s by writer threads".into());
        let series = threads_series(&r, "ingest", "docs_per_s", &|p| {
            format!("{} {}", text(p, "system"), text(p, "sync"))
        });
        let axes = Axes {
            y: "acknowledged documents per second",
            ..log_threads
        };
        draw(&a.out, &title, &axes, &series)?;
    } else if r.get("points").is_some() {
        let (what, key, y) = match a.y.as_str() {
            "qps" => ("QPS", "qps", "queries per second (1 thread)"),
            "disk" => (
                "disk reads (cold)",
                "disk_kib_per_query",
                "KiB read from the block device per query",
            ),
            other => return Err(format!("--y {other}: expected qps or disk").into()),
        };
        let title = a.title.clone().unwrap_or_else(|| {
            format!(
                "k-NN recall vs {what}: {} ({} × {})",
                text(&r, "dataset"),
                num(&r, "n"),
                num(&r, "dim")
            )
        });
        let axes = Axes {
            x: "recall@10",
            y,
            log_x: false,
            lines: true,
            int_x: false,
        };
        draw(&a.out, &title, &axes, &knn_series(&r, key))?;
    } else if r.get("buckets").is_some() {
        let title = a.title.clone().unwrap_or_else(|| {
            format!(
                "filtered k-NN, QPS at recall >= 0.95: {}",
                r.get("title")
                    .and_then(Value::as_str)
                    .unwrap_or("real data")
            )
        });
        let axes = Axes {
            x: "filter selectivity (fraction of the base set)",
            y: "queries per second (1 thread)",
            log_x: true,
            lines: false,
            int_x: false,
        };
        draw(&a.out, &title, &axes, &filtered_series(&r))?;
    } else {
        return Err(format!(
            "{}: not a wal, store, knn or filtered report (compaction reports are tables)",
            a.input.display()
        )
        .into());
    }
    println!("wrote {}", a.out.display());
    Ok(())
}
