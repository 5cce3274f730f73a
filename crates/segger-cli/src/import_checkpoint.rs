//! `segger import_checkpoint --ckpt FILE --output DIR`: a Lightning checkpoint of the
//! reference Segger model as `model.safetensors` + `config.json`.

use std::path::PathBuf;

use clap::Args;
use segger_model::checkpoint::{import_checkpoint, ConfigOverrides};

use crate::CliError;

/// Arguments of `segger import_checkpoint`.
#[derive(Debug, Args)]
pub struct ImportCheckpointArgs {
    /// The Lightning checkpoint (.ckpt) or a torch.save'd state dict.
    #[arg(long)]
    pub ckpt: PathBuf,
    /// Directory to write model.safetensors and config.json into: missing or empty, or an
    /// earlier import with --overwrite (a training run is never overwritten).
    #[arg(long)]
    pub output: PathBuf,
    /// Replace an earlier import at --output.
    #[arg(long)]
    pub overwrite: bool,
    /// Gene vocabulary size, when the checkpoint's hyper-parameters lack it.
    #[arg(long = "num_tx_tokens", alias = "num-tx-tokens")]
    pub num_tx_tokens: Option<usize>,
    /// Initial embedding width, when the hyper-parameters lack it.
    #[arg(long = "init_emb", alias = "init-emb")]
    pub init_emb: Option<usize>,
    /// Hidden channels per head, when the hyper-parameters lack them.
    #[arg(long = "hidden_channels", alias = "hidden-channels")]
    pub hidden_channels: Option<usize>,
    /// Output channels per head, when the hyper-parameters lack them.
    #[arg(long = "out_channels", alias = "out-channels")]
    pub out_channels: Option<usize>,
    /// Attention heads, when the hyper-parameters lack them.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Number of middle GATv2 layers, when the hyper-parameters lack it.
    #[arg(long = "mid_layers", alias = "mid-layers", alias = "num_mid_layers")]
    pub mid_layers: Option<usize>,
}

/// Runs `segger import_checkpoint`.
pub fn run(args: ImportCheckpointArgs) -> Result<(), CliError> {
    for (flag, v, min, max) in [
        ("--num_tx_tokens", args.num_tx_tokens, 1, 10_000_000),
        ("--init_emb", args.init_emb, 1, 4096),
        ("--hidden_channels", args.hidden_channels, 1, 4096),
        ("--out_channels", args.out_channels, 1, 4096),
        ("--heads", args.heads, 1, 64),
        ("--mid_layers", args.mid_layers, 0, 64),
    ] {
        if let Some(v) = v.filter(|v| !(min..=max).contains(v)) {
            return Err(CliError::input(anyhow::anyhow!(
                "{flag} must be between {min} and {max}, got {v}"
            )));
        }
    }
    let flags = ConfigOverrides {
        num_tx_tokens: args.num_tx_tokens,
        init_emb: args.init_emb,
        hidden_channels: args.hidden_channels,
        out_channels: args.out_channels,
        heads: args.heads,
        num_mid_layers: args.mid_layers,
    };
    let r = import_checkpoint(&args.ckpt, &args.output, &flags, args.overwrite).map_err(|e| {
        CliError {
            code: e.exit_code(),
            error: anyhow::anyhow!(e),
        }
    })?;
    println!(
        "model         {}",
        args.output.join("model.safetensors").display()
    );
    println!(
        "weights       {} tensors, {} parameters",
        r.tensors, r.parameters
    );
    let c = r.config;
    for (k, v) in [
        ("num_tx_tokens", c.num_tx_tokens),
        ("init_emb", c.init_emb),
        ("hidden_channels", c.hidden_channels),
        ("out_channels", c.out_channels),
        ("heads", c.heads),
        ("num_mid_layers", c.num_mid_layers),
    ] {
        println!(
            "config        {k:<16} {v:>6}  (from {})",
            r.sources.get(k).copied().unwrap_or("?")
        );
    }
    Ok(())
}
