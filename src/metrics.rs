//! Runtime metrics: event counters, HDR latency histograms per stage, the batch-size histogram,
//! and their Prometheus text rendering.
//!
//! Each runtime thread records into its own histograms, locked once per batch (never per event)
//! and only contended when a snapshot is taken. Counters are relaxed atomics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;

/// Latency histograms cover 1 ns to 1 hour at 3 significant digits; longer values saturate.
const MAX_NS: u64 = 3_600_000_000_000;

/// The latency stages an event passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Acceptance until the batcher takes the event off the queue.
    Queue,
    /// Taken off the queue until its batch is handed to a scoring worker.
    Batching,
    /// The stages between flush and backend, per batch: the feature stage for rows,
    /// preprocessing and motion gating for frames (one sample per batch; none without a stage).
    Prepare,
    /// Backend time per batch (one sample per batch).
    Scoring,
    /// Acceptance until the answer is written.
    EndToEnd,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 5] =
        [Stage::Queue, Stage::Batching, Stage::Prepare, Stage::Scoring, Stage::EndToEnd];

    /// Label used in the Prometheus rendering.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Queue => "queue",
            Stage::Batching => "batching",
            Stage::Prepare => "prepare",
            Stage::Scoring => "scoring",
            Stage::EndToEnd => "end_to_end",
        }
    }
}

/// Where the runtime's own threads spend their busy time (waiting excluded), summed over all
/// events: divided by the events answered it is the runtime's cost per event, stage by stage
/// (`streamscore bench --mode stream` prints it). Measured once per drain round or batch,
/// never per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Taking events off the queue and admitting them to the batch (deadline checks, expiry).
    Intake,
    /// Laying a flushed batch out for the backend (rows: their columns, or their rows
    /// concatenated when the backend reads rows).
    Layout,
    /// The flow's stage between batch and backend: the feature stage for rows; preprocessing
    /// and motion gating for frames.
    Prepare,
    /// The backend scoring batches.
    Backend,
    /// Writing the answers: reply slots, per-event timing and metrics.
    Reply,
}

impl Busy {
    /// Every kind, in pipeline order.
    pub const ALL: [Busy; 5] =
        [Busy::Intake, Busy::Layout, Busy::Prepare, Busy::Backend, Busy::Reply];

    /// Label used in the Prometheus rendering and the bench's output.
    pub fn label(self) -> &'static str {
        match self {
            Busy::Intake => "intake",
            Busy::Layout => "layout",
            Busy::Prepare => "prepare",
            Busy::Backend => "backend",
            Busy::Reply => "reply",
        }
    }
}

/// An empty latency histogram in nanoseconds with the runtime's bounds (1 ns to 1 hour, 3
/// significant digits), for callers that measure alongside the runtime (`streamscore bench`).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid static bounds")
}

pub(crate) struct Recorder {
    hists: [Histogram<u64>; 5],
    batch_rows: Histogram<u64>,
}

impl Recorder {
    fn new() -> Self {
        let h = latency_histogram;
        Recorder {
            hists: [h(), h(), h(), h(), h()],
            batch_rows: Histogram::new_with_bounds(1, 1 << 24, 3).expect("valid static bounds"),
        }
    }

    pub(crate) fn record(&mut self, stage: Stage, d: Duration) {
        let ns = (d.as_nanos() as u64).clamp(1, MAX_NS);
        self.hists[stage as usize].saturating_record(ns);
    }

    pub(crate) fn record_batch(&mut self, rows: usize) {
        self.batch_rows.saturating_record(rows.max(1) as u64);
    }
}

/// Event counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub accepted: CachePadded<AtomicU64>,
    pub rejected: CachePadded<AtomicU64>,
    pub scored: AtomicU64,
    pub expired: AtomicU64,
    pub shed: AtomicU64,
    pub errors: AtomicU64,
    pub batches: AtomicU64,
    /// Busy nanoseconds, indexed by `Busy as usize`.
    pub busy: [AtomicU64; 5],
    /// Changes of the live model version (swaps and rollbacks).
    pub swaps: AtomicU64,
    /// Model versions that failed to load, validate or warm up, or were refused.
    pub swap_failures: AtomicU64,
}

