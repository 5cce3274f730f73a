//! `segger`: cell segmentation for imaging-based spatial transcriptomics.
//!
//! A thin command-line layer over the `segger-*` crates. Every sub-command lives in its own
//! module; errors carry context and exit with code 2 (bad input) or 1 (anything else).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod convert;
mod create_dataset;
mod demo;
mod evaluate;
mod import_checkpoint;
/// mimalloc keeps freed pages for reuse: with glibc, every large tensor is a fresh mmap and
/// its first touch a page fault (about a tenth of a training step).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod inspect;
mod predict;
mod segment;
mod simulate;
mod train;
mod values;

/// Cell segmentation for imaging-based spatial transcriptomics (Xenium, MERSCOPE, CosMx).
#[derive(Debug, Parser)]
#[command(name = "segger", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A whole sample in one command: build the dataset, train, predict (raw folder → cells).
    Segment(Box<segment::SegmentArgs>),
    /// Print node, edge and label counts of a tile file or a dataset directory, and validate it.
    Inspect(inspect::InspectArgs),
    /// Build a tile dataset from raw Xenium, MERSCOPE or CosMx output.
    #[command(name = "create_dataset", alias = "create-dataset")]
    CreateDataset(Box<create_dataset::CreateDatasetArgs>),
    /// Train the Segger model on a tile dataset (the seed's train_model.py flags).
    Train(train::TrainArgs),
    /// Rewrite a reference Segger dataset ({train,val,test}_tiles/processed/*.pt) as segger-tile/1.
    Convert(convert::ConvertArgs),
    /// Assign every transcript to a cell with a trained model and write the segmentation.
    Predict(Box<predict::PredictArgs>),
    /// Import a Lightning checkpoint of the reference model as model.safetensors + config.json.
    #[command(name = "import_checkpoint", alias = "import-checkpoint")]
    ImportCheckpoint(import_checkpoint::ImportCheckpointArgs),
    /// Simulate a tissue, train, predict and evaluate against the truth in one command.
    Demo(demo::DemoArgs),
    /// Write a simulated Xenium sample with a known truth (ground_truth.parquet).
    Simulate(simulate::SimulateArgs),
    /// Score a segmentation against a truth (accuracy, purity, completeness, ARI) and MECR.
    Evaluate(evaluate::EvaluateArgs),
}

/// An error with the exit code the process should end with.
#[derive(Debug)]
pub struct CliError {
    /// 2 for bad input or usage, 1 for failures while running.
    pub code: u8,
    /// The error and its context.
    pub error: anyhow::Error,
}

impl CliError {
    /// A bad-input error (exit code 2).
    pub fn input(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 2,
            error: error.into(),
        }
    }

    /// A runtime failure (exit code 1).
    pub fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 1,
            error: error.into(),
        }
    }
}

/// The log filter when `SEGGER_LOG` is not set.
const DEFAULT_LOG: &str = "info";

/// Drops Burn's learner records below warn unless `SEGGER_LOG` names `burn`: it logs every training
/// step ("Iteration N") at info, thousands of lines an epoch on a whole sample, and segger's own
/// progress lines say the same every few seconds. They come through the `log` bridge, whose
/// events carry their real target only once normalised, so an `EnvFilter` target directive
/// does not see them.
struct QuietBurn;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QuietBurn {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        use tracing_log::NormalizeEvent;
        match event.normalized_metadata() {
            Some(m) => !(m.target().starts_with("burn_train") && *m.level() > tracing::Level::WARN),
            None => true,
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let asked = std::env::var("SEGGER_LOG").unwrap_or_default();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEGGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    let quiet = (!asked.contains("burn")).then_some(QuietBurn);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(quiet)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .try_init();
}

/// Keeps freed memory in the process for reuse instead of returning it to the OS: tensors of
/// the same sizes are allocated every training step, and fresh pages cost page faults and
/// zeroing (measured: training step 1.5–2.1 s with purging, 1.13 s without).
fn configure_allocator() {
    // SAFETY: sets a plain integer option of mimalloc; 15 is `mi_option_purge_delay` in the
    // vendored mimalloc (v2 and v3), -1 disables purging.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
}

fn main() -> ExitCode {
    configure_allocator();
    let cli = Cli::parse();
    init_tracing();
    let res = match cli.command {
        Command::Segment(a) => segment::run(*a),
        Command::Inspect(a) => inspect::run(a),
        Command::CreateDataset(a) => create_dataset::run(*a),
        Command::Train(a) => train::run(a),
        Command::Predict(a) => predict::run(*a),
        Command::Convert(a) => convert::run(a),
        Command::ImportCheckpoint(a) => import_checkpoint::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Evaluate(a) => evaluate::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", render(&e.error));
            ExitCode::from(e.code)
        }
    }
}

/// The error and its causes on one line, each cause once: library errors often quote their
/// source in their own message (`"{path}: {source}"`), and the cause is then left out.
fn render(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}
