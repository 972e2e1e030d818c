//! Bootstrap confidence intervals on a mean, as `rouge-score`'s `BootstrapAggregator`: resample
//! the examples with replacement `samples` times, average each resample, and report the
//! percentiles `(1 - confidence) / 2`, 50 and `(1 + confidence) / 2` of those averages (numpy's
//! linear interpolation). The random numbers come from a seeded SplitMix64, so a run is
//! reproducible; the bounds agree with `rouge-score`'s statistically, not digit for digit
//! (it draws from numpy's global generator).

use crate::{EvalError, Result};
use serde::Serialize;

/// How to resample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapOptions {
    /// Resamples (default 1000, as `rouge-score`).
    pub samples: usize,
    /// Confidence level in (0, 1) (default 0.95).
    pub confidence: f64,
    /// Seed of the random generator (default 0).
    pub seed: u64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        Self {
            samples: 1000,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// A mean with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The exact mean over the examples.
    pub mean: f64,
    /// Lower percentile of the resampled means (`rouge-score`'s `low`).
    pub low: f64,
    /// Median of the resampled means (`rouge-score`'s `mid`; close to, not equal to, the mean).
    pub mid: f64,
    /// Upper percentile of the resampled means (`rouge-score`'s `high`).
    pub high: f64,
}

/// SplitMix64: small, fast, and good enough for resampling indices.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (multiply-shift; the bias is below 2^-40 for any real `n`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Most resamples accepted: 1000 (rouge-score's default) already gives intervals stable to
/// about 0.1 point; a million is far past any use and keeps the resample table (one f64 per
/// measure and resample) and the run time bounded instead of aborting on allocation.
pub const MAX_SAMPLES: usize = 1_000_000;

/// Check the options.
pub fn validate(opts: &BootstrapOptions) -> Result<()> {
    if opts.samples == 0 {
        return Err(EvalError::InvalidOption(
            "bootstrap samples must be positive".into(),
        ));
    }
    if opts.samples > MAX_SAMPLES {
        return Err(EvalError::InvalidOption(format!(
            "bootstrap samples must be at most {MAX_SAMPLES}, got {}",
            opts.samples
        )));
    }
    if !(opts.confidence > 0.0 && opts.confidence < 1.0) {
        return Err(EvalError::InvalidOption(format!(
            "confidence must be between 0 and 1, got {}",
            opts.confidence
        )));
    }
    Ok(())
}

/// Intervals for each column of `rows` (examples × measures), resampling whole rows so the
/// measures of one example stay together.
pub fn intervals(rows: &[Vec<f64>], opts: &BootstrapOptions) -> Result<Vec<Interval>> {
    validate(opts)?;
    let n = rows.len();
    let width = rows.first().map_or(0, Vec::len);
    if n == 0 {
        return Err(EvalError::Empty);
    }
    let mut means = vec![0.0; width];
    for row in rows {
        for (m, v) in means.iter_mut().zip(row) {
            *m += v;
        }
    }
    means.iter_mut().for_each(|m| *m /= n as f64);

    let mut rng = SplitMix64::new(opts.seed);
    // samples[measure][resample]
    let mut resampled = vec![Vec::with_capacity(opts.samples); width];
    let mut sums = vec![0.0; width];
    for _ in 0..opts.samples {
        sums.iter_mut().for_each(|s| *s = 0.0);
        for _ in 0..n {
            let row = &rows[rng.below(n)];
            for (s, v) in sums.iter_mut().zip(row) {
                *s += v;
            }
        }
        for (col, s) in resampled.iter_mut().zip(&sums) {
            col.push(s / n as f64);
        }
    }
    let delta = (1.0 - opts.confidence) / 2.0;
    Ok(resampled
        .into_iter()
        .zip(means)
        .map(|(mut col, mean)| {
            col.sort_by(f64::total_cmp);
            Interval {
                mean,
                low: percentile(&col, 100.0 * delta),
                mid: percentile(&col, 50.0),
                high: percentile(&col, 100.0 * (1.0 - delta)),
            }
        })
        .collect())
}

/// numpy's default (`linear`) percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let Some(&last) = sorted.last() else {
        return f64::NAN;
    };
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = pos - lo as f64;
    if lo >= sorted.len() - 1 {
        return last;
    }
    // numpy's _lerp: a + (b - a) * t, mirrored for t >= 0.5.
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if frac >= 0.5 {
        b - diff * (1.0 - frac)
    } else {
        a + diff * frac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        let v = [1.0, 2.0, 4.0, 8.0];
        // np.percentile([1,2,4,8], [0, 2.5, 50, 97.5, 100]) = 1, 1.075, 3, 7.7, 8
        let got: Vec<f64> = [0.0, 2.5, 50.0, 97.5, 100.0]
            .iter()
            .map(|&q| percentile(&v, q))
            .collect();
        let want = [1.0, 1.075, 3.0, 7.7, 8.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn interval_brackets_the_mean_and_is_reproducible() {
        let rows: Vec<Vec<f64>> = (0..200).map(|i| vec![(i % 7) as f64, 1.0]).collect();
        let opts = BootstrapOptions::default();
        let a = intervals(&rows, &opts).unwrap();
        let b = intervals(&rows, &opts).unwrap();
        assert_eq!(a, b);
        let exact = rows.iter().map(|r| r[0]).sum::<f64>() / 200.0;
        assert_eq!(a[0].mean, exact);
        assert!(a[0].low < exact && exact < a[0].high, "{:?}", a[0]);
        assert!((a[0].mid - exact).abs() < 0.1, "{:?}", a[0]);
        // A constant column has a zero-width interval.
        assert_eq!((a[1].low, a[1].mid, a[1].high), (1.0, 1.0, 1.0));
        let other = intervals(&rows, &BootstrapOptions { seed: 7, ..opts }).unwrap();
        assert_ne!(a[0].low, other[0].low);
    }

    #[test]
    fn bad_options_are_errors() {
        let rows = vec![vec![1.0]];
        for opts in [
            BootstrapOptions {
                samples: 0,
                ..Default::default()
            },
            BootstrapOptions {
                confidence: 1.5,
                ..Default::default()
            },
            BootstrapOptions {
                samples: MAX_SAMPLES + 1,
                ..Default::default()
            },
        ] {
            assert!(intervals(&rows, &opts).is_err());
        }
        assert!(intervals(&[], &BootstrapOptions::default()).is_err());
    }
}