impl Counters {
    /// Adds `d` to the busy time of `kind`.
    pub(crate) fn busy(&self, kind: Busy, d: Duration) {
        self.busy[kind as usize].fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Shared by the runtime's threads.
pub(crate) struct Metrics {
    pub counters: Counters,
    recorders: Vec<Mutex<Recorder>>,
}

impl Metrics {
    /// Metrics with one recorder per recording thread.
    pub(crate) fn new(recorders: usize) -> Self {
        Metrics {
            counters: Counters::default(),
            recorders: (0..recorders).map(|_| Mutex::new(Recorder::new())).collect(),
        }
    }

    /// Runs `f` on recorder `i` (one lock per call: call once per batch).
    pub(crate) fn with<R>(&self, i: usize, f: impl FnOnce(&mut Recorder) -> R) -> R {
        let mut r = self.recorders[i].lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut r)
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let mut all = Recorder::new();
        for r in &self.recorders {
            let r = r.lock().unwrap_or_else(PoisonError::into_inner);
            for (into, from) in all.hists.iter_mut().zip(&r.hists) {
                // Same bounds everywhere, so `add` cannot fail.
                let _ = into.add(from);
            }
            let _ = all.batch_rows.add(&r.batch_rows);
        }
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let summary = Summary::of;
        MetricsSnapshot {
            accepted: get(&c.accepted),
            rejected: get(&c.rejected),
            scored: get(&c.scored),
            expired: get(&c.expired),
            shed: get(&c.shed),
            errors: get(&c.errors),
            batches: get(&c.batches),
            busy_ns: c.busy.each_ref().map(get),
            stages: Stage::ALL.map(|s| summary(&all.hists[s as usize])),
            batch_rows: summary(&all.batch_rows),
            swaps: get(&c.swaps),
            swap_failures: get(&c.swap_failures),
            model_version: 0,
            kept_versions: Vec::new(),
            shadow: None,
            variants: Vec::new(),
            audit: None,
            drift: None,
            feedback: None,
            features: None,
            gates: Vec::new(),
        }
    }
}

/// Count and quantiles of one histogram (nanoseconds for latencies, rows for batch sizes).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Samples recorded.
    pub count: u64,
    /// Sum of all samples (from the histogram: exact to 3 significant digits).
    pub sum: f64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl Summary {
    /// Count, sum and quantiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        Summary {
            count: h.len(),
            sum: h.mean() * h.len() as f64,
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Comparison of one window (or of everything so far).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShadowWindow {
    /// Events compared.
    pub rows: u64,
    /// Absolute differences |primary - shadow| (the largest over a row's values): p50, p99,
    /// max.
    pub abs_diff: [f64; 3],
    /// Relative differences |primary - shadow| / |primary| (absolute where primary is 0).
    pub rel_diff: [f64; 3],
    /// Events whose decision differs (see [`ShadowConfig::with_threshold`](crate::ShadowConfig::with_threshold)).
    pub flips: u64,
    /// Spearman's rank correlation of the primary's and the shadow's first output over the
    /// window's events (a uniform sample of 65,536 beyond that); `None` for everything so far
    /// or fewer than 2 events.
    pub spearman: Option<f64>,
}

/// The shadow's report in a [`MetricsSnapshot`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShadowSnapshot {
    /// The challenger's version number.
    pub version: u64,
    /// Events compared so far.
    pub compared: u64,
    /// Events not shadowed because its queue was full, or it failed to score them.
    pub dropped: u64,
    /// The window in progress.
    pub window: ShadowWindow,
    /// The last complete window, once there is one.
    pub last_window: Option<ShadowWindow>,
    /// Everything so far (no rank correlation).
    pub total: ShadowWindow,
}

/// One variant of the traffic split in a [`MetricsSnapshot`]: what it answered since the split
/// with these variants went into service.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VariantSnapshot {
    /// Its name.
    pub name: String,
    /// The version serving it.
    pub version: u64,
    /// Its weight.
    pub weight: u32,
    /// Events it scored.
    pub events: u64,
    /// Events it failed in its backend.
    pub errors: u64,
    /// Mean of its first output over the events it scored.
    pub mean_score: Option<f64>,
    /// End-to-end latency of its events, µs: median and 99th percentile.
    pub p50_us: Option<u64>,
    /// See `p50_us`.
    pub p99_us: Option<u64>,
}

