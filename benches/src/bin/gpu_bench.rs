//! Timings of the seed model's training step and of the GATv2 op on one backend, for the GPU
//! comparison with PyTorch Geometric (issue "fast message passing"):
//!
//! ```sh
//! cargo build --release -p segger-benches --features cuda --bin gpu_bench
//! target/release/gpu_bench cuda        # or: wgpu, flex
//! ```
//!
//! * `step`: forward + backward + clipped AdamW of the seed model on a batch of 4 synthetic
//!   tiles × 10,300 transcripts (the `model` criterion bench's batch). The first step is timed
//!   alone (kernel compilation and autotune included), then the median of 20 steps. Every step
//!   ends by reading the loss on the host, so device work is finished when the clock stops.
//! * `step-baseline`: the step, then the same with the AdamW kernel launched per parameter
//!   (`clipped_adamw_per_parameter`), with the optimiser step of session 2 (Burn's `AdamW`
//!   after a gradient clip that reads the norm on the host), then the step again.
//! * `step-edge`: the step with the default edge kernel and with its lane variant
//!   (`mp::set_edge_lanes`), alternating, on one warm device.
//! * `step-matmul`: the step with plain-f32 matmuls (`MatmulPrecision::Highest`, the default)
//!   and with the backend's default matmul (`High`: TF32 on CUDA), alternating, on one warm
//!   device. Every other mode runs at the default.
//! * `step-mixed`: the step in f32 and in each mixed precision the device has (`16-mixed`:
//!   f16 encoder and loss scaling; `bf16-mixed`), alternating, on one warm device;
//!   `step-f16` and `step-bf16` run one of them alone, so the pool printed after is its own.
//! * `matmul`: the model's matmul shapes at the seed batch (41,984 rows), forward and backward
//!   products, at the two precisions of `step-matmul`.
//! * `phases`: the host time of each phase of the step (forward, loss, backward, gradient
//!   collection, clip + AdamW) and the final wait for the device; on CubeCL backends also the
//!   bytes of live tensors after the forward pass and loss (every activation the backward pass
//!   keeps), after the backward pass (the gradients) and after the optimiser step: the
//!   counterpart of PyTorch's `max_memory_allocated`, sampled at those three points.
//! * `layer`: one GATv2 op (attention + aggregation, forward + backward) and one whole layer
//!   (64 → 4 heads × 16) at the three sizes of the criterion bench, fused and generic.
//!
//! On CubeCL backends the memory pool's size after the steps is printed too (it only grows, so
//! it bounds the peak). Kernel and autotune caches follow `cubecl.toml` in the working directory.
//!
//! `SEGGER_TILE_TX=n` makes the `step` and `phases` batch 4 tiles of n transcripts.
//!
//! Memory without a GPU: `SEGGER_POOL_SIM=h100 gpu_bench wgpu step 2` (or `h200`, or a device
//! memory in MiB) gives the wgpu device the memory pools CubeCL's CUDA runtime builds for that
//! card ([`segger_benches::cuda_pools`]), so the pool it prints predicts the CUDA pool; with
//! `benches/device/peak.toml` as `./cubecl.toml` the pool is an upper bound of the peak of live
//! tensor bytes (exact-size pages).

#[global_allocator]
static GLOBAL: segger_benches::Allocator = segger_benches::Allocator;

use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, FloatDType, Tensor};
use segger_benches::{label_loss, random_conv, random_edges, seed_batch, train_step};
use segger_graph::{EdgeType, NodeType};
use segger_model::mp::MatmulPrecision;
use segger_model::{mp, GatBackend, GraphInput, RelationGraph, Segger, SeggerConfig};

/// Memory of the device, where the backend can tell.
trait DeviceMemory: AutodiffBackend {
    fn memory(_device: &Self::Device) -> Option<String> {
        None
    }

    /// Bytes of live tensors in the memory pool, as of the ops submitted so far.
    fn in_use(_device: &Self::Device) -> Option<u64> {
        None
    }
}

