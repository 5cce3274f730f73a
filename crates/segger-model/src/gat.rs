use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

use crate::input::RelationGraph;
use crate::mp::{self, GatBackend};

/// One GATv2 convolution for one relation, with PyG's `GATv2Conv` parameters
/// (`share_weights=False`, `concat=True`, `add_self_loops=False`, `bias=True`). Weights are
/// kept in PyTorch's `[out, in]` layout so they map 1:1 onto a PyG `state_dict`.
#[derive(Module, Debug)]
pub struct GatConv<B: Backend> {
    /// `lin_l.weight` `[H*C, in_src]`, applied to the sources.
    pub lin_l_weight: Param<Tensor<B, 2>>,
    /// `lin_l.bias` `[H*C]`.
    pub lin_l_bias: Param<Tensor<B, 1>>,
    /// `lin_r.weight` `[H*C, in_dst]`, applied to the destinations.
    pub lin_r_weight: Param<Tensor<B, 2>>,
    /// `lin_r.bias` `[H*C]`.
    pub lin_r_bias: Param<Tensor<B, 1>>,
    /// `att` `[H, C]` (PyG stores `[1, H, C]`).
    pub att: Param<Tensor<B, 2>>,
    /// `bias` `[H*C]`, added after the heads are concatenated.
    pub bias: Param<Tensor<B, 1>>,
    /// Number of heads H.
    pub heads: usize,
    /// Per-head width C.
    pub channels: usize,
}

impl<B: GatBackend> GatConv<B> {
    /// Output `[N_dst, H*C]` for sources `x_src` `[N_src, in_src]` and destinations `x_dst`
    /// `[N_dst, in_dst]`. A destination without incoming edges outputs `bias`. On a graph where
    /// no destination has more than one edge ([`RelationGraph::single`]) the attention is
    /// skipped: each weight is a softmax over one edge, 1.
    pub fn forward(
        &self,
        x_src: Tensor<B, 2>,
        x_dst: Tensor<B, 2>,
        g: &RelationGraph<B>,
    ) -> Tensor<B, 2> {
        self.forward_in(x_src, x_dst, g, None)
    }

    /// [`GatConv::forward`] computing in `compute` (f16 or bf16 for mixed precision): every
    /// parameter is cast to it on the way in (the cast is recorded, so the gradients of the f32
    /// parameters come back in f32), and `x_src`, `x_dst` and the output are in it. `None`
    /// computes in the parameters' own type.
    pub fn forward_in(
        &self,
        x_src: Tensor<B, 2>,
        x_dst: Tensor<B, 2>,
        g: &RelationGraph<B>,
        compute: Option<FloatDType>,
    ) -> Tensor<B, 2> {
        let (h, c) = (self.heads, self.channels);
        let ns = x_src.dims()[0];
        let nd = x_dst.dims()[0];
        let xl = mp::add_bias(
            mp::linear(x_src, cast(self.lin_l_weight.val(), compute)),
            cast(self.lin_l_bias.val(), compute),
        );
        if let Some(single) = &g.single {
            // One edge at most per destination: its attention weight is 1 whatever `lin_r` and
            // `att` are (their gradients are 0 either way), so the output is the source's
            // message, or 0 without an edge, plus the bias.
            let zero = Tensor::<B, 2>::zeros([1, h * c], &xl.device());
            let padded = Tensor::cat(vec![xl, cast(zero, compute)], 0);
            let out = mp::gather_grouped(padded, single);
            return mp::add_bias(out, cast(self.bias.val(), compute));
        }
        let xr = mp::add_bias(
            mp::linear(x_dst, cast(self.lin_r_weight.val(), compute)),
            cast(self.lin_r_bias.val(), compute),
        );
        let out = B::gatv2(
            xl.reshape([ns, h, c]),
            xr.reshape([nd, h, c]),
            cast(self.att.val(), compute),
            g,
        );
        mp::add_bias(out.reshape([nd, h * c]), cast(self.bias.val(), compute))
    }
}

/// `t` cast to `to`, or `t` itself for `None`.
pub(crate) fn cast<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    to: Option<FloatDType>,
) -> Tensor<B, D> {
    match to {
        Some(d) => t.cast(d),
        None => t,
    }
}
