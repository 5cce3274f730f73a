//! Parity with the reference (PyTorch Geometric) on every fixture in `SEGGER_PARITY_DIR`
//! (default `../shared/fixtures/parity`): for each `{name}.weights.safetensors`, build the model
//! from its `config` metadata, load the weights, run the directory's `tile.safetensors`, and
//! compare embeddings, logits, loss, gradients and the parameters after one clipped AdamW step
//! with `{name}.expected.safetensors`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex, NdArray};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use segger_model::pyg::{
    load_pyg_state_dict, param_values, read_safetensors, tensor_values, HostTensor,
};
use segger_model::{bce_with_logits, decode, mp, GatBackend, GraphInput, NamedParam};

fn parity_dir() -> PathBuf {
    std::env::var_os("SEGGER_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/parity")
        })
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

struct Report {
    worst: HashMap<&'static str, f64>,
    failures: Vec<String>,
}

impl Report {
    /// Records `err`; one over `tol` is a failure (all are listed by [`Report::assert_ok`]).
    fn check(&mut self, kind: &'static str, what: &str, err: f64, tol: f64) {
        if err > tol {
            self.failures.push(format!(
                "{what}: relative error {err:.3e} exceeds {tol:.0e}"
            ));
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

fn run_fixture<B>(weights: &Path, expected: &HashMap<String, HostTensor>, fused: bool) -> Report
where
    B: AutodiffBackend + GatBackend,
    B::InnerBackend: GatBackend,
{
    mp::set_fused(fused);
    let device = Default::default();
    let model = load_pyg_state_dict::<B>(weights, None, &device).expect("load weights");
    let tile = segger_data::read_tile(
        &weights.parent().unwrap().join("tile.safetensors"),
        Some(model.config.num_tx_tokens),
    )
    .expect("tile");
    let input = GraphInput::<B>::from_graph(&tile.graph, &model.config, &device).expect("input");
    let mut rep = Report {
        failures: Vec::new(),
        worst: HashMap::new(),
    };

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
    let mut optim = segger_model::optim::adamw_config(1e-4).init::<B, segger_model::Segger<B>>();
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

#[test]
fn parity_ndarray_fused() {
    for (w, exp) in fixtures() {
        run_fixture::<Autodiff<NdArray>>(&w, &exp, true)
            .assert_ok(&format!("{} ndarray fused", w.display()));
    }
}

/// The same on CUDA with the fused GPU kernels: opt in with `SEGGER_CUDA_TEST=1` on a machine
/// with an NVIDIA GPU (the `cuda` feature; see docs/benchmarks.md for the device script).
#[cfg(feature = "cuda")]
#[test]
fn parity_cuda_fused() {
    if std::env::var("SEGGER_CUDA_TEST").as_deref() != Ok("1") {
        eprintln!("skipped: set SEGGER_CUDA_TEST=1 on a machine with an NVIDIA GPU");
        return;
    }
    // CUDA's matmul rounds f32 to TF32; the parity run multiplies in plain f32 instead.
    mp::set_exact_linear(true);
    let mut failed = Vec::new();
    for fused in [true, false] {
        for (w, exp) in fixtures() {
            let r = run_fixture::<Autodiff<burn::backend::Cuda>>(&w, &exp, fused);
            let what = format!("{} cuda fused={fused}", w.display());
            eprintln!("{what}: worst {:?}", r.worst);
            for f in &r.failures {
                eprintln!("  {f}");
            }
            if !r.failures.is_empty() {
                failed.push(what);
            }
        }
    }
    assert!(failed.is_empty(), "over tolerance: {failed:?}");
}

/// The same on wgpu with the fused GPU kernels (CI runs it on Mesa's lavapipe): opt in with
/// `SEGGER_WGPU_TEST=1`.
#[cfg(feature = "wgpu")]
#[test]
fn parity_wgpu_fused() {
    if std::env::var("SEGGER_WGPU_TEST").as_deref() != Ok("1") {
        eprintln!("skipped: set SEGGER_WGPU_TEST=1 with a Vulkan adapter present");
        return;
    }
    for (w, exp) in fixtures() {
        run_fixture::<Autodiff<burn::backend::Wgpu>>(&w, &exp, true)
            .assert_ok(&format!("{} wgpu fused", w.display()));
    }
}
