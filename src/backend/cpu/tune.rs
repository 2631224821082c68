//! Tuning: which algorithm scores a forest fastest depends on the data's paths as much as on
//! the model, and every algorithm gives the same bits, so the scorer measures instead of
//! guessing. The first batch of at least [`TUNE_MIN_ROWS`] rows is scored by each candidate
//! plan on the same rows, in three interleaved rounds, and the fastest is kept. A plan is an
//! [`Algorithm`] and the kernel it runs on.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::backend::cpu::kernel::Kernel;
use crate::error::{Error, Result};

/// How the fast CPU scorer finds each tree's leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Walk each tree from its root, many rows at once (any forest).
    Traverse,
    /// QuickScorer bitvectors over splits sorted by threshold (trees of at most 64 leaves).
    /// Chosen by default when it applies and categorical splits are rare.
    Bitvector,
    /// Each tree node by node for 256 rows at once, the rows at a node kept as a bit mask:
    /// contiguous column compares, no gathers on the way down (any forest; fastest where
    /// rows share paths).
    Masked,
}

impl Algorithm {
    /// Short name, as [`FromStr`](std::str::FromStr) reads it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Traverse => "traverse",
            Algorithm::Bitvector => "bitvector",
            Algorithm::Masked => "masked",
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Algorithm> {
        match s {
            "traverse" => Ok(Algorithm::Traverse),
            "bitvector" => Ok(Algorithm::Bitvector),
            "masked" => Ok(Algorithm::Masked),
            _ => Err(Error::Config(format!(
                "unknown algorithm `{s}` (traverse, bitvector or masked)"
            ))),
        }
    }
}

/// A batch of at least this many rows triggers tuning (`Cpu::new` explains it).
pub const TUNE_MIN_ROWS: usize = 512;

/// Tuning times each candidate on about this many (row, tree) walks...
const TUNE_WALKS: usize = 1 << 18;

/// ...and at most this many rows.
const TUNE_MAX_ROWS: usize = 2_048;

/// An algorithm and the kernel it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan(pub Algorithm, pub Kernel);

/// Rows to time each candidate on for a forest of `trees` trees (at least `block`).
pub(crate) fn rows(trees: usize, block: usize) -> usize {
    (TUNE_WALKS / trees.max(1)).clamp(block, TUNE_MAX_ROWS)
}

/// The plans tuning times, and its pick once made.
#[derive(Debug)]
pub(crate) struct Tuning {
    candidates: Vec<Plan>,
    chosen: OnceLock<Plan>,
}

impl Tuning {
    pub fn new(candidates: Vec<Plan>) -> Tuning {
        assert!(!candidates.is_empty(), "tuning needs a candidate");
        Tuning { candidates, chosen: OnceLock::new() }
    }

    /// The pick, once made.
    pub fn chosen(&self) -> Option<Plan> {
        self.chosen.get().copied()
    }

    /// Every candidate runs on `kernel`.
    pub fn force_kernel(&mut self, kernel: Kernel) {
        self.candidates.iter_mut().for_each(|c| c.1 = kernel);
        self.candidates.dedup();
    }

    /// The first candidate `which` accepts.
    pub fn first(&self, which: impl Fn(&Plan) -> bool) -> Option<Plan> {
        self.candidates.iter().copied().find(which)
    }

    /// Times `score` (the same `rows` rows each call) for each candidate, best of three rounds
    /// over all candidates (not each one's runs back to back, so that a slow moment of a
    /// shared machine does not fall on one candidate only), and keeps the fastest. A pick made
    /// meanwhile by another thread stands.
    pub fn pick(&self, rows: usize, mut score: impl FnMut(Plan)) {
        let mut times: Vec<(Duration, Plan)> =
            self.candidates.iter().map(|&p| (Duration::MAX, p)).collect();
        for _ in 0..3 {
            for (best, plan) in &mut times {
                let start = Instant::now();
                score(*plan);
                *best = (*best).min(start.elapsed());
            }
        }
        let (_, pick) = *times.iter().min_by_key(|t| t.0).expect("a candidate");
        if self.chosen.set(pick).is_ok() {
            let all: Vec<String> = times
                .iter()
                .map(|(t, p)| format!("{} {} {:.0} us", p.0.name(), p.1, t.as_secs_f64() * 1e6))
                .collect();
            log::info!(
                "tree scorer tuned on {rows} rows: {} {} ({})",
                pick.0.name(),
                pick.1,
                all.join(", ")
            );
        }
    }
}
