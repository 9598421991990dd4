//! bench-chart: draws lines in use over time against the limit, from a carrier record (the
//! carrier-sim's `calls.jsonl`, or the one `dial-bench utilization --record` writes in the same
//! shape), as a PNG. `scripts/bench.sh` draws `docs/bench-utilization.png` with it.
//!
//! `cargo run --release -p dialfleet-benches --features chart --bin bench-chart -- \
//!     --record calls.jsonl --limit 200 --out docs/bench-utilization.png`
//!
//! Built only with the `chart` feature, so the main build never compiles the plotting crate.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Lines in use over time against the limit.
#[derive(Debug, Parser)]
struct Args {
    /// JSON lines, each with `requested_at` and `ended_at` (RFC 3339).
    #[arg(long)]
    record: PathBuf,
    /// The concurrency limit drawn beside the lines.
    #[arg(long)]
    limit: u32,
    /// Where the PNG goes.
    #[arg(long)]
    out: PathBuf,
    /// The chart's caption.
    #[arg(long, default_value = "lines in use")]
    title: String,
    /// A TrueType font for the labels.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
}

/// One call as the record holds it (other fields ignored).
#[derive(Debug, serde::Deserialize)]
struct Call {
    requested_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
}

/// Lines in use after each change: `(seconds since the first start, lines)`, a step function.
fn in_use(calls: &[Call]) -> Vec<(f64, i64)> {
    let Some(first) = calls.iter().map(|c| c.requested_at).min() else {
        return Vec::new();
    };
    let secs = |t: DateTime<Utc>| (t - first).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let mut events: Vec<(f64, i64)> = Vec::with_capacity(calls.len() * 2);
    for c in calls {
        events.push((secs(c.requested_at), 1));
        if let Some(end) = c.ended_at {
            events.push((secs(end), -1));
        }
    }
    // Ends before starts at the same instant: a line freed and taken again is not two lines.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut lines = 0;
    let mut steps = Vec::with_capacity(events.len() * 2);
    for (t, delta) in events {
        steps.push((t, lines));
        lines += delta;
        steps.push((t, lines));
    }
    steps
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.record)
        .with_context(|| format!("reading {}", args.record.display()))?;
    let calls: Vec<Call> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a record line without requested_at / ended_at")?;
    let steps = in_use(&calls);
    let end = steps.last().map_or(1.0, |s| s.0).max(1.0);
    let font: &'static [u8] = Box::leak(
        std::fs::read(&args.font)
            .with_context(|| format!("reading the font {}", args.font.display()))?
            .into_boxed_slice(),
    );
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("{} is not a usable font", args.font.display()))?;

    let root = BitMapBackend::new(&args.out, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = f64::from(args.limit) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(&args.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..end, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first call")
        .y_desc("calls in flight")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, f64::from(args.limit)), (end, f64::from(args.limit))],
            RED.stroke_width(2),
        ))?
        .label(format!("limit ({})", args.limit))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            steps.iter().map(|&(t, n)| (t, n as f64)),
            BLUE.stroke_width(1),
        ))?
        .label("lines in use (carrier record)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(1)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    println!(
        "chart: {} calls, {:.1} s, written to {}",
        calls.len(),
        end,
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_freed_and_taken_at_once_is_one_line() {
        let t = |ms: i64| DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::milliseconds(ms);
        let calls = [
            Call {
                requested_at: t(0),
                ended_at: Some(t(100)),
            },
            Call {
                requested_at: t(100),
                ended_at: Some(t(200)),
            },
        ];
        let peak = in_use(&calls).iter().map(|s| s.1).max();
        assert_eq!(peak, Some(1));
    }
}