/// The audit log's counters in a [`MetricsSnapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditSnapshot {
    /// Records written to a file (flushed).
    pub written: u64,
    /// Records dropped: the queue was full under `AuditOverflow::Drop`, or a write failed.
    pub dropped: u64,
    /// Files closed.
    pub files: u64,
    /// Failed writes (each logged).
    pub errors: u64,
}

/// A point-in-time copy of every metric.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsSnapshot {
    /// Events accepted into the queue.
    pub accepted: u64,
    /// Events refused at submission (full queue, closed runtime, invalid input).
    pub rejected: u64,
    /// Events answered with a score.
    pub scored: u64,
    /// Events answered with [`Error::Expired`](crate::Error::Expired).
    pub expired: u64,
    /// Events displaced from a full queue under the shed-oldest policy (answered with an error).
    pub shed: u64,
    /// Events answered with a backend error.
    pub errors: u64,
    /// Batches scored.
    pub batches: u64,
    /// The runtime threads' busy time in nanoseconds, indexed by `Busy as usize`.
    pub busy_ns: [u64; 5],
    /// Latency per stage in nanoseconds, indexed by `Stage as usize`.
    pub stages: [Summary; 5],
    /// Rows per scored batch.
    pub batch_rows: Summary,
    /// Changes of the live model version (swaps and rollbacks).
    pub swaps: u64,
    /// Model versions that failed to load, validate or warm up, or were refused.
    pub swap_failures: u64,
    /// The live model version.
    pub model_version: u64,
    /// The versions kept for rollback, oldest first (the live one among them).
    pub kept_versions: Vec<u64>,
    /// The shadow's comparison with the live version, while one runs (and the last one's
    /// after [`Runtime::clear_shadow`](crate::Runtime::clear_shadow)).
    pub shadow: Option<ShadowSnapshot>,
    /// The traffic split's variants, in order, while one is in service
    /// ([`Runtime::set_split`](crate::Runtime::set_split)).
    pub variants: Vec<VariantSnapshot>,
    /// The audit log's counters, when the runtime writes one.
    pub audit: Option<AuditSnapshot>,
    /// The drift monitor's alerts and latest distances, when the runtime has one.
    pub drift: Option<DriftSnapshot>,
    /// The data-quality gates' violations, by rule (empty without gates).
    pub gates: Vec<crate::monitor::gates::GateCount>,
    /// The delayed-label join's counters and per-version metrics, when the runtime has one.
    pub feedback: Option<FeedbackSnapshot>,
    /// The feature stage's counters and its lookups', when the runtime has a stage.
    pub features: Option<FeaturesSnapshot>,
}

/// The feature stage in a [`MetricsSnapshot`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeaturesSnapshot {
    /// The stage's counters.
    pub counters: crate::features::FeatureCounters,
    /// Keys with state now.
    pub live_keys: u64,
    /// Each lookup table's counters, by table name, in the spec's order.
    pub lookups: Vec<(String, crate::features::lookup::LookupCounters)>,
}

