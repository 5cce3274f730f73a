//! The assignment threshold a trained model brings to `segger predict`: picked on the
//! validation pairs after training (`segger-train`) and stored as `calibration.json` beside
//! `model.safetensors`.
//!
//! The validation pairs are the labelled `tx__belongs__bd` pairs of the validation tiles: a
//! nuclear transcript with its own nucleus (positive) and with the nuclei it competes between
//! (negatives, with `create_dataset`'s default `--negatives competing`). The threshold is the
//! score `sigmoid(logit)` that maximises Youden's J (true-positive rate minus false-positive
//! rate), which does not depend on how many negatives each positive has, unlike F1 or accuracy.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// File name of the calibration in a run directory.
pub const CALIBRATION_FILE: &str = "calibration.json";

/// A threshold picked on validation pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The score cut: `sigmoid(logit) ≥ score_cut` is an assignment.
    pub score_cut: f32,
    /// True-positive rate at the cut.
    pub tpr: f64,
    /// False-positive rate at the cut.
    pub fpr: f64,
    /// Positive pairs seen.
    pub positives: usize,
    /// Negative pairs seen.
    pub negatives: usize,
}

/// The score cut maximising `TPR − FPR` over `scores` (probabilities) with `labels` (1
/// positive, 0 negative); ties keep the highest cut. `None` without both classes.
pub fn youden_cut(scores: &[f32], labels: &[i64]) -> Option<Calibration> {
    let p = labels.iter().filter(|&&l| l == 1).count();
    let n = labels.len() - p;
    if p == 0 || n == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    // Walk the cut down through the distinct scores; at each, everything at or above is
    // predicted positive.
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut best: Option<Calibration> = None;
    let mut k = 0;
    while k < order.len() {
        let s = scores[order[k]];
        while k < order.len() && scores[order[k]] == s {
            if labels[order[k]] == 1 {
                tp += 1;
            } else {
                fp += 1;
            }
            k += 1;
        }
        let (tpr, fpr) = (tp as f64 / p as f64, fp as f64 / n as f64);
        if best.is_none_or(|b| tpr - fpr > b.tpr - b.fpr) {
            best = Some(Calibration {
                score_cut: s,
                tpr,
                fpr,
                positives: p,
                negatives: n,
            });
        }
    }
    best
}

/// Reads `calibration.json` of a run directory, when there is one.
pub fn read_calibration(dir: &Path) -> Result<Option<Calibration>, String> {
    let path = dir.join(CALIBRATION_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let c: Calibration = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a calibration ({e})", path.display()))?;
    if !(0.0..=1.0).contains(&c.score_cut) {
        return Err(format!(
            "{}: score_cut: {} is outside [0, 1]",
            path.display(),
            c.score_cut
        ));
    }
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn youden_picks_the_separating_cut() {
        let s = [0.9, 0.8, 0.7, 0.4, 0.3, 0.2];
        let l = [1, 1, 1, 0, 0, 0];
        let c = youden_cut(&s, &l).unwrap();
        assert_eq!(c.score_cut, 0.7);
        assert_eq!((c.tpr, c.fpr), (1.0, 0.0));
        assert_eq!((c.positives, c.negatives), (3, 3));
    }

    #[test]
    fn youden_weighs_classes_equally_and_handles_ties() {
        // One positive among many negatives: the cut that keeps it and drops the rest wins,
        // whatever the class sizes.
        let s = [0.6, 0.5, 0.5, 0.5, 0.1];
        let l = [0, 1, 0, 0, 0];
        let c = youden_cut(&s, &l).unwrap();
        assert_eq!(c.score_cut, 0.5);
        assert!((c.tpr - 1.0).abs() < 1e-12 && (c.fpr - 0.75).abs() < 1e-12);
        let s = [0.2, 0.9, 0.8, 0.1];
        let l = [1, 0, 0, 0];
        assert_eq!(youden_cut(&s, &l).unwrap().score_cut, 0.2);
        assert!(youden_cut(&[0.3], &[1]).is_none());
        assert!(youden_cut(&[0.3], &[0]).is_none());
    }
}
