"""PyTorch Geometric baseline for `gpu_bench` (run on the same GPU, in the same session).

The reference Segger model (GATv2Conv, `to_hetero`, seed config: init_emb 8, hidden 64,
1 mid layer, out 16, 4 heads, sum aggregation) on a batch shaped like gpu_bench's: 4 tiles x
10,300 transcripts, 106 nuclei per tile, 3 tx->tx and 3 tx->bd edges per transcript, every
sixth transcript a positive with 5 negatives. One training step = forward, BCE-with-logits,
backward, global-norm clip 1.0, AdamW, in plain f32 (TF32 off, PyTorch's default), then again
with TF32 matmuls. Timed with CUDA synchronisation; median of 20 steps after 3 warm-up steps; peak memory = torch.cuda.max_memory_allocated (live tensors) and max_memory_reserved
(the caching allocator's pool, the counterpart of CubeCL's reserved pool). Also one GATv2Conv layer
(64 -> 4 x 16) forward + backward at 10k/30k, 41k/123k and 200k/1M nodes/edges.

    python3 benches/pyg/gpu_step.py
"""
import statistics
import time

import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATv2Conv, to_hetero


class Segger(torch.nn.Module):
    def __init__(self, num_tx_tokens, init_emb, hidden, mid, out, heads):
        super().__init__()
        self.tx_embedding = torch.nn.Embedding(num_tx_tokens, init_emb)
        self.lin0 = torch.nn.LazyLinear(init_emb, bias=False)
        self.conv_first = GATv2Conv((-1, -1), hidden, heads=heads, add_self_loops=False)
        self.mids = torch.nn.ModuleList(
            [GATv2Conv((-1, -1), hidden, heads=heads, add_self_loops=False) for _ in range(mid)]
        )
        self.conv_last = GATv2Conv((-1, -1), out, heads=heads, add_self_loops=False)

    def forward(self, x, edge_index):
        x = torch.nan_to_num(x, nan=0)
        is_one_dim = (x.ndim == 1) * 1
        x = x[:, None]
        x = self.tx_embedding(((x.sum(-1) * is_one_dim).int())) * is_one_dim + self.lin0(
            x.float()
        ) * (1 - is_one_dim)
        x = x.squeeze().relu()
        x = self.conv_first(x, edge_index).relu()
        for conv in self.mids:
            x = conv(x, edge_index).relu()
        return self.conv_last(x, edge_index)


def batch(dev, tiles=4, n_tx=10_300, n_bd=106, k=3):
    g = torch.Generator().manual_seed(0)
    n, nb = tiles * n_tx, tiles * n_bd
    d = HeteroData()
    d["tx"].x = torch.randint(0, 500, (n,), generator=g)
    d["bd"].x = torch.rand(nb, 4, generator=g)
    tile = torch.arange(n) // n_tx
    src = torch.arange(n).repeat_interleave(k)
    dst_tx = (tile.repeat_interleave(k) * n_tx + torch.randint(0, n_tx, (n * k,), generator=g))
    dst_bd = (tile.repeat_interleave(k) * n_bd + torch.randint(0, n_bd, (n * k,), generator=g))
    d["tx", "neighbors", "tx"].edge_index = torch.stack([src, dst_tx])
    d["tx", "neighbors", "bd"].edge_index = torch.stack([src, dst_bd])
    pos = torch.arange(0, n, 6)
    p = len(pos)
    lab_tx = torch.cat([pos, pos.repeat(5)])
    lab_bd = torch.randint(0, nb, (6 * p,), generator=g)
    label = torch.cat([torch.ones(p), torch.zeros(5 * p)])
    return d.to(dev), lab_tx.to(dev), lab_bd.to(dev), label.to(dev)


def sync_time(f):
    torch.cuda.synchronize()
    t = time.perf_counter()
    f()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1e3


def main():
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print("device", torch.cuda.get_device_name(0), "torch", torch.__version__)
    data, lab_tx, lab_bd, label = batch(dev)
    model = Segger(500, 8, 64, 1, 16, 4)
    model = to_hetero(model, data.metadata(), aggr="sum").to(dev)
    with torch.no_grad():
        model(data.x_dict, data.edge_index_dict)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    crit = torch.nn.BCEWithLogitsLoss()

    def step():
        z = model(data.x_dict, data.edge_index_dict)
        out = (z["tx"][lab_tx] * z["bd"][lab_bd]).sum(-1)
        loss = crit(out, label)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    first = sync_time(step)
    for _ in range(3):
        step()
    torch.cuda.reset_peak_memory_stats()
    times = [sync_time(step) for _ in range(20)]
    print(
        f"pyg step first {first:.1f} ms, median {statistics.median(times):.2f} ms, "
        f"min {min(times):.2f} ms over 20 steps; peak memory "
        f"{torch.cuda.max_memory_allocated() / 2**20:.1f} MiB allocated, "
        f"{torch.cuda.max_memory_reserved() / 2**20:.1f} MiB reserved by the caching allocator"
    )
    # The same step with TF32 matmuls (torch.set_float32_matmul_precision("high")), the
    # counterpart of segger's --float32_matmul_precision high (Burn's default CUDA matmul).
    torch.backends.cuda.matmul.allow_tf32 = True
    for _ in range(3):
        step()
    times = [sync_time(step) for _ in range(20)]
    print(
        f"pyg step with TF32 matmuls: median {statistics.median(times):.2f} ms, "
        f"min {min(times):.2f} ms over 20 steps"
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    # Lightning's precision="16-mixed": autocast to f16 and a GradScaler that unscales before
    # the clip (segger's --precision 16-mixed).
    scaler = torch.amp.GradScaler("cuda")

    def step_16_mixed():
        with torch.autocast("cuda", dtype=torch.float16):
            z = model(data.x_dict, data.edge_index_dict)
            out = (z["tx"][lab_tx] * z["bd"][lab_bd]).sum(-1)
            loss = crit(out.float(), label)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        return loss.item()

    for _ in range(3):
        step_16_mixed()
    torch.cuda.reset_peak_memory_stats()
    times = [sync_time(step_16_mixed) for _ in range(20)]
    print(
        f"pyg step 16-mixed: median {statistics.median(times):.2f} ms, "
        f"min {min(times):.2f} ms over 20 steps; peak memory "
        f"{torch.cuda.max_memory_allocated() / 2**20:.1f} MiB allocated"
    )
    for name, n, e in [("tile_10k_30k", 10_000, 30_000), ("batch_41k_123k", 41_000, 123_000),
                       ("200k_1M", 200_000, 1_000_000)]:
        conv = GATv2Conv(64, 16, heads=4, add_self_loops=False).to(dev)
        x = torch.randn(n, 64, device=dev)
        ei = torch.randint(0, n, (2, e), device=dev)

        def layer():
            xi = x.clone().requires_grad_()
            conv(xi, ei).sum().backward()
            return xi.grad.sum().item()

        for _ in range(3):
            layer()
        t = [sync_time(layer) for _ in range(10)]
        print(f"pyg gatv2 layer {name:<15} median {statistics.median(t):9.2f} ms")


if __name__ == "__main__":
    main()
