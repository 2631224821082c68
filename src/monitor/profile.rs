//! Profiles of what the runtime scores, per model version and per tumbling window of the
//! caller's time, against a training [`Reference`]: per input feature and for the score, the
//! count, missing and out-of-range rates, mean, variance, range, quantiles (read off the
//! reference's grid, or from a DDSketch per column with [`MonitorConfig::quantile_sketch`]),
//! and the distances to the reference (PSI, Jensen-Shannon, KS at the grid's edges). A window whose distance passes a threshold raises an [`Alert`]: counted,
//! logged, kept in the report and handed to a callback the embedder registers.
//!
//! Memory per monitored column and version: two windows (the current and the cumulative) of
//! `edges + 1` counts (at most 22), eight numbers and a bin finder (at most 4.5 KiB), and with
//! [`MonitorConfig::quantile_sketch`] a DDSketch in each of the two (at most [`SKETCH_BINS`]
//! counts for positive and as many for negative values: 32 KiB each); closed windows are kept
//! as summaries, the newest [`MonitorConfig::windows_kept`].
//!
//! # Quantiles: the grid or a sketch
//!
//! The reference's grid is needed for the distances anyway, so by default the quantiles are
//! read off its counts, interpolated inside a bin: free, and within a grid cell (5% of the
//! reference) in rank, but coarse in value where a bin is wide (the outer bins run to the
//! window's minimum and maximum, so the 1% and 99% quantiles of a long-tailed column can be
//! far off). A DDSketch (the `sketches-ddsketch` crate) keeps every quantile within a relative
//! accuracy in value (1% by default) and merges exactly across windows, at about 30 ns per
//! value on this project's 2-core bench machine: `cargo bench --bench monitor` measures both
//! (the README's monitoring section has the figures).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::batch::Columns;
use crate::error::{Error, Result};
use crate::monitor::bins::Finder;
use crate::monitor::drift::{Detector, Found, Kind, Param};
use crate::monitor::reference::{ColumnReference, Distances, Reference, distances};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

/// How a [`Monitor`] windows and alerts.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// The training reference (its features must be the model's).
    pub reference: Arc<Reference>,
    /// The length of a tumbling window (1 minute).
    pub window_ms: u64,
    /// A column whose window PSI reaches this raises an alert (0.2, the usual "significant").
    pub psi_alert: f64,
    /// A column whose window Jensen-Shannon distance reaches this raises an alert (0.2).
    pub js_alert: f64,
    /// Windows with fewer events are summarized but raise no alert (1,000). The PSI of a
    /// window drawn from the reference itself is about `(bins - 1) (1/n + 1/m)` (n window and
    /// m reference values): 0.03 at a thousand events on 21 bins, but 0.13, with false
    /// alerts at 0.2, at 250.
    pub min_events: u64,
    /// Closed windows kept (60).
    pub windows_kept: usize,
    /// A drift detector on each version's stream of scores (`None`: none), fed every score
    /// as it is observed; its detections are in [`MonitorReport::score_drifts`].
    pub score_detector: Option<(Kind, Vec<Param>)>,
    /// Quantiles from a DDSketch per column with this relative accuracy in value (`Some(0.01)`:
    /// within 1%), instead of from the reference's grid (`None`, the default: no cost). See
    /// the [module docs](self#quantiles-the-grid-or-a-sketch). Must lie in (0, 1).
    pub quantile_sketch: Option<f64>,
}

/// Values nearer zero than this count as zero in a sketch (the crate's default).
const SKETCH_MIN_VALUE: f64 = 1e-9;

/// The most bins a column's DDSketch keeps for each sign (the crate's default): with 1%
/// accuracy they span values a factor 10^17 apart before the smallest are collapsed.
pub const SKETCH_BINS: u32 = 2048;

impl MonitorConfig {
    /// Defaults around a reference.
    pub fn new(reference: Arc<Reference>) -> Self {
        Self {
            reference,
            window_ms: 60_000,
            psi_alert: 0.2,
            js_alert: 0.2,
            min_events: 1_000,
            windows_kept: 60,
            score_detector: None,
            quantile_sketch: None,
        }
    }
}

