//! The reference's optimiser step: global-norm gradient clipping (`clip_grad_norm_`) followed
//! by AdamW with PyTorch's defaults.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, MultiGradientsParams, Optimizer};
use burn::prelude::ElementConversion;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

/// AdamW configured like `torch.optim.AdamW(lr, weight_decay)`: β = (0.9, 0.999), ε = 1e-8
/// (Burn's default ε is 1e-5).
pub fn adamw_config(weight_decay: f32) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay)
}

struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    acc: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.square().sum();
            self.acc = Some(match self.acc.take() {
                Some(a) => a + s,
                None => s,
            });
        }
    }
}

struct Scale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    coef: f32,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, g * self.coef);
        }
    }
}

/// Scales all gradients of `module` together so that their global L2 norm is at most
/// `max_norm`, exactly as `torch.nn.utils.clip_grad_norm_` does (coefficient
/// `min(1, max_norm / (norm + 1e-6))`). Returns the norm before clipping.
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f32,
) -> f32 {
    let mut v = SquaredNorm::<B> { grads, acc: None };
    module.visit(&mut v);
    let norm = v.acc.map_or(0.0, |a| a.into_scalar().elem::<f64>().sqrt()) as f32;
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    if coef < 1.0 {
        let mut s = Scale::<B> {
            grads,
            coef,
            _b: std::marker::PhantomData,
        };
        module.visit(&mut s);
    }
    norm
}

/// An optimiser that clips the global gradient norm before delegating the step (the
/// reference's Lightning `gradient_clip_val`, `gradient_clip_algorithm="norm"`).
#[derive(Clone)]
pub struct GlobalNormClip<O> {
    inner: O,
    max_norm: f32,
}

impl<O> GlobalNormClip<O> {
    /// Wraps `inner`, clipping to `max_norm` (no clipping when `max_norm` is not positive).
    pub fn new(inner: O, max_norm: f32) -> Self {
        Self { inner, max_norm }
    }
}

impl<M, B, O> Optimizer<M, B> for GlobalNormClip<O>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
    O: Optimizer<M, B>,
{
    type Record = O::Record;

    fn step(&mut self, lr: f64, module: M, mut grads: GradientsParams) -> M {
        if self.max_norm > 0.0 {
            clip_grad_norm::<B, M>(&module, &mut grads, self.max_norm);
        }
        self.inner.step(lr, module, grads)
    }

    /// With several devices each device's gradients are clipped separately before they are
    /// combined (an approximation of clipping the combined gradient).
    fn step_multi(&mut self, lr: f64, module: M, mut grads: MultiGradientsParams) -> M {
        if self.max_norm > 0.0 {
            for (g, _) in grads.grads.iter_mut() {
                clip_grad_norm::<B, M>(&module, g, self.max_norm);
            }
        }
        self.inner.step_multi(lr, module, grads)
    }

    fn to_record(&self) -> Self::Record {
        self.inner.to_record()
    }

    fn load_record(self, record: Self::Record) -> Self {
        Self {
            inner: self.inner.load_record(record),
            max_norm: self.max_norm,
        }
    }
}
