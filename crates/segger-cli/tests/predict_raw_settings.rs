//! `segger predict --input RAW_DIR` reads a raw sample the way the training dataset was built
//! (`dataset.json`'s settings): the platform, the file names, the scale and the columns, so a
//! sample with non-default names needs no flag at prediction and gives the same result as
//! predicting on the dataset itself.

mod common;

use std::path::{Path, PathBuf};
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

/// The lung preview in `dir/sample` under names no platform looks for: neither the platform
/// nor the files can be found by default.
fn renamed_sample(dir: &Path) -> std::path::PathBuf {
    let raw = dir.join("sample");
    std::fs::create_dir(&raw).unwrap();
    let lung = common::test_data("xenium_lung_10k");
    for (from, to) in [
        ("transcripts.parquet", "run7_tx.parquet"),
        ("nucleus_boundaries.parquet", "run7_nuclei.parquet"),
    ] {
        std::fs::copy(lung.join(from), raw.join(to)).unwrap();
    }
    raw
}

/// The renamed sample, a dataset built from it with the file flags and `--scale 0.5` (every
/// tile in training), and a one-epoch model: `(raw, dataset, model)`.
fn trained_on_renamed(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let raw = renamed_sample(dir);
    let ds = dir.join("ds");
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
    let model = dir.join("model");
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
    (raw, ds, model)
}

#[test]
fn predict_on_a_raw_folder_builds_tiles_as_the_training_dataset_was_built() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, ds, model) = trained_on_renamed(tmp.path());

    // One tile per forward pass on both sides: this dataset holds every tile in one split,
    // the temporary one built from the raw folder splits them 70/10/20, and passes are formed
    // split by split, so `auto` would group the tiles differently, which moves the scores'
    // last bits (crates/segger-predict/tests/batching.rs checks it changes no assignment).
    // The raw folder tiled as the training dataset was (`--tile_size 0`), not in 100 µm tiles.
    let predict = |input: &Path, output: &Path| {
        run_ok(
            segger()
                .args(["predict", "--accelerator", "cpu", "--batch_size", "1"])
                .args(["--tile_size", "0"])
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

/// `segger segment` takes `create_dataset`'s reading flags: a sample with other file names and
/// another unit is read by both the dataset and the predict stage with them, the recorded
/// dataset command carries them, and the segmentation is the one `segger predict` makes from
/// the raw folder with the same model.
#[test]
fn segment_reads_the_sample_with_create_dataset_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = renamed_sample(tmp.path());
    let flags = [
        "--transcripts_file",
        "run7_tx.parquet",
        "--boundaries_file",
        "run7_nuclei.parquet",
        "--scale",
        "0.5",
    ];
    let segment = |out: &Path, extra: &[&str]| {
        segger()
            .args(["segment", "--platform", "xenium", "--accelerator", "cpu"])
            .args(["--epochs", "1", "--input"])
            .arg(&raw)
            .arg("--output")
            .arg(out)
            .args(extra)
            .output()
            .unwrap()
    };
    // Without the flags: no transcript file of the platform's name, nothing written.
    let bare = tmp.path().join("bare");
    let o = segment(&bare, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!bare.join("segmentation").exists());

    let out = tmp.path().join("out");
    let o = segment(&out, &flags);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let create = rec["commands"][0].as_str().unwrap();
    assert!(
        create.ends_with(
            "--transcripts_file run7_tx.parquet --boundaries_file run7_nuclei.parquet --scale 0.5"
        ),
        "{create}"
    );
    assert_eq!(rec["settings"]["raw"]["scale"], 0.5);
    // Coordinates in half-micrometres: the outputs are in micrometres.
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("dataset/dataset.json")).unwrap())
            .unwrap();
    assert_eq!(info["settings"]["raw"]["scale"], 0.5);

    let pred = tmp.path().join("pred");
    run_ok(
        segger()
            .args(["predict", "--accelerator", "cpu", "--model"])
            .arg(out.join("model"))
            .arg("--input")
            .arg(&raw)
            .arg("--output")
            .arg(&pred),
    );
    assert!(
        bytes(&out.join("segmentation/segger_transcripts.parquet"))
            == bytes(&pred.join("segger_transcripts.parquet")),
        "segment's segmentation differs from predict's on the raw folder"
    );

    // Called again with another reading flag: refused as other settings.
    let o = segment(&out, &[&flags[..], &["--min_qv", "30"]].concat());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--overwrite"));
}

