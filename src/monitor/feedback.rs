//! Delayed labels joined back to the predictions they belong to, and the online metrics they
//! give: log loss, Brier score, accuracy at a threshold, ROC AUC and calibration by bins, per
//! model version and per tumbling window of prediction time; a label-delay histogram; and,
//! optionally, a drift detector on the error stream (concept drift).
//!
//! Time is the caller's, in milliseconds (event time or a wall clock), passed to every call,
//! so the same sequence of calls always gives the same report.
//!
//! Memory is bounded: at most [`FeedbackConfig::capacity`] predictions wait for a label
//! (about 80 bytes each: the map entry and its expiry), the oldest evicted (and counted) when
//! a new one would pass it; a prediction waits [`FeedbackConfig::ttl_ms`] and is then dropped
//! (counted); each window keeps its labelled pairs for the AUC, up to
//! [`FeedbackConfig::max_pairs_per_window`] (16 bytes each), and the newest
//! [`FeedbackConfig::windows_kept`] windows per version are kept.
//!
//! # Examples
//!
//! ```
//! use streamscore::monitor::feedback::{Feedback, FeedbackConfig, Joined};
//!
//! let mut fb = Feedback::new(FeedbackConfig::default())?;
//! fb.predicted(1, 7, 0.9, 1_000)?; // event 1, model version 7, p = 0.9, at t = 1 s
//! fb.predicted(2, 7, 0.2, 1_500)?;
//! assert!(matches!(fb.label(1, 1.0, 60_000)?, Joined::Matched { delay_ms: 59_000, .. }));
//! assert!(matches!(fb.label(2, 0.0, 61_000)?, Joined::Matched { .. }));
//! assert!(matches!(fb.label(3, 1.0, 61_000)?, Joined::Unmatched));
//! let report = fb.report();
//! assert_eq!(report.versions[0].total.accuracy, Some(1.0));
//! # Ok::<(), streamscore::Error>(())
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use crate::error::{Error, Result};
use crate::monitor::drift::{Detector, Kind, Param};

/// How feedback is joined and measured.
#[derive(Clone, Debug)]
pub struct FeedbackConfig {
    /// How long a prediction waits for its label (7 days).
    pub ttl_ms: u64,
    /// The most predictions waiting at once (1,000,000).
    pub capacity: usize,
    /// The length of a tumbling window of prediction time (1 hour).
    pub window_ms: u64,
    /// Windows kept per version, the newest (48).
    pub windows_kept: usize,
    /// A prediction counts as positive at or above this probability (0.5).
    pub threshold: f64,
    /// Equal-width calibration bins over [0, 1] (10).
    pub bins: usize,
    /// Labelled pairs a window keeps for its AUC (1,000,000); past it the window's AUC is
    /// `None` and the other metrics go on.
    pub max_pairs_per_window: usize,
    /// A drift detector fed 1 for each wrong thresholded prediction and 0 for each right
    /// one, as labels join (`None`: no concept-drift detection).
    pub detector: Option<(Kind, Vec<Param>)>,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            ttl_ms: 7 * 24 * 3_600_000,
            capacity: 1_000_000,
            window_ms: 3_600_000,
            windows_kept: 48,
            threshold: 0.5,
            bins: 10,
            max_pairs_per_window: 1_000_000,
            detector: None,
        }
    }
}

/// What became of one label.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Joined {
    /// Joined to its prediction, made by `version`, `delay_ms` before the label.
    Matched {
        /// The version that made the prediction.
        version: u64,
        /// Label time less prediction time (0 if the label's time is earlier).
        delay_ms: u64,
    },
    /// No prediction waits under this id: never made, expired, or evicted (counted).
    Unmatched,
    /// The prediction already has its label; this one is ignored (counted).
    Duplicate,
}

/// Metrics over a set of labelled predictions. `None` where the set has no labels (or, for
/// the AUC, only one class, or more pairs than a window keeps).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcomes {
    /// Labelled predictions.
    pub n: u64,
    /// Of them, positive labels.
    pub positives: u64,
    /// Mean log loss, probabilities clipped to [eps, 1 - eps] as scikit-learn's `log_loss`.
    pub log_loss: Option<f64>,
    /// Mean squared difference of probability and label (`brier_score_loss`).
    pub brier: Option<f64>,
    /// Share of predictions at or over the threshold exactly when the label is positive.
    pub accuracy: Option<f64>,
    /// Area under the ROC curve (`roc_auc_score`), ties counted half.
    pub auc: Option<f64>,
    /// Per non-empty bin: (mean predicted probability, share of positives, count), as
    /// scikit-learn's `calibration_curve(strategy="uniform")` bins them.
    pub calibration: Vec<(f64, f64, u64)>,
}