impl DeviceMemory for Autodiff<burn::backend::Flex> {}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl<R, F, I, BT> DeviceMemory for Autodiff<burn_cubecl::CubeBackend<R, F, I, BT>>
where
    R: burn_cubecl::CubeRuntime,
    F: burn_cubecl::FloatElement,
    I: burn_cubecl::IntElement,
    BT: burn_cubecl::BoolElement,
{
    fn memory(device: &Self::Device) -> Option<String> {
        let u = R::client(device).memory_usage().ok()?;
        Some(format!(
            "in use {:.1} MiB, pool reserved {:.1} MiB",
            u.bytes_in_use as f64 / 1048576.0,
            u.bytes_reserved as f64 / 1048576.0
        ))
    }

    fn in_use(device: &Self::Device) -> Option<u64> {
        Some(R::client(device).memory_usage().ok()?.bytes_in_use)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The optimiser step `step` measures: this crate's (the one-kernel AdamW after clipping on the
/// device), or, for comparison, the previous one (Burn's `AdamW`, after a clip that reads the
/// norm on the host).
#[derive(Clone, Copy, PartialEq)]
enum OptimKind {
    Torch,
    TorchPerParameter,
    BurnHostClip,
    /// `segger train --precision 16-mixed` (F16: loss scaling) or `bf16-mixed` (BF16).
    Mixed(FloatDType),
}

fn step<B>(device: &B::Device, fused: bool, steps: usize, kind: OptimKind)
where
    B: DeviceMemory + GatBackend,
    B::InnerBackend: GatBackend,
{
    let batch = bench_batch();
    let n_tx = batch.graph.tx.num_nodes();
    let cfg = SeggerConfig::new(500);
    let input = GraphInput::<B>::from_graph(&batch.graph, &cfg, device).unwrap();
    let mut model = Some(Segger::<B>::init(&cfg, device, 0).unwrap());
    let mut optim = segger_model::optim::clipped_adamw::<B, Segger<B>>(1e-4, 1.0);
    let mut per_param = segger_model::optim::clipped_adamw_per_parameter::<B, Segger<B>>(1e-4, 1.0);
    let mut burn_optim = burn::optim::AdamWConfig::new()
        .with_epsilon(1e-8)
        .init::<B, Segger<B>>();
    let loss_scale = matches!(kind, OptimKind::Mixed(FloatDType::F16))
        .then(segger_model::optim::LossScale::default);
    let mut scaled = segger_model::optim::GradScaler::new(
        segger_model::optim::clipped_adamw::<B, Segger<B>>(1e-4, 1.0),
        loss_scale.clone(),
    );
    let mut times = Vec::new();
    let mut enqueue = Vec::new();
    let mut last = 0.0;
    let tag = match (fused, kind) {
        (true, OptimKind::Torch) => "fused",
        (false, OptimKind::Torch) => "generic",
        (_, OptimKind::TorchPerParameter) => "fused, AdamW per parameter",
        (_, OptimKind::BurnHostClip) => "fused, Burn AdamW + host clip",
        (_, OptimKind::Mixed(FloatDType::F16)) => "fused, 16-mixed",
        (_, OptimKind::Mixed(_)) => "fused, bf16-mixed",
    };
    for k in 0..=steps {
        mp::set_fused(fused);
        let t = Instant::now();
        let (m, loss) = match kind {
            OptimKind::Torch => train_step(model.take().unwrap(), &mut optim, &input),
            OptimKind::TorchPerParameter => {
                train_step(model.take().unwrap(), &mut per_param, &input)
            }
            OptimKind::BurnHostClip => {
                use burn::optim::Optimizer;
                let model = model.take().unwrap();
                let loss = label_loss(&model.forward(&input), &input);
                let mut grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
                segger_model::optim::clip_grad_norm(&model, &mut grads, 1.0);
                (burn_optim.step(1e-4, model, grads), loss)
            }
            OptimKind::Mixed(dtype) => {
                use burn::optim::Optimizer;
                let model = model.take().unwrap();
                let loss = label_loss(&model.forward_in(&input, Some(dtype)), &input);
                let s = loss_scale.as_ref().map_or(1.0, |s| s.scale());
                let grads = burn::optim::GradientsParams::from_grads(
                    loss.clone().mul_scalar(s).backward(),
                    &model,
                );
                (scaled.step(1e-4, model, grads), loss)
            }
        };
        model = Some(m);
        let host_ms = t.elapsed().as_secs_f64() * 1e3;
        last = loss.into_scalar().elem::<f32>() as f64;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if k == 0 {
            println!(
                "step {tag:<7} first step {:>10.1} ms (batch of 4 tiles, {n_tx} transcripts)",
                ms
            );
        } else {
            times.push(ms);
            enqueue.push(host_ms);
        }
    }
    println!(
        "step {tag:<7} median {:>10.2} ms over {steps} steps, min {:.2} ms, loss {last:.5}; {:.0} tx/s; host returns after {:.2} ms (median)",
        median(times.clone()),
        times.iter().cloned().fold(f64::INFINITY, f64::min),
        n_tx as f64 / (median(times) / 1e3),
        median(enqueue)
    );
    if let Some(s) = &loss_scale {
        let st = s.state();
        println!(
            "step {tag:<7} loss scale {} at the end, {} steps skipped",
            st.scale, st.skipped
        );
    }
    if let Some(m) = B::memory(device) {
        println!("memory after the steps: {m}");
    }
}

use burn::tensor::ElementConversion;

/// Host time of each phase of the training step (no device waits until the loss is read): with
/// a step bound by the host, this says which phase's op launches cost the time.
fn phases<B>(device: &B::Device, steps: usize)
where
    B: DeviceMemory + GatBackend,
    B::InnerBackend: GatBackend,
{
    use burn::optim::Optimizer;
    let batch = bench_batch();
    let cfg = SeggerConfig::new(500);
    let input = GraphInput::<B>::from_graph(&batch.graph, &cfg, device).unwrap();
    let mut model = Some(Segger::<B>::init(&cfg, device, 0).unwrap());
    let mut optim = segger_model::optim::clipped_adamw::<B, Segger<B>>(1e-4, 1.0);
    let names = [
        "forward",
        "loss",
        "backward",
        "from_grads",
        "clip + adamw",
        "wait",
    ];
    let mut t_all: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut in_use = [0u64; 3];
    // A second thread samples the live bytes while the steps are submitted: the pool reserves
    // memory as ops are submitted and frees it as tensors are dropped, so the largest sample
    // approaches the peak of live tensors (PyTorch's `max_memory_allocated`).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = (B::in_use(device).is_some()).then(|| {
        let (stop, device) = (stop.clone(), device.clone());
        std::thread::spawn(move || {
            let (mut peak, mut samples) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(B::in_use(&device).unwrap_or(0));
                samples += 1;
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            (peak, samples)
        })
    });
    for k in 0..=steps {
        let mut t = Instant::now();
        let mut lap = |i: usize, t_all: &mut Vec<Vec<f64>>| {
            if k > 0 {
                t_all[i].push(t.elapsed().as_secs_f64() * 1e3);
            }
            t = Instant::now();
        };
        let m = model.take().unwrap();
        let z = m.forward(&input);
        lap(0, &mut t_all);
        let loss = label_loss(&z, &input);
        lap(1, &mut t_all);
        drop(z);
        in_use[0] = in_use[0].max(B::in_use(device).unwrap_or(0));
        let g = loss.backward();
        lap(2, &mut t_all);
        in_use[1] = in_use[1].max(B::in_use(device).unwrap_or(0));
        let grads = burn::optim::GradientsParams::from_grads(g, &m);
        lap(3, &mut t_all);
        model = Some(optim.step(1e-4, m, grads));
        lap(4, &mut t_all);
        in_use[2] = in_use[2].max(B::in_use(device).unwrap_or(0));
        let _ = loss.into_scalar().elem::<f32>();
        lap(5, &mut t_all);
    }
    let line: Vec<String> = names
        .iter()
        .zip(t_all)
        .map(|(n, v)| format!("{n} {:.2}", median(v)))
        .collect();
    println!("phases (host ms, median of {steps}): {}", line.join(", "));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some((peak, samples)) = sampler.and_then(|h| h.join().ok()) {
        let mib = |b: u64| b as f64 / 1048576.0;
        println!(
            "live tensors, largest of {samples} samples taken while the steps ran: {:.1} MiB",
            mib(peak.max(in_use.into_iter().max().unwrap_or(0)))
        );
        println!(
            "live tensors (MiB, largest over the steps; the first sample holds every activation the \
             backward pass keeps): after forward + loss {:.1}, after backward {:.1}, after the \
             optimiser step {:.1}",
            mib(in_use[0]),
            mib(in_use[1]),
            mib(in_use[2])
        );
    }
}

