//! End-to-end training epoch throughput on CPU: ~1M transcripts in 100 synthetic tiles of
//! ~10k transcripts, through the real `segger train` code path (loader, burn-train, metrics).
//! Prints transcripts/s and the split between waiting for data and compute.
//!
//! Run: `cargo bench -p segger-benches --bench epoch` (set `SEGGER_EPOCH_TILES` to change the
//! number of tiles).

#[global_allocator]
static GLOBAL: segger_benches::Allocator = segger_benches::Allocator;

use std::time::Instant;

use segger_benches::synthetic_tile;
use segger_data::{write_tile, Tile};
use segger_model::SeggerConfig;
use segger_train::{Accelerator, LrScheduleKind, TrainConfig};

fn main() {
    segger_benches::configure_allocator();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tiles: usize = std::env::var("SEGGER_EPOCH_TILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    for (split, n) in [("train_tiles", tiles), ("val_tiles", 4)] {
        let p = dir.path().join(split).join("processed");
        std::fs::create_dir_all(&p).unwrap();
        for i in 0..n {
            let g = synthetic_tile(1000 * (split == "val_tiles") as u64 + i as u64, 10_300, 106);
            write_tile(
                &p.join(format!("tile_{i:04}.safetensors")),
                &Tile {
                    graph: g,
                    bounds: None,
                },
            )
            .unwrap();
        }
    }
    eprintln!(
        "wrote {} tiles in {:.1} s",
        tiles + 4,
        t0.elapsed().as_secs_f64()
    );
    // The reference's settings: its architecture at a constant 1e-4.
    let cfg = TrainConfig {
        accelerator: Accelerator::Cpu,
        epochs: 1,
        learning_rate: 1e-4,
        lr_schedule: LrScheduleKind::Constant,
        ..TrainConfig::new(
            dir.path().join("train_tiles"),
            dir.path().join("val_tiles"),
            dir.path().join("run"),
            SeggerConfig::new(500),
        )
    };
    let t1 = Instant::now();
    let s = segger_train::run::train(&cfg).expect("training");
    let wall = t1.elapsed().as_secs_f64();
    let r = &s.rows[0];
    println!(
        "epoch: {} transcripts in {:.1} s train wall -> {:.0} transcripts/s; loader wait {:.2} s ({:.1}% of the epoch); whole run incl. validation and checks {:.1} s",
        s.train_transcripts,
        s.train_transcripts as f64 / r.transcripts_per_second,
        r.transcripts_per_second,
        r.loader_wait_seconds,
        100.0 * r.loader_wait_seconds * r.transcripts_per_second / s.train_transcripts as f64,
        wall
    );
}
