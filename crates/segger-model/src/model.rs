use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor, TensorData};
use segger_graph::NodeType;

use crate::config::{Aggr, ConfigError, SeggerConfig};
use crate::gat::{cast, GatConv};
use crate::input::GraphInput;
use crate::mp::{self, GatBackend, RowIndex};

/// Output embeddings of both node types.
#[derive(Debug, Clone)]
pub struct Embeddings<B: Backend> {
    /// Transcript embeddings `[N_tx, heads * out_channels]`.
    pub tx: Tensor<B, 2>,
    /// Boundary embeddings `[N_bd, heads * out_channels]`.
    pub bd: Tensor<B, 2>,
}

/// A parameter with its PyG name, as returned by [`Segger::named_params`].
#[derive(Debug, Clone)]
pub enum NamedParam<B: Backend> {
    /// A 1-D parameter (biases).
    D1(Param<Tensor<B, 1>>),
    /// A 2-D parameter (weights, embeddings, `att` stored as `[H, C]`).
    D2(Param<Tensor<B, 2>>),
}

/// The Segger model: a heterogeneous GATv2 encoder of transcripts and boundaries, as built by
/// PyG's `to_hetero(Segger(...))`.
///
/// Input layer: transcripts by token embedding (`tx_embedding.tx`) or, for gene-embedding
/// features, a bias-free Linear (`lin0.tx`); boundaries by a bias-free Linear on their
/// features (`lin0.bd`); ReLU. Then `conv_first`, `num_mid_layers` middle layers and
/// `conv_last`, each with one [`GatConv`] per relation, relation outputs combined per
/// destination type by `aggr`, ReLU after every layer but the last.
///
/// `tx_embedding.bd` and (for token models) `lin0.tx` exist because `to_hetero` copies every
/// module per node type; the reference multiplies their branch by zero, so they never affect
/// the output and receive zero gradients. They are kept so that the parameters map 1:1 onto
/// PyG's `state_dict`, and are not evaluated.
#[derive(Module, Debug)]
pub struct Segger<B: Backend> {
    /// `tx_embedding.tx.weight` `[num_tx_tokens, init_emb]`.
    pub tx_embedding_tx: Param<Tensor<B, 2>>,
    /// `tx_embedding.bd.weight` `[num_tx_tokens, init_emb]` (unused branch).
    pub tx_embedding_bd: Param<Tensor<B, 2>>,
    /// `lin0.tx.weight` `[init_emb, F_tx]` (unused branch for token models).
    pub lin0_tx: Param<Tensor<B, 2>>,
    /// `lin0.bd.weight` `[init_emb, bd_features]`.
    pub lin0_bd: Param<Tensor<B, 2>>,
    /// `layers[l][r]`: layer `l`'s convolution for relation `r` (config order).
    pub layers: Vec<Vec<GatConv<B>>>,
    /// The architecture.
    #[module(skip)]
    pub config: SeggerConfig,
}

/// PyG-style name of layer `l` of `n` layers.
fn layer_name(l: usize, n: usize) -> String {
    if l == 0 {
        "conv_first".to_string()
    } else if l + 1 == n {
        "conv_last".to_string()
    } else {
        format!("conv_mid_layers.{}", l - 1)
    }
}

