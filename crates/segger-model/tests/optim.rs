//! The optimiser step: the clip coefficient applied inside the AdamW step
//! ([`clipped_adamw`]) against clipping the gradients first ([`clip_grad_norm`] then
//! [`TorchAdamW`]), with a clip that is active, over three steps of the `small` parity model.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use segger_model::optim::{clip_grad_norm, clipped_adamw, TorchAdamW};
use segger_model::pyg::{load_pyg_state_dict, param_values};
use segger_model::{bce_with_logits, decode, GatBackend, GraphInput, Segger};

fn parity_dir() -> PathBuf {
    std::env::var_os("SEGGER_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity")
        })
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
