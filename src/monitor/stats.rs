//! Running statistics in River's exact floating-point order (`river.stats`), so a detector
//! built on them takes the same decisions as River's on the same stream, bit for bit.

/// Running mean (`river.stats.Mean`): `mean += (w / n) * (x - mean)`, `n` counted as a float.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Mean {
    /// Observations so far (a float, as River keeps it).
    pub(crate) n: f64,
    mean: f64,
}

impl Mean {
    pub(crate) fn update(&mut self, x: f64) {
        self.n += 1.0;
        self.mean += 1.0 / self.n * (x - self.mean);
    }

    pub(crate) fn get(&self) -> f64 {
        self.mean
    }
}

/// Running variance with one degree of freedom (`river.stats.Var`, Welford's update).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Var {
    pub(crate) mean: Mean,
    s: f64,
}

impl Var {
    pub(crate) fn update(&mut self, x: f64) {
        let old = self.mean.get();
        self.mean.update(x);
        self.s += (x - old) * (x - self.mean.get());
    }

    /// The sample variance; 0 until two observations.
    pub(crate) fn get(&self) -> f64 {
        if self.mean.n > 1.0 { self.s / (self.mean.n - 1.0) } else { 0.0 }
    }
}

/// Exponentially weighted mean (`river.stats.EWMean`): the first observation seeds it, then
/// `mean = a * x + (1 - a) * mean`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct EwMean {
    fading: f64,
    mean: f64,
    seeded: bool,
}

impl EwMean {
    pub(crate) fn new(fading: f64) -> Self {
        Self { fading, mean: 0.0, seeded: false }
    }

    pub(crate) fn update(&mut self, x: f64) {
        if self.seeded {
            self.mean = self.fading * x + (1.0 - self.fading) * self.mean;
        } else {
            self.mean = x;
            self.seeded = true;
        }
    }

    pub(crate) fn get(&self) -> f64 {
        self.mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_matches_the_textbook_sample_variance() {
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let mut v = Var::default();
        for x in xs {
            v.update(x);
        }
        assert_eq!(v.mean.get(), 5.0);
        assert!((v.get() - 32.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn ew_mean_is_seeded_by_its_first_value() {
        let mut m = EwMean::new(0.3);
        m.update(2.5);
        assert_eq!(m.get(), 2.5);
        m.update(1.0);
        assert_eq!(m.get(), 0.3 * 1.0 + 0.7 * 2.5);
    }
}