/// The largest `x` of a segmentation's transcripts.
fn max_x(dir: &Path) -> f32 {
    use arrow_array::{Array, Float32Array};
    let file = std::fs::File::open(dir.join("segger_transcripts.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut m = f32::MIN;
    for b in reader {
        let b = b.unwrap();
        let x = b.column(b.schema().index_of("x").unwrap()).clone();
        let x = x.as_any().downcast_ref::<Float32Array>().unwrap();
        assert_eq!(x.null_count(), 0);
        m = x.values().iter().fold(m, |a, &v| a.max(v));
    }
    m
}

/// `segger predict`'s reading flags replace the training dataset's reading settings (a flag
/// left out takes `create_dataset`'s default, not the training dataset's), are refused with a
/// tile dataset, and `segger segment --model DIR` reads the sample as that model's training
/// dataset did, with no dataset stage, recording the one `predict` command it equals.
#[test]
fn reading_flags_at_prediction_and_segment_with_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, ds, model) = trained_on_renamed(tmp.path());
    let files = [
        "--transcripts_file",
        "run7_tx.parquet",
        "--boundaries_file",
        "run7_nuclei.parquet",
    ];
    let predict = |output: &Path, extra: &[&str]| {
        segger()
            .args(["predict", "--accelerator", "cpu", "--model"])
            .arg(&model)
            .arg("--input")
            .arg(&raw)
            .arg("--output")
            .arg(output)
            .args(extra)
            .output()
            .unwrap()
    };
    let as_trained = tmp.path().join("as_trained");
    assert!(predict(&as_trained, &[]).status.success());
    // The file flags alone: the scale is create_dataset's default (1), not the training
    // dataset's 0.5, so the coordinates come out twice as large.
    let unscaled = tmp.path().join("unscaled");
    let o = predict(&unscaled, &files);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (max_x(&as_trained), max_x(&unscaled));
    assert!((b - 2.0 * a).abs() <= 1e-3 * b, "{a} {b}");
    // All three: the training dataset's reading, the same segmentation.
    let restated = tmp.path().join("restated");
    let o = predict(&restated, &[&files[..], &["--scale", "0.5"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        bytes(&as_trained.join("segger_transcripts.parquet"))
            == bytes(&restated.join("segger_transcripts.parquet"))
    );
    // A tile dataset was read already: refused, naming the flag, nothing written.
    let refused = tmp.path().join("refused");
    let o = segger()
        .args(["predict", "--accelerator", "cpu", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&ds)
        .arg("--output")
        .arg(&refused)
        .args(["--scale", "0.5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--scale 0.5") && err.contains("raw sample"),
        "{err}"
    );
    assert!(!refused.exists());

    // segment with that model and no reading flag: the model's training dataset's reading
    // (files and scale), no dataset stage, one recorded command.
    let out = tmp.path().join("seg");
    let o = segger()
        .args([
            "segment",
            "--platform",
            "xenium",
            "--accelerator",
            "cpu",
            "--input",
        ])
        .arg(&raw)
        .arg("--output")
        .arg(&out)
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join("dataset").exists() && !out.join("model").exists());
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let commands = rec["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert!(
        commands[0]
            .as_str()
            .unwrap()
            .starts_with("segger predict --model "),
        "{commands:?}"
    );
    assert_eq!(common::completed_stages(&rec), ["segmentation"]);
    assert!(
        bytes(&out.join("segmentation/segger_transcripts.parquet"))
            == bytes(&as_trained.join("segger_transcripts.parquet"))
    );
}
