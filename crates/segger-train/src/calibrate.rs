//! Picks the assignment threshold of a trained model on its validation tiles
//! ([`segger_model::calibration`]).

use burn::data::dataloader::DataLoader;
use segger_model::calibration::{youden_cut, Calibration};
use segger_model::GatBackend;

use crate::lit::LitSegger;
use crate::loader::TileBatchLoader;

/// Scores every labelled pair of the loader's tiles with `model` and picks the cut.
pub fn calibrate<B: GatBackend>(
    model: &LitSegger<B>,
    loader: &TileBatchLoader<B>,
) -> Option<Calibration> {
    let mut scores: Vec<f32> = Vec::new();
    let mut labels: Vec<i64> = Vec::new();
    for batch in loader.iter() {
        if batch.input.labels.is_none() {
            continue;
        }
        let out = model.forward_link(&batch);
        let logits: Vec<f32> = segger_model::pyg::tensor_values(out.logits);
        scores.extend(logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())));
        let t = out.targets.into_data();
        labels.extend(t.iter::<i64>());
    }
    youden_cut(&scores, &labels)
}
