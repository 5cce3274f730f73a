//! The reference's optimiser step: global-norm gradient clipping (`clip_grad_norm_`) followed
//! by AdamW with PyTorch's defaults.

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::model::{NamedParam, Segger};
use crate::mp::GatBackend;

/// AdamW configured like `torch.optim.AdamW(lr, weight_decay)`: β = (0.9, 0.999), ε = 1e-8
/// (Burn's default ε is 1e-5).
pub fn adamw_config(weight_decay: f32) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay)
}

/// Scales all gradients together so that their global L2 norm is at most `max_norm`, exactly as
/// `torch.nn.utils.clip_grad_norm_` does (coefficient `min(1, max_norm / (norm + 1e-6))`).
/// Returns the norm before clipping. Parameters without a gradient count as zero.
pub fn clip_grad_norm<B: AutodiffBackend + GatBackend>(
    model: &Segger<B>,
    grads: &mut GradientsParams,
    max_norm: f32,
) -> f32
where
    B::InnerBackend: GatBackend,
{
    let params = model.named_params();
    let mut sq = 0f64;
    for (_, p) in &params {
        sq += match p {
            NamedParam::D1(t) => grads
                .get::<B::InnerBackend, 1>(t.id)
                .map_or(0.0, |g| sum_sq(g)),
            NamedParam::D2(t) => grads
                .get::<B::InnerBackend, 2>(t.id)
                .map_or(0.0, |g| sum_sq(g)),
        };
    }
    let norm = sq.sqrt() as f32;
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    if coef < 1.0 {
        for (_, p) in &params {
            match p {
                NamedParam::D1(t) => scale::<B::InnerBackend, 1>(grads, t.id, coef),
                NamedParam::D2(t) => scale::<B::InnerBackend, 2>(grads, t.id, coef),
            }
        }
    }
    norm
}

fn sum_sq<B: burn::tensor::backend::Backend, const D: usize>(g: Tensor<B, D>) -> f64 {
    let v: Vec<f32> = g.into_data().convert::<f32>().to_vec().expect("float data");
    v.iter().map(|x| (*x as f64) * (*x as f64)).sum()
}

fn scale<B: burn::tensor::backend::Backend, const D: usize>(
    grads: &mut GradientsParams,
    id: burn::module::ParamId,
    coef: f32,
) {
    if let Some(g) = grads.remove::<B, D>(id) {
        grads.register::<B, D>(id, g * coef);
    }
}
