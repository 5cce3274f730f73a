//! `segger`: cell segmentation for imaging-based spatial transcriptomics.
//!
//! A thin command-line layer over the `segger-*` crates. Every sub-command lives in its own
//! module; errors carry context and exit with code 2 (bad input) or 1 (anything else).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod convert;
mod create_dataset;
mod import_checkpoint;
mod inspect;
mod train;

/// Cell segmentation for imaging-based spatial transcriptomics (Xenium, MERSCOPE, CosMx).
#[derive(Debug, Parser)]
#[command(name = "segger", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print node, edge and label counts of a tile file or a dataset directory, and validate it.
    Inspect(inspect::InspectArgs),
    /// Build a tile dataset from raw Xenium, MERSCOPE or CosMx output.
    #[command(name = "create_dataset", alias = "create-dataset")]
    CreateDataset(Box<create_dataset::CreateDatasetArgs>),
    /// Train the Segger model on a tile dataset (the seed's train_model.py flags).
    Train(train::TrainArgs),
    /// Rewrite a reference Segger dataset ({train,val,test}_tiles/processed/*.pt) as segger-tile/1.
    Convert(convert::ConvertArgs),
    /// Import a Lightning checkpoint of the reference model as model.safetensors + config.json.
    #[command(name = "import_checkpoint", alias = "import-checkpoint")]
    ImportCheckpoint(import_checkpoint::ImportCheckpointArgs),
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEGGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let res = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::CreateDataset(a) => create_dataset::run(*a),
        Command::Train(a) => train::run(a),
        Command::Convert(a) => convert::run(a),
        Command::ImportCheckpoint(a) => import_checkpoint::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {:#}", e.error);
            ExitCode::from(e.code)
        }
    }
}
