//! The fused GATv2 op on the autodiff backend: the inner backend's fused forward, recorded as
//! one node whose backward calls the inner backend's fused backward. Backends without fused
//! kernels are differentiated through the generic ops instead.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorPrimitive};

use super::{gatv2_generic, FusedGraph, GatBackend, RowIndex};
use crate::input::RelationGraph;

type Prim<B> = <B as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive;

fn inner<B: Backend, const D: usize>(p: Prim<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> Prim<B> {
    t.into_primitive().tensor()
}

#[derive(Debug)]
struct GatV2Backward;

impl<B: GatBackend> Backward<B, 3> for GatV2Backward {
    type State = (Prim<B>, Prim<B>, Prim<B>, Prim<B>, FusedGraph<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (xl, xr, att, alpha, g) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let (gxl, gxr, gatt) = B::fused_backward(
            inner(grad),
            inner(xl),
            inner(xr),
            inner(att),
            inner(alpha),
            &g,
        )
        .expect("a backend with a fused forward has a fused backward");
        let [pl, pr, pa] = ops.parents;
        if let Some(n) = pl {
            grads.register::<B>(n.id, prim(gxl));
        }
        if let Some(n) = pr {
            grads.register::<B>(n.id, prim(gxr));
        }
        if let Some(n) = pa {
            grads.register::<B>(n.id, prim(gatt));
        }
    }
}

#[derive(Debug)]
struct GatherBackward;

impl<B: GatBackend> Backward<B, 1> for GatherBackward {
    type State = RowIndex<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let out = B::scatter_grouped(inner(grad), &ops.state);
        if let [Some(n)] = ops.parents {
            grads.register::<B>(n.id, prim(out));
        }
    }
}

/// `x Wᵀ` whose backward is `dx = dy W` and `dW = (xᵀ dy)ᵀ`, the latter through
/// [`weight_grad`](super::weight_grad) (chunked over rows where [`super::splits_rows`] says).
#[derive(Debug)]
struct LinearBackward;

impl<B: GatBackend> Backward<B, 2> for LinearBackward {
    /// `x`, `w`, and whether the weight gradient is chunked (decided in the forward pass).
    type State = (Prim<B>, Prim<B>, bool);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (x, w, split) = ops.state;
        let dy = inner::<B, 2>(grads.consume::<B>(&ops.node));
        let [px, pw] = ops.parents;
        if let Some(n) = pw {
            grads.register::<B>(n.id, prim(super::weight_grad(inner(x), dy.clone(), split)));
        }
        if let Some(n) = px {
            grads.register::<B>(n.id, prim(super::matmul(dy, inner(w))));
        }
    }
}

/// ReLU whose backward pass reads its output (Burn's reads its input).
#[derive(Debug)]
struct ReluBackward;

impl<B: GatBackend> Backward<B, 1> for ReluBackward {
    /// The output.
    type State = Prim<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let [px] = ops.parents;
        if let Some(n) = px {
            // `relu_grad` zeroes the gradient where its first argument is ≤ 0, which holds for
            // the output exactly where it holds for the input.
            let out = ops.state;
            grads.register::<B>(n.id, B::relu_grad(out, grad));
        }
    }
}

/// `x + b` over rows, whose bias gradient is [`GatBackend::col_sum`] of the output gradient.
#[derive(Debug)]
struct BiasBackward;

impl<B: GatBackend> Backward<B, 2> for BiasBackward {
    type State = ();

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let [px, pb] = ops.parents;
        if let Some(n) = pb {
            grads.register::<B>(n.id, prim(B::col_sum(inner::<B, 2>(grad.clone()))));
        }
        if let Some(n) = px {
            grads.register::<B>(n.id, grad);
        }
    }
}

fn inner_int<B: Backend, C: CheckpointStrategy>(
    t: &Tensor<Autodiff<B, C>, 1, Int>,
) -> Tensor<B, 1, Int> {
    Tensor::from_primitive(t.clone().into_primitive())
}

