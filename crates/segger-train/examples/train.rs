//! Trains Segger from Rust code: simulates a small tissue with a known truth, builds its tile
//! dataset and trains the default (bidirectional) model for a few epochs on the CPU, then reads
//! the result back from the returned summary.
//!
//! ```sh
//! cargo run --release -p segger-train --example train -- OUT_DIR [EPOCHS]
//! ```
//! `OUT_DIR` must not exist (or be empty); it receives `raw/`, `dataset/` and `model/` (a run
//! directory that `segger predict --model` reads).

use std::path::PathBuf;

use segger_data::create::{create_dataset, CreateOptions};
use segger_data::raw::{Platform, RawOptions};
use segger_model::SeggerConfig;
use segger_sim::simulate::{simulate, Preset, SimConfig};
use segger_train::{train, Accelerator, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let out: PathBuf = args.next().ok_or("usage: train OUT_DIR [EPOCHS]")?.into();
    let epochs: usize = match args.next() {
        Some(e) => e.to_string_lossy().parse()?,
        None => 3,
    };

    // A 150-cell tissue in the Xenium layout.
    let raw = out.join("raw");
    simulate(&SimConfig::preset(Preset::Easy, 150, 7), &raw, false)?;

    // Its tile dataset, with the defaults of `segger create_dataset` and a validation split.
    let dataset = out.join("dataset");
    let mut opts = CreateOptions::new(raw, dataset.clone(), RawOptions::new(Platform::Xenium));
    opts.val_prob = 0.2;
    opts.test_prob = 0.0;
    let ds = create_dataset(&opts, &|_| {})?;

    // The defaults of `segger train`, then one's own choices.
    let model = SeggerConfig::new(ds.genes).bidirectional();
    let mut cfg = TrainConfig::new(
        dataset.join("train_tiles"),
        dataset.join("val_tiles"),
        out.join("model"),
        model,
    );
    cfg.epochs = epochs;
    cfg.accelerator = Accelerator::Cpu;
    let s = train(&cfg)?;
    for r in &s.rows {
        println!(
            "epoch {}: train loss {:.4}, validation loss {:.4}, AUROC {:.3}",
            r.epoch, r.train_loss, r.validation_loss, r.validation_auroc
        );
    }
    println!(
        "{} training tiles, {:.1} s; model in {}{}",
        s.train_tiles,
        s.wall_seconds,
        s.model_path.display(),
        s.calibration
            .map(|c| format!(", calibrated cut {:.3}", c.score_cut))
            .unwrap_or_default()
    );
    Ok(())
}
