use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, FloatDType, Int, Tensor};
use burn::train::metric::{ConfusionStatsInput, LossInput};
use burn::train::{InferenceStep, ItemLazy, TrainOutput, TrainStep};
use segger_model::optim::LossScale;
use segger_model::{bce_with_logits, decode, GatBackend, Segger};

use crate::loader::SeggerBatch;

/// The model as burn-train trains it (the reference's `LitSegger`).
#[derive(Module, Debug)]
pub struct LitSegger<B: Backend> {
    /// The Segger model.
    pub model: Segger<B>,
    /// The encoder's compute type under mixed precision (f16 or bf16; see
    /// [`Segger::forward_in`]), or `None` for f32.
    #[module(skip)]
    pub compute: Option<FloatDType>,
    /// f16's loss scale, shared with the optimiser's [`segger_model::optim::GradScaler`]: the
    /// training step multiplies the loss by it before the backward pass.
    #[module(skip)]
    pub loss_scale: Option<LossScale>,
}

impl<B: Backend> LitSegger<B> {
    /// `model` trained in f32.
    pub fn new(model: Segger<B>) -> Self {
        Self {
            model,
            compute: None,
            loss_scale: None,
        }
    }
}

/// What a train or validation step reports to the metrics.
#[derive(Debug, Clone)]
pub struct LinkOutput<B: Backend> {
    /// Mean BCE-with-logits loss of the batch, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Link logits of the label pairs, `[L]`.
    pub logits: Tensor<B, 1>,
    /// Labels (1 positive, 0 negative), `[L]`.
    pub targets: Tensor<B, 1, Int>,
    /// Transcripts in the batch.
    pub num_tx: usize,
}

impl<B: Backend> ItemLazy for LinkOutput<B> {
    type ItemSync = LinkOutput<B>;
    fn sync(self) -> Self::ItemSync {
        self
    }
}

impl<B: Backend> burn::train::metric::Adaptor<LossInput<B>> for LinkOutput<B> {
    fn adapt(&self) -> LossInput<B> {
        LossInput::new(self.loss.clone())
    }
}

impl<B: Backend> burn::train::metric::Adaptor<ConfusionStatsInput<B>> for LinkOutput<B> {
    fn adapt(&self) -> ConfusionStatsInput<B> {
        let p = burn::tensor::activation::sigmoid(self.logits.clone()).unsqueeze_dim::<2>(1);
        let t: Tensor<B, 2, Bool> = self.targets.clone().equal_elem(1).unsqueeze_dim::<2>(1);
        ConfusionStatsInput::new(p, t)
    }
}

impl<B: GatBackend> LitSegger<B> {
    /// Forward pass and loss on a batch's label pairs.
    pub fn forward_link(&self, batch: &SeggerBatch<B>) -> LinkOutput<B> {
        let input = &batch.input;
        let (Some(tx), Some(bd), Some(y)) = (&input.label_tx, &input.label_bd, &input.labels)
        else {
            panic!("a training or validation batch without label pairs (tiles without positives belong to the test split)");
        };
        let z = self.model.forward_in(input, self.compute);
        let logits = decode(&z, tx.clone(), bd.clone());
        let loss = bce_with_logits(logits.clone(), y.clone());
        LinkOutput {
            loss,
            logits,
            targets: y.clone().int(),
            num_tx: batch.num_tx,
        }
    }
}

impl<B> TrainStep for LitSegger<B>
where
    B: AutodiffBackend + GatBackend,
    B::InnerBackend: GatBackend,
{
    type Input = SeggerBatch<B>;
    type Output = LinkOutput<B>;

    fn step(&self, batch: SeggerBatch<B>) -> TrainOutput<LinkOutput<B>> {
        let out = self.forward_link(&batch);
        let grads = match &self.loss_scale {
            Some(s) => out.loss.clone().mul_scalar(s.scale()).backward(),
            None => out.loss.backward(),
        };
        TrainOutput::new(self, grads, out)
    }
}

impl<B: GatBackend> InferenceStep for LitSegger<B> {
    type Input = SeggerBatch<B>;
    type Output = LinkOutput<B>;

    fn step(&self, batch: SeggerBatch<B>) -> LinkOutput<B> {
        self.forward_link(&batch)
    }
}
