//! The reference's optimiser step: global-norm gradient clipping (`clip_grad_norm_`) followed
//! by AdamW with PyTorch's defaults and arithmetic.

use std::any::Any;
use std::sync::{Arc, Mutex};

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::record::AdaptorRecord;
use burn::optim::{
    AdamWState, AdaptiveMomentumState, GradientsParams, LearningRate, MultiGradientsParams,
    Optimizer, SimpleOptimizer,
};
use burn::prelude::ElementConversion;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use crate::mp::{AdamWParam, AdamWStep};
use crate::GatBackend;
use burn::tensor::ops::FloatTensor;

/// AdamW as `torch.optim.AdamW` computes it: decoupled weight decay `p ← p(1 − lr·wd)`, then
/// `p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)`. Each parameter's step is one call of
/// [`GatBackend::adamw_step`]: one kernel on the GPU backends, where Burn's `AdamW` launches
/// about fifteen element-wise kernels per parameter. The state is Burn's [`AdamWState`], so
/// optimiser records are those of Burn's `AdamW`.
#[derive(Clone, Debug)]
pub struct TorchAdamW {
    /// β₁ (0.9).
    pub beta_1: f64,
    /// β₂ (0.999).
    pub beta_2: f64,
    /// ε (1e-8; Burn's default is 1e-5).
    pub epsilon: f64,
    /// The decoupled weight decay.
    pub weight_decay: f64,
    /// The gradient clip's coefficient for the current step, when [`GlobalNormClip`] hands it
    /// over instead of scaling every gradient (see [`clipped_adamw`]).
    pub grad_scale: GradScale,
}

/// A slot shared by [`GlobalNormClip`] and [`TorchAdamW`]: the clip puts its coefficient (a
/// `[1]` device tensor) here, and the AdamW kernel multiplies each gradient by it as it reads
/// it, which saves one launch per parameter.
#[derive(Clone, Default)]
pub struct GradScale(Arc<Mutex<Option<Box<dyn Any + Send>>>>);

impl std::fmt::Debug for GradScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GradScale")
    }
}

impl GradScale {
    fn set<B: burn::tensor::backend::Backend>(&self, coef: Option<Tensor<B, 1>>) {
        *self.0.lock().expect("grad scale lock") = coef.map(|c| Box::new(c) as Box<dyn Any + Send>);
    }

    fn get<B: burn::tensor::backend::Backend>(&self) -> Option<Tensor<B, 1>> {
        let slot = self.0.lock().expect("grad scale lock");
        slot.as_ref()
            .and_then(|b| b.downcast_ref::<Tensor<B, 1>>())
            .cloned()
    }
}

/// The reference's optimiser step as one optimiser: [`GlobalNormClip`] at `max_norm` (none when
/// not positive) around [`TorchAdamW`] with `weight_decay`, all parameters stepped together
/// ([`MultiTensorAdamW`]), the clip coefficient applied inside the AdamW kernel.
pub fn clipped_adamw<B, M>(
    weight_decay: f64,
    max_norm: f32,
) -> GlobalNormClip<MultiTensorAdamW<M, B>>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    GlobalNormClip::around_adamw(
        TorchAdamW::new(weight_decay),
        max_norm,
        MultiTensorAdamW::new,
    )
}

/// [`clipped_adamw`] stepping the parameters one by one through Burn's optimiser adaptor (one
/// AdamW kernel per parameter on the GPU backends): the same arithmetic and records, for
/// comparison.
pub fn clipped_adamw_per_parameter<B, M>(
    weight_decay: f64,
    max_norm: f32,
) -> GlobalNormClip<OptimizerAdaptor<TorchAdamW, M, B>>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    GlobalNormClip::around_adamw(TorchAdamW::new(weight_decay), max_norm, |a| {
        a.init::<B, M>()
    })
}

/// The optimiser records of [`TorchAdamW`] (Burn's `OptimizerAdaptor` records: per parameter,
/// Burn's `AdamWState`).
pub type AdamWRecords<M, B> = <OptimizerAdaptor<TorchAdamW, M, B> as Optimizer<M, B>>::Record;

/// [`TorchAdamW`] over all parameters of a module at once: their gradients, moments and step
/// scalars go to one [`GatBackend::adamw_multi`] call, one kernel launch per group of
/// parameters on the GPU backends where Burn's optimiser adaptor makes one call (and launch) per
/// parameter. The arithmetic and the records are [`TorchAdamW`]'s through Burn's
/// `OptimizerAdaptor`, so checkpoints of either load in the other.
pub struct MultiTensorAdamW<M, B>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    optim: TorchAdamW,
    records: AdamWRecords<M, B>,
}