/// Quantiles reported per column.
pub const QUANTILES: [f64; 5] = [0.01, 0.25, 0.5, 0.75, 0.99];

/// One column of one window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ColumnSummary {
    /// The feature's name (`score` for the output).
    pub name: String,
    /// Values seen.
    pub count: u64,
    /// Share of them NaN.
    pub missing_rate: f64,
    /// Share of the present ones outside the reference's range.
    pub out_of_range_rate: f64,
    /// Mean of the present values (`None` if none).
    pub mean: Option<f64>,
    /// Their sample variance.
    pub variance: Option<f64>,
    /// Smallest and largest.
    pub range: Option<(f64, f64)>,
    /// `(q, value)` for [`QUANTILES`], read off the reference's grid, or from the column's
    /// sketch with [`MonitorConfig::quantile_sketch`].
    pub quantiles: Vec<(f64, f64)>,
    /// Distances to the reference.
    pub distances: Distances,
}

/// One window of one version.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WindowSummary {
    /// The model version.
    pub version: u64,
    /// The window's start (ms; `None` for the cumulative profile).
    pub start_ms: Option<u64>,
    /// Events in it.
    pub events: u64,
    /// One per feature, then the score.
    pub columns: Vec<ColumnSummary>,
}

/// A column that drifted from the reference in a closed window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Alert {
    /// The model version.
    pub version: u64,
    /// The window's start (ms).
    pub window_start_ms: u64,
    /// The column.
    pub column: String,
    /// Its distances.
    pub distances: Distances,
}

/// Everything a [`Monitor`] knows.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct MonitorReport {
    /// Closed windows, oldest first.
    pub windows: Vec<WindowSummary>,
    /// Per version, the window being filled.
    pub current: Vec<WindowSummary>,
    /// Per version, everything since the start.
    pub cumulative: Vec<WindowSummary>,
    /// Alerts raised, oldest first (the newest 1,000).
    pub alerts: Vec<Alert>,
    /// Alerts raised in all.
    pub alerts_total: u64,
    /// Where the score detector found drift: (version, the score's index in that version's
    /// stream, the observing time in ms); the newest 1,000.
    pub score_drifts: Vec<(u64, u64, u64)>,
    /// Score drifts in all.
    pub score_drifts_total: u64,
    /// Events observed in all, and the time spent observing them (ns): the monitor's cost.
    pub observed: u64,
    /// See `observed`.
    pub observe_ns: u64,
}

#[derive(Clone)]
struct Column {
    finder: Finder,
    count: u64,
    missing: u64,
    outside: u64,
    counts: Vec<u64>,
    /// Sums of `x - reference mean` and its square (shifted, so the variance does not cancel).
    sum: f64,
    sumsq: f64,
    min: f64,
    max: f64,
    /// The quantile sketch, with [`MonitorConfig::quantile_sketch`].
    sketch: Option<Box<DDSketch>>,
}

impl Column {
    fn new(r: &ColumnReference, sketch: Option<SketchConfig>) -> Self {
        Self {
            finder: Finder::new(&r.edges),
            count: 0,
            missing: 0,
            outside: 0,
            counts: vec![0; r.counts.len()],
            sum: 0.0,
            sumsq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sketch: sketch.map(|c| Box::new(DDSketch::new(c))),
        }
    }

