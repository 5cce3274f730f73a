//! Validation metrics that burn-train lacks at our sizes: an O(L log L) AUROC.

use std::marker::PhantomData;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricMetadata, MetricName, Numeric, NumericEntry, SerializedEntry,
};

/// Input of [`LinkAurocMetric`]: link logits and 0/1 labels.
#[derive(Debug, Clone)]
pub struct LinkAurocInput<B: Backend> {
    /// Logits `[L]`.
    pub logits: Tensor<B, 1>,
    /// Labels `[L]`.
    pub targets: Tensor<B, 1, Int>,
}

/// Binary AUROC in O(L log L) (rank statistic, ties counted half). burn-train 0.21's
/// `AurocMetric` compares all pairs, O(L²) in time and memory: with the ~25,000 label pairs of
/// a seed-config batch it needs tens of GB.
#[derive(Clone)]
pub struct LinkAurocMetric<B: Backend> {
    name: MetricName,
    state: NumericMetricState,
    _b: PhantomData<B>,
}

impl<B: Backend> Default for LinkAurocMetric<B> {
    fn default() -> Self {
        Self {
            name: MetricName::new("AUROC".to_string()),
            state: NumericMetricState::default(),
            _b: PhantomData,
        }
    }
}

/// AUROC of `scores` against `labels` (1 positive, 0 negative): the probability that a random
/// positive scores above a random negative, ties counting one half. `None` without both classes.
pub fn auroc(scores: &[f32], labels: &[i64]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum_pos, mut n_pos) = (0f64, 0u64);
    let mut i = 0;
    while i < idx.len() {
        // A run of tied scores shares the mean rank (1-based).
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] == 1 {
                rank_sum_pos += mean_rank;
                n_pos += 1;
            }
        }
        i = j + 1;
    }
    let n_neg = scores.len() as u64 - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

impl<B: Backend> Metric for LinkAurocMetric<B> {
    type Input = LinkAurocInput<B>;

    fn update(&mut self, input: &LinkAurocInput<B>, _metadata: &MetricMetadata) -> SerializedEntry {
        let scores: Vec<f32> = input
            .logits
            .clone()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("float data");
        let labels: Vec<i64> = input.targets.clone().into_data().iter::<i64>().collect();
        let n = scores.len();
        // A batch with one class only has no AUROC; count it as chance rather than skipping it.
        let value = auroc(&scores, &labels).unwrap_or(0.5);
        self.state.update(
            100.0 * value,
            n,
            FormatOptions::new(self.name()).unit("%").precision(2),
        )
    }

    fn clear(&mut self) {
        self.state.reset()
    }

    fn name(&self) -> MetricName {
        self.name.clone()
    }
}

impl<B: Backend> Numeric for LinkAurocMetric<B> {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

impl<B: Backend> Adaptor<LinkAurocInput<B>> for crate::lit::LinkOutput<B> {
    fn adapt(&self) -> LinkAurocInput<B> {
        LinkAurocInput {
            logits: self.logits.clone(),
            targets: self.targets.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::auroc;

    /// The O(n²) definition.
    fn pairwise(s: &[f32], l: &[i64]) -> f64 {
        let (mut num, mut den) = (0f64, 0f64);
        for i in 0..s.len() {
            for j in 0..s.len() {
                if l[i] == 1 && l[j] == 0 {
                    den += 1.0;
                    num += if s[i] > s[j] {
                        1.0
                    } else if s[i] == s[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        num / den
    }

    #[test]
    fn auroc_matches_pairwise_definition_with_ties() {
        let s = [0.1f32, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.05, 0.35];
        let l = [0i64, 0, 1, 1, 1, 0, 1, 0, 0];
        assert!((auroc(&s, &l).unwrap() - pairwise(&s, &l)).abs() < 1e-12);
        assert_eq!(auroc(&[0.1, 0.2], &[0, 1]), Some(1.0));
        assert_eq!(auroc(&[0.1, 0.2], &[1, 0]), Some(0.0));
        assert_eq!(auroc(&[0.3, 0.3], &[1, 0]), Some(0.5));
        assert_eq!(auroc(&[0.3, 0.2], &[1, 1]), None);
    }
}
