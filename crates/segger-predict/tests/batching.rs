//! Batching tiles into one forward pass (`--batch_size auto` or N) changes the passes, not the
//! result: every transcript gets the same cell and score as with one tile per pass.

use std::path::Path;

use arrow_array::{Array, Float32Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use segger_model::SeggerConfig;
use segger_predict::{predict, Accelerator, BatchSize, PredictConfig};

/// (cell id or "", score) per transcript, in file order (sorted by transcript id).
fn assignments(out: &Path) -> Vec<(String, f32)> {
    let f = std::fs::File::open(out.join(segger_predict::outputs::TRANSCRIPTS_FILE)).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut v = Vec::new();
    for b in reader {
        let b = b.unwrap();
        let cells = b
            .column_by_name("segger_cell_id")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        let scores = b
            .column_by_name("score")
            .unwrap()
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap()
            .clone();
        for i in 0..b.num_rows() {
            let c = if cells.is_null(i) { "" } else { cells.value(i) };
            v.push((c.to_string(), scores.value(i)));
        }
    }
    v
}

#[test]
fn batched_tiles_give_the_same_assignments_as_one_tile_per_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // 20 µm tiles of ~100 core transcripts: `auto` packs several into a pass.
    let sample = segger_predict::synthetic::write_dataset(&data, 6000, 50, 20.0, 3).unwrap();
    assert!(sample.tiles >= 30, "{} tiles", sample.tiles);
    let cfg = SeggerConfig::new(50);
    let model = tmp.path().join("model");
    segger_predict::synthetic::write_model(&model, &cfg, Some(&sample.genes), 0).unwrap();
    let run = |name: &str, batch: BatchSize| {
        let mut pc = PredictConfig::new(model.clone(), data.clone(), tmp.path().join(name));
        pc.accelerator = Accelerator::Cpu;
        pc.batch_size = batch;
        let s = predict(&pc).unwrap();
        assert_eq!(s.tiles, sample.tiles);
        assignments(&tmp.path().join(name))
    };
    let one = run("one", BatchSize::Tiles(1));
    assert_eq!(one.len(), sample.transcripts);
    assert!(
        one.iter().filter(|(c, _)| !c.is_empty()).count() > one.len() / 4,
        "the random model assigns some transcripts"
    );
    for (name, batch) in [("auto", BatchSize::Auto), ("seven", BatchSize::Tiles(7))] {
        let other = run(name, batch);
        assert_eq!(other.len(), one.len(), "{name}");
        for (i, (a, b)) in one.iter().zip(&other).enumerate() {
            assert_eq!(a.0, b.0, "{name}: transcript {i}");
            assert!(
                (a.1 - b.1).abs() <= 1e-5,
                "{name}: transcript {i}: {} vs {}",
                a.1,
                b.1
            );
        }
    }
}

#[test]
fn batch_size_parses_auto_or_a_number_of_tiles() {
    assert_eq!("auto".parse::<BatchSize>(), Ok(BatchSize::Auto));
    assert_eq!("4".parse::<BatchSize>(), Ok(BatchSize::Tiles(4)));
    assert_eq!(BatchSize::default(), BatchSize::Auto);
    for bad in ["0", "4097", "-1", "four", ""] {
        let e = bad.parse::<BatchSize>().unwrap_err();
        assert!(e.contains("auto"), "{bad}: {e}");
    }
    assert_eq!(BatchSize::Tiles(3).to_string(), "3");
    assert_eq!(BatchSize::Auto.to_string(), "auto");
}
