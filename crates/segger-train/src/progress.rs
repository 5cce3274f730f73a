use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::train::metric::MetricDefinition;
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};

use crate::loader::LoaderStats;

/// Progress as plain `tracing` lines, for logs and CI (burn-train's dashboard is used on a
/// terminal). A line at most every `every` per split, plus the per-epoch line of
/// [`crate::CsvMetricLogger`].
pub struct LogRenderer {
    stats: Arc<LoaderStats>,
    every: Duration,
    last: Option<Instant>,
}

impl LogRenderer {
    /// Logs training progress with transcripts/s from `stats`.
    pub fn new(stats: Arc<LoaderStats>, every: Duration) -> Self {
        Self {
            stats,
            every,
            last: None,
        }
    }

    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_none_or(|t| now - t >= self.every) {
            self.last = Some(now);
            return true;
        }
        false
    }
}

impl MetricsRendererTraining for LogRenderer {
    fn update_train(&mut self, _state: MetricState) {}

    fn update_valid(&mut self, _state: MetricState) {}

    fn render_train(&mut self, item: TrainingProgress, _p: Vec<ProgressType>) {
        if !self.due() {
            return;
        }
        let (done, total) = item
            .progress
            .as_ref()
            .map_or((0, 0), |p| (p.items_processed, p.items_total));
        let tx = self
            .stats
            .transcripts
            .load(std::sync::atomic::Ordering::Relaxed) as f64;
        let secs = self.stats.elapsed().max(1e-9);
        tracing::info!(
            "epoch {}/{}: batch {done}/{total}, {:.0} transcripts/s",
            item.global_progress.items_processed,
            item.global_progress.items_total,
            tx / secs
        );
    }

    fn render_valid(&mut self, _item: TrainingProgress, _p: Vec<ProgressType>) {}

    fn on_train_end(
        &mut self,
        _summary: Option<burn::train::LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for LogRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
    fn render_test(&mut self, _item: EvaluationProgress, _p: Vec<ProgressType>) {}
}

impl MetricsRenderer for LogRenderer {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, _definition: MetricDefinition) {}
}
