"""PyTorch CPU baseline for `gpu_bench flex layer`: one GATv2 layer, forward + backward, 2 threads.

Times the same work as the `layer` function of `benches/src/bin/gpu_bench.rs` (its "gatv2 layer"
lines): one whole GATv2Conv layer, 64 -> 4 heads x 16 channels, heads concatenated, bias added,
no self loops, LeakyReLU slope 0.2, no dropout (lin_l, lin_r, attention, softmax, aggregation,
bias), on a random graph of the same shape: N nodes, E edges whose sources and destinations are
both drawn uniformly from 0..N (so in-degrees are about Poisson(E / N)); x is [N, 64] standard
normal. One step = fresh leaf `x.clone().requires_grad_()`, `conv(x, edge_index).sum()`,
backward (gradients of x and of every parameter), then `x.grad.sum()` read as a Python float,
as the Rust bench reads its gradient back. The graph and the weights are built outside the clock.
The first step is reported alone ("first", the warm-up), then the median of the next N steps
(the upper median, v[N / 2] of the sorted times, as gpu_bench computes it).

Uses torch_geometric's `GATv2Conv` by default; `--impl plain` runs the same computation written
out in plain torch ops (index_select / scatter_reduce / index_add_), the way GATv2Conv does it.

Setup (throwaway venv outside the repo; PyPI's Linux torch wheel is the CUDA build, ~5.4 GB):

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch torch_geometric

Run (default: only 200k nodes / 1M edges, median of 10 steps):

    /tmp/torchvenv/bin/python benches/pyg/cpu_layer.py
    /tmp/torchvenv/bin/python benches/pyg/cpu_layer.py --sizes 10k 41k 200k --steps 10
    /tmp/torchvenv/bin/python benches/pyg/cpu_layer.py --threads 2 --impl plain

`benches/cpu_side_by_side.sh` runs this and `target/release/gpu_bench flex layer` in turn.
"""
import argparse
import time
import warnings

import torch

SIZES = {
    "10k": ("tile_10k_30k", 10_000, 30_000),
    "41k": ("batch_41k_123k", 41_000, 123_000),
    "200k": ("200k_1M", 200_000, 1_000_000),
}
FIN, HEADS, CH = 64, 4, 16
NEGATIVE_SLOPE = 0.2


class PlainGATv2(torch.nn.Module):
    """GATv2Conv(FIN, CH, heads=HEADS, add_self_loops=False), concat, in plain torch ops."""

    def __init__(self, fin, ch, heads):
        super().__init__()
        self.heads, self.ch = heads, ch
        self.lin_l = torch.nn.Linear(fin, heads * ch)
        self.lin_r = torch.nn.Linear(fin, heads * ch)
        self.att = torch.nn.Parameter(torch.randn(1, heads, ch) * 0.1)
        self.bias = torch.nn.Parameter(torch.zeros(heads * ch))

    def forward(self, x, edge_index):
        h, c, n = self.heads, self.ch, x.size(0)
        src, dst = edge_index[0], edge_index[1]
        xl = self.lin_l(x).view(-1, h, c)
        xr = self.lin_r(x).view(-1, h, c)
        xj = xl.index_select(0, src)  # [E, H, C] sources
        xi = xr.index_select(0, dst)  # [E, H, C] destinations
        z = torch.nn.functional.leaky_relu(xi + xj, NEGATIVE_SLOPE)
        logit = (z * self.att).sum(-1)  # [E, H]
        # softmax over each destination's incoming edges (torch_geometric.utils.softmax)
        idx = dst.view(-1, 1).expand_as(logit)
        mx = torch.full((n, h), float("-inf"), dtype=logit.dtype).scatter_reduce(
            0, idx, logit.detach(), reduce="amax", include_self=True)
        ex = (logit - mx.index_select(0, dst)).exp()
        den = torch.zeros(n, h, dtype=ex.dtype).index_add(0, dst, ex) + 1e-16
        alpha = ex / den.index_select(0, dst)
        out = torch.zeros(n, h, c, dtype=xj.dtype).index_add(0, dst, xj * alpha.unsqueeze(-1))
        return out.view(n, h * c) + self.bias


def make_conv(impl):
    if impl == "pyg":
        from torch_geometric.nn import GATv2Conv

        return GATv2Conv(FIN, CH, heads=HEADS, concat=True, add_self_loops=False)
    return PlainGATv2(FIN, CH, HEADS)


def median(v):
    """Upper median, as gpu_bench's `median` (v[len / 2] of the sorted values)."""
    return sorted(v)[len(v) // 2]


def graph(n, e, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (e,), generator=g)
    dst = torch.randint(0, n, (e,), generator=g)
    x = torch.randn(n, FIN, generator=g)
    return x, torch.stack([src, dst])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["200k"])
    ap.add_argument("--steps", type=int, default=10, help="timed steps after one warm-up")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--impl", choices=["pyg", "plain"], default="pyg")
    a = ap.parse_args()

    # torch_geometric's import warns that torch.jit.script is deprecated; keep the output clean
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    impl = a.impl
    if impl == "pyg":
        try:
            import torch_geometric

            ver = f"torch_geometric {torch_geometric.__version__}"
        except ImportError:
            impl, ver = "plain", "torch_geometric not installed, plain torch ops"
    else:
        ver = "plain torch ops"
    print(f"torch {torch.__version__}, {ver}, {torch.get_num_threads()} threads, "
          f"{a.steps} steps after 1 warm-up")

    for key in a.sizes:
        name, n, e = SIZES[key]
        x, ei = graph(n, e)
        conv = make_conv(impl)

        def step():
            conv.zero_grad(set_to_none=True)  # fresh parameter gradients, as in the Rust bench
            t = time.perf_counter()
            xi = x.clone().requires_grad_()
            conv(xi, ei).sum().backward()
            xi.grad.sum().item()
            return (time.perf_counter() - t) * 1e3

        first = step()
        times = [step() for _ in range(a.steps)]
        print(f"gatv2 layer {name:<15} {'pytorch':<7} first {first:>9.2f} ms, "
              f"median {median(times):>9.2f} ms")


if __name__ == "__main__":
    main()