fn layer<B>(device: &B::Device, reps: usize, generic_max_nodes: usize)
where
    B: DeviceMemory + GatBackend,
{
    let (fin, h, ch) = (64usize, 4usize, 16usize);
    for (name, n, e) in [
        ("tile_10k_30k", 10_000usize, 30_000usize),
        ("batch_41k_123k", 41_000, 123_000),
        ("200k_1M", 200_000, 1_000_000),
    ] {
        let (s, d) = random_edges(1, n, n, e);
        let g = RelationGraph::<B>::new(
            EdgeType::new(NodeType::Tx, "neighbors", NodeType::Tx),
            &s,
            &d,
            n,
            n,
            device,
        );
        let xl = Tensor::<B, 3>::random([n, h, ch], Distribution::Normal(0.0, 1.0), device);
        let xr = Tensor::<B, 3>::random([n, h, ch], Distribution::Normal(0.0, 1.0), device);
        let att = Tensor::<B, 2>::random([h, ch], Distribution::Normal(0.0, 1.0), device);
        let conv = random_conv::<B>(fin, h, ch, device);
        let x = Tensor::<B, 2>::random([n, fin], Distribution::Normal(0.0, 1.0), device);
        for fused in [true, false] {
            if !fused && n > generic_max_nodes {
                continue;
            }
            mp::set_fused(fused);
            let mut op = Vec::new();
            let mut whole = Vec::new();
            for _ in 0..reps + 1 {
                let t = Instant::now();
                let (l, r, a) = (
                    xl.clone().require_grad(),
                    xr.clone().require_grad(),
                    att.clone().require_grad(),
                );
                let out = B::gatv2(l.clone(), r, a, &g);
                let grads = out.sum().backward();
                let _ = l.grad(&grads).unwrap().sum().into_scalar();
                op.push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                let xi = x.clone().require_grad();
                let out = conv.forward(xi.clone(), xi.clone(), &g);
                let grads = out.sum().backward();
                let _ = xi.grad(&grads).unwrap().sum().into_scalar();
                whole.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let tag = if fused { "fused" } else { "generic" };
            println!(
                "gatv2 op    {name:<15} {tag:<7} first {:>9.2} ms, median {:>9.2} ms",
                op[0],
                median(op[1..].to_vec())
            );
            println!(
                "gatv2 layer {name:<15} {tag:<7} first {:>9.2} ms, median {:>9.2} ms",
                whole[0],
                median(whole[1..].to_vec())
            );
        }
    }
    mp::set_fused(true);
}

/// Median milliseconds of `f` over `reps` runs after one warm-up, synchronising the device.
fn time_ms<B: burn::tensor::backend::Backend>(
    device: &B::Device,
    reps: usize,
    mut f: impl FnMut(),
) -> f64 {
    f();
    B::sync(device).unwrap();
    let mut t = Vec::new();
    for _ in 0..reps {
        let s = Instant::now();
        f();
        B::sync(device).unwrap();
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    median(t)
}

/// The float32 matmul precisions `step-matmul` and `matmul` compare; the first is the default.
/// `Highest` is CubeCL's unit kernel (plain f32), `High` the backend's matmul (TF32 on CUDA).
const MATMUL_PRECISIONS: [MatmulPrecision; 2] = [MatmulPrecision::Highest, MatmulPrecision::High];

/// The model's products at the seed batch (41,984 rows × 256 or 64 channels): a layer's `x Wᵀ`,
/// the input gradient `dy W`, and the split weight gradient (41 chunks of `[fin, 1024] ·
/// [1024, fout]`), at each of [`MATMUL_PRECISIONS`].
fn matmuls<B: GatBackend>(device: &B::Device) {
    let n = 41_984;
    for (fin, fout) in [(256usize, 256usize), (256, 64), (8, 256)] {
        let x = Tensor::<B, 2>::random([n, fin], Distribution::Normal(0.0, 1.0), device);
        let w = Tensor::<B, 2>::random([fout, fin], Distribution::Normal(0.0, 0.1), device);
        let dy = Tensor::<B, 2>::random([n, fout], Distribution::Normal(0.0, 1.0), device);
        let xc = x.clone().reshape([n / 1024, 1024, fin]).swap_dims(1, 2);
        let dyc = dy.clone().reshape([n / 1024, 1024, fout]);
        for p in MATMUL_PRECISIONS {
            mp::set_float32_matmul_precision(p);
            let name = format!("{p:?}");
            let fwd = time_ms::<B>(device, 20, || {
                let _ = mp::matmul(x.clone(), w.clone().transpose());
            });
            let dx = time_ms::<B>(device, 20, || {
                let _ = mp::matmul(dy.clone(), w.clone());
            });
            let dw = time_ms::<B>(device, 20, || {
                let _ = mp::matmul(xc.clone(), dyc.clone());
            });
            println!(
                "matmul {fin:>3}→{fout:<3} {name:<8} x Wᵀ {fwd:>7.3} ms, dy W {dx:>7.3} ms, \
                 chunked xᵀ dy {dw:>7.3} ms"
            );
        }
    }
    mp::set_float32_matmul_precision(MATMUL_PRECISIONS[0]);
}

/// The pieces of a training step, each timed alone (forward + backward where it has one).
fn ops<B>(device: &B::Device)
where
    B: DeviceMemory + GatBackend,
    B::InnerBackend: GatBackend,
{
    use segger_model::mp::RowIndex;
    type Inner<B> = <B as AutodiffBackend>::InnerBackend;
    for (name, n, e) in [
        ("41k_123k", 41_200usize, 123_600usize),
        ("200k_1M", 200_000, 1_000_000),
    ] {
        let x = Tensor::<B, 2>::random([n, 64], Distribution::Normal(0.0, 1.0), device);
        let w = Tensor::<B, 2>::random([64, 64], Distribution::Normal(0.0, 0.1), device);
        for split in [false, true] {
            mp::set_split_k(Some(split));
            let ms = time_ms::<B>(device, 10, || {
                let (xi, wi) = (x.clone().require_grad(), w.clone().require_grad());
                let g = segger_model::mp::linear(xi.clone(), wi.clone())
                    .sum()
                    .backward();
                let _ = (xi.grad(&g), wi.grad(&g));
            });
            println!("op  {name:<9} linear 64→64 fwd+bwd split={split:<5} {ms:>9.3} ms");
        }
        mp::set_split_k(None);
        let ms = time_ms::<B>(device, 10, || {
            let _ = x.clone().matmul(w.clone());
        });
        println!("op  {name:<9} matmul [N,64]x[64,64] fwd        {ms:>9.3} ms");
        let ms = time_ms::<B>(device, 10, || {
            let _ = x.clone().transpose().matmul(x.clone());
        });
        println!("op  {name:<9} matmul [64,N]x[N,64] (K = N)     {ms:>9.3} ms");
        let idx: Vec<i64> = {
            let (s, _) = random_edges(5, n, n, n);
            s
        };
        let rows = RowIndex::<B>::new(&idx, n, device);
        let z = Tensor::<B, 2>::random([n, 16], Distribution::Normal(0.0, 1.0), device);
        let ms = time_ms::<B>(device, 10, || {
            let zi = z.clone().require_grad();
            let g = segger_model::mp::gather_grouped(zi.clone(), &rows)
                .sum()
                .backward();
            let _ = zi.grad(&g);
        });
        println!("op  {name:<9} gather rows x16 fwd+bwd grouped   {ms:>9.3} ms");
        let ms = time_ms::<B>(device, 10, || {
            let zi = z.clone().require_grad();
            let g = zi.clone().select(0, rows.idx.clone()).sum().backward();
            let _ = zi.grad(&g);
        });
        println!("op  {name:<9} gather rows x16 fwd+bwd select    {ms:>9.3} ms");
        let (s, d) = random_edges(1, n, n, e);
        let g = RelationGraph::<Inner<B>>::new(
            EdgeType::new(NodeType::Tx, "neighbors", NodeType::Tx),
            &s,
            &d,
            n,
            n,
            device,
        )
        .fused();
        let xl = Tensor::<Inner<B>, 3>::random([n, 4, 16], Distribution::Normal(0.0, 1.0), device);
        let xr = Tensor::<Inner<B>, 3>::random([n, 4, 16], Distribution::Normal(0.0, 1.0), device);
        let att = Tensor::<Inner<B>, 2>::random([4, 16], Distribution::Normal(0.0, 1.0), device);
        let (out, alpha) =
            Inner::<B>::fused_forward(xl.clone(), xr.clone(), att.clone(), &g).unwrap();
        for lanes in [false, true] {
            mp::set_edge_lanes(lanes);
            let tag = if lanes { ", edge lanes" } else { " only" };
            let ms = time_ms::<Inner<B>>(device, 10, || {
                let _ = Inner::<B>::fused_forward(xl.clone(), xr.clone(), att.clone(), &g);
            });
            println!("op  {name:<9} gatv2 fused forward{tag:<12} {ms:>9.3} ms");
            let ms = time_ms::<Inner<B>>(device, 10, || {
                let _ = Inner::<B>::fused_backward(
                    out.clone(),
                    xl.clone(),
                    xr.clone(),
                    att.clone(),
                    alpha.clone(),
                    &g,
                );
            });
            println!("op  {name:<9} gatv2 fused backward{tag:<11} {ms:>9.3} ms");
        }
        mp::set_edge_lanes(false);
        let ms = time_ms::<Inner<B>>(device, 10, || {
            let _ = xl.clone() + xr.clone();
        });
        println!("op  {name:<9} add [N,4,16] (launch + bandwidth) {ms:>9.3} ms");
        // Column sums: a bias gradient ([N, 64]) and the chunk sum of a split weight gradient.
        for (rows, cols) in [(n, 64usize), (n.div_ceil(mp::SPLIT_K_ROWS), 64 * 64)] {
            let t =
                Tensor::<Inner<B>, 2>::random([rows, cols], Distribution::Normal(0.0, 1.0), device);
            let kernel = time_ms::<Inner<B>>(device, 10, || {
                let _ = Inner::<B>::col_sum(t.clone());
            });
            let generic = time_ms::<Inner<B>>(device, 10, || {
                let _ = mp::col_sum(t.clone());
            });
            println!(
                "op  {name:<9} col_sum [{rows},{cols}]: GatBackend::col_sum {kernel:>8.3} ms, \
                 two-stage Burn sum_dim {generic:>8.3} ms"
            );
        }
    }
}

fn run<B>(device: B::Device, what: &str, steps: usize)
where
    B: DeviceMemory + GatBackend,
    B::InnerBackend: GatBackend,
{
    if what == "all" || what == "step" {
        step::<B>(&device, true, steps, OptimKind::Torch);
        if std::env::var("SEGGER_BENCH_GENERIC").as_deref() == Ok("1") {
            step::<B>(&device, false, 5, OptimKind::Torch);
        }
    }
    if what == "phases" {
        phases::<B>(&device, steps);
    }
    if what == "step-baseline" {
        // This crate's optimiser step, then the previous one, on one warm device.
        step::<B>(&device, true, steps, OptimKind::Torch);
        step::<B>(&device, true, steps, OptimKind::TorchPerParameter);
        step::<B>(&device, true, steps, OptimKind::BurnHostClip);
        step::<B>(&device, true, steps, OptimKind::Torch);
    }
    if what == "all" || what == "layer" {
        layer::<B>(&device, 10, 50_000);
    }
    if what == "all" || what == "ops" {
        ops::<B>(&device);
    }
    if what == "step-edge" {
        // The edge kernel's lane variant against the default, on one warm device.
        for lanes in [false, true, false, true] {
            mp::set_edge_lanes(lanes);
            println!(
                "edge kernel: {}",
                if lanes {
                    "16 lanes per (edge, head)"
                } else {
                    "one thread per (edge, head)"
                }
            );
            step::<B>(&device, true, steps, OptimKind::Torch);
        }
        mp::set_edge_lanes(false);
    }
    if what == "step-matmul" {
        // Float32 matmul precision: plain f32 (the default, the reference's) against the
        // backend's default matmul (TF32 on CUDA), alternating on one warm device.
        for _ in 0..2 {
            for p in MATMUL_PRECISIONS {
                mp::set_float32_matmul_precision(p);
                println!("float32 matmul precision: {p:?}");
                step::<B>(&device, true, steps, OptimKind::Torch);
            }
        }
        mp::set_float32_matmul_precision(MATMUL_PRECISIONS[0]);
    }
    if what == "matmul" {
        matmuls::<B::InnerBackend>(&device);
    }
    if what == "step-mixed" {
        // f32 against the mixed precisions the device has, alternating on one warm device.
        let mut kinds = vec![OptimKind::Torch];
        for d in [FloatDType::F16, FloatDType::BF16] {
            if B::supports_dtype(&device, d.into()) {
                kinds.push(OptimKind::Mixed(d));
            }
        }
        for _ in 0..2 {
            for &k in &kinds {
                step::<B>(&device, true, steps, k);
            }
        }
    }
    if what == "step-f16" || what == "step-bf16" {
        // One mixed precision alone, so that the pool printed after it is its own.
        let d = if what == "step-f16" {
            FloatDType::F16
        } else {
            FloatDType::BF16
        };
        step::<B>(&device, true, steps, OptimKind::Mixed(d));
    }
    if what == "split" {
        // The step with the plain linear, for comparison.
        mp::set_split_k(Some(false));
        step::<B>(&device, true, steps, OptimKind::Torch);
        mp::set_split_k(None);
    }
}

/// The seed batch: 4 tiles of 10,300 transcripts, or of `SEGGER_TILE_TX` transcripts.
fn bench_batch() -> segger_graph::Batch {
    match std::env::var("SEGGER_TILE_TX") {
        Ok(v) => match v.parse() {
            Ok(n) => segger_benches::seed_batch_of(n),
            Err(_) => {
                eprintln!("SEGGER_TILE_TX={v}: expected a number of transcripts per tile");
                std::process::exit(2);
            }
        },
        Err(_) => seed_batch(),
    }
}

/// The wgpu device; with `SEGGER_POOL_SIM=h100` (or `h200`, or a device memory in MiB) its
/// memory pools are the ones CubeCL's CUDA runtime builds for that card, so the steps' pool
/// figures predict the CUDA pool's (see `segger_benches::cuda_pools`).
#[cfg(feature = "wgpu")]
fn wgpu_device() -> burn::backend::wgpu::WgpuDevice {
    use burn::backend::wgpu::{graphics::AutoGraphicsApi, init_setup, RuntimeOptions, WgpuDevice};
    use segger_benches::cuda_pools;
    let device = WgpuDevice::default();
    let Ok(name) = std::env::var("SEGGER_POOL_SIM") else {
        return device;
    };
    let Some(total) = cuda_pools::device_memory(&name) else {
        eprintln!("SEGGER_POOL_SIM={name}: expected h100, h200 or a device memory in MiB");
        std::process::exit(2);
    };
    let pools = cuda_pools::cuda_sub_slices(total);
    let pages: Vec<String> = pools
        .iter()
        .filter_map(|p| match p {
            cuda_pools::Pool::Sliced {
                page_size,
                max_slice,
            } => Some(format!(
                "{:.1} (slices ≤ {:.2})",
                *page_size as f64 / 1048576.0,
                *max_slice as f64 / 1048576.0
            )),
            cuda_pools::Pool::Exclusive { .. } => None,
        })
        .collect();
    println!(
        "memory pools of CubeCL's CUDA runtime for a {:.0} MiB device ({name}); pages, MiB: {}",
        total as f64 / 1048576.0,
        pages.join(", ")
    );
    let options = RuntimeOptions {
        memory_config: cuda_pools::memory_configuration(&pools),
        ..Default::default()
    };
    init_setup::<AutoGraphicsApi>(&device, options);
    device
}

fn main() {
    segger_benches::configure_allocator();
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map(String::as_str).unwrap_or("flex");
    let what = args.get(2).map(String::as_str).unwrap_or("all");
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let t = Instant::now();
    match backend {
        "flex" => run::<Autodiff<burn::backend::Flex>>(Default::default(), what, steps),
        #[cfg(feature = "cuda")]
        "cuda" => run::<Autodiff<burn::backend::Cuda>>(Default::default(), what, steps),
        #[cfg(feature = "wgpu")]
        "wgpu" => run::<Autodiff<burn::backend::Wgpu>>(wgpu_device(), what, steps),
        other => {
            eprintln!("unknown or not built backend {other}: flex, cuda (feature cuda), wgpu (feature wgpu)");
            std::process::exit(2);
        }
    }
    println!("total {:.1} s", t.elapsed().as_secs_f64());
}
