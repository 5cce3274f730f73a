//! Parity with the reference (PyTorch Geometric) on every fixture in `SEGGER_PARITY_DIR`
//! (default `tests/data/parity`): for each `{name}.weights.safetensors`, build the model
//! from its `config` metadata, load the weights, run the directory's `tile.safetensors`, and
//! compare embeddings, logits, loss, gradients and the parameters after one clipped AdamW step
//! with `{name}.expected.safetensors`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex, NdArray};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use segger_model::pyg::{from_tensors, param_values, read_safetensors, tensor_values, HostTensor};
use segger_model::{
    bce_with_logits, decode, mp, GatBackend, GraphInput, NamedParam, Segger, SeggerConfig,
};

fn parity_dir() -> PathBuf {
    std::env::var_os("SEGGER_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::test_data("parity"))
}

/// max |a - b| / max |b|, or the absolute error when b is all zero.
fn rel_err(a: &[f32], b: &[f32], what: &str) -> f64 {
    assert_eq!(a.len(), b.len(), "{what}: length");
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    assert!(diff.is_finite(), "{what}: non-finite values");
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

#[derive(Default)]
struct Report {
    worst: HashMap<&'static str, f64>,
    failures: Vec<String>,
    /// Every gradient's error, by parameter name.
    grad_err: HashMap<String, f64>,
}

impl Report {
    /// Records `err`; one over `tol` is a failure (all are listed by [`Report::assert_ok`]).
    fn check(&mut self, kind: &'static str, what: &str, err: f64, tol: f64) {
        if err > tol {
            self.failures.push(format!(
                "{what}: relative error {err:.3e} exceeds {tol:.0e}"
            ));
        }
        if let Some(name) = what.strip_prefix("grad.") {
            self.grad_err.insert(name.to_string(), err);
        }
        let w = self.worst.entry(kind).or_insert(0.0);
        *w = w.max(err);
    }

    fn assert_ok(&self, what: &str) {
        eprintln!("{what}: worst {:?}", self.worst);
        assert!(
            self.failures.is_empty(),
            "{what}:\n{}",
            self.failures.join("\n")
        );
    }
}

/// The fixture's model with every weight moved by at most one unit in the last place when
/// `perturb` is `Some(seed)` (each weight times 1 + r·ε, r ∈ {-1, 0, 1} drawn from the seed).
fn load_model<B: GatBackend>(weights: &Path, perturb: Option<u64>) -> Segger<B> {
    let (mut tensors, meta) = read_safetensors(weights).expect("weights");
    let config = SeggerConfig::from_json(&meta["config"]).expect("config");
    if let Some(seed) = perturb {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut names: Vec<String> = tensors.keys().cloned().collect();
        names.sort();
        for name in names {
            for x in tensors.get_mut(&name).unwrap().values.iter_mut() {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = ((state >> 33) % 3) as f32 - 1.0;
                *x *= 1.0 + r * f32::EPSILON;
            }
        }
    }
    from_tensors::<B>(&config, &tensors, &Default::default(), weights).expect("load weights")
}

/// The input of the fixture tile next to `weights`, for `model`.
fn fixture_input<B: GatBackend>(model: &Segger<B>, weights: &Path) -> GraphInput<B> {
    let tile = segger_data::read_tile(
        &weights.parent().unwrap().join("tile.safetensors"),
        Some(model.config.num_tx_tokens),
    )
    .expect("tile");
    GraphInput::<B>::from_graph(&tile.graph, &model.config, &Default::default()).expect("input")
}

fn run_fixture<B>(weights: &Path, expected: &HashMap<String, HostTensor>, fused: bool) -> Report
where
    B: AutodiffBackend + GatBackend,
    B::InnerBackend: GatBackend,
{
    run_model(load_model::<B>(weights, None), weights, expected, fused)
}

fn run_model<B>(
    model: Segger<B>,
    weights: &Path,
    expected: &HashMap<String, HostTensor>,
    fused: bool,
) -> Report
where
    B: AutodiffBackend + GatBackend,
    B::InnerBackend: GatBackend,
{
    mp::set_fused(fused);
    let input = fixture_input(&model, weights);
    let mut rep = Report::default();

    let z = model.forward(&input);
    rep.check(
        "z",
        "z.tx",
        rel_err(
            &tensor_values(z.tx.clone()),
            &expected["z.tx"].values,
            "z.tx",
        ),
        1e-5,
    );
    rep.check(
        "z",
        "z.bd",
        rel_err(
            &tensor_values(z.bd.clone()),
            &expected["z.bd"].values,
            "z.bd",
        ),
        1e-5,
    );
    let logits = decode(
        &z,
        input.label_tx.clone().unwrap(),
        input.label_bd.clone().unwrap(),
    );
    rep.check(
        "logits",
        "logits",
        rel_err(
            &tensor_values(logits.clone()),
            &expected["logits"].values,
            "logits",
        ),
        1e-5,
    );
    let loss = bce_with_logits(logits, input.labels.clone().unwrap());
    rep.check(
        "loss",
        "loss",
        rel_err(
            &tensor_values(loss.clone()),
            &expected["loss"].values,
            "loss",
        ),
        1e-5,
    );

    let grads = loss.backward();
    let mut gp = GradientsParams::from_grads(grads, &model);
    for (name, p) in model.named_params() {
        let exp = &expected[&format!("grad.{name}")];
        let got: Vec<f32> = match &p {
            NamedParam::D1(t) => gp.get::<B::InnerBackend, 1>(t.id).map(tensor_values),
            NamedParam::D2(t) => gp.get::<B::InnerBackend, 2>(t.id).map(tensor_values),
        }
        .unwrap_or_else(|| vec![0.0; exp.values.len()]);
        rep.check(
            "grad",
            &format!("grad.{name}"),
            rel_err(&got, &exp.values, &name),
            1e-4,
        );
    }
    let norm = segger_model::optim::clip_grad_norm(&model, &mut gp, 1.0);
    let exp_norm = expected["grad_total_norm"].values[0];
    rep.check(
        "grad_norm",
        "grad_total_norm",
        ((norm - exp_norm) / exp_norm).abs() as f64,
        1e-4,
    );

    let before: HashMap<String, Vec<f32>> = model
        .named_params()
        .iter()
        .map(|(n, p)| (n.clone(), param_values(n, p).values))
        .collect();
    let mut optim = segger_model::optim::TorchAdamW::new(1e-4).init::<B, segger_model::Segger<B>>();
    let stepped = optim.step(1e-4, model, gp);
    for (name, p) in stepped.named_params() {
        let got = param_values(&name, &p).values;
        let exp = &expected[&format!("param_after_step.{name}")].values;
        let g = &expected[&format!("grad.{name}")].values;
        // Only entries whose gradient exceeds 1e-6: Adam's first step divides by |g| + eps,
        // which is ill-conditioned near zero (see the fixture README).
        let idx: Vec<usize> = (0..g.len()).filter(|&i| g[i].abs() > 1e-6).collect();
        let a: Vec<f32> = idx.iter().map(|&i| got[i]).collect();
        let b: Vec<f32> = idx.iter().map(|&i| exp[i]).collect();
        rep.check(
            "step",
            &format!("param_after_step.{name}"),
            rel_err(&a, &b, &name),
            1e-5,
        );
        // The step moved the parameter (lr = 1e-4): it was really applied.
        if !idx.is_empty() {
            assert!(
                idx.iter().any(|&i| got[i] != before[&name][i]),
                "{name} did not change"
            );
        }
    }
    mp::set_fused(true);
    rep
}

/// Perturbed runs in [`ulp_sensitivity`].
const ULP_TRIALS: u64 = 32;

/// How far each gradient moves, in [`rel_err`] against `expected`, when the weights move by one
/// unit in the last place: the largest error over [`ULP_TRIALS`] perturbed runs on the CPU
/// (Flex, fused kernels, which otherwise match the reference to about 5e-5).
///
/// The seed fixture has an attention pre-activation (`xl + xr`, one channel of one edge) within
/// about 1e-7 of LeakyReLU's kink in `conv_mid_layers.0`'s tx→bd relation. In about one run in
/// five the perturbation moves it across, the slope there changes from 1 to 0.2 and that
/// relation's gradients, which are small, move by 2.3e-3 of their largest entry. Any float32
/// implementation that sums in another order than PyTorch's CPU kernels (CUDA, for one) can land
/// on either side, so a backend is held to this bound rather than 1e-4 for such gradients.
fn ulp_sensitivity(weights: &Path, expected: &HashMap<String, HostTensor>) -> HashMap<String, f64> {
    let mut out: HashMap<String, f64> = HashMap::new();
    for seed in 1..=ULP_TRIALS {
        let model = load_model::<Autodiff<Flex>>(weights, Some(seed));
        let rep = run_model(model, weights, expected, true);
        for (name, err) in rep.grad_err {
            let e = out.entry(name).or_insert(0.0);
            *e = e.max(err);
        }
    }
    out
}

/// Failures of `rep` left after excusing gradients whose error is within 1.5 × their
/// [`ulp_sensitivity`].
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn unexcused(rep: &Report, sens: &HashMap<String, f64>) -> Vec<String> {
    rep.failures
        .iter()
        .filter(|f| {
            let Some(name) = f.strip_prefix("grad.").and_then(|r| r.split(':').next()) else {
                return true;
            };
            rep.grad_err[name] > 1.5 * sens.get(name).copied().unwrap_or(0.0)
        })
        .cloned()
        .collect()
}

fn fixtures() -> Vec<(PathBuf, HashMap<String, HostTensor>)> {
    let dir = parity_dir();
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let fname = p.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(name) = fname.strip_suffix(".weights.safetensors") {
            let (expected, _) = read_safetensors(&dir.join(format!("{name}.expected.safetensors")))
                .expect("expected file");
            out.push((p, expected));
        }
    }
    assert!(
        !out.is_empty(),
        "no *.weights.safetensors in {}",
        dir.display()
    );
    out
}

#[test]
fn parity_flex_fused() {
    for (w, exp) in fixtures() {
        run_fixture::<Autodiff<Flex>>(&w, &exp, true)
            .assert_ok(&format!("{} flex fused", w.display()));
    }
}

#[test]
fn parity_flex_generic() {
    for (w, exp) in fixtures() {
        run_fixture::<Autodiff<Flex>>(&w, &exp, false)
            .assert_ok(&format!("{} flex generic", w.display()));
    }
}

/// One-ulp changes of the weights move every gradient by less than 1e-2 on the CPU, and some of
/// the seed fixture's by more than the 1e-4 tolerance (see [`ulp_sensitivity`]); the tolerance
/// itself holds on the unperturbed weights (the tests above).
#[test]
fn parity_ulp_sensitivity() {
    for (w, exp) in fixtures() {
        let sens = ulp_sensitivity(&w, &exp);
        let mut v: Vec<(&String, &f64)> = sens.iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(a.1));
        eprintln!("{}: most sensitive gradients {:?}", w.display(), &v[..3]);
        assert!(*v[0].1 < 1e-2, "{}: {:?}", w.display(), v[0]);
        assert!(*v[0].1 > 0.0, "the perturbation changed nothing");
    }
}

