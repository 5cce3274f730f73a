//! Seeded negative sampling for `tx__belongs__bd` link prediction.
//!
//! Negatives are drawn without replacement among the tile's (transcript, boundary) pairs that
//! are not positive, restricted to transcripts that have at least one positive. The reference
//! Segger draws `ratio × P` pairs over all transcripts with PyG's `RandomLinkSplit` and then
//! keeps those whose transcript has a positive, so it ends with fewer than `ratio × P`; here the
//! draw is made inside the restricted set, so up to `ratio × P` negatives are returned (fewer
//! only when the set has fewer pairs).

use std::collections::HashSet;

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::hetero::LabelStore;

/// Draws negatives for the positives `(pos_src[i], pos_dst[i])` among `num_bd` boundaries and
/// returns the label store: all positives (label 1) followed by the negatives (label 0).
/// The same inputs and seed always give the same output.
pub fn sample_labels(
    pos_src: &[i64],
    pos_dst: &[i64],
    num_bd: usize,
    ratio: f64,
    seed: u64,
) -> LabelStore {
    let positives: HashSet<(i64, i64)> = pos_src
        .iter()
        .copied()
        .zip(pos_dst.iter().copied())
        .collect();
    let mut txs: Vec<i64> = pos_src.to_vec();
    txs.sort_unstable();
    txs.dedup();
    let mut candidates: Vec<(i64, i64)> = Vec::with_capacity(txs.len() * num_bd);
    for &t in &txs {
        for b in 0..num_bd as i64 {
            if !positives.contains(&(t, b)) {
                candidates.push((t, b));
            }
        }
    }
    let wanted = ((pos_src.len() as f64) * ratio).round().max(0.0) as usize;
    let m = wanted.min(candidates.len());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let picked = sample(&mut rng, candidates.len(), m);
    let mut out = LabelStore {
        src: pos_src.to_vec(),
        dst: pos_dst.to_vec(),
        label: vec![1.0; pos_src.len()],
    };
    for i in picked.iter() {
        let (t, b) = candidates[i];
        out.src.push(t);
        out.dst.push(b);
        out.label.push(0.0);
    }
    out
}