/// Parameter names (PyG `state_dict` keys) and PyG shapes of a configuration, in a fixed order:
/// the one table of the model's parameters, which [`crate::pyg::check_names`] checks weight
/// files and `crate::checkpoint` checks imported checkpoints against.
pub(crate) fn pyg_shapes(c: &SeggerConfig) -> Vec<(String, Vec<usize>)> {
    let d = c.init_emb;
    let mut out = vec![
        (
            "tx_embedding.tx.weight".to_string(),
            vec![c.num_tx_tokens, d],
        ),
        (
            "tx_embedding.bd.weight".to_string(),
            vec![c.num_tx_tokens, d],
        ),
        (
            "lin0.tx.weight".to_string(),
            vec![d, c.tx_features.unwrap_or(1)],
        ),
        ("lin0.bd.weight".to_string(), vec![d, c.bd_features]),
    ];
    let n = c.num_mid_layers + 2;
    for l in 0..n {
        let width = if l + 1 == n {
            c.out_channels
        } else {
            c.hidden_channels
        };
        let fin = if l == 0 {
            d
        } else {
            c.heads * c.hidden_channels
        };
        let hc = c.heads * width;
        for r in &c.relations {
            let p = format!("{}.{r}", layer_name(l, n));
            out.push((format!("{p}.att"), vec![1, c.heads, width]));
            out.push((format!("{p}.bias"), vec![hc]));
            out.push((format!("{p}.lin_l.weight"), vec![hc, fin]));
            out.push((format!("{p}.lin_l.bias"), vec![hc]));
            out.push((format!("{p}.lin_r.weight"), vec![hc, fin]));
            out.push((format!("{p}.lin_r.bias"), vec![hc]));
        }
    }
    out
}

impl<B: GatBackend> Segger<B> {
    /// Builds a model whose every parameter comes from `make(name, pyg_shape)`, which returns
    /// the values in PyG layout.
    pub fn build(
        config: &SeggerConfig,
        device: &B::Device,
        make: impl FnMut(&str, &[usize]) -> Vec<f32>,
    ) -> Result<Self, ConfigError> {
        config.check()?;
        let make = std::cell::RefCell::new(make);
        let p2 = |name: &str, shape: &[usize], out_shape: [usize; 2]| -> Param<Tensor<B, 2>> {
            let v = (make.borrow_mut())(name, shape);
            Param::from_tensor(Tensor::from_data(TensorData::new(v, out_shape), device))
        };
        let d = config.init_emb;
        let v = config.num_tx_tokens;
        let ftx = config.tx_features.unwrap_or(1);
        let tx_embedding_tx = p2("tx_embedding.tx.weight", &[v, d], [v, d]);
        let tx_embedding_bd = p2("tx_embedding.bd.weight", &[v, d], [v, d]);
        let lin0_tx = p2("lin0.tx.weight", &[d, ftx], [d, ftx]);
        let lin0_bd = p2(
            "lin0.bd.weight",
            &[d, config.bd_features],
            [d, config.bd_features],
        );
        let n = config.num_mid_layers + 2;
        let h = config.heads;
        let mut layers = Vec::with_capacity(n);
        for l in 0..n {
            let width = if l + 1 == n {
                config.out_channels
            } else {
                config.hidden_channels
            };
            let fin = if l == 0 {
                d
            } else {
                h * config.hidden_channels
            };
            let hc = h * width;
            let mut convs = Vec::new();
            for r in &config.relations {
                let pre = format!("{}.{r}", layer_name(l, n));
                let p1 = |name: String| -> Param<Tensor<B, 1>> {
                    let v = (make.borrow_mut())(&name, &[hc]);
                    Param::from_tensor(Tensor::from_data(TensorData::new(v, [hc]), device))
                };
                let lin_l_bias = p1(format!("{pre}.lin_l.bias"));
                let lin_r_bias = p1(format!("{pre}.lin_r.bias"));
                let bias = p1(format!("{pre}.bias"));
                convs.push(GatConv {
                    lin_l_weight: p2(&format!("{pre}.lin_l.weight"), &[hc, fin], [hc, fin]),
                    lin_l_bias,
                    lin_r_weight: p2(&format!("{pre}.lin_r.weight"), &[hc, fin], [hc, fin]),
                    lin_r_bias,
                    att: p2(&format!("{pre}.att"), &[1, h, width], [h, width]),
                    bias,
                    heads: h,
                    channels: width,
                });
            }
            layers.push(convs);
        }
        Ok(Self {
            tx_embedding_tx,
            tx_embedding_bd,
            lin0_tx,
            lin0_bd,
            layers,
            config: config.clone(),
        })
    }