    fn add(&mut self, r: &ColumnReference, values: &[f32]) {
        let (lo, hi) = (r.min.unwrap_or(f64::INFINITY), r.max.unwrap_or(f64::NEG_INFINITY));
        self.count += values.len() as u64;
        for &v in values {
            if v.is_nan() {
                self.missing += 1;
                continue;
            }
            let x = f64::from(v);
            self.counts[self.finder.bin(x)] += 1;
            self.outside += u64::from(x < lo || x > hi);
            let s = x - r.mean;
            self.sum += s;
            self.sumsq += s * s;
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        if let Some(sketch) = &mut self.sketch {
            values.iter().filter(|v| !v.is_nan()).for_each(|&v| sketch.add(f64::from(v)));
        }
    }

    fn merge(&mut self, o: &Column) {
        self.count += o.count;
        self.missing += o.missing;
        self.outside += o.outside;
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.sum += o.sum;
        self.sumsq += o.sumsq;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if let (Some(a), Some(b)) = (&mut self.sketch, &o.sketch) {
            // Every column of a monitor is built with the one config, so this merges.
            let merged = a.merge(b);
            debug_assert!(merged.is_ok());
        }
    }

    fn summary(&self, r: &ColumnReference) -> ColumnSummary {
        let present = self.count - self.missing;
        let n = present as f64;
        let rate = |k: u64, of: u64| if of == 0 { 0.0 } else { k as f64 / of as f64 };
        let mean = (present > 0).then(|| r.mean + self.sum / n);
        let variance =
            (present > 1).then(|| ((self.sumsq - self.sum * self.sum / n) / (n - 1.0)).max(0.0));
        let range = (present > 0).then_some((self.min, self.max));
        let quantiles = match range {
            Some((min, max)) => QUANTILES
                .iter()
                .map(|&q| {
                    let sketched = self.sketch.as_ref().and_then(|s| s.quantile(q).ok().flatten());
                    // A sketch's value lies within its accuracy of the true one; the window's
                    // own range bounds it too.
                    (
                        q,
                        sketched
                            .map_or_else(|| self.quantile(r, q, min, max), |v| v.clamp(min, max)),
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        ColumnSummary {
            name: r.name.clone(),
            count: self.count,
            missing_rate: rate(self.missing, self.count),
            out_of_range_rate: rate(self.outside, present),
            mean,
            variance,
            range,
            quantiles,
            distances: if present > 0 {
                distances(&r.counts, &self.counts)
            } else {
                Distances::default()
            },
        }
    }

    /// The `q` quantile, interpolated inside the grid bin where the cumulative count passes
    /// it (the outer bins are bounded by the window's own minimum and maximum).
    fn quantile(&self, r: &ColumnReference, q: f64, min: f64, max: f64) -> f64 {
        let total: u64 = self.counts.iter().sum();
        let target = q * total as f64;
        let mut below = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            let c = c as f64;
            if c > 0.0 && below + c >= target {
                let lo = if i == 0 { min } else { r.edges[i - 1].max(min) };
                let hi = if i == r.edges.len() { max } else { r.edges[i].min(max) };
                return lo + (hi - lo) * ((target - below) / c).clamp(0.0, 1.0);
            }
            below += c;
        }
        max
    }
}

#[derive(Clone)]
struct VersionState {
    start_ms: u64,
    events: u64,
    current: Vec<Column>,
    total_events: u64,
    total: Vec<Column>,
    detector: Option<Detector>,
}

/// What [`Monitor::on_alert`] registers.
type AlertCallback = Box<dyn Fn(&Alert) + Send + Sync>;

/// Profiles and drift against a reference, per version and window. See the [module
/// docs](self).
pub struct Monitor {
    config: MonitorConfig,
    versions: BTreeMap<u64, VersionState>,
    closed: VecDeque<WindowSummary>,
    alerts: VecDeque<Alert>,
    alerts_total: u64,
    score_drifts: VecDeque<(u64, u64, u64)>,
    score_drifts_total: u64,
    found: Vec<Found>,
    scratch: Vec<f64>,
    observed: u64,
    observe_ns: u64,
    on_alert: Option<AlertCallback>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor (a zero window or kept count, a NaN threshold, or a sketch accuracy outside
    /// (0, 1), is an [`Error::Config`]).
    pub fn new(config: MonitorConfig) -> Result<Self> {
        if config.window_ms == 0
            || config.windows_kept == 0
            || config.psi_alert.is_nan()
            || config.js_alert.is_nan()
        {
            return Err(Error::Config(
                "monitor: window and windows kept must be above 0, thresholds numbers".into(),
            ));
        }
        if let Some(alpha) = config.quantile_sketch
            && !(alpha > 0.0 && alpha < 1.0)
        {
            return Err(Error::Config(format!(
                "monitor: the quantile sketch's relative accuracy must lie in (0, 1), not {alpha}"
            )));
        }
        Ok(Self {
            config,
            versions: BTreeMap::new(),
            closed: VecDeque::new(),
            alerts: VecDeque::new(),
            alerts_total: 0,
            score_drifts: VecDeque::new(),
            score_drifts_total: 0,
            found: Vec::new(),
            scratch: Vec::new(),
            observed: 0,
            observe_ns: 0,
            on_alert: None,
        })
    }

    /// Calls `f` with every alert, on the thread that closes the window (keep it short).
    pub fn on_alert(&mut self, f: impl Fn(&Alert) + Send + Sync + 'static) {
        self.on_alert = Some(Box::new(f));
    }

    /// The reference.
    pub fn reference(&self) -> &Reference {
        &self.config.reference
    }

    fn fresh(&self) -> Vec<Column> {
        let sketch = self
            .config
            .quantile_sketch
            .map(|alpha| SketchConfig::new(alpha, SKETCH_BINS, SKETCH_MIN_VALUE));
        self.config.reference.columns.iter().map(|r| Column::new(r, sketch)).collect()
    }

    /// Takes a batch scored by `version` at `now_ms`: its feature columns and one score per
    /// row. A batch of another width is an [`Error::WidthMismatch`] and is not taken.
    pub fn observe(
        &mut self,
        version: u64,
        features: Columns<'_>,
        scores: &[f32],
        now_ms: u64,
    ) -> Result<()> {
        self.check(&features, scores)?;
        let t0 = std::time::Instant::now();
        self.observe_rows(version, &features, scores, 0..scores.len(), now_ms);
        self.count(scores.len(), t0);
        Ok(())
    }

    fn count(&mut self, events: usize, since: std::time::Instant) {
        self.observed += events as u64;
        self.observe_ns += since.elapsed().as_nanos() as u64;
    }

    /// As [`observe`](Monitor::observe), each row at its own time (`times`, ms; an event's
    /// time when events carry one). Rows go to the window of their time; a row older than its
    /// version's open window counts in that window (windows only move forward).
    pub fn observe_at(
        &mut self,
        version: u64,
        features: Columns<'_>,
        scores: &[f32],
        times: &[u64],
    ) -> Result<()> {
        self.check(&features, scores)?;
        if times.len() != scores.len() {
            return Err(Error::Input {
                at: "monitor".into(),
                message: format!("{} times for {} rows", times.len(), scores.len()),
            });
        }
        let window = self.config.window_ms;
        let mut a = 0;
        while a < times.len() {
            let start = times[a] - times[a] % window;
            let b = a + times[a..]
                .iter()
                .position(|&t| t - t % window != start)
                .unwrap_or(times.len() - a);
            self.observe_rows(version, &features, scores, a..b, times[a]);
            a = b;
        }
        Ok(())
    }

    fn check(&self, features: &Columns<'_>, scores: &[f32]) -> Result<()> {
        let want = self.config.reference.features.len();
        if features.n_features() != want || scores.len() != features.n_rows() {
            return Err(Error::WidthMismatch { expected: want, got: features.n_features() });
        }
        Ok(())
    }

    fn observe_rows(
        &mut self,
        version: u64,
        features: &Columns<'_>,
        scores: &[f32],
        rows: std::ops::Range<usize>,
        now_ms: u64,
    ) {
        let want = self.config.reference.features.len();
        let scores = &scores[rows.clone()];
        let start = now_ms - now_ms % self.config.window_ms;
        self.roll(version, start);
        if !self.versions.contains_key(&version) {
            let fresh = self.fresh();
            // Checked in `new`, so this builds.
            let detector =
                self.config.score_detector.as_ref().and_then(|(k, p)| Detector::new(*k, p).ok());
            let state = VersionState {
                start_ms: start,
                events: 0,
                current: fresh.clone(),
                total_events: 0,
                total: fresh,
                detector,
            };
            self.versions.insert(version, state);
        }
        let Some(state) = self.versions.get_mut(&version) else { return };
        let reference = &self.config.reference.columns;
        for (f, column) in state.current.iter_mut().enumerate() {
            let values = if f < want { &features.column(f)[rows.clone()] } else { scores };
            column.add(&reference[f], values);
        }
        state.events += scores.len() as u64;
        if let Some(d) = &mut state.detector {
            self.found.clear();
            // Scores are finite or NaN; the detector refuses a NaN, and the rest of the
            // batch goes on after it.
            let mut rest = scores;
            while !rest.is_empty() {
                self.scratch.clear();
                self.scratch.extend(rest.iter().map(|&v| f64::from(v)));
                let before = d.seen();
                let fed = d.update_many(&self.scratch, &mut self.found);
                let taken = (d.seen() - before) as usize;
                rest = &rest[(taken + usize::from(fed.is_err())).min(rest.len())..];
            }
            for f in self.found.iter().filter(|f| f.drift) {
                self.score_drifts_total += 1;
                if self.score_drifts.len() == 1000 {
                    self.score_drifts.pop_front();
                }
                self.score_drifts.push_back((version, f.index, now_ms));
            }
        }
    }

    /// Closes every version's window that ended before `now_ms` (an idle stream's last
    /// window is closed by the next event, or by this).
    pub fn flush(&mut self, now_ms: u64) {
        let start = now_ms - now_ms % self.config.window_ms;
        let versions: Vec<u64> = self.versions.keys().copied().collect();
        for v in versions {
            self.roll(v, start);
        }
    }

    /// Closes `version`'s window if `start` begins a later one.
    fn roll(&mut self, version: u64, start: u64) {
        match self.versions.get(&version) {
            Some(state) if state.start_ms < start => {}
            _ => return,
        }
        let fresh = self.fresh();
        let Some(state) = self.versions.get_mut(&version) else { return };
        let current = std::mem::replace(&mut state.current, fresh);
        let (events, window_start) = (std::mem::take(&mut state.events), state.start_ms);
        state.start_ms = start;
        if events == 0 {
            return;
        }
        for (t, c) in state.total.iter_mut().zip(&current) {
            t.merge(c);
        }
        state.total_events += events;
        let summary = self.summarize(version, Some(window_start), events, &current);
        if events >= self.config.min_events {
            for c in &summary.columns {
                let d = c.distances;
                if d.psi >= self.config.psi_alert || d.js >= self.config.js_alert {
                    let alert = Alert {
                        version,
                        window_start_ms: window_start,
                        column: c.name.clone(),
                        distances: d,
                    };
                    log::warn!(
                        "drift: version {version}, window at {window_start} ms, column `{}`: PSI {:.3}, Jensen-Shannon {:.3}",
                        c.name,
                        d.psi,
                        d.js
                    );
                    if let Some(f) = &self.on_alert {
                        f(&alert);
                    }
                    self.alerts_total += 1;
                    if self.alerts.len() == 1000 {
                        self.alerts.pop_front();
                    }
                    self.alerts.push_back(alert);
                }
            }
        }
        if self.closed.len() == self.config.windows_kept {
            self.closed.pop_front();
        }
        self.closed.push_back(summary);
    }

    fn summarize(
        &self,
        version: u64,
        start_ms: Option<u64>,
        events: u64,
        columns: &[Column],
    ) -> WindowSummary {
        let reference = &self.config.reference.columns;
        WindowSummary {
            version,
            start_ms,
            events,
            columns: columns.iter().zip(reference).map(|(c, r)| c.summary(r)).collect(),
        }
    }

    /// Everything so far.
    pub fn report(&self) -> MonitorReport {
        let mut current = Vec::new();
        let mut cumulative = Vec::new();
        for (&v, s) in &self.versions {
            current.push(self.summarize(v, Some(s.start_ms), s.events, &s.current));
            let mut total = s.total.clone();
            for (t, c) in total.iter_mut().zip(&s.current) {
                t.merge(c);
            }
            cumulative.push(self.summarize(v, None, s.total_events + s.events, &total));
        }
        MonitorReport {
            windows: self.closed.iter().cloned().collect(),
            current,
            cumulative,
            alerts: self.alerts.iter().cloned().collect(),
            alerts_total: self.alerts_total,
            score_drifts: self.score_drifts.iter().copied().collect(),
            score_drifts_total: self.score_drifts_total,
            observed: self.observed,
            observe_ns: self.observe_ns,
        }
    }
}