/// The inner backend's view of a graph (integer tensors are not tracked by autodiff).
fn inner_graph<B: Backend, C: CheckpointStrategy>(g: &FusedGraph<Autodiff<B, C>>) -> FusedGraph<B> {
    let int = inner_int::<B, C>;
    FusedGraph {
        host: g.host.clone(),
        src: int(&g.src),
        dst: int(&g.dst),
        row_ptr: int(&g.row_ptr),
        src_ptr: int(&g.src_ptr),
        src_edge: int(&g.src_edge),
    }
}

impl<B: GatBackend, C: CheckpointStrategy> GatBackend for Autodiff<B, C> {
    const SPLIT_K: bool = B::SPLIT_K;

    fn gather_grouped(x: Tensor<Self, 2>, idx: &RowIndex<Self>) -> Tensor<Self, 2> {
        let idx_inner = RowIndex {
            idx: inner_int::<B, C>(&idx.idx),
            group_ptr: inner_int::<B, C>(&idx.group_ptr),
            group_pos: inner_int::<B, C>(&idx.group_pos),
            num_rows: idx.num_rows,
        };
        let px = prim(x);
        let out = prim(B::gather_grouped(inner(px.primitive.clone()), &idx_inner));
        let res = match GatherBackward
            .prepare::<C>([px.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(idx_inner, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Tensor::from_primitive(TensorPrimitive::Float(res))
    }

    fn dense(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let split = super::splits_rows::<B>(x.dims()[0]);
        if !B::SPLIT_K && !split {
            // The CPU backends: Burn's own autodiff matmul (one seed training step took 705 ms
            // this way against 745 ms through the recorded op on this 2-core machine).
            return x.matmul(w.transpose());
        }
        let (px, pw) = (prim(x), prim(w));
        let out = prim(B::dense(
            inner(px.primitive.clone()),
            inner(pw.primitive.clone()),
        ));
        let res = match LinearBackward
            .prepare::<C>([px.node.clone(), pw.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((px.primitive, pw.primitive, split), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Tensor::from_primitive(TensorPrimitive::Float(res))
    }

    fn relu_keep_output(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let px = prim(x);
        let out = prim(B::relu_keep_output(inner(px.primitive.clone())));
        let res = match ReluBackward
            .prepare::<C>([px.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(out.clone(), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Tensor::from_primitive(TensorPrimitive::Float(res))
    }

    fn add_bias(x: Tensor<Self, 2>, b: Tensor<Self, 1>) -> Tensor<Self, 2> {
        if !B::SPLIT_K {
            // The CPU backends: Burn's own broadcast add (see `dense`).
            return x + b.unsqueeze::<2>();
        }
        let (px, pb) = (prim(x), prim(b));
        let out = prim(B::add_bias(
            inner(px.primitive.clone()),
            inner(pb.primitive.clone()),
        ));
        let res = match BiasBackward
            .prepare::<C>([px.node.clone(), pb.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Tensor::from_primitive(TensorPrimitive::Float(res))
    }

    fn col_sum(x: Tensor<Self, 2>) -> Tensor<Self, 1> {
        let w = x.dims()[1];
        x.sum_dim(0).reshape([w])
    }

    fn gatv2(
        xl: Tensor<Self, 3>,
        xr: Tensor<Self, 3>,
        att: Tensor<Self, 2>,
        g: &RelationGraph<Self>,
    ) -> Tensor<Self, 3> {
        let host = inner_graph::<B, C>(&g.fused());
        let (pl, pr, pa) = (prim(xl.clone()), prim(xr.clone()), prim(att.clone()));
        let Some((out, alpha)) = B::fused_forward(
            inner(pl.primitive.clone()),
            inner(pr.primitive.clone()),
            inner(pa.primitive.clone()),
            &host,
        ) else {
            return gatv2_generic(xl, xr, att, g);
        };
        let out = prim(out);
        let res = match GatV2Backward
            .prepare::<C>([pl.node.clone(), pr.node.clone(), pa.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (pl.primitive, pr.primitive, pa.primitive, prim(alpha), host),
                out,
            ),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Tensor::from_primitive(TensorPrimitive::Float(res))
    }
}