#[test]
fn parity_ndarray_fused() {
    for (w, exp) in fixtures() {
        run_fixture::<Autodiff<NdArray>>(&w, &exp, true)
            .assert_ok(&format!("{} ndarray fused", w.display()));
    }
}

/// The same on CUDA with the fused GPU kernels, on a machine with an NVIDIA GPU (the `cuda`
/// feature, `--ignored parity_cuda`; see docs/benchmarks.md for the device script).
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a GPU: an NVIDIA GPU with its CUDA driver"]
fn parity_cuda_fused() {
    let fixtures: Vec<_> = fixtures()
        .into_iter()
        .map(|(w, exp)| {
            let sens = ulp_sensitivity(&w, &exp);
            (w, exp, sens)
        })
        .collect();
    // Burn's CUDA matmul rounds f32 to TF32. The model's matmuls take CubeCL's unit matmul
    // instead (`MatmulPrecision::Highest`, the default); the run is repeated with the layers'
    // products as elementwise products and sums (`set_exact_linear`), which needs no matmul.
    assert_eq!(mp::float32_matmul_precision(), mp::MatmulPrecision::Highest);
    let mut failed = Vec::new();
    for (exact_linear, fused) in [(false, true), (false, false), (true, true), (true, false)] {
        mp::set_exact_linear(exact_linear);
        for (w, exp, sens) in &fixtures {
            let r = run_fixture::<Autodiff<burn::backend::Cuda>>(w, exp, fused);
            let via = if exact_linear {
                "elementwise linear"
            } else {
                "unit matmul"
            };
            let what = format!("{} cuda fused={fused} {via}", w.display());
            eprintln!("{what}: worst {:?}", r.worst);
            let left = unexcused(&r, sens);
            for f in &r.failures {
                let name = f.strip_prefix("grad.").and_then(|r| r.split(':').next());
                let bound = name.and_then(|n| sens.get(n)).copied().unwrap_or(0.0);
                let verdict = if left.contains(f) {
                    "FAIL"
                } else {
                    "within 1.5 x"
                };
                eprintln!("  {f} ({verdict} the CPU's one-ulp sensitivity {bound:.2e})");
            }
            if !left.is_empty() {
                failed.push(what);
            }
        }
    }
    mp::set_exact_linear(false);
    assert!(failed.is_empty(), "over tolerance: {failed:?}");
}

