//! The optimiser step: the clip coefficient applied inside the AdamW step
//! ([`clipped_adamw`]) against clipping the gradients first ([`clip_grad_norm`] then
//! [`TorchAdamW`]), with a clip that is active, over three steps of the `small` parity model.

#[macro_use]
mod common;

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::ElementConversion;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::FloatDType;
use segger_model::optim::{clip_grad_norm, clipped_adamw, GradScaler, LossScale, TorchAdamW};
use segger_model::pyg::{load_pyg_state_dict, param_values};
use segger_model::{bce_with_logits, decode, GatBackend, GraphInput, Segger};

fn parity_dir() -> PathBuf {
    std::env::var_os("SEGGER_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::test_data("parity"))
}

/// Clip norm far under the fixture's gradient norm (0.37), so the clip scales by about 0.03.
const MAX_NORM: f32 = 0.01;

fn grads<B: AutodiffBackend + GatBackend>(
    model: &Segger<B>,
    input: &GraphInput<B>,
) -> GradientsParams {
    let z = model.forward(input);
    let logits = decode(
        &z,
        input.label_tx.clone().unwrap(),
        input.label_bd.clone().unwrap(),
    );
    let loss = bce_with_logits(logits, input.labels.clone().unwrap());
    GradientsParams::from_grads(loss.backward(), model)
}

/// The values of every parameter of a model, in `named_params` order.
type ParamValues = Vec<Vec<f32>>;

/// Every parameter before the steps, then after three steps each way.
pub fn both_ways<B>() -> (ParamValues, ParamValues, ParamValues)
where
    B: AutodiffBackend + GatBackend,
    B::InnerBackend: GatBackend,
{
    let dir = parity_dir();
    let weights = dir.join("small.weights.safetensors");
    let device = Default::default();
    let start = load_pyg_state_dict::<B>(&weights, None, &device).unwrap();
    let tile = segger_data::read_tile(&dir.join("tile.safetensors"), None).unwrap();
    let input = GraphInput::<B>::from_graph(&tile.graph, &start.config, &device).unwrap();
    let values = |m: &Segger<B>| -> ParamValues {
        m.named_params()
            .iter()
            .map(|(n, p)| param_values(n, p).values)
            .collect()
    };
    let before = values(&start);

    let mut a = start.clone();
    let mut opt_a = TorchAdamW::new(1e-2).init::<B, Segger<B>>();
    for _ in 0..3 {
        let mut g = grads(&a, &input);
        let norm = clip_grad_norm(&a, &mut g, MAX_NORM);
        assert!(
            norm > 10.0 * MAX_NORM,
            "the clip must be active (norm {norm})"
        );
        a = opt_a.step(1e-3, a, g);
    }
    let mut b = start;
    let mut opt_b = clipped_adamw::<B, Segger<B>>(1e-2, MAX_NORM);
    for _ in 0..3 {
        let g = grads(&b, &input);
        b = opt_b.step(1e-3, b, g);
    }
    (before, values(&a), values(&b))
}

pub fn check(before: &[Vec<f32>], a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    let mut moved = 0;
    for (k, ((x, y), p0)) in a.iter().zip(b).zip(before).enumerate() {
        for ((u, v), w) in x.iter().zip(y).zip(p0) {
            // The update is about lr = 1e-3; both ways must agree to a millionth of it.
            assert!(
                (u - v).abs() <= 1e-9 + 4.0 * f32::EPSILON * u.abs(),
                "{what}: parameter {k}: {u} vs {v}"
            );
            if u != w {
                moved += 1;
            }
        }
    }
    assert!(moved > 1000, "{what}: only {moved} values moved");
}

#[test]
fn clip_inside_adamw_equals_clip_then_adamw_on_the_cpu() {
    let (before, a, b) = both_ways::<Autodiff<Flex>>();
    check(&before, &a, &b, "flex");
}

/// Both ways through the GPU kernels (the one-kernel AdamW reading the coefficient).
#[allow(dead_code)]
fn clip_inside_equals_clip_then<G: GatBackend>() {
    let (before, a, b) = both_ways::<Autodiff<G>>();
    check(&before, &a, &b, std::any::type_name::<G>());
}

on_wgpu_and_cuda!(
    /// The same through the GPU kernels (the one-kernel AdamW reading the coefficient).
    clip_inside_adamw_equals_clip_then_adamw_on_wgpu,
    clip_inside_adamw_equals_clip_then_adamw_on_cuda,
    clip_inside_equals_clip_then
);

/// The `small` parity model and its tile's input.
fn small_model<B: AutodiffBackend + GatBackend>() -> (Segger<B>, GraphInput<B>) {
    let dir = parity_dir();
    let device = Default::default();
    let model =
        load_pyg_state_dict::<B>(&dir.join("small.weights.safetensors"), None, &device).unwrap();
    let tile = segger_data::read_tile(&dir.join("tile.safetensors"), None).unwrap();
    let input = GraphInput::<B>::from_graph(&tile.graph, &model.config, &device).unwrap();
    (model, input)
}

/// The loss of `model` on `input`, the encoder computing in `compute`.
fn loss_in<B: AutodiffBackend + GatBackend>(
    model: &Segger<B>,
    input: &GraphInput<B>,
    compute: Option<FloatDType>,
) -> burn::tensor::Tensor<B, 1> {
    let z = model.forward_in(input, compute);
    let logits = decode(
        &z,
        input.label_tx.clone().unwrap(),
        input.label_bd.clone().unwrap(),
    );
    bce_with_logits(logits, input.labels.clone().unwrap())
}

fn values<B: AutodiffBackend + GatBackend>(m: &Segger<B>) -> ParamValues {
    m.named_params()
        .iter()
        .map(|(n, p)| param_values(n, p).values)
        .collect()
}

#[test]
fn loss_scale_halves_on_overflow_and_doubles_after_its_interval() {
    let s = LossScale::new(3);
    assert_eq!(s.scale(), 65_536.0);
    s.update(true);
    s.update(true);
    assert_eq!(s.scale(), 65_536.0);
    s.update(true);
    assert_eq!(s.scale(), 131_072.0, "doubles after 3 finite steps");
    s.update(true);
    s.update(false);
    let st = s.state();
    assert_eq!((st.scale, st.good_steps, st.skipped), (65_536.0, 0, 1));
    s.update(true);
    s.update(true);
    assert_eq!(s.scale(), 65_536.0, "the count restarts after an overflow");
}

/// A step on gradients of `loss · 2¹⁶` through [`GradScaler`] is the step on the gradients of
/// `loss`: scaling by a power of two is exact, so the parameters agree to the bit. A step
/// whose gradients are not finite leaves every parameter as it was and halves the scale.
#[test]
fn grad_scaler_unscales_exactly_and_skips_non_finite_steps() {
    type B = Autodiff<Flex>;
    let (start, input) = small_model::<B>();
    let before = values(&start);

    let mut plain = clipped_adamw::<B, Segger<B>>(1e-2, 1.0);
    let g = GradientsParams::from_grads(loss_in(&start, &input, None).backward(), &start);
    let a = plain.step(1e-3, start.clone(), g);

    let scale = LossScale::default();
    let mut scaled = GradScaler::new(
        clipped_adamw::<B, Segger<B>>(1e-2, 1.0),
        Some(scale.clone()),
    );
    let loss = loss_in(&start, &input, None).mul_scalar(scale.scale());
    let g = GradientsParams::from_grads(loss.backward(), &start);
    let b = scaled.step(1e-3, start.clone(), g);
    assert_eq!(values(&a), values(&b), "unscaled step = plain step");
    assert_ne!(values(&a), before, "the step moved the parameters");
    assert_eq!(scale.state().good_steps, 1);

    let loss = loss_in(&b, &input, None).mul_scalar(f32::INFINITY);
    let g = GradientsParams::from_grads(loss.backward(), &b);
    let c = scaled.step(1e-3, b.clone(), g);
    assert_eq!(values(&c), values(&b), "a non-finite step changes nothing");
    let st = scale.state();
    assert_eq!((st.scale, st.good_steps, st.skipped), (32_768.0, 0, 1));
}

/// Training in f16 mixed precision (f16 encoder, f32 parameters, loss scaling) follows f32
/// training: five steps of the `small` parity model at a learning rate that moves the loss by
/// over 5 %, each loss within 1e-3 of f32's, the loss's fall within 5 % of f32's, and no step
/// skipped.
#[allow(dead_code)]
fn mixed_f16_training_follows_f32<G: GatBackend>() {
    type A<G> = Autodiff<G>;
    let (start, input) = small_model::<A<G>>();
    let run = |compute: Option<FloatDType>| -> (Vec<f32>, LossScale) {
        let scale = LossScale::default();
        let mut opt = GradScaler::new(
            clipped_adamw::<A<G>, Segger<A<G>>>(1e-2, 1.0),
            compute.map(|_| scale.clone()),
        );
        let mut m = start.clone();
        let mut losses = Vec::new();
        for _ in 0..6 {
            let loss = loss_in(&m, &input, compute);
            losses.push(loss.clone().into_scalar().elem::<f32>());
            let s = if compute.is_some() {
                scale.scale()
            } else {
                1.0
            };
            let g = GradientsParams::from_grads(loss.mul_scalar(s).backward(), &m);
            m = opt.step(1e-2, m, g);
        }
        (losses, scale)
    };
    let (full, _) = run(None);
    let (half, scale) = run(Some(FloatDType::F16));
    eprintln!("f32 losses {full:?}\nf16 mixed losses {half:?}");
    assert!(
        full[5] < 0.95 * full[0],
        "the steps must move the loss: {full:?}"
    );
    for (k, (h, f)) in half.iter().zip(&full).enumerate() {
        assert!(
            ((h - f) / f).abs() < 1e-3,
            "step {k}: f16 mixed loss {h} vs f32 {f}"
        );
    }
    let (fall_h, fall_f) = (half[0] - half[5], full[0] - full[5]);
    assert!(
        ((fall_h - fall_f) / fall_f).abs() < 0.05,
        "the loss fell by {fall_h} in f16 mixed, {fall_f} in f32"
    );
    assert_eq!(scale.state().skipped, 0, "no step skipped");
}

on_wgpu_and_cuda!(
    /// f16 mixed-precision training against f32 on the GPU backends.
    mixed_f16_training_follows_f32_on_wgpu,
    mixed_f16_training_follows_f32_on_cuda,
    mixed_f16_training_follows_f32
);