impl<M, B> Clone for MultiTensorAdamW<M, B>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    fn clone(&self) -> Self {
        Self {
            optim: self.optim.clone(),
            records: self.records.clone(),
        }
    }
}

impl<M, B> MultiTensorAdamW<M, B>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    /// Steps `optim` over all parameters together; no state yet.
    pub fn new(optim: TorchAdamW) -> Self {
        Self {
            optim,
            records: Default::default(),
        }
    }

    fn adaptor(&mut self) -> OptimizerAdaptor<TorchAdamW, M, B> {
        OptimizerAdaptor::from(self.optim.clone()).load_record(std::mem::take(&mut self.records))
    }
}

type Inner<B> = <B as AutodiffBackend>::InnerBackend;

/// One parameter on its way through [`MultiTensorAdamW::step`].
struct Pending<B: AutodiffBackend> {
    id: ParamId,
    dims: Vec<usize>,
    time: usize,
    param: AdamWParam<Inner<B>>,
}

/// Takes every parameter that has a gradient, with its gradient and state, flattened.
struct Collect<'a, M, B>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    optim: &'a TorchAdamW,
    lr: LearningRate,
    grads: &'a mut GradientsParams,
    records: &'a mut AdamWRecords<M, B>,
    pending: Vec<Pending<B>>,
}

impl<M, B> ModuleVisitor<B> for Collect<'_, M, B>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(grad) = self.grads.remove::<Inner<B>, D>(param.id) else {
            return;
        };
        let device = grad.device();
        let mut tensor = param.val().inner();
        if tensor.device() != device {
            tensor = tensor.to_device(&device);
        }
        let dims = tensor.dims().to_vec();
        let n = dims.iter().product::<usize>();
        let state = self.records.remove(&param.id).map(|r| {
            <TorchAdamW as SimpleOptimizer<Inner<B>>>::to_device(r.into_state::<D>(), &device)
        });
        let (time, moments) = flat_state(state, n);
        self.pending.push(Pending {
            id: param.id,
            dims,
            time,
            param: AdamWParam {
                p: tensor.reshape([n]),
                g: grad.reshape([n]),
                moments,
                step: self.optim.scalars(self.lr, time),
            },
        });
    }
}

/// Puts the stepped parameters back and records their new state.
struct Apply<'a, M, B>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    stepped: HashMap<ParamId, Stepped<B>>,
    records: &'a mut AdamWRecords<M, B>,
}

/// A stepped parameter: its shape, step count and new `(p, m, v)`, flattened.
type Stepped<B> = (Vec<usize>, usize, [Tensor<Inner<B>, 1>; 3]);

impl<M, B> ModuleMapper<B> for Apply<'_, M, B>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some((dims, time, [p, m, v])) = self.stepped.remove(&id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let dims: [usize; D] = dims.try_into().expect("the parameter's rank");
        let state = AdamWState::new(AdaptiveMomentumState::new(
            time,
            m.reshape(dims),
            v.reshape(dims),
        ));
        self.records.insert(id, AdaptorRecord::from_state(state));
        let mut new = Tensor::from_inner(p.reshape(dims));
        if tensor.is_require_grad() {
            new = new.require_grad();
        }
        Param::from_mapped_value(id, new, mapper)
    }
}

impl<M, B> Optimizer<M, B> for MultiTensorAdamW<M, B>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    type Record = AdamWRecords<M, B>;

    fn step(&mut self, lr: LearningRate, module: M, mut grads: GradientsParams) -> M {
        let mut collect = Collect::<M, B> {
            optim: &self.optim,
            lr,
            grads: &mut grads,
            records: &mut self.records,
            pending: Vec::new(),
        };
        module.visit(&mut collect);
        let pending = collect.pending;
        let scale = self.optim.grad_scale.get::<Inner<B>>();
        let mut meta = Vec::with_capacity(pending.len());
        let mut params = Vec::with_capacity(pending.len());
        for p in pending {
            meta.push((p.id, p.dims, p.time));
            params.push(p.param);
        }
        let results = Inner::<B>::adamw_multi(params, scale);
        let stepped = meta
            .into_iter()
            .zip(results)
            .map(|((id, dims, time), (p, m, v))| (id, (dims, time, [p, m, v])))
            .collect();
        module.map(&mut Apply::<M, B> {
            stepped,
            records: &mut self.records,
        })
    }

    /// With several devices, each parameter's gradient lives on one of them: Burn's adaptor
    /// steps the parameters one by one there.
    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        let mut adaptor = self.adaptor();
        let module = adaptor.step_multi(lr, module, grads);
        self.records = adaptor.to_record();
        module
    }

    fn to_record(&self) -> Self::Record {
        self.records.clone()
    }

    fn load_record(mut self, record: Self::Record) -> Self {
        self.records = record;
        self
    }
}

