//! The run's figures: latency percentiles (HDR histograms), throughput,
//! problems, CPU and memory per process, per-hop timings and the
//! baseline — printed as Markdown tables, written as JSON and as one
//! self-contained HTML page with SVG plots (no scripts, opens offline).

use std::{collections::BTreeMap, fmt::Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{
    baseline::Comparison,
    hops::Hop,
    ledger::{Arrival, Piece, Problems},
};

/// Latency percentiles of one kind of arrival, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Arrivals measured.
    pub count: u64,
    /// Percentiles.
    pub p50: f64,
    /// See `p50`.
    pub p90: f64,
    /// See `p50`.
    pub p99: f64,
    /// See `p50`.
    pub p999: f64,
    /// The slowest.
    pub max: f64,
}

/// Percentiles of `latencies_us` (negative values, from clock skew on a
/// deployed run, count as zero).
pub fn percentiles(latencies_us: impl Iterator<Item = i64>) -> Option<Percentiles> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok()?;
    for latency in latencies_us {
        histogram.saturating_record(latency.max(1) as u64);
    }
    if histogram.is_empty() {
        return None;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Some(Percentiles {
        count: histogram.len(),
        p50: ms(histogram.value_at_quantile(0.5)),
        p90: ms(histogram.value_at_quantile(0.9)),
        p99: ms(histogram.value_at_quantile(0.99)),
        p999: ms(histogram.value_at_quantile(0.999)),
        max: ms(histogram.max()),
    })
}

/// One process's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFigures {
    /// Its name (`parley-transcoder-1`, `parley-loadtest (+ sandbox)`, …).
    pub name: String,
    /// CPU seconds during the load.
    pub cpu_seconds: f64,
    /// CPU seconds per wall second (1.0 = one core busy).
    pub cores: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
}

/// Figures of one ramp step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Offered rate, messages per second.
    pub offered: f64,
    /// Messages published in the step.
    pub sent: u64,
    /// Arrivals of the step's messages per second, over the time from
    /// the step's start to the last of them.
    pub arrived_per_s: f64,
    /// Latency of what was sent in the step.
    pub latency: Option<Percentiles>,
}

/// Time series for the plots, one point per second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    /// Customer messages published in each second.
    pub sent_per_s: Vec<f64>,
    /// Arrivals (any piece) in each second.
    pub arrived_per_s: Vec<f64>,
    /// Median latency of the arrivals in each second, ms.
    pub p50_ms: Vec<f64>,
    /// 99th percentile latency of the arrivals in each second, ms.
    pub p99_ms: Vec<f64>,
    /// Each process's cores busy in each second.
    pub cores: BTreeMap<String, Vec<f64>>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command line that produced it.
    pub command: String,
    /// What it ran on.
    pub machine: String,
    /// The run's tag.
    pub run: String,
    /// Seconds from the first send to the last arrival.
    pub wall_seconds: f64,
    /// Customer messages published.
    pub sent: u64,
    /// Fully arrived customer messages per second of wall time.
    pub messages_per_s: f64,
    /// Voice notes fully arrived (attachment and transcript) per second.
    pub notes_per_s: f64,
    /// Seconds of voice-note audio delivered per second.
    pub audio_seconds_per_s: f64,
    /// Latency by piece.
    pub latency: BTreeMap<Piece, Percentiles>,
    /// Everything that went wrong.
    pub problems: Problems,
    /// CPU and memory per process.
    pub processes: Vec<ProcessFigures>,
    /// Most voice notes in flight at once, and the bridge's memory growth
    /// per note in flight (MiB), when notes were sent.
    pub peak_notes_in_flight: u64,
    /// See `peak_notes_in_flight`.
    pub mib_per_note_in_flight: Option<f64>,
    /// Per-hop timings from the processes' metrics.
    pub hops: Vec<Hop>,
    /// Ramp steps (open loop with several rates).
    pub steps: Vec<Step>,
    /// The AWS sample's approach on the same notes.
    pub baseline: Option<Comparison>,
    /// Plot data.
    pub series: Series,
}

impl Report {
    /// Whether nothing was lost, doubled, crossed or changed.
    pub fn passed(&self) -> bool {
        let p = &self.problems;
        p.lost == 0 && p.doubled == 0 && p.crossed == 0 && p.wrong == 0 && p.send_failures == 0
    }

