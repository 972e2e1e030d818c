//! Learning-rate schedules of `transformers`' `get_scheduler`, as multipliers of the base rate.
//!
//! A `LambdaLR` in PyTorch multiplies the base rate by `lambda(k)` after `k` scheduler steps:
//! the update of optimizer step `k + 1` uses `lambda(k)`, and the `learning_rate` logged at
//! global step `k` (after the scheduler stepped) is `base * lambda(k)`.

use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};

/// `--lr-scheduler-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerType {
    /// Linear warmup, then linear decay to 0 at the last step (the default).
    #[default]
    Linear,
    /// Linear warmup, then half a cosine period down to 0.
    Cosine,
    /// The base rate throughout (no warmup).
    Constant,
    /// Linear warmup, then the base rate.
    ConstantWithWarmup,
}

impl std::str::FromStr for SchedulerType {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| {
            TrainError::Args(format!(
                "unknown lr scheduler '{s}' (linear, cosine, constant, constant_with_warmup)"
            ))
        })
    }
}

/// A schedule over `total` optimizer steps with `warmup` of them warming up.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub kind: SchedulerType,
    pub warmup: usize,
    pub total: usize,
}

impl Schedule {
    /// The multiplier after `step` scheduler steps.
    pub fn factor(&self, step: usize) -> f64 {
        let (s, w, n) = (step as f64, self.warmup as f64, self.total as f64);
        let warming = step < self.warmup && self.kind != SchedulerType::Constant;
        if warming {
            return s / w.max(1.0);
        }
        match self.kind {
            SchedulerType::Constant | SchedulerType::ConstantWithWarmup => 1.0,
            SchedulerType::Linear => ((n - s) / (n - w).max(1.0)).max(0.0),
            SchedulerType::Cosine => {
                let progress = (s - w) / (n - w).max(1.0);
                (0.5 * (1.0 + (std::f64::consts::PI * 0.5 * 2.0 * progress).cos())).max(0.0)
            }
        }
    }
}

/// `warmup_steps` as `transformers` v5 reads it: a count when at least 1, otherwise a ratio
/// of the total steps, rounded up.
pub fn warmup_steps(value: f64, total: usize) -> Result<usize> {
    if !value.is_finite() || value < 0.0 {
        return Err(TrainError::Args(format!(
            "--warmup-steps {value}: give a step count or a ratio in [0, 1)"
        )));
    }
    Ok(if value >= 1.0 {
        value as usize
    } else {
        (total as f64 * value).ceil() as usize
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_transformers() {
        let lin = Schedule {
            kind: SchedulerType::Linear,
            warmup: 2,
            total: 10,
        };
        let f: Vec<f64> = (0..=10).map(|k| lin.factor(k)).collect();
        assert_eq!(&f[..3], &[0.0, 0.5, 1.0]);
        assert!((f[6] - 0.5).abs() < 1e-12 && f[10] == 0.0);
        let cos = Schedule {
            kind: SchedulerType::Cosine,
            warmup: 0,
            total: 4,
        };
        assert!((cos.factor(2) - 0.5).abs() < 1e-12 && cos.factor(4).abs() < 1e-12);
        let cw = Schedule {
            kind: SchedulerType::ConstantWithWarmup,
            warmup: 4,
            total: 9,
        };
        assert_eq!((cw.factor(1), cw.factor(7)), (0.25, 1.0));
        let c = Schedule {
            kind: SchedulerType::Constant,
            warmup: 4,
            total: 9,
        };
        assert_eq!(c.factor(0), 1.0);
        assert_eq!(warmup_steps(0.1, 25).ok(), Some(3));
        assert_eq!(warmup_steps(5.0, 25).ok(), Some(5));
        assert!(warmup_steps(-1.0, 25).is_err());
        assert!("cosine".parse::<SchedulerType>().is_ok());
        assert!("cosin".parse::<SchedulerType>().is_err());
    }
}