impl TorchAdamW {
    /// `torch.optim.AdamW(lr, weight_decay=weight_decay)`: β = (0.9, 0.999), ε = 1e-8.
    pub fn new(weight_decay: f64) -> Self {
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay,
            grad_scale: GradScale::default(),
        }
    }

    /// The scalars of step `time` (1-based) at learning rate `lr`.
    fn scalars(&self, lr: LearningRate, time: usize) -> AdamWStep {
        AdamWStep::new(
            lr,
            self.weight_decay,
            self.beta_1,
            self.beta_2,
            self.epsilon,
            time as u32,
        )
    }

    /// The optimiser for the parameters of module `M`.
    pub fn init<B, M>(self) -> OptimizerAdaptor<Self, M, B>
    where
        B: AutodiffBackend,
        B::InnerBackend: GatBackend,
        M: AutodiffModule<B>,
    {
        OptimizerAdaptor::from(self)
    }
}

/// The step number of the coming step and the flattened moments (`n` elements) of a
/// parameter's state (step 1 and no moments without one).
#[allow(clippy::type_complexity)]
fn flat_state<B: burn::tensor::backend::Backend, const D: usize>(
    state: Option<AdamWState<B, D>>,
    n: usize,
) -> (usize, Option<(Tensor<B, 1>, Tensor<B, 1>)>) {
    match state {
        Some(s) => (
            s.momentum.time + 1,
            Some((
                s.momentum.moment_1.reshape([n]),
                s.momentum.moment_2.reshape([n]),
            )),
        ),
        None => (1, None),
    }
}

impl<B: GatBackend> SimpleOptimizer<B> for TorchAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let dims = tensor.dims();
        let n = dims.iter().product::<usize>();
        let (time, moments) = flat_state(state, n);
        let s = self.scalars(lr, time);
        let scale = self.grad_scale.get::<B>();
        let (p, m, v) = B::adamw_step(tensor.reshape([n]), grad.reshape([n]), moments, scale, &s);
        let state = AdamWState::new(AdaptiveMomentumState::new(
            time,
            m.reshape(dims),
            v.reshape(dims),
        ));
        (p.reshape(dims), Some(state))
    }

    fn to_device<const D: usize>(
        mut state: Self::State<D>,
        device: &burn::tensor::Device<B>,
    ) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

/// Collects every gradient of a module.
struct FlatGrads<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    flat: Vec<FloatTensor<B::InnerBackend>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for FlatGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.flat.push(g.into_primitive().tensor());
        }
    }
}

struct Scale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    coef: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let coef = self.coef.clone().reshape([1; D]);
            self.grads
                .register::<B::InnerBackend, D>(param.id, g * coef);
        }
    }
}

/// Scales all gradients of `module` together so that their global L2 norm is at most
/// `max_norm`, exactly as `torch.nn.utils.clip_grad_norm_` does (coefficient
/// `min(1, max_norm / (norm + 1e-6))`). Returns the norm before clipping, `[1]`, or `None`
/// when there is no gradient.
///
/// Nothing is read back to the host: the coefficient stays a device tensor and every gradient
/// is multiplied by it (by exactly 1 when the norm is under `max_norm`), so a GPU never waits
/// for the host between the backward pass and the optimiser step.
pub fn clip_grad_norm_device<B, M>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f32,
) -> Option<Tensor<B::InnerBackend, 1>>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    let (norm, coef) = norm_and_coef::<B, M>(module, grads, max_norm)?;
    module.visit(&mut Scale::<B> { grads, coef });
    Some(norm)
}

