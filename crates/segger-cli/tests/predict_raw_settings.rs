//! `segger predict --input RAW_DIR` reads a raw sample the way the training dataset was built
//! (`dataset.json`'s settings): the platform, the file names, the scale and the columns, so a
//! sample with non-default names needs no flag at prediction and gives the same result as
//! predicting on the dataset itself.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn segger() -> Command {
    Command::new(env!("CARGO_BIN_EXE_segger"))
}

fn run_ok(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{:?}\n{}{}",
        c,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn predict_on_a_raw_folder_builds_tiles_as_the_training_dataset_was_built() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("sample");
    std::fs::create_dir(&raw).unwrap();
    let lung = common::test_data("xenium_lung_10k");
    // Names no platform looks for: neither the platform nor the files can be found by
    // default.
    std::fs::copy(
        lung.join("transcripts.parquet"),
        raw.join("run7_tx.parquet"),
    )
    .unwrap();
    std::fs::copy(
        lung.join("nucleus_boundaries.parquet"),
        raw.join("run7_nuclei.parquet"),
    )
    .unwrap();

    let ds = tmp.path().join("ds");
    run_ok(
        segger()
            .args(["create_dataset", "--platform", "xenium", "--input"])
            .arg(&raw)
            .args(["--transcripts_file", "run7_tx.parquet"])
            .args(["--boundaries_file", "run7_nuclei.parquet"])
            // Coordinates in half-micrometres: a scale prediction must apply too.
            .args(["--scale", "0.5"])
            .args(["--val_prob", "0", "--test_prob", "0"])
            .arg("--output")
            .arg(&ds),
    );
    let model = tmp.path().join("model");
    run_ok(
        segger()
            .args(["train", "--accelerator", "cpu", "--epochs", "1"])
            .arg("--train_dir")
            .arg(ds.join("train_tiles"))
            .arg("--val_dir")
            .arg(ds.join("train_tiles"))
            .arg("--default_root_dir")
            .arg(&model),
    );

    // One tile per forward pass on both sides: this dataset holds every tile in one split,
    // the temporary one built from the raw folder splits them 70/10/20, and passes are formed
    // split by split, so `auto` would group the tiles differently, which moves the scores'
    // last bits (crates/segger-predict/tests/batching.rs checks it changes no assignment).
    let predict = |input: &Path, output: &Path| {
        run_ok(
            segger()
                .args(["predict", "--accelerator", "cpu", "--batch_size", "1"])
                .arg("--model")
                .arg(&model)
                .arg("--input")
                .arg(input)
                .arg("--output")
                .arg(output),
        )
    };
    let from_ds = tmp.path().join("pred_ds");
    predict(&ds, &from_ds);
    let from_raw = tmp.path().join("pred_raw");
    predict(&raw, &from_raw);
    assert!(
        bytes(&from_ds.join("segger_transcripts.parquet"))
            == bytes(&from_raw.join("segger_transcripts.parquet")),
        "predicting on the raw folder differs from predicting on the dataset built from it"
    );

    // Without the training dataset's settings (a model whose run_config.json no longer leads
    // to the dataset) the same folder is refused, naming what is missing.
    std::fs::rename(&ds, tmp.path().join("ds_moved")).unwrap();
    let o = segger()
        .args(["predict", "--accelerator", "cpu", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&raw)
        .arg("--output")
        .arg(tmp.path().join("pred_lost"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no transcript file of a known platform"),
        "{err}"
    );
    assert!(!tmp.path().join("pred_lost").exists());
}
