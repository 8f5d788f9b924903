//! Where the time goes: every process's Prometheus histograms (the
//! per-hop `rpc_server_duration` and `rpc_client_duration`, the gateway's
//! delivery durations) scraped before and after the run, and the
//! difference summarised per hop.

use std::collections::BTreeMap;

/// One histogram series: bucket upper bounds (seconds) → cumulative
/// count, plus sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

/// Histogram series of one scrape, by `metric{labels without le}`.
pub type Scrape = BTreeMap<String, Series>;

/// One hop's figures over the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hop {
    /// The process.
    pub process: String,
    /// The histogram and its labels.
    pub series: String,
    /// Observations during the run.
    pub count: u64,
    /// Mean, milliseconds.
    pub mean_ms: f64,
    /// Median and 99th percentile, milliseconds (bucket upper bounds).
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
}

/// Parses the histograms out of a Prometheus text exposition.
pub fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match name_labels.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        let mut le = None;
        let kept: Vec<&str> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .filter(|l| match l.strip_prefix("le=") {
                Some(bound) => {
                    le = Some(bound.trim_matches('"').to_owned());
                    false
                }
                None => !l.starts_with("otel_scope") && !l.starts_with("service_"),
            })
            .collect();
        let key = |base: &str| format!("{base}{{{}}}", kept.join(","));
        if let Some(base) = name.strip_suffix("_bucket") {
            let bound = match le.as_deref() {
                Some("+Inf") | None => f64::INFINITY,
                Some(bound) => bound.parse().unwrap_or(f64::INFINITY),
            };
            scrape
                .entry(key(base))
                .or_default()
                .buckets
                .push((bound, value));
        } else if let Some(base) = name.strip_suffix("_sum") {
            scrape.entry(key(base)).or_default().sum = value;
        } else if let Some(base) = name.strip_suffix("_count") {
            scrape.entry(key(base)).or_default().count = value;
        }
    }
    scrape.retain(|_, s| !s.buckets.is_empty());
    scrape
}

/// The hops of `process` with observations between `before` and `after`.
pub fn diff(process: &str, before: &Scrape, after: &Scrape) -> Vec<Hop> {
    let empty = Series::default();
    after
        .iter()
        .filter_map(|(key, now)| {
            let then = before.get(key).unwrap_or(&empty);
            let count = now.count - then.count;
            if count < 1.0 {
                return None;
            }
            let buckets: Vec<(f64, f64)> = now
                .buckets
                .iter()
                .map(|(bound, n)| {
                    let earlier = then
                        .buckets
                        .iter()
                        .find(|(b, _)| b == bound)
                        .map_or(0.0, |(_, c)| *c);
                    (*bound, n - earlier)
                })
                .collect();
            let quantile = |q: f64| {
                let target = count * q;
                buckets
                    .iter()
                    .find(|(_, cumulative)| *cumulative >= target)
                    .map_or(f64::INFINITY, |(bound, _)| *bound)
                    * 1000.0
            };
            Some(Hop {
                process: process.to_owned(),
                series: key.clone(),
                count: count as u64,
                mean_ms: (now.sum - then.sum) / count * 1000.0,
                p50_ms: quantile(0.5),
                p99_ms: quantile(0.99),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP rpc_server_duration_seconds x
# TYPE rpc_server_duration_seconds histogram
rpc_server_duration_seconds_bucket{rpc_method="Convert",rpc_service="t",otel_scope_name="p",le="0.005"} 1
rpc_server_duration_seconds_bucket{rpc_method="Convert",rpc_service="t",otel_scope_name="p",le="0.01"} 2
rpc_server_duration_seconds_bucket{rpc_method="Convert",rpc_service="t",otel_scope_name="p",le="+Inf"} 2
rpc_server_duration_seconds_sum{rpc_method="Convert",rpc_service="t",otel_scope_name="p"} 0.012
rpc_server_duration_seconds_count{rpc_method="Convert",rpc_service="t",otel_scope_name="p"} 2
parley_gateway_events_total{source="sqs"} 4
"#;

    const AFTER: &str = r#"rpc_server_duration_seconds_bucket{rpc_method="Convert",rpc_service="t",otel_scope_name="p",le="0.005"} 1
rpc_server_duration_seconds_bucket{rpc_method="Convert",rpc_service="t",otel_scope_name="p",le="0.01"} 52
rpc_server_duration_seconds_bucket{rpc_method="Convert",rpc_service="t",otel_scope_name="p",le="+Inf"} 102
rpc_server_duration_seconds_sum{rpc_method="Convert",rpc_service="t",otel_scope_name="p"} 2.012
rpc_server_duration_seconds_count{rpc_method="Convert",rpc_service="t",otel_scope_name="p"} 102
"#;

    #[test]
    fn the_run_is_the_difference_of_two_scrapes() {
        let hops = diff("parley-transcoder", &parse(BEFORE), &parse(AFTER));
        assert_eq!(hops.len(), 1);
        let hop = &hops[0];
        assert_eq!(
            hop.series,
            r#"rpc_server_duration_seconds{rpc_method="Convert",rpc_service="t"}"#
        );
        assert_eq!(hop.count, 100);
        assert!((hop.mean_ms - 20.0).abs() < 1e-9);
        assert_eq!(hop.p50_ms, 10.0);
        assert!(hop.p99_ms.is_infinite());
    }

    #[test]
    fn idle_series_and_counters_are_left_out() {
        assert!(diff("p", &parse(BEFORE), &parse(BEFORE)).is_empty());
        assert!(!parse(BEFORE).keys().any(|k| k.contains("events_total")));
    }
}