impl FeaturesSnapshot {
    fn prometheus(&self, s: &mut String) {
        let c = &self.counters;
        s.push_str("# HELP streamscore_feature_events_total Feature-stage events by outcome.\n");
        s.push_str("# TYPE streamscore_feature_events_total counter\n");
        for (outcome, v) in [
            ("computed", c.events),
            ("late_rejected", c.late_rejected),
            ("late_included", c.late_included),
            ("stale", c.stale),
            ("history_dropped", c.dropped_events),
        ] {
            let _ = writeln!(s, "streamscore_feature_events_total{{outcome=\"{outcome}\"}} {v}");
        }
        s.push_str("# HELP streamscore_feature_keys_removed_total Keys forgotten, by why.\n");
        s.push_str("# TYPE streamscore_feature_keys_removed_total counter\n");
        for (why, v) in [("expired", c.expired_keys), ("evicted", c.evicted_keys)] {
            let _ = writeln!(s, "streamscore_feature_keys_removed_total{{reason=\"{why}\"}} {v}");
        }
        s.push_str("# HELP streamscore_feature_live_keys Keys with feature state.\n");
        s.push_str("# TYPE streamscore_feature_live_keys gauge\n");
        let _ = writeln!(s, "streamscore_feature_live_keys {}", self.live_keys);
        if self.lookups.is_empty() {
            return;
        }
        s.push_str("# HELP streamscore_lookup_keys_total Lookups by outcome, per table.\n");
        s.push_str("# TYPE streamscore_lookup_keys_total counter\n");
        for (table, l) in &self.lookups {
            let t = label_value(table);
            for (outcome, v) in [
                ("found", l.found),
                ("missing", l.missing),
                ("failed", l.failed),
                ("cache_hit", l.cache_hits),
                ("fetched", l.fetched),
            ] {
                let _ = writeln!(
                    s,
                    "streamscore_lookup_keys_total{{table=\"{t}\",outcome=\"{outcome}\"}} {v}"
                );
            }
        }
        s.push_str("# HELP streamscore_lookup_store_errors_total Failed or timed-out round trips to the store.\n");
        s.push_str("# TYPE streamscore_lookup_store_errors_total counter\n");
        for (table, l) in &self.lookups {
            let t = label_value(table);
            let _ = writeln!(
                s,
                "streamscore_lookup_store_errors_total{{table=\"{t}\"}} {}",
                l.store_errors
            );
        }
        s.push_str("# HELP streamscore_lookup_round_trip_seconds Round trips to the store (one per batch), failed ones included.\n");
        s.push_str("# TYPE streamscore_lookup_round_trip_seconds histogram\n");
        for (table, l) in &self.lookups {
            let t = label_value(table);
            let mut seen = 0u64;
            // Bucket i holds round trips of 2^(i-1) to 2^i µs; the last is unbounded.
            for (i, &n) in l.round_trip_us_log2.iter().enumerate() {
                seen += n;
                let le = if i + 1 == l.round_trip_us_log2.len() {
                    "+Inf".to_string()
                } else {
                    format!("{:e}", (1u64 << i) as f64 * 1e-6)
                };
                let _ = writeln!(
                    s,
                    "streamscore_lookup_round_trip_seconds_bucket{{table=\"{t}\",le=\"{le}\"}} {seen}"
                );
            }
            let sum = l.round_trip_us_sum as f64 * 1e-6;
            let _ =
                writeln!(s, "streamscore_lookup_round_trip_seconds_sum{{table=\"{t}\"}} {sum:e}");
            let _ =
                writeln!(s, "streamscore_lookup_round_trip_seconds_count{{table=\"{t}\"}} {seen}");
        }
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped, as the text format
/// requires (names taken from files: columns, gate rules).
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The drift monitor in a [`MetricsSnapshot`]: its alert count and, per version and column,
/// the last closed window's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DriftSnapshot {
    /// Alerts raised in all.
    pub alerts_total: u64,
    /// Per version and column of the last closed window: (version, column, PSI,
    /// Jensen-Shannon distance, missing rate, out-of-range rate).
    pub latest: Vec<(u64, String, f64, f64, f64, f64)>,
}

impl DriftSnapshot {
    /// The snapshot of a monitor's report.
    pub fn of(r: &crate::monitor::profile::MonitorReport) -> Self {
        let mut latest = Vec::new();
        let mut done = std::collections::HashSet::new();
        for w in r.windows.iter().rev() {
            if done.insert(w.version) {
                for c in &w.columns {
                    latest.push((
                        w.version,
                        c.name.clone(),
                        c.distances.psi,
                        c.distances.js,
                        c.missing_rate,
                        c.out_of_range_rate,
                    ));
                }
            }
        }
        latest.sort_by_key(|l| l.0);
        DriftSnapshot { alerts_total: r.alerts_total, latest }
    }