/// One window of one version.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowReport {
    /// The window's start, in the caller's milliseconds.
    pub start_ms: u64,
    /// Its metrics.
    pub outcomes: Outcomes,
}

/// One model version's metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionReport {
    /// The version.
    pub version: u64,
    /// Everything labelled since the start (no AUC or calibration: those are per window).
    pub total: Outcomes,
    /// The kept windows, oldest first.
    pub windows: Vec<WindowReport>,
}

/// Everything [`Feedback`] knows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedbackReport {
    /// Predictions recorded.
    pub predictions: u64,
    /// Predictions refused: a score that is not a probability in [0, 1].
    pub refused: u64,
    /// Labels joined to their predictions.
    pub matched: u64,
    /// Labels for no waiting prediction.
    pub unmatched: u64,
    /// Second labels for one prediction.
    pub duplicates: u64,
    /// Labels refused (NaN, not 0 or 1).
    pub invalid: u64,
    /// Predictions dropped unlabelled after the TTL.
    pub expired: u64,
    /// Predictions evicted unlabelled by a full buffer.
    pub evicted: u64,
    /// Predictions waiting now.
    pub waiting: u64,
    /// Label delays (ms): (quantile, value) at 0.5, 0.9, 0.99 and 1.
    pub delay_quantiles_ms: Vec<(f64, u64)>,
    /// Per version, by version number.
    pub versions: Vec<VersionReport>,
    /// Label times (ms) at which the error-stream detector detected concept drift.
    pub concept_drift_ms: Vec<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Waiting {
    version: u64,
    score: f64,
    at_ms: u64,
    labelled: bool,
}

/// Sums over a set of labelled predictions, and the pairs for the AUC.
#[derive(Clone, Debug, Default)]
struct Sums {
    n: u64,
    positives: u64,
    log_loss: f64,
    brier: f64,
    correct: u64,
    /// (score, label) pairs, or `None` once over the cap.
    pairs: Option<Vec<(f64, bool)>>,
    /// Per bin: (sum of scores, positives, count).
    bins: Vec<(f64, u64, u64)>,
}

impl Sums {
    fn windowed(bins: usize) -> Self {
        Self { pairs: Some(Vec::new()), bins: vec![(0.0, 0, 0); bins], ..Self::default() }
    }

    fn add(&mut self, score: f64, label: bool, config: &FeedbackConfig) {
        self.n += 1;
        self.positives += u64::from(label);
        // scikit-learn clips each column of [1 - p, p] to [eps, 1 - eps].
        let eps = f64::EPSILON;
        let p = if label { score } else { 1.0 - score };
        self.log_loss -= p.clamp(eps, 1.0 - eps).ln();
        let y = if label { 1.0 } else { 0.0 };
        self.brier += (score - y) * (score - y);
        self.correct += u64::from((score >= config.threshold) == label);
        if let Some(pairs) = &mut self.pairs {
            if pairs.len() < config.max_pairs_per_window {
                pairs.push((score, label));
            } else {
                self.pairs = None;
            }
        }
        if !self.bins.is_empty() {
            let bin = bin_of(score, self.bins.len());
            let b = &mut self.bins[bin];
            b.0 += score;
            b.1 += u64::from(label);
            b.2 += 1;
        }
    }

    fn outcomes(&self) -> Outcomes {
        let n = self.n as f64;
        let some = |v: f64| (self.n > 0).then_some(v);
        Outcomes {
            n: self.n,
            positives: self.positives,
            log_loss: some(self.log_loss / n),
            brier: some(self.brier / n),
            accuracy: some(self.correct as f64 / n),
            auc: self.pairs.as_deref().and_then(auc),
            calibration: self
                .bins
                .iter()
                .filter(|b| b.2 > 0)
                .map(|&(sum, pos, count)| (sum / count as f64, pos as f64 / count as f64, count))
                .collect(),
        }
    }
}