    /// Per-second series of `arrivals` (relative to `start_us`).
    pub fn series_of(arrivals: &[Arrival], sends_us: &[i64], start_us: i64) -> Series {
        let second = |at: i64| ((at - start_us).max(0) / 1_000_000) as usize;
        let seconds = arrivals
            .iter()
            .map(|a| second(a.at_us))
            .chain(sends_us.iter().map(|s| second(*s)))
            .max()
            .map_or(0, |s| s + 1);
        let mut sent = vec![0.0; seconds];
        for at in sends_us {
            sent[second(*at)] += 1.0;
        }
        let mut buckets: Vec<Vec<i64>> = vec![Vec::new(); seconds];
        for arrival in arrivals {
            buckets[second(arrival.at_us)].push(arrival.latency_us);
        }
        let mut series = Series {
            sent_per_s: sent,
            ..Series::default()
        };
        for bucket in buckets {
            series.arrived_per_s.push(bucket.len() as f64);
            let p = percentiles(bucket.into_iter());
            series.p50_ms.push(p.as_ref().map_or(0.0, |p| p.p50));
            series.p99_ms.push(p.as_ref().map_or(0.0, |p| p.p99));
        }
        series
    }

    /// Markdown tables for the terminal (and the README).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "`{}` on {}\n", self.command, self.machine);
        let _ = writeln!(
            out,
            "{} customer messages in {:.1} s: **{:.0} messages/s**, {:.2} voice notes/s, {:.1} audio-seconds/s. {}\n",
            self.sent,
            self.wall_seconds,
            self.messages_per_s,
            self.notes_per_s,
            self.audio_seconds_per_s,
            if self.passed() {
                "Nothing lost, doubled, crossed or changed."
            } else {
                "**FAILED: see problems.**"
            }
        );
        let _ = writeln!(
            out,
            "| latency (ms) | count | p50 | p90 | p99 | p99.9 | max |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for (piece, p) in &self.latency {
            let _ = writeln!(
                out,
                "| {piece:?} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                p.count, p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        let p = &self.problems;
        let _ = writeln!(
            out,
            "\nproblems: lost {}, doubled {}, reordered {}, crossed {}, changed {}, unmatched {}, send failures {}\n",
            p.lost, p.doubled, p.reordered, p.crossed, p.wrong, p.unmatched, p.send_failures
        );
        if !self.steps.is_empty() {
            let _ = writeln!(
                out,
                "| offered msg/s | sent | arrivals/s | p50 ms | p99 ms |"
            );
            let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
            for step in &self.steps {
                let (p50, p99) = step.latency.as_ref().map_or((0.0, 0.0), |l| (l.p50, l.p99));
                let _ = writeln!(
                    out,
                    "| {:.0} | {} | {:.0} | {:.1} | {:.1} |",
                    step.offered, step.sent, step.arrived_per_s, p50, p99
                );
            }
            out.push('\n');
        }
        let _ = writeln!(out, "| process | CPU s | cores | peak RSS MiB |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for process in &self.processes {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.2} | {:.0} |",
                process.name, process.cpu_seconds, process.cores, process.peak_rss_mib
            );
        }
        if let Some(mib) = self.mib_per_note_in_flight {
            let _ = writeln!(
                out,
                "\nvoice notes in flight at peak: {}; bridge memory growth per note in flight: {mib:.2} MiB",
                self.peak_notes_in_flight
            );
        }
        if !self.hops.is_empty() {
            let _ = writeln!(
                out,
                "\n| process | hop | calls | mean ms | p50 ≤ ms | p99 ≤ ms |"
            );
            let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
            for hop in &self.hops {
                let _ = writeln!(
                    out,
                    "| {} | `{}` | {} | {:.2} | {} | {} |",
                    hop.process,
                    hop.series,
                    hop.count,
                    hop.mean_ms,
                    bound(hop.p50_ms),
                    bound(hop.p99_ms)
                );
            }
        }
        if let Some(baseline) = &self.baseline {
            out.push('\n');
            out.push_str(&baseline.markdown());
        }
        out
    }

    /// The self-contained HTML page.
    pub fn html(&self) -> String {
        let seconds = self.series.arrived_per_s.len().max(1) as f64;
        let latency = chart(
            "Latency of arrivals, by second of the run",
            "ms",
            seconds,
            &[("p50", &self.series.p50_ms), ("p99", &self.series.p99_ms)],
        );
        let throughput = chart(
            "Throughput",
            "per second",
            seconds,
            &[
                ("customer messages sent", &self.series.sent_per_s),
                ("arrivals", &self.series.arrived_per_s),
            ],
        );
        let cores: Vec<(&str, &Vec<f64>)> = self
            .series
            .cores
            .iter()
            .map(|(name, values)| (name.as_str(), values))
            .collect();
        let cpu = chart("CPU by process", "cores busy", seconds, &cores);
        let tables = markdown_to_html(&self.markdown());
        format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parley load test {run}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }}