/// The same on wgpu with the fused GPU kernels (CI runs it on Mesa's lavapipe).
#[cfg(feature = "wgpu")]
#[test]
#[ignore = "needs a GPU: a Vulkan adapter for wgpu (CI: Mesa's lavapipe)"]
fn parity_wgpu_fused() {
    for (w, exp) in fixtures() {
        run_fixture::<Autodiff<burn::backend::Wgpu>>(&w, &exp, true)
            .assert_ok(&format!("{} wgpu fused", w.display()));
    }
}

/// Mixed precision against the reference's f32 numbers: the encoder computing in `compute`
/// (`Segger::forward_in`), the f32 parameters and loss. Embeddings, logits and loss must be
/// within `tol_z` and the gradients within `tol_grad` (relative to each tensor's largest entry):
/// the size of a few roundings to the half type, not f32's 1e-5.
fn mixed_report<B>(
    weights: &Path,
    expected: &HashMap<String, HostTensor>,
    compute: burn::tensor::FloatDType,
    loss_scale: f32,
    tol_z: f64,
    tol_grad: f64,
) -> Report
where
    B: AutodiffBackend + GatBackend,
    B::InnerBackend: GatBackend,
{
    let model = load_model::<B>(weights, None);
    let input = fixture_input(&model, weights);
    let mut rep = Report::default();
    let z = model.forward_in(&input, Some(compute));
    assert_eq!(z.tx.dtype(), burn::tensor::DType::F32, "embeddings in f32");
    for (name, t) in [("z.tx", z.tx.clone()), ("z.bd", z.bd.clone())] {
        let err = rel_err(&tensor_values(t), &expected[name].values, name);
        rep.check("z", name, err, tol_z);
    }
    let logits = decode(
        &z,
        input.label_tx.clone().unwrap(),
        input.label_bd.clone().unwrap(),
    );
    let err = rel_err(
        &tensor_values(logits.clone()),
        &expected["logits"].values,
        "logits",
    );
    rep.check("logits", "logits", err, tol_z);
    let loss = bce_with_logits(logits, input.labels.clone().unwrap());
    let err = rel_err(
        &tensor_values(loss.clone()),
        &expected["loss"].values,
        "loss",
    );
    rep.check("loss", "loss", err, tol_z);
    let gp = GradientsParams::from_grads(loss.mul_scalar(loss_scale).backward(), &model);
    let unscale = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|x| x / loss_scale).collect() };
    for (name, p) in model.named_params() {
        let exp = &expected[&format!("grad.{name}")];
        let got = match &p {
            NamedParam::D1(t) => gp.get::<B::InnerBackend, 1>(t.id).map(|g| {
                assert_eq!(
                    g.dtype(),
                    burn::tensor::DType::F32,
                    "{name}: gradient in f32"
                );
                unscale(tensor_values(g))
            }),
            NamedParam::D2(t) => gp.get::<B::InnerBackend, 2>(t.id).map(|g| {
                assert_eq!(
                    g.dtype(),
                    burn::tensor::DType::F32,
                    "{name}: gradient in f32"
                );
                unscale(tensor_values(g))
            }),
        }
        .unwrap_or_else(|| vec![0.0; exp.values.len()]);
        let err = rel_err(&got, &exp.values, &name);
        rep.check("grad", &format!("grad.{name}"), err, tol_grad);
    }
    rep
}

