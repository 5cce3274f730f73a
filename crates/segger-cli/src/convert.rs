//! `segger convert --input DIR --output DIR`: a reference Segger dataset
//! (`{train,val,test}_tiles/processed/*.pt`) rewritten as `segger-tile/1`.

use std::path::PathBuf;

use clap::Args;
use segger_data::torch::convert::{convert_dataset, read_vocab_file, ConvertOptions};
use segger_data::DataError;

use crate::CliError;

/// Arguments of `segger convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The Segger dataset directory (with {train,val,test}_tiles/processed/*.pt).
    #[arg(long)]
    pub input: PathBuf,
    /// The segger-tile/1 dataset directory to create.
    #[arg(long)]
    pub output: PathBuf,
    /// Replace the output directory if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// The gene vocabulary, token id order: one gene per line, a JSON array, or a
    /// dataset.json. Without it dataset.json records an empty vocabulary.
    #[arg(long)]
    pub vocab: Option<PathBuf>,
}

/// Bad input exits with 2; failing to write the output (an I/O error outside `input`) with 1.
fn classify(e: DataError, input: &std::path::Path) -> CliError {
    match &e {
        DataError::Io { path, .. } if !path.starts_with(input) => CliError::runtime(e),
        DataError::Output(o) if o.exit_code() == 1 => CliError::runtime(e),
        _ => CliError::input(e),
    }
}

/// Runs `segger convert`.
pub fn run(args: ConvertArgs) -> Result<(), CliError> {
    let vocab = match &args.vocab {
        Some(p) => Some(read_vocab_file(p).map_err(CliError::input)?),
        None => None,
    };
    let opts = ConvertOptions {
        overwrite: args.overwrite,
        vocab,
    };
    let r =
        convert_dataset(&args.input, &args.output, &opts).map_err(|e| classify(e, &args.input))?;
    println!("dataset       {}", args.output.display());
    println!(
        "tiles         train={} val={} test={}",
        r.tiles.train, r.tiles.val, r.tiles.test
    );
    if let Some(m) = r.max_token {
        println!(
            "tokens        max id {m}{}",
            if opts.vocab.is_none() {
                " (vocabulary unknown: dataset.json has an empty vocab)"
            } else {
                ""
            }
        );
    }
    if r.bd_x_replaced > 0 {
        println!(
            "bd.x          {} tile(s) had unusable boundary features, replaced by zeros",
            r.bd_x_replaced
        );
    }
    Ok(())
}