td, th {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
.pass {{ color: #176317; }} .fail {{ color: #a31515; }}
code {{ font-size: 0.85rem; }}
</style></head><body>
<h1>Parley load test <small>{run}</small></h1>
<p class="{class}"><b>{verdict}</b></p>
<div class="charts">{latency}{throughput}{cpu}</div>
{tables}
</body></html>
"#,
            run = self.run,
            class = if self.passed() { "pass" } else { "fail" },
            verdict = if self.passed() {
                "Every message arrived once, in its own chat, unchanged."
            } else {
                "Messages were lost, doubled, crossed or changed."
            },
        )
    }
}

fn bound(ms: f64) -> String {
    if ms.is_finite() {
        format!("{ms}")
    } else {
        "+Inf".into()
    }
}

/// A line chart of per-second `lines` as an inline SVG.
fn chart(title: &str, unit: &str, seconds: f64, lines: &[(&str, &Vec<f64>)]) -> String {
    use plotters::prelude::*;
    let mut svg = String::new();
    let top = lines
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (520, 300)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..seconds, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(unit)
            .draw()?;
        for (index, (name, values)) in lines.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(s, v)| (s as f64 + 0.5, *v)),
                    color.stroke_width(2),
                ))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg,
        Err(error) => format!("<p>chart {title}: {error}</p>"),
    }
}

/// The few Markdown forms [`Report::markdown`] writes (tables,
/// paragraphs, `code`, **bold**) as HTML.
fn markdown_to_html(markdown: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let inline = |s: &str| {
        let mut out = String::new();
        for (i, part) in escape(s).split('`').enumerate() {
            if i % 2 == 1 {
                let _ = write!(out, "<code>{part}</code>");
            } else {
                for (j, bold) in part.split("**").enumerate() {
                    if j % 2 == 1 {
                        let _ = write!(out, "<b>{bold}</b>");
                    } else {
                        out.push_str(bold);
                    }
                }
            }
        }
        out
    };
    let mut html = String::new();
    let mut in_table = false;
    for line in markdown.lines() {
        let line = line.trim();
        if line.starts_with('|') {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if cells
                .iter()
                .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':')))
            {
                continue;
            }
            let tag = if in_table { "td" } else { "th" };
            if !in_table {
                html.push_str("<table>");
                in_table = true;
            }
            html.push_str("<tr>");
            for cell in cells {
                let _ = write!(html, "<{tag}>{}</{tag}>", inline(cell));
            }
            html.push_str("</tr>\n");
        } else {
            if in_table {
                html.push_str("</table>\n");
                in_table = false;
            }
            if !line.is_empty() {
                let _ = writeln!(html, "<p>{}</p>", inline(line));
            }
        }
    }
    if in_table {
        html.push_str("</table>\n");
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let p = percentiles((1..=1000).map(|ms| ms * 1000)).unwrap();
        assert_eq!(p.count, 1000);
        assert!((p.p50 - 500.0).abs() < 1.0, "{}", p.p50);
        assert!((p.p99 - 990.0).abs() < 1.0, "{}", p.p99);
        assert!((p.max - 1000.0).abs() < 1.0);
        assert!(percentiles(std::iter::empty()).is_none());
    }

    #[test]
    fn the_page_is_self_contained_and_has_its_plots_and_tables() {
        let arrivals: Vec<Arrival> = (0..50)
            .map(|i| Arrival {
                piece: Piece::Text,
                at_us: i * 100_000,
                latency_us: 5_000 + i * 10,
            })
            .collect();
        let report = Report {
            command: "parley-loadtest pipeline".into(),
            machine: "test".into(),
            run: "r1".into(),
            wall_seconds: 5.0,
            sent: 50,
            messages_per_s: 10.0,
            notes_per_s: 0.0,
            audio_seconds_per_s: 0.0,
            latency: BTreeMap::from([(
                Piece::Text,
                percentiles(arrivals.iter().map(|a| a.latency_us)).unwrap(),
            )]),
            problems: Problems::default(),
            processes: vec![],
            peak_notes_in_flight: 0,
            mib_per_note_in_flight: None,
            hops: vec![],
            steps: vec![],
            baseline: None,
            series: Report::series_of(&arrivals, &[0, 1_000_000], 0),
        };
        let html = report.html();
        assert_eq!(html.matches("<svg").count(), 3, "three plots");
        assert!(html.contains("<table>") && html.contains("<td>Text</td>"));
        // Nothing fetched: no scripts, no external sources or styles (the
        // SVG namespace URI is a name, not a fetch).
        assert!(!html.contains("<script"));
        assert!(!html.contains("src=") && !html.contains("href=") && !html.contains("@import"));
        assert!(report.passed());
    }
}