    fn prometheus(&self, s: &mut String) {
        s.push_str("# HELP streamscore_drift_alerts_total Columns that drifted from the training reference, per closed window.\n");
        s.push_str("# TYPE streamscore_drift_alerts_total counter\n");
        let _ = writeln!(s, "streamscore_drift_alerts_total {}", self.alerts_total);
        let gauges = [
            ("psi", "Population stability index of the last closed window against the reference."),
            ("js", "Jensen-Shannon distance of the last closed window to the reference."),
            ("missing_rate", "Share of missing values in the last closed window."),
            (
                "out_of_range_rate",
                "Share of values outside the reference's range in the last closed window.",
            ),
        ];
        for (i, (name, help)) in gauges.iter().enumerate() {
            let _ = writeln!(s, "# HELP streamscore_drift_{name} {help}");
            let _ = writeln!(s, "# TYPE streamscore_drift_{name} gauge");
            for (version, column, psi, js, missing, outside) in &self.latest {
                let v = [psi, js, missing, outside][i];
                let column = label_value(column);
                let _ = writeln!(
                    s,
                    "streamscore_drift_{name}{{version=\"{version}\",column=\"{column}\"}} {v}"
                );
            }
        }
    }
}

/// The feedback join in a [`MetricsSnapshot`]: its counters, label delays and, per model
/// version, the metrics of everything labelled and the newest window's AUC.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedbackSnapshot {
    /// The join's counters (its report less the per-version detail).
    pub counts: crate::monitor::feedback::FeedbackReport,
    /// Per version, by version number.
    pub versions: Vec<VersionFeedback>,
}

/// One model version's outcome metrics in a [`FeedbackSnapshot`]; `None` where not defined
/// yet (no labels, or one class only for the AUC).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VersionFeedback {
    /// The model version.
    pub version: u64,
    /// Its labelled predictions.
    pub labelled: u64,
    /// Mean log loss of everything labelled.
    pub log_loss: Option<f64>,
    /// Brier score of everything labelled.
    pub brier: Option<f64>,
    /// Accuracy at the threshold of everything labelled.
    pub accuracy: Option<f64>,
    /// ROC AUC of the newest window.
    pub auc: Option<f64>,
}

impl FeedbackSnapshot {
    /// The snapshot of a feedback report.
    pub fn of(r: &crate::monitor::feedback::FeedbackReport) -> Self {
        let versions = r
            .versions
            .iter()
            .map(|v| {
                let t = &v.total;
                VersionFeedback {
                    version: v.version,
                    labelled: t.n,
                    log_loss: t.log_loss,
                    brier: t.brier,
                    accuracy: t.accuracy,
                    auc: v.windows.last().and_then(|w| w.outcomes.auc),
                }
            })
            .collect();
        let mut counts = r.clone();
        counts.versions.clear();
        FeedbackSnapshot { counts, versions }
    }

