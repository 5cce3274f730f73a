//! The fused GATv2 op on the autodiff backend: the inner backend's fused forward, recorded as
//! one node whose backward calls the inner backend's fused backward. Backends without fused
//! kernels are differentiated through the generic ops instead.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

use super::{gatv2_generic, GatBackend, HostGraph};
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
    type State = (Prim<B>, Prim<B>, Prim<B>, Prim<B>, HostGraph);

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

impl<B: GatBackend, C: CheckpointStrategy> GatBackend for Autodiff<B, C> {
    fn gatv2(
        xl: Tensor<Self, 3>,
        xr: Tensor<Self, 3>,
        att: Tensor<Self, 2>,
        g: &RelationGraph<Self>,
    ) -> Tensor<Self, 3> {
        let host = g.host();
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