/// `calibration_curve`'s bin: the number of interior edges (`i / bins`, as `np.linspace`
/// makes them) below the score, so a score on an edge falls in the lower bin.
fn bin_of(score: f64, bins: usize) -> usize {
    let step = 1.0 / bins as f64;
    (1..bins).take_while(|&i| (i as f64 * step) < score).count()
}

/// ROC AUC by the rank-sum: per distinct score, from the highest, the trapezoid under the
/// curve in counts (exact integers), divided once at the end. `None` with one class only.
fn auc(pairs: &[(f64, bool)]) -> Option<f64> {
    let positives = pairs.iter().filter(|p| p.1).count() as u64;
    let negatives = pairs.len() as u64 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut sorted = pairs.to_vec();
    sorted.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    // Twice the area, in units of one positive by one negative: stays an exact integer.
    let (mut area2, mut tp, mut i) = (0u128, 0u64, 0);
    while i < sorted.len() {
        let (mut group_tp, mut group_fp) = (0u64, 0u64);
        let score = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == score {
            if sorted[i].1 {
                group_tp += 1
            } else {
                group_fp += 1
            }
            i += 1;
        }
        area2 += u128::from(group_fp) * u128::from(2 * tp + group_tp);
        tp += group_tp;
    }
    Some(area2 as f64 / (2.0 * positives as f64 * negatives as f64))
}

/// The delayed-label join and its metrics. See the [module docs](self).
pub struct Feedback {
    config: FeedbackConfig,
    waiting: HashMap<u64, Waiting>,
    /// (expiry, id), soonest first; entries of ids since replaced are skipped when popped.
    expiry: BinaryHeap<Reverse<(u64, u64)>>,
    totals: BTreeMap<u64, Sums>,
    windows: BTreeMap<(u64, u64), Sums>,
    delays: hdrhistogram::Histogram<u64>,
    detector: Option<Detector>,
    report: FeedbackReport,
}

impl Feedback {
    /// A join with this configuration (a zero TTL, capacity, window or bin count, a
    /// threshold outside [0, 1], or a detector's bad parameter is an [`Error::Config`]).
    pub fn new(config: FeedbackConfig) -> Result<Self> {
        if config.ttl_ms == 0
            || config.capacity == 0
            || config.window_ms == 0
            || config.windows_kept == 0
        {
            return Err(Error::Config(
                "feedback: ttl, capacity, window and windows kept must be above 0".into(),
            ));
        }
        if !(0.0..=1.0).contains(&config.threshold) || config.bins == 0 || config.bins > 10_000 {
            return Err(Error::Config(
                "feedback: threshold must be in [0, 1] and bins in 1..=10000".into(),
            ));
        }
        let detector = match &config.detector {
            Some((kind, params)) => Some(Detector::new(*kind, params)?),
            None => None,
        };
        let delays =
            hdrhistogram::Histogram::new(3).map_err(|e| Error::Config(format!("feedback: {e}")))?;
        Ok(Self {
            config,
            waiting: HashMap::new(),
            expiry: BinaryHeap::new(),
            totals: BTreeMap::new(),
            windows: BTreeMap::new(),
            delays,
            detector,
            report: FeedbackReport::default(),
        })
    }

    /// Drops the predictions whose label can no longer come by `now_ms`.
    fn expire(&mut self, now_ms: u64) {
        while let Some(&Reverse((expires, id))) = self.expiry.peek() {
            if expires >= now_ms {
                break;
            }
            self.expiry.pop();
            self.drop_entry(id, expires, false);
        }
    }

    /// Removes `id` if its entry is the one that expires at `expires` (else it was replaced).
    fn drop_entry(&mut self, id: u64, expires: u64, evicted: bool) {
        let ttl = self.config.ttl_ms;
        if let Some(w) = self.waiting.get(&id)
            && w.at_ms.saturating_add(ttl) == expires
        {
            if !w.labelled {
                if evicted {
                    self.report.evicted += 1;
                } else {
                    self.report.expired += 1;
                }
            }
            self.waiting.remove(&id);
        }
    }