    fn prometheus(&self, s: &mut String) {
        let c = &self.counts;
        let counter = |s: &mut String, name: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(s, "# HELP streamscore_feedback_{name} {help}");
            let _ = writeln!(s, "# TYPE streamscore_feedback_{name} counter");
            for (labels, v) in rows {
                let _ = writeln!(s, "streamscore_feedback_{name}{labels} {v}");
            }
        };
        counter(
            s,
            "predictions_total",
            "Predictions kept for their labels.",
            &[("", c.predictions)],
        );
        counter(
            s,
            "labels_total",
            "Labels received, by what became of them.",
            &[
                ("{result=\"matched\"}", c.matched),
                ("{result=\"unmatched\"}", c.unmatched),
                ("{result=\"duplicate\"}", c.duplicates),
                ("{result=\"invalid\"}", c.invalid),
            ],
        );
        counter(
            s,
            "dropped_total",
            "Predictions dropped unlabelled, by why.",
            &[
                ("{reason=\"expired\"}", c.expired),
                ("{reason=\"evicted\"}", c.evicted),
                ("{reason=\"refused\"}", c.refused),
            ],
        );
        counter(
            s,
            "concept_drifts_total",
            "Drifts the error-stream detector detected.",
            &[("", c.concept_drift_ms.len() as u64)],
        );
        s.push_str("# HELP streamscore_feedback_waiting Predictions waiting for a label.\n");
        s.push_str("# TYPE streamscore_feedback_waiting gauge\n");
        let _ = writeln!(s, "streamscore_feedback_waiting {}", c.waiting);
        s.push_str("# HELP streamscore_feedback_label_delay_ms Label delay quantiles (ms).\n");
        s.push_str("# TYPE streamscore_feedback_label_delay_ms gauge\n");
        for (q, v) in &c.delay_quantiles_ms {
            let _ = writeln!(s, "streamscore_feedback_label_delay_ms{{quantile=\"{q}\"}} {v}");
        }
        let gauges = [
            ("log_loss", "Mean log loss of every labelled prediction."),
            ("brier", "Brier score of every labelled prediction."),
            ("accuracy", "Accuracy at the threshold of every labelled prediction."),
            ("auc", "ROC AUC of the newest window's labelled predictions."),
        ];
        for (i, (name, help)) in gauges.iter().enumerate() {
            let _ = writeln!(s, "# HELP streamscore_feedback_{name} {help}");
            let _ = writeln!(s, "# TYPE streamscore_feedback_{name} gauge");
            for f in &self.versions {
                if let Some(v) = [f.log_loss, f.brier, f.accuracy, f.auc][i] {
                    let version = f.version;
                    let _ = writeln!(s, "streamscore_feedback_{name}{{version=\"{version}\"}} {v}");
                }
            }
        }
    }
}

impl MetricsSnapshot {
    /// Latency summary of one stage (nanoseconds).
    pub fn stage(&self, stage: Stage) -> &Summary {
        &self.stages[stage as usize]
    }

    /// Busy nanoseconds of one kind.
    pub fn busy(&self, kind: Busy) -> u64 {
        self.busy_ns[kind as usize]
    }

    /// Accepted events that have an answer of any kind.
    pub fn answered(&self) -> u64 {
        self.scored + self.expired + self.shed + self.errors
    }