    /// A freshly initialised model, with the reference's initialisers: embeddings N(0, 1),
    /// `lin0` uniform(±1/√fan_in) (PyTorch's default Linear), GATv2 `lin_l`/`lin_r`/`att`
    /// Glorot-uniform and biases 0 (PyG's `GATv2Conv.reset_parameters`). Deterministic for a
    /// given `seed`.
    pub fn init(config: &SeggerConfig, device: &B::Device, seed: u64) -> Result<Self, ConfigError> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Self::build(config, device, |name, shape| {
            let n: usize = shape.iter().product();
            let uniform = |rng: &mut rand_chacha::ChaCha8Rng, a: f32| -> Vec<f32> {
                (0..n).map(|_| rng.random_range(-a..=a)).collect()
            };
            if name.starts_with("tx_embedding") {
                // Box-Muller standard normals.
                (0..n)
                    .map(|_| {
                        let u1: f32 = rng.random_range(f32::EPSILON..1.0);
                        let u2: f32 = rng.random();
                        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
                    })
                    .collect()
            } else if name.starts_with("lin0") {
                uniform(&mut rng, 1.0 / (shape[1] as f32).sqrt())
            } else if name.ends_with("bias") {
                vec![0.0; n]
            } else if name.ends_with(".att") {
                uniform(&mut rng, (6.0 / (shape[1] + shape[2]) as f32).sqrt())
            } else {
                uniform(&mut rng, (6.0 / (shape[0] + shape[1]) as f32).sqrt())
            }
        })
    }

    /// Every parameter with its PyG `state_dict` name, in the order of `pyg_shapes` (the
    /// reference's `state_dict` order).
    pub fn named_params(&self) -> Vec<(String, NamedParam<B>)> {
        let mut out = vec![
            (
                "tx_embedding.tx.weight".to_string(),
                NamedParam::D2(self.tx_embedding_tx.clone()),
            ),
            (
                "tx_embedding.bd.weight".to_string(),
                NamedParam::D2(self.tx_embedding_bd.clone()),
            ),
            (
                "lin0.tx.weight".to_string(),
                NamedParam::D2(self.lin0_tx.clone()),
            ),
            (
                "lin0.bd.weight".to_string(),
                NamedParam::D2(self.lin0_bd.clone()),
            ),
        ];
        let n = self.layers.len();
        for (l, convs) in self.layers.iter().enumerate() {
            for (r, conv) in self.config.relations.iter().zip(convs) {
                let p = format!("{}.{r}", layer_name(l, n));
                out.push((format!("{p}.att"), NamedParam::D2(conv.att.clone())));
                out.push((format!("{p}.bias"), NamedParam::D1(conv.bias.clone())));
                out.push((
                    format!("{p}.lin_l.weight"),
                    NamedParam::D2(conv.lin_l_weight.clone()),
                ));
                out.push((
                    format!("{p}.lin_l.bias"),
                    NamedParam::D1(conv.lin_l_bias.clone()),
                ));
                out.push((
                    format!("{p}.lin_r.weight"),
                    NamedParam::D2(conv.lin_r_weight.clone()),
                ));
                out.push((
                    format!("{p}.lin_r.bias"),
                    NamedParam::D1(conv.lin_r_bias.clone()),
                ));
            }
        }
        out
    }

    /// Input layer: `ReLU(embedding)` for transcripts, `ReLU(x Wᵀ)` for boundaries, in
    /// `compute` (see [`Segger::forward_in`]).
    fn input_layer(
        &self,
        input: &GraphInput<B>,
        compute: Option<FloatDType>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let h_tx = match (&input.tx_tokens, &input.tx_features) {
            (Some(tok), _) => mp::gather_grouped(cast(self.tx_embedding_tx.val(), compute), tok),
            (None, Some(x)) => {
                mp::linear(cast(x.clone(), compute), cast(self.lin0_tx.val(), compute))
            }
            (None, None) => panic!("GraphInput has neither transcript tokens nor features"),
        };
        let h_bd = mp::linear(
            cast(input.bd_x.clone(), compute),
            cast(self.lin0_bd.val(), compute),
        );
        (mp::relu(h_tx), mp::relu(h_bd))
    }

    /// Embeddings of every transcript and boundary of `input`.
    pub fn forward(&self, input: &GraphInput<B>) -> Embeddings<B> {
        self.forward_in(input, None)
    }

    /// [`Segger::forward`] with the encoder computing in `compute`: mixed precision when it is
    /// f16 or bf16 and the parameters are f32. Every parameter is cast on the way in (recorded,
    /// so gradients reach the f32 parameters in f32), every activation between the layers is
    /// stored in `compute`, the GATv2 kernels accumulate in f32, and the embeddings come back
    /// in f32, so the decoder and the loss run in f32. `None` is [`Segger::forward`].
    pub fn forward_in(&self, input: &GraphInput<B>, compute: Option<FloatDType>) -> Embeddings<B> {
        let (mut h_tx, mut h_bd) = self.input_layer(input, compute);
        let n = self.layers.len();
        for (l, convs) in self.layers.iter().enumerate() {
            let mut acc: BTreeMap<NodeType, Vec<Tensor<B, 2>>> = BTreeMap::new();
            for (conv, rel) in convs.iter().zip(&input.relations) {
                let pick = |t: NodeType| {
                    if t == NodeType::Tx {
                        h_tx.clone()
                    } else {
                        h_bd.clone()
                    }
                };
                let out = conv.forward_in(
                    pick(rel.edge_type.src),
                    pick(rel.edge_type.dst),
                    rel,
                    compute,
                );
                acc.entry(rel.edge_type.dst).or_default().push(out);
            }
            let mut combine = |t: NodeType| -> Tensor<B, 2> {
                let parts = acc
                    .remove(&t)
                    .expect("config check: every node type is reached");
                let k = parts.len();
                let mut it = parts.into_iter();
                let first = it.next().unwrap();
                let out = match self.config.aggr {
                    Aggr::Sum => it.fold(first, |a, b| a + b),
                    Aggr::Mean => it.fold(first, |a, b| a + b) / (k as f32),
                    Aggr::Max => it.fold(first, |a, b| a.max_pair(b)),
                };
                if l + 1 < n {
                    mp::relu(out)
                } else {
                    out
                }
            };
            let (t, b) = (combine(NodeType::Tx), combine(NodeType::Bd));
            h_tx = t;
            h_bd = b;
        }
        if input.tx_rows > input.num_tx {
            h_tx = h_tx.narrow(0, 0, input.num_tx);
        }
        if compute.is_some() {
            h_tx = h_tx.cast(FloatDType::F32);
            h_bd = h_bd.cast(FloatDType::F32);
        }
        if self.config.scaled_logits {
            let f = (self.config.embedding_width() as f32).powf(-0.25);
            h_tx = h_tx.mul_scalar(f);
            h_bd = h_bd.mul_scalar(f);
        }
        Embeddings { tx: h_tx, bd: h_bd }
    }
}