    /// Records a prediction: event `id`, made by `version`, probability `score`, at `at_ms`.
    /// A score that is not a probability is an [`Error::Input`] (counted as refused); an id already waiting is
    /// replaced (the newer prediction is the one a label will belong to).
    pub fn predicted(&mut self, id: u64, version: u64, score: f64, at_ms: u64) -> Result<()> {
        if !(0.0..=1.0).contains(&score) {
            self.report.refused += 1;
            return Err(Error::Input {
                at: format!("prediction {id}"),
                message: format!("score {score} is not a probability in [0, 1]"),
            });
        }
        self.expire(at_ms);
        while self.waiting.len() >= self.config.capacity && !self.waiting.contains_key(&id) {
            match self.expiry.pop() {
                Some(Reverse((expires, old))) => self.drop_entry(old, expires, true),
                None => break,
            }
        }
        self.waiting.insert(id, Waiting { version, score, at_ms, labelled: false });
        self.expiry.push(Reverse((at_ms.saturating_add(self.config.ttl_ms), id)));
        self.report.predictions += 1;
        Ok(())
    }

    /// Joins a label (0 or 1) for event `id`, arriving at `at_ms`. A NaN or any other value
    /// is an [`Error::Input`] (counted as invalid); an unknown, expired or already labelled
    /// id is counted and answered, never an error.
    pub fn label(&mut self, id: u64, label: f64, at_ms: u64) -> Result<Joined> {
        if label != 0.0 && label != 1.0 {
            self.report.invalid += 1;
            return Err(Error::Input {
                at: format!("label for {id}"),
                message: format!("label {label} is not 0 or 1"),
            });
        }
        self.expire(at_ms);
        let Some(w) = self.waiting.get_mut(&id) else {
            self.report.unmatched += 1;
            return Ok(Joined::Unmatched);
        };
        if w.labelled {
            self.report.duplicates += 1;
            return Ok(Joined::Duplicate);
        }
        w.labelled = true;
        let w = *w;
        let positive = label == 1.0;
        let delay_ms = at_ms.saturating_sub(w.at_ms);
        self.delays.saturating_record(delay_ms);
        self.report.matched += 1;
        let config = &self.config;
        self.totals.entry(w.version).or_default().add(w.score, positive, config);
        let window = w.at_ms / config.window_ms;
        self.windows
            .entry((w.version, window))
            .or_insert_with(|| Sums::windowed(config.bins))
            .add(w.score, positive, config);
        // Keep the newest windows of this version.
        let kept = config.windows_kept as u64;
        let newest = self
            .windows
            .range((w.version, 0)..=(w.version, u64::MAX))
            .next_back()
            .map(|(k, _)| k.1);
        if let Some(newest) = newest
            && newest >= kept
        {
            let old: Vec<_> = self
                .windows
                .range((w.version, 0)..(w.version, newest - kept + 1))
                .map(|(k, _)| *k)
                .collect();
            for k in old {
                self.windows.remove(&k);
            }
        }
        if let Some(d) = &mut self.detector {
            let wrong = (w.score >= config.threshold) != positive;
            // The detector takes 0/1 and both kinds of value; it cannot refuse these.
            if d.update(f64::from(u8::from(wrong))).is_ok() && d.drift_detected() {
                self.report.concept_drift_ms.push(at_ms);
            }
        }
        Ok(Joined::Matched { version: w.version, delay_ms })
    }

    /// Everything so far.
    pub fn report(&self) -> FeedbackReport {
        let mut report = self.report.clone();
        report.waiting = self.waiting.values().filter(|w| !w.labelled).count() as u64;
        if !self.delays.is_empty() {
            report.delay_quantiles_ms = [0.5, 0.9, 0.99, 1.0]
                .iter()
                .map(|&q| (q, self.delays.value_at_quantile(q)))
                .collect();
        }
        report.versions = self
            .totals
            .iter()
            .map(|(&version, sums)| {
                let mut total = sums.outcomes();
                total.calibration.clear();
                VersionReport {
                    version,
                    total,
                    windows: self
                        .windows
                        .range((version, 0)..=(version, u64::MAX))
                        .map(|(&(_, w), s)| WindowReport {
                            start_ms: w * self.config.window_ms,
                            outcomes: s.outcomes(),
                        })
                        .collect(),
                }
            })
            .collect();
        report
    }
}