/// The global gradient norm and the clip coefficient `min(1, max_norm / (norm + 1e-6))`, both
/// `[1]` on the device; `None` without gradients.
#[allow(clippy::type_complexity)]
fn norm_and_coef<B, M>(
    module: &M,
    grads: &GradientsParams,
    max_norm: f32,
) -> Option<(Tensor<B::InnerBackend, 1>, Tensor<B::InnerBackend, 1>)>
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    let mut v = FlatGrads::<B> {
        grads,
        flat: Vec::new(),
    };
    module.visit(&mut v);
    if v.flat.is_empty() {
        return None;
    }
    let norm = B::InnerBackend::sum_squares(v.flat).sum().sqrt();
    let coef = norm
        .clone()
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    Some((norm, coef))
}

/// [`clip_grad_norm_device`], returning the norm before clipping as a number (0 without
/// gradients). Reading it waits for the device.
pub fn clip_grad_norm<B, M>(module: &M, grads: &mut GradientsParams, max_norm: f32) -> f32
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    clip_grad_norm_device::<B, M>(module, grads, max_norm)
        .map_or(0.0, |n| n.into_scalar().elem::<f32>())
}

/// An optimiser that clips the global gradient norm before delegating the step (the
/// reference's Lightning `gradient_clip_val`, `gradient_clip_algorithm="norm"`).
#[derive(Clone)]
pub struct GlobalNormClip<O> {
    inner: O,
    max_norm: f32,
    /// Where the coefficient goes instead of into the gradients (see [`clipped_adamw`]).
    sink: Option<GradScale>,
}

impl<O> GlobalNormClip<O> {
    /// Wraps the optimiser `make(adamw)`, which steps with `adamw`: the clip hands its
    /// coefficient to `adamw`'s kernel instead of scaling every gradient.
    fn around_adamw(adamw: TorchAdamW, max_norm: f32, make: impl FnOnce(TorchAdamW) -> O) -> Self {
        let sink = adamw.grad_scale.clone();
        Self {
            inner: make(adamw),
            max_norm,
            sink: Some(sink),
        }
    }

    /// Wraps `inner`, clipping to `max_norm` (no clipping when `max_norm` is not positive) by
    /// scaling the gradients before `inner` steps.
    pub fn new(inner: O, max_norm: f32) -> Self {
        Self {
            inner,
            max_norm,
            sink: None,
        }
    }
}

impl<M, B, O> Optimizer<M, B> for GlobalNormClip<O>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    O: Optimizer<M, B>,
{
    type Record = O::Record;

    fn step(&mut self, lr: f64, module: M, mut grads: GradientsParams) -> M {
        match (&self.sink, self.max_norm > 0.0) {
            (Some(sink), true) => {
                let coef = norm_and_coef::<B, M>(&module, &grads, self.max_norm).map(|(_, c)| c);
                sink.set(coef);
            }
            (Some(sink), false) => sink.set::<B::InnerBackend>(None),
            (None, true) => {
                clip_grad_norm_device::<B, M>(&module, &mut grads, self.max_norm);
            }
            (None, false) => {}
        }
        self.inner.step(lr, module, grads)
    }

    /// With several devices each device's gradients are clipped separately before they are
    /// combined (an approximation of clipping the combined gradient).
    fn step_multi(&mut self, lr: f64, module: M, mut grads: MultiGradientsParams) -> M {
        if let Some(sink) = &self.sink {
            sink.set::<B::InnerBackend>(None);
        }
        if self.max_norm > 0.0 {
            for (g, _) in grads.grads.iter_mut() {
                clip_grad_norm_device::<B, M>(&module, g, self.max_norm);
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
            sink: self.sink,
        }
    }
}

/// The loss scale of float16 mixed precision, shared by the training step (which multiplies
/// the loss by [`LossScale::scale`] before the backward pass, so that small gradients do not
/// flush to zero in f16) and [`GradScaler`] (which divides the gradients by it and adjusts it).
///
/// The policy is `torch.amp.GradScaler`'s with its defaults: the scale starts at 2¹⁶; a step
/// whose gradients hold an infinity or a NaN is skipped and halves the scale; after
/// `growth_interval` (2,000) steps in a row without one the scale doubles.
#[derive(Clone, Debug)]
pub struct LossScale(Arc<Mutex<LossScaleState>>);

/// Where a [`LossScale`] stands (also `segger train`'s summary of a `16-mixed` run).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LossScaleState {
    /// The current scale.
    pub scale: f32,
    /// Finite steps since the scale last changed.
    pub good_steps: u32,
    /// Steps doubled after this many finite steps in a row.
    pub growth_interval: u32,
    /// Optimiser steps skipped so far for non-finite gradients (each halved the scale).
    pub skipped: u64,
}

