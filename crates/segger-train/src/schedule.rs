//! The learning-rate schedule of a run (`train --lr_schedule`).

use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::LearningRate;
use burn::tensor::backend::Backend;

/// How the learning rate moves over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrScheduleKind {
    /// `--learning_rate` at every step (the reference's `AdamW(lr)` without a scheduler).
    #[default]
    Constant,
    /// A linear warm-up from a tenth of `--learning_rate` over the first
    /// [`WARMUP_SHARE`] of the run's steps, then a half cosine down to [`FLOOR_SHARE`] of it at
    /// the run's last step.
    Cosine,
}

impl LrScheduleKind {
    /// The flag value (`cosine`, `constant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Cosine => "cosine",
        }
    }
}

/// Share of the run's steps spent warming up ([`LrScheduleKind::Cosine`]).
pub const WARMUP_SHARE: f64 = 0.05;
/// The learning rate at the end of a cosine run, as a share of `--learning_rate`.
pub const FLOOR_SHARE: f64 = 0.01;

/// A learning-rate schedule over a run of `total` optimiser steps; its state (the steps taken)
/// is saved with each checkpoint, so a resumed run continues where it stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    kind: LrScheduleKind,
    peak: LearningRate,
    total: usize,
    taken: usize,
}

impl LrSchedule {
    /// `kind` at `peak` (`--learning_rate`) over `total` steps (at least one).
    pub fn new(kind: LrScheduleKind, peak: LearningRate, total: usize) -> Self {
        Self {
            kind,
            peak,
            total: total.max(1),
            taken: 0,
        }
    }

    /// The learning rate of step `t` (0-based). Steps past the run's end keep the last rate.
    pub fn rate(&self, t: usize) -> LearningRate {
        match self.kind {
            LrScheduleKind::Constant => self.peak,
            LrScheduleKind::Cosine => {
                let warm = ((self.total as f64 * WARMUP_SHARE).round() as usize).max(1);
                if t < warm {
                    let f = (t + 1) as f64 / warm as f64;
                    return self.peak * (0.1 + 0.9 * f);
                }
                let span = (self.total - warm.min(self.total)).max(1) as f64;
                let f = ((t + 1 - warm) as f64 / span).min(1.0);
                let floor = self.peak * FLOOR_SHARE;
                floor + 0.5 * (self.peak - floor) * (1.0 + (f * std::f64::consts::PI).cos())
            }
        }
    }
}

/// The record is the number of steps taken, optional so that a checkpoint of a run with burn's
/// constant learning rate (a unit record, the same bytes as `None`) loads too: such a run is
/// resumed with [`LrScheduleKind::Constant`] (`--resume` refuses another schedule), whose rate
/// does not depend on the step.
impl LrScheduler for LrSchedule {
    type Record<B: Backend> = Option<usize>;

    fn step(&mut self) -> LearningRate {
        let lr = self.rate(self.taken);
        self.taken += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> Option<usize> {
        Some(self.taken)
    }

    fn load_record<B: Backend>(mut self, record: Option<usize>) -> Self {
        self.taken = record.unwrap_or(0);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_the_learning_rate() {
        let s = LrSchedule::new(LrScheduleKind::Constant, 3e-3, 100);
        assert_eq!((s.rate(0), s.rate(99), s.rate(500)), (3e-3, 3e-3, 3e-3));
    }

    #[test]
    fn cosine_warms_up_peaks_and_ends_at_the_floor() {
        let s = LrSchedule::new(LrScheduleKind::Cosine, 1e-2, 200);
        // 10 warm-up steps from a tenth of the peak
        assert!((s.rate(0) - 1e-2 * (0.1 + 0.9 * 0.1)).abs() < 1e-12);
        assert!((s.rate(9) - 1e-2).abs() < 1e-12);
        let mid = s.rate(9 + 95);
        assert!((mid - (1e-4 + 0.5 * (1e-2 - 1e-4))).abs() < 1e-9, "{mid}");
        assert!((s.rate(199) - 1e-4).abs() < 1e-12);
        assert!((s.rate(1000) - 1e-4).abs() < 1e-12);
        // decreasing after the warm-up
        assert!((10..199).all(|t| s.rate(t + 1) <= s.rate(t)));
    }

    #[test]
    fn the_state_resumes() {
        let mut s = LrSchedule::new(LrScheduleKind::Cosine, 1e-2, 50);
        let all: Vec<f64> = (0..50).map(|_| s.step()).collect();
        let mut r = LrSchedule::new(LrScheduleKind::Cosine, 1e-2, 50)
            .load_record::<burn::backend::Flex>(Some(20));
        assert_eq!(r.step(), all[20]);
        // a checkpoint of burn's constant rate (a unit record, read as None) starts at step 0
        let mut c = LrSchedule::new(LrScheduleKind::Constant, 1e-3, 50)
            .load_record::<burn::backend::Flex>(None);
        assert_eq!((c.taken, c.step()), (0, 1e-3));
    }
}