/// [`mixed_report`] on every fixture, f16 with PyTorch's initial loss scale (2¹⁶; without it
/// the smallest gradients, those of the first layer's tx→bd relation, flush to zero in f16).
/// Tolerances: embeddings, logits and loss 5e-3, gradients 1e-1 (on lavapipe: 6e-4, 1.5e-3,
/// 6e-6 and at most 6e-2, the transcript embedding's gradient, a sum over every transcript of
/// the f16 gradients of its input row).
#[allow(dead_code)]
fn mixed_f16<G: GatBackend>(what: &str) {
    for (w, exp) in fixtures() {
        mixed_report::<Autodiff<G>>(&w, &exp, burn::tensor::FloatDType::F16, 65536.0, 5e-3, 1e-1)
            .assert_ok(&format!("{} {what} f16 mixed", w.display()));
    }
}

/// f16 mixed precision on wgpu (CI runs it on Mesa's lavapipe).
#[cfg(feature = "wgpu")]
#[test]
#[ignore = "needs a GPU: a Vulkan adapter for wgpu (CI: Mesa's lavapipe)"]
fn parity_wgpu_mixed_f16() {
    mixed_f16::<burn::backend::Wgpu>("wgpu");
}

/// f16 mixed precision on CUDA.
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a GPU: an NVIDIA GPU with its CUDA driver"]
fn parity_cuda_mixed_f16() {
    mixed_f16::<burn::backend::Cuda>("cuda");
}

/// bf16 mixed precision on CUDA (wgpu has no bf16). No loss scale (bf16 has f32's exponent
/// range); tolerances eight times f16's, the ratio of the two types' unit roundoffs (not yet
/// measured on a device).
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a GPU: an NVIDIA GPU with its CUDA driver"]
fn parity_cuda_mixed_bf16() {
    for (w, exp) in fixtures() {
        mixed_report::<Autodiff<burn::backend::Cuda>>(
            &w,
            &exp,
            burn::tensor::FloatDType::BF16,
            1.0,
            4e-2,
            8e-1,
        )
        .assert_ok(&format!("{} cuda bf16 mixed", w.display()));
    }
}
