//! Acceptance of `segger predict` on the Xenium lung preview (10k transcripts):
//! create the dataset, train 10 epochs, predict, and check the segmentation against the input.
//! The sample is `tests/data/xenium_lung_10k`.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::{
    Array, BooleanArray, Float32Array, Int64Array, StringArray, UInt64Array, UInt8Array,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segger"));
    c.env("SEGGER_LOG", "info");
    c
}

fn sample_dir() -> PathBuf {
    common::test_data("xenium_lung_10k")
}

fn run_ok(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{:?}: {}",
        c,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// One input transcript: id, cell id, nuclear flag.
struct Raw {
    id: i64,
    cell: String,
    nuclear: bool,
}

/// The transcripts `create_dataset` keeps by default: qv ≥ 20, no control-probe prefixes.
fn filtered_input(path: &Path) -> Vec<Raw> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let prefixes = [
        "NegControlProbe_",
        "antisense_",
        "NegControlCodeword",
        "BLANK_",
        "DeprecatedCodeword_",
        "UnassignedCodeword_",
    ];
    let mut out = Vec::new();
    for b in reader {
        let b = b.unwrap();
        let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
        let (id, cell, nuc, gene, qv) = (
            col("transcript_id"),
            col("cell_id"),
            col("overlaps_nucleus"),
            col("feature_name"),
            col("qv"),
        );
        let id = id.as_any().downcast_ref::<UInt64Array>().unwrap();
        let cell = cell.as_any().downcast_ref::<StringArray>().unwrap();
        let nuc = nuc.as_any().downcast_ref::<UInt8Array>().unwrap();
        let gene = gene.as_any().downcast_ref::<StringArray>().unwrap();
        let qv = qv.as_any().downcast_ref::<Float32Array>().unwrap();
        for i in 0..b.num_rows() {
            if qv.is_null(i) || qv.value(i) < 20.0 {
                continue;
            }
            if prefixes.iter().any(|p| gene.value(i).starts_with(p)) {
                continue;
            }
            out.push(Raw {
                id: id.value(i) as i64,
                cell: cell.value(i).to_string(),
                nuclear: nuc.value(i) == 1,
            });
        }
    }
    out
}

/// Transcript id → (segger_cell_id, assigned).
type Assignments = HashMap<i64, (Option<String>, bool)>;

/// `segger_transcripts.parquet`: ids in file order and the assignments.
fn predictions(path: &Path) -> (Vec<i64>, Assignments) {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    let mut map = HashMap::new();
    for b in reader {
        let b = b.unwrap();
        let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
        let (id, cell, assigned) = (col("transcript_id"), col("segger_cell_id"), col("assigned"));
        let id = id.as_any().downcast_ref::<Int64Array>().unwrap();
        let cell = cell.as_any().downcast_ref::<StringArray>().unwrap();
        let assigned = assigned.as_any().downcast_ref::<BooleanArray>().unwrap();
        for i in 0..b.num_rows() {
            ids.push(id.value(i));
            map.insert(
                id.value(i),
                (
                    (!cell.is_null(i)).then(|| cell.value(i).to_string()),
                    assigned.value(i),
                ),
            );
        }
    }
    (ids, map)
}

/// Fraction of nuclear transcripts (whose nucleus has a polygon) assigned to their own nucleus.
fn nuclear_accuracy(input: &[Raw], pred: &Assignments, nuclei: &HashSet<String>) -> (f64, usize) {
    let nuclear: Vec<&Raw> = input
        .iter()
        .filter(|r| r.nuclear && nuclei.contains(&r.cell))
        .collect();
    let own = nuclear
        .iter()
        .filter(|r| pred[&r.id].0.as_deref() == Some(r.cell.as_str()))
        .count();
    (own as f64 / nuclear.len() as f64, nuclear.len())
}

fn nucleus_ids(path: &Path) -> HashSet<String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = HashSet::new();
    for b in reader {
        let b = b.unwrap();
        let c = b.column(b.schema().index_of("cell_id").unwrap()).clone();
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..b.num_rows() {
            out.insert(c.value(i).to_string());
        }
    }
    out
}

struct Run {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    input: Vec<Raw>,
    nuclei: HashSet<String>,
}

/// create_dataset + train `epochs` + predict into `root/pred`.
fn pipeline(epochs: usize) -> Run {
    let raw = sample_dir();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let ds = root.join("ds");
    run_ok(
        bin()
            .args(["create_dataset", "--platform", "xenium", "--input"])
            .arg(&raw)
            // The small-sample settings of docs/prediction.md: one tx→bd message edge per
            // transcript, 6 µm tiles, one negative per positive, every tile in training.
            .args([
                "--k_bd",
                "1",
                "--tile_size",
                "6",
                "--neg_sampling_ratio",
                "1",
            ])
            .args(["--val_prob", "0", "--test_prob", "0"])
            .arg("--output")
            .arg(&ds),
    );
    let model = root.join("model");
    run_ok(
        bin()
            .args([
                "train",
                "--accelerator",
                "cpu",
                "--batch_size_train",
                "4",
                "--learning_rate",
                "0.003",
            ])
            .args(["--epochs", &epochs.to_string()])
            .arg("--train_dir")
            .arg(ds.join("train_tiles"))
            .arg("--val_dir")
            .arg(ds.join("train_tiles"))
            .arg("--default_root_dir")
            .arg(&model),
    );
    assert!(
        model.join("vocab.json").is_file(),
        "train writes vocab.json"
    );
    run_ok(
        bin()
            .args(["predict", "--accelerator", "cpu", "--model"])
            .arg(&model)
            .arg("--input")
            .arg(&ds)
            .arg("--output")
            .arg(root.join("pred")),
    );
    Run {
        input: filtered_input(&raw.join("transcripts.parquet")),
        nuclei: nucleus_ids(&raw.join("nucleus_boundaries.parquet")),
        _tmp: tmp,
        root,
    }
}