    /// The Prometheus text exposition format (version 0.0.4) of every metric.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP streamscore_events_total Events by outcome.\n");
        s.push_str("# TYPE streamscore_events_total counter\n");
        for (outcome, v) in [
            ("accepted", self.accepted),
            ("rejected", self.rejected),
            ("scored", self.scored),
            ("expired", self.expired),
            ("shed", self.shed),
            ("error", self.errors),
        ] {
            let _ = writeln!(s, "streamscore_events_total{{outcome=\"{outcome}\"}} {v}");
        }
        s.push_str("# HELP streamscore_batches_total Batches scored.\n");
        s.push_str("# TYPE streamscore_batches_total counter\n");
        let _ = writeln!(s, "streamscore_batches_total {}", self.batches);
        s.push_str(
            "# HELP streamscore_busy_seconds_total Busy time of the runtime's threads by kind.\n",
        );
        s.push_str("# TYPE streamscore_busy_seconds_total counter\n");
        for kind in Busy::ALL {
            let v = self.busy(kind) as f64 * 1e-9;
            let _ =
                writeln!(s, "streamscore_busy_seconds_total{{kind=\"{}\"}} {v:e}", kind.label());
        }
        s.push_str("# HELP streamscore_latency_seconds Latency per pipeline stage.\n");
        s.push_str("# TYPE streamscore_latency_seconds summary\n");
        for stage in Stage::ALL {
            let m = self.stage(stage);
            let l = stage.label();
            for (q, v) in [("0.5", m.p50), ("0.99", m.p99), ("0.999", m.p999), ("1", m.max)] {
                let _ = writeln!(
                    s,
                    "streamscore_latency_seconds{{stage=\"{l}\",quantile=\"{q}\"}} {:e}",
                    v as f64 * 1e-9
                );
            }
            let _ =
                writeln!(s, "streamscore_latency_seconds_sum{{stage=\"{l}\"}} {:e}", m.sum * 1e-9);
            let _ = writeln!(s, "streamscore_latency_seconds_count{{stage=\"{l}\"}} {}", m.count);
        }
        s.push_str("# HELP streamscore_batch_rows Rows per scored batch.\n");
        s.push_str("# TYPE streamscore_batch_rows summary\n");
        let b = &self.batch_rows;
        for (q, v) in [("0.5", b.p50), ("0.99", b.p99), ("0.999", b.p999), ("1", b.max)] {
            let _ = writeln!(s, "streamscore_batch_rows{{quantile=\"{q}\"}} {v}");
        }
        let _ = writeln!(s, "streamscore_batch_rows_sum {}", b.sum);
        let _ = writeln!(s, "streamscore_batch_rows_count {}", b.count);
        s.push_str("# HELP streamscore_model_swaps_total Changes of the live model version.\n");
        s.push_str("# TYPE streamscore_model_swaps_total counter\n");
        let _ = writeln!(s, "streamscore_model_swaps_total {}", self.swaps);
        s.push_str(
            "# HELP streamscore_model_swap_failures_total Model versions that failed to go live.\n",
        );
        s.push_str("# TYPE streamscore_model_swap_failures_total counter\n");
        let _ = writeln!(s, "streamscore_model_swap_failures_total {}", self.swap_failures);
        s.push_str("# HELP streamscore_model_version_live The live model version (1) and the kept ones (0).\n");
        s.push_str("# TYPE streamscore_model_version_live gauge\n");
        for v in &self.kept_versions {
            let live = u8::from(*v == self.model_version);
            let _ = writeln!(s, "streamscore_model_version_live{{version=\"{v}\"}} {live}");
        }
        if let Some(sh) = &self.shadow {
            sh.prometheus(&mut s);
        }
        if !self.variants.is_empty() {
            variants_prometheus(&self.variants, &mut s);
        }
        if let Some(a) = &self.audit {
            s.push_str(
                "# HELP streamscore_audit_records_total Audit records written or dropped.\n",
            );
            s.push_str("# TYPE streamscore_audit_records_total counter\n");
            for (outcome, n) in [("written", a.written), ("dropped", a.dropped)] {
                let _ = writeln!(s, "streamscore_audit_records_total{{outcome=\"{outcome}\"}} {n}");
            }
            s.push_str("# HELP streamscore_audit_files_total Audit files closed.\n");
            s.push_str("# TYPE streamscore_audit_files_total counter\n");
            let _ = writeln!(s, "streamscore_audit_files_total {}", a.files);
            s.push_str("# HELP streamscore_audit_errors_total Failed audit writes.\n");
            s.push_str("# TYPE streamscore_audit_errors_total counter\n");
            let _ = writeln!(s, "streamscore_audit_errors_total {}", a.errors);
        }
        if let Some(d) = &self.drift {
            d.prometheus(&mut s);
        }
        if let Some(f) = &self.feedback {
            f.prometheus(&mut s);
        }
        if let Some(f) = &self.features {
            f.prometheus(&mut s);
        }
        if !self.gates.is_empty() {
            s.push_str("# HELP streamscore_gate_violations_total Events that violated a data-quality gate, by rule.\n");
            s.push_str("# TYPE streamscore_gate_violations_total counter\n");
            for g in &self.gates {
                let rule = label_value(&g.rule);
                let _ = writeln!(
                    s,
                    "streamscore_gate_violations_total{{rule=\"{rule}\",policy=\"{}\"}} {}",
                    g.policy, g.violations
                );
            }
        }
        s
    }
}

