//! Seeded negative sampling for `tx__belongs__bd` link prediction.
//!
//! Negatives are drawn without replacement among the tile's (transcript, boundary) pairs that
//! are not positive, restricted to transcripts that have at least one positive. The reference
//! Segger draws `ratio × P` pairs over all transcripts with PyG's `RandomLinkSplit` and then
//! keeps those whose transcript has a positive, so it ends with fewer than `ratio × P`; here the
//! draw is made inside the restricted set, so up to `ratio × P` negatives are returned (fewer
//! only when the set has fewer pairs).

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
    // The candidates are, for each transcript with a positive (ascending), the boundaries
    // 0..num_bd (ascending) that are not among its positives. They are never materialised:
    // candidate `i` is found from per-transcript counts, which keeps memory and time linear
    // in the number of positives.
    let mut pairs: Vec<(i64, i64)> = pos_src
        .iter()
        .copied()
        .zip(pos_dst.iter().copied())
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let nb = num_bd as i64;
    let mut txs: Vec<i64> = Vec::new();
    // Per transcript: the range of its in-range positive boundaries in `excl`.
    let mut excl: Vec<i64> = Vec::with_capacity(pairs.len());
    let mut excl_start: Vec<usize> = Vec::new();
    // Prefix sums of candidate counts.
    let mut offsets: Vec<usize> = vec![0];
    let mut k = 0;
    while k < pairs.len() {
        let t = pairs[k].0;
        txs.push(t);
        excl_start.push(excl.len());
        while k < pairs.len() && pairs[k].0 == t {
            let b = pairs[k].1;
            if (0..nb).contains(&b) {
                excl.push(b);
            }
            k += 1;
        }
        let n_excl = excl.len() - excl_start[excl_start.len() - 1];
        offsets.push(offsets[offsets.len() - 1] + (num_bd - n_excl));
    }
    excl_start.push(excl.len());
    let total = offsets[offsets.len() - 1];
    let wanted = ((pos_src.len() as f64) * ratio).round().max(0.0) as usize;
    let m = wanted.min(total);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let picked = sample(&mut rng, total, m);
    let mut out = LabelStore {
        src: Vec::with_capacity(pos_src.len() + m),
        dst: Vec::with_capacity(pos_src.len() + m),
        label: Vec::with_capacity(pos_src.len() + m),
    };
    out.src.extend_from_slice(pos_src);
    out.dst.extend_from_slice(pos_dst);
    out.label.resize(pos_src.len(), 1.0);
    for i in picked.iter() {
        let ti = offsets.partition_point(|&o| o <= i) - 1;
        // The (i - offsets[ti])-th boundary not excluded for this transcript.
        let mut b = (i - offsets[ti]) as i64;
        for &e in &excl[excl_start[ti]..excl_start[ti + 1]] {
            if e <= b {
                b += 1;
            } else {
                break;
            }
        }
        out.src.push(txs[ti]);
        out.dst.push(b);
        out.label.push(0.0);
    }
    out
}

/// Labels whose negatives are the boundaries each transcript competes between at prediction:
/// for every positive `(pos_src[i], pos_dst[i])`, the other boundaries among that transcript's
/// candidates (`cand_src[k] -> cand_dst[k]`, the `tx__neighbors__bd` edges, nearest first per
/// transcript), at most `ratio` per positive (rounded up), nearest first. A boundary that is a
/// positive of the same transcript is never a negative. Deterministic.
pub fn competing_labels(
    pos_src: &[i64],
    pos_dst: &[i64],
    cand_src: &[i64],
    cand_dst: &[i64],
    ratio: f64,
) -> LabelStore {
    let per = if ratio > 0.0 {
        ratio.ceil() as usize
    } else {
        0
    };
    let mut own: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
    for (&t, &b) in pos_src.iter().zip(pos_dst) {
        own.entry(t).or_default().push(b);
    }
    // Candidates grouped per transcript, in edge order (nearest first).
    let mut cands: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
    for (&t, &b) in cand_src.iter().zip(cand_dst) {
        if own.contains_key(&t) {
            cands.entry(t).or_default().push(b);
        }
    }
    let mut out = LabelStore {
        src: pos_src.to_vec(),
        dst: pos_dst.to_vec(),
        label: vec![1.0; pos_src.len()],
    };
    for &t in pos_src {
        let mine = &own[&t];
        let taken = cands
            .get(&t)
            .into_iter()
            .flatten()
            .filter(|b| !mine.contains(b))
            .take(per);
        for &b in taken {
            out.src.push(t);
            out.dst.push(b);
            out.label.push(0.0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::{Rng, SeedableRng};

    use super::*;

    /// The straightforward version: materialise every candidate pair.
    fn reference(
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
        let mut candidates = Vec::new();
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
            out.src.push(candidates[i].0);
            out.dst.push(candidates[i].1);
            out.label.push(0.0);
        }
        out
    }

    #[test]
    fn competing_negatives_are_the_other_candidates_nearest_first() {
        // Transcript 0 is in boundary 2, its candidates 1, 2, 3, 4; transcript 5 is in
        // boundary 0 with no other candidate; transcript 7 (no positive) is ignored.
        let l = competing_labels(
            &[0, 5],
            &[2, 0],
            &[0, 0, 0, 0, 5, 7, 7],
            &[1, 2, 3, 4, 0, 1, 2],
            2.0,
        );
        assert_eq!(l.src, vec![0, 5, 0, 0]);
        assert_eq!(l.dst, vec![2, 0, 1, 3]);
        assert_eq!(l.label, vec![1.0, 1.0, 0.0, 0.0]);
        let none = competing_labels(&[0], &[2], &[0, 0], &[1, 2], 0.0);
        assert_eq!(none.len(), 1);
        let one = competing_labels(&[0], &[2], &[0, 0, 0], &[1, 2, 3], 0.5);
        assert_eq!(one.dst, vec![2, 1]);
    }

    #[test]
    fn equals_the_materialising_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for case in 0..300 {
            let num_bd = rng.random_range(0..12usize);
            let n = rng.random_range(0..40usize);
            let src: Vec<i64> = (0..n).map(|_| rng.random_range(0..15)).collect();
            let dst: Vec<i64> = (0..n)
                .map(|_| rng.random_range(-1..num_bd as i64 + 2))
                .collect();
            let ratio = [0.0, 0.5, 1.0, 5.0, 100.0][case % 5];
            assert_eq!(
                sample_labels(&src, &dst, num_bd, ratio, case as u64),
                reference(&src, &dst, num_bd, ratio, case as u64),
                "case {case}"
            );
        }
    }
}