impl LossScale {
    /// PyTorch's initial scale, 2¹⁶.
    pub const INIT: f32 = 65_536.0;
    /// PyTorch's growth interval.
    pub const GROWTH_INTERVAL: u32 = 2_000;

    /// A scale at [`LossScale::INIT`] that grows after `growth_interval` finite steps.
    pub fn new(growth_interval: u32) -> Self {
        Self(Arc::new(Mutex::new(LossScaleState {
            scale: Self::INIT,
            good_steps: 0,
            growth_interval: growth_interval.max(1),
            skipped: 0,
        })))
    }

    /// The factor the loss is multiplied by before the backward pass.
    pub fn scale(&self) -> f32 {
        self.state().scale
    }

    /// A copy of the current state.
    pub fn state(&self) -> LossScaleState {
        *self.0.lock().expect("loss scale lock")
    }

    /// Records a step: `finite` steps count towards growth, others halve the scale.
    pub fn update(&self, finite: bool) {
        let mut s = self.0.lock().expect("loss scale lock");
        if finite {
            s.good_steps += 1;
            if s.good_steps >= s.growth_interval {
                s.scale *= 2.0;
                s.good_steps = 0;
            }
        } else {
            s.scale *= 0.5;
            s.good_steps = 0;
            s.skipped += 1;
        }
    }
}

impl Default for LossScale {
    fn default() -> Self {
        Self::new(Self::GROWTH_INTERVAL)
    }
}

/// An optimiser that undoes the loss scaling of float16 mixed precision before delegating the
/// step (Lightning's `precision="16-mixed"`: `GradScaler.unscale_`, then the wrapped clip and
/// AdamW, then `GradScaler.update`). With a [`LossScale`] it divides every gradient by the
/// scale, skips the step (the module comes back unchanged) when the gradients' squared norm
/// is not finite, and updates the scale; that check reads one number back from the device.
/// Without one it only delegates.
#[derive(Clone)]
pub struct GradScaler<O> {
    inner: O,
    scale: Option<LossScale>,
}

impl<O> GradScaler<O> {
    /// Wraps `inner`; `scale` is `None` for full or bfloat16 precision.
    pub fn new(inner: O, scale: Option<LossScale>) -> Self {
        Self { inner, scale }
    }

    /// The loss scale, when there is one.
    pub fn loss_scale(&self) -> Option<&LossScale> {
        self.scale.as_ref()
    }
}

/// Divides `grads` by `scale` and says whether they are all finite (their squared norm is).
fn unscale<B, M>(module: &M, grads: &mut GradientsParams, scale: f32) -> bool
where
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    M: AutodiffModule<B>,
{
    let mut v = FlatGrads::<B> {
        grads,
        flat: Vec::new(),
    };
    module.visit(&mut v);
    let Some(device) = v.flat.first().map(|g| {
        <B::InnerBackend as burn::tensor::ops::FloatTensorOps<B::InnerBackend>>::float_device(g)
    }) else {
        return true;
    };
    let squared = B::InnerBackend::sum_squares(v.flat).sum();
    let coef = Tensor::<B::InnerBackend, 1>::from_floats([1.0 / scale], &device);
    module.visit(&mut Scale::<B> { grads, coef });
    squared.into_scalar().elem::<f32>().is_finite()
}

impl<M, B, O> Optimizer<M, B> for GradScaler<O>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
    B::InnerBackend: GatBackend,
    O: Optimizer<M, B>,
{
    type Record = O::Record;

    fn step(&mut self, lr: f64, module: M, mut grads: GradientsParams) -> M {
        if let Some(s) = &self.scale {
            let finite = unscale::<B, M>(&module, &mut grads, s.scale());
            s.update(finite);
            if !finite {
                return module;
            }
        }
        self.inner.step(lr, module, grads)
    }

    fn step_multi(&mut self, lr: f64, module: M, mut grads: MultiGradientsParams) -> M {
        if let Some(s) = &self.scale {
            let scale = s.scale();
            let mut finite = true;
            for (g, _) in grads.grads.iter_mut() {
                finite &= unscale::<B, M>(&module, g, scale);
            }
            s.update(finite);
            if !finite {
                return module;
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
            scale: self.scale,
        }
    }
}