fn variants_prometheus(variants: &[VariantSnapshot], s: &mut String) {
    s.push_str("# HELP streamscore_variant_events_total Events a split variant answered.\n");
    s.push_str("# TYPE streamscore_variant_events_total counter\n");
    for v in variants {
        for (outcome, n) in [("scored", v.events), ("error", v.errors)] {
            let _ = writeln!(
                s,
                "streamscore_variant_events_total{{variant=\"{}\",version=\"{}\",outcome=\"{outcome}\"}} {n}",
                v.name, v.version
            );
        }
    }
    s.push_str("# HELP streamscore_variant_weight A split variant's weight.\n");
    s.push_str("# TYPE streamscore_variant_weight gauge\n");
    for v in variants {
        let _ = writeln!(s, "streamscore_variant_weight{{variant=\"{}\"}} {}", v.name, v.weight);
    }
    s.push_str("# HELP streamscore_variant_mean_score Mean first output of a split variant.\n");
    s.push_str("# TYPE streamscore_variant_mean_score gauge\n");
    for v in variants {
        if let Some(m) = v.mean_score {
            let _ = writeln!(s, "streamscore_variant_mean_score{{variant=\"{}\"}} {m}", v.name);
        }
    }
    s.push_str(
        "# HELP streamscore_variant_latency_us End-to-end latency of a split variant's events.\n",
    );
    s.push_str("# TYPE streamscore_variant_latency_us gauge\n");
    for v in variants {
        for (q, x) in [("0.5", v.p50_us), ("0.99", v.p99_us)] {
            if let Some(x) = x {
                let _ = writeln!(
                    s,
                    "streamscore_variant_latency_us{{variant=\"{}\",quantile=\"{q}\"}} {x}",
                    v.name
                );
            }
        }
    }
}

impl ShadowSnapshot {
    fn prometheus(&self, s: &mut String) {
        let v = self.version;
        s.push_str(
            "# HELP streamscore_shadow_events_total Events the shadow compared or dropped.\n",
        );
        s.push_str("# TYPE streamscore_shadow_events_total counter\n");
        for (outcome, n) in [("compared", self.compared), ("dropped", self.dropped)] {
            let _ = writeln!(
                s,
                "streamscore_shadow_events_total{{version=\"{v}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        s.push_str(
            "# HELP streamscore_shadow_flips_total Events whose decision the shadow flips.\n",
        );
        s.push_str("# TYPE streamscore_shadow_flips_total counter\n");
        let _ =
            writeln!(s, "streamscore_shadow_flips_total{{version=\"{v}\"}} {}", self.total.flips);
        let w = self.last_window.as_ref().unwrap_or(&self.window);
        s.push_str(
            "# HELP streamscore_shadow_diff Differences from the primary over the last complete window.\n",
        );
        s.push_str("# TYPE streamscore_shadow_diff gauge\n");
        for (kind, q) in [("abs", &w.abs_diff), ("rel", &w.rel_diff)] {
            for (quantile, x) in ["0.5", "0.99", "1"].iter().zip(q) {
                let _ = writeln!(
                    s,
                    "streamscore_shadow_diff{{version=\"{v}\",kind=\"{kind}\",quantile=\"{quantile}\"}} {x:e}"
                );
            }
        }
        if let Some(r) = w.spearman {
            s.push_str(
                "# HELP streamscore_shadow_rank_correlation Spearman's rho, primary vs shadow.\n",
            );
            s.push_str("# TYPE streamscore_shadow_rank_correlation gauge\n");
            let _ = writeln!(s, "streamscore_shadow_rank_correlation{{version=\"{v}\"}} {r}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_merges_recorders_and_renders() {
        let m = Metrics::new(2);
        m.counters.accepted.fetch_add(3, Ordering::Relaxed);
        m.counters.scored.fetch_add(3, Ordering::Relaxed);
        m.with(0, |r| {
            r.record(Stage::Queue, Duration::from_micros(10));
            r.record(Stage::Queue, Duration::from_micros(20));
        });
        m.with(1, |r| {
            r.record(Stage::Queue, Duration::from_micros(1000));
            r.record_batch(3);
        });
        let s = m.snapshot();
        let q = s.stage(Stage::Queue);
        assert_eq!(q.count, 3);
        assert!((19_980..=20_030).contains(&q.p50), "{}", q.p50);
        assert!((999_000..=1_001_000).contains(&q.max), "{}", q.max);
        assert_eq!(s.batch_rows.max, 3);
        let text = s.prometheus();
        assert!(text.contains("streamscore_events_total{outcome=\"scored\"} 3\n"), "{text}");
        assert!(text.contains("streamscore_latency_seconds_count{stage=\"queue\"} 3\n"), "{text}");
        // Every sample line is `name{labels} value` or `name value`: two fields.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split(' ').count(), 2, "{line}");
        }
    }
}