#[test]
fn xenium_lung_create_train_predict() {
    let run = pipeline(10);
    let out = run.root.join("pred");
    let (ids, pred) = predictions(&out.join("segger_transcripts.parquet"));

    // Every transcript of the filtered input exactly once, and nothing else.
    assert_eq!(ids.len(), run.input.len());
    assert_eq!(pred.len(), ids.len(), "a transcript id appears twice");
    let expected: HashSet<i64> = run.input.iter().map(|r| r.id).collect();
    assert_eq!(expected.len(), run.input.len());
    assert!(ids.iter().all(|i| expected.contains(i)));

    // Boundary-assigned transcripts carry input nucleus ids.
    for (cell, assigned) in pred.values() {
        if *assigned {
            assert!(run.nuclei.contains(cell.as_ref().unwrap()));
        }
    }

    // segmentation_log.json's counts match the table.
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("segmentation_log.json")).unwrap())
            .unwrap();
    let c = &log["counts"];
    let in_cell = pred.values().filter(|(c, _)| c.is_some()).count();
    let cells: HashSet<&String> = pred.values().filter_map(|(c, _)| c.as_ref()).collect();
    assert_eq!(c["transcripts"], ids.len());
    assert_eq!(
        c["assigned_to_boundary"],
        pred.values().filter(|(_, a)| *a).count()
    );
    assert_eq!(c["unassigned"], ids.len() - in_cell);
    assert_eq!(c["cells"], cells.len());
    let pct = c["assigned_percent"].as_f64().unwrap();
    assert!((pct - 100.0 * in_cell as f64 / ids.len() as f64).abs() < 1e-9);

    // The accuracy target: nuclear transcripts (whose nucleus has a polygon in the
    // input) assigned to their own nucleus in at least 95% of cases.
    let (acc, n) = nuclear_accuracy(&run.input, &pred, &run.nuclei);
    eprintln!(
        "nuclear transcripts assigned to their own nucleus after 10 epochs: {:.1}% of {n}",
        100.0 * acc
    );
    assert!(
        acc >= 0.95,
        "{:.1}% of {n} nuclear transcripts in their own nucleus",
        100.0 * acc
    );

    // A raw sample directory as --input: tiles are built on the fly. Tiled as the training
    // dataset was (`--tile_size 0`), the result is the same.
    let model = run.root.join("model");
    let raw_predict = |name: &str, tile_size: &str| {
        let out = run.root.join(name);
        run_ok(
            bin()
                .args(["predict", "--accelerator", "cpu", "--model"])
                .arg(&model)
                .arg("--input")
                .arg(sample_dir())
                .args(["--tile_size", tile_size])
                .arg("--output")
                .arg(&out),
        );
        let log: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("segmentation_log.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(log["input"]["kind"], "raw");
        let (ids, pred) = predictions(&out.join("segger_transcripts.parquet"));
        (ids, pred, log["counts"]["tiles"].as_u64().unwrap())
    };
    let (ids2, pred2, tiles_as_trained) = raw_predict("pred_raw", "0");
    assert_eq!(ids, ids2);
    assert_eq!(pred, pred2);
    // On 100 µm tiles (the default for a raw input): far fewer tiles, the same transcripts, the
    // same nuclei for almost every transcript, and the nuclear transcripts at home.
    let (ids3, pred3, tiles_100) = raw_predict("pred_raw_100", "100");
    assert_eq!(ids, ids3);
    assert!(
        tiles_100 * 20 < tiles_as_trained,
        "{tiles_100} tiles of 100 µm against {tiles_as_trained} of 6 µm"
    );
    let boundary = |p: &(Option<String>, bool)| p.1.then(|| p.0.clone());
    let same = pred
        .iter()
        .filter(|(id, p)| boundary(p) == boundary(&pred3[*id]))
        .count();
    let agree = same as f64 / pred.len() as f64;
    eprintln!(
        "100 µm tiles: the same boundary (or none) for {:.2}%",
        100.0 * agree
    );
    assert!(agree >= 0.98, "{:.2}%", 100.0 * agree);
    let (acc3, _) = nuclear_accuracy(&run.input, &pred3, &run.nuclei);
    assert!(acc3 >= 0.95, "{:.1}%", 100.0 * acc3);
    // The temporary dataset is gone.
    let leftovers: Vec<_> = std::fs::read_dir(&run.root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
