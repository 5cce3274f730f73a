//! Prediction throughput on CPU: a synthetic sample of ~1M transcripts (Xenium-like density,
//! 100 µm tiles with 10 µm margins), the seed architecture with random weights, through the
//! real `segger predict` code path: tile reading, forward passes, scoring, every output file.
//! Prints transcripts/s (whole run, I/O included) and the stage timings.
//!
//! Run: `cargo bench -p segger-benches --bench predict` (`SEGGER_PREDICT_TX` sets the number
//! of transcripts, `SEGGER_PREDICT_TILE` the tile side in µm, `SEGGER_PREDICT_CC=1` adds
//! `--use_cc`, `SEGGER_PREDICT_BATCH` the tiles per forward pass (`auto`, the default, or a number), `SEGGER_PREDICT_TYPES` the
//! cell-type stage: `auto`, the default, `0` or a number of types).

use std::time::Instant;

#[global_allocator]
static GLOBAL: segger_benches::Allocator = segger_benches::Allocator;

use segger_model::SeggerConfig;
use segger_predict::{Accelerator, PredictConfig};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("SEGGER_PREDICT_TX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let use_cc = std::env::var("SEGGER_PREDICT_CC").is_ok_and(|v| v == "1");
    let tile: f64 = std::env::var("SEGGER_PREDICT_TILE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let t0 = Instant::now();
    let sample = segger_predict::synthetic::write_dataset(&data, n, 500, tile, 0).unwrap();
    eprintln!(
        "wrote {} transcripts in {} tiles in {:.1} s",
        sample.transcripts,
        sample.tiles,
        t0.elapsed().as_secs_f64()
    );
    let cfg = SeggerConfig::new(500);
    let model = dir.path().join("model");
    segger_predict::synthetic::write_model(&model, &cfg, Some(&sample.genes), 0).unwrap();
    let mut pc = PredictConfig::new(model, data, dir.path().join("out"));
    pc.accelerator = Accelerator::Cpu;
    pc.use_cc = use_cc;
    // The expression term (`--expression_weight`, on by default); 0 turns it off.
    if let Some(w) = std::env::var("SEGGER_PREDICT_EXPRESSION")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        pc.expression_weight = w;
    }
    // The cell-type stage (`--cell_types`, `auto` by default).
    if let Ok(t) = std::env::var("SEGGER_PREDICT_TYPES") {
        pc.cell_types = t.parse().expect("SEGGER_PREDICT_TYPES: auto, 0 or 2-256");
    }
    if let Ok(b) = std::env::var("SEGGER_PREDICT_BATCH") {
        pc.batch_size = b.parse().expect("SEGGER_PREDICT_BATCH: auto or 1-4096");
    }
    let s = segger_predict::predict(&pc).unwrap();
    println!(
        "predict: {} transcripts, {} tiles of {} µm, use_cc={}, expression_weight={}, cell_types={} ({} types): {:.1} s, {:.0} transcripts/s (tiles {:.1} s = wait {:.1} + model {:.1} + scoring {:.1}, resolve {:.2} s, write {:.2} s); {} cells, {:.1}% assigned",
        s.transcripts,
        s.tiles,
        tile,
        use_cc,
        pc.expression_weight,
        pc.cell_types,
        s.cell_types.as_ref().map_or(0, |t| t.types),
        s.timings.total_s,
        s.transcripts_per_second,
        s.timings.tiles_s,
        s.timings.tiles_wait_s,
        s.timings.model_s,
        s.timings.scoring_s,
        s.timings.resolve_s,
        s.timings.write_s,
        s.cells,
        s.assigned_percent
    );
}
