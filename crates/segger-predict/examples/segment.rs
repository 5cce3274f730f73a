//! Segments a dataset with a trained model from Rust, with settings of one's own, and reads
//! the figures back from the returned summary instead of the console.
//!
//! ```sh
//! cargo run --release -p segger-predict --example segment -- MODEL_DIR DATASET_DIR OUT_DIR
//! ```
//! `MODEL_DIR` is a `segger train` run (or an `import_checkpoint` output), `DATASET_DIR` a
//! `segger create_dataset` output (or a raw Xenium folder), `OUT_DIR` a new folder.

use segger_predict::{predict, Accelerator, PredictConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let [model, input, output] = args.as_slice() else {
        return Err("usage: segment MODEL_DIR DATASET_DIR OUT_DIR".into());
    };
    // The defaults of `segger predict`, then one's own choices.
    let mut cfg = PredictConfig::new(model.clone(), input.clone(), output.clone());
    cfg.accelerator = Accelerator::Cpu;
    cfg.min_transcripts = 10; // larger new cells only
    let s = predict(&cfg)?;
    println!(
        "{} transcripts: {:.1} % assigned, to {} cells ({} from boundaries, {} new); cut {:.3} ({})",
        s.transcripts,
        s.assigned_percent,
        s.cells,
        s.boundary_cells,
        s.component_cells,
        s.score_cut,
        s.score_cut_source
    );
    println!("outputs in {}", s.output.display());
    Ok(())
}