/// Link logits `Σ_d z_tx[tx[k], d] · z_bd[bd[k], d]` for the pairs `(tx[k], bd[k])`, without
/// building the dense `N_tx × N_bd` matrix.
pub fn decode<B: GatBackend>(z: &Embeddings<B>, tx: RowIndex<B>, bd: RowIndex<B>) -> Tensor<B, 1> {
    let a = mp::gather_grouped(z.tx.clone(), &tx);
    let b = mp::gather_grouped(z.bd.clone(), &bd);
    (a * b).sum_dim(1).squeeze_dim(1)
}

/// Binary cross-entropy with logits, mean reduction:
/// `mean(max(l, 0) − l·y + log1p(exp(−|l|)))`.
pub fn bce_with_logits<B: Backend>(logits: Tensor<B, 1>, targets: Tensor<B, 1>) -> Tensor<B, 1> {
    // `sum / n` rather than `mean`: on the CubeCL backends `mean` is a one-block reduction
    // (about 0.5 ms for a batch's 25k pairs on an H200), `sum` a parallel one.
    let n = logits.dims()[0];
    let pos = logits.clone().clamp_min(0.0);
    let soft = logits.clone().abs().neg().exp().log1p();
    (pos - logits * targets + soft).sum().div_scalar(n as f32)
}
