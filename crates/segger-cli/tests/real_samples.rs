//! Real instrument exports from public repositories (tests/data/real, each with its
//! SOURCE.md), each through `segger segment` with no flags but a short training: the platform is
//! detected, the dataset is valid, no control probe reaches the vocabulary, and every transcript
//! the dataset kept is in the segmentation exactly once.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;

fn segger() -> Command {
    Command::new(env!("CARGO_BIN_EXE_segger"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The `transcript_id` column of the segmentation.
fn segmented_ids(path: &Path) -> Vec<i64> {
    let f = std::fs::File::open(path).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for b in r {
        let b = b.unwrap();
        let col = b.column_by_name("transcript_id").expect("transcript_id");
        ids.extend(col.as_primitive::<Int64Type>().values().iter().copied());
    }
    ids
}

fn check(sample: &str, platform: &str, min_kept: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = segger()
        .arg("segment")
        .arg("--input")
        .arg(common::test_data(&format!("real/{sample}")))
        .arg("--output")
        .arg(&out)
        .args(["--epochs", "2", "--accelerator", "cpu"])
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{sample}: {log}");
    assert!(
        log.contains(&format!("{platform} (detected")),
        "{sample}: {log}"
    );

    let inspect = segger()
        .arg("inspect")
        .arg(out.join("dataset"))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{sample}: inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );

    let info = json(&out.join("dataset/dataset.json"));
    let controls = [
        "NegControl",
        "Blank",
        "BLANK",
        "NegPrb",
        "SystemControl",
        "FalseCode",
    ];
    for g in info["vocab"].as_array().unwrap() {
        let g = g.as_str().unwrap();
        assert!(
            !controls.iter().any(|c| g.starts_with(c)),
            "{sample}: control probe {g} in the vocabulary"
        );
    }
    let kept = info["settings"]["load"]["kept"].as_u64().unwrap();
    assert!(kept >= min_kept, "{sample}: {kept} transcripts kept");

    let ids = segmented_ids(&out.join("segmentation/segger_transcripts.parquet"));
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "{sample}: a transcript appears twice"
    );
    assert_eq!(
        ids.len() as u64,
        kept,
        "{sample}: every kept transcript once"
    );
}

#[test]
fn xenium_rewritten_by_r() {
    check("xenium_sfe", "xenium", 5000);
}

#[test]
fn cosmx_flat_files_keyed_by_fov_and_cell_id() {
    check("cosmx_sfe", "cosmx", 4000);
}

#[test]
fn merscope_without_cell_id_or_nucleus_file() {
    check("merscope_sfe_cellbound", "merscope", 10000);
}

#[test]
fn cosmx_cell_label_masks() {
    check("cosmx_moleculeexperiment", "cosmx", 23000);
}

#[test]
fn merscope_per_fov_hdf5_boundaries_without_cell_id() {
    check("merscope_moleculeexperiment", "merscope", 15000);
}

#[test]
fn xenium_csv_gz_export() {
    check("xenium_sfe_csv", "xenium", 5000);
}

/// Three transcripts, one of which passes the quality filter and lies in no nucleus: the dataset
/// is built and valid, but there is nothing to learn from, which `segment` says in one message
/// (exit 2) pointing at `--model`.
#[test]
fn xenium_with_nothing_to_learn_from_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let input = common::test_data("real/xenium_spatialexperimentio");
    let ds = tmp.path().join("ds");
    let o = segger()
        .args(["create_dataset", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&ds)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inspect = segger().arg("inspect").arg(&ds).output().unwrap();
    assert!(inspect.status.success());
    let info = json(&ds.join("dataset.json"));
    assert_eq!(info["settings"]["load"]["kept"], 1);
    assert_eq!(info["settings"]["load"]["dropped_qv"], 2);

    let out = tmp.path().join("out");
    let o = segger()
        .args([
            "segment",
            "--epochs",
            "2",
            "--accelerator",
            "cpu",
            "--input",
        ])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(err.contains("no training tiles"), "{err}");
    assert!(err.contains("--model"), "{err}");
    assert!(!out.join("segmentation").exists());
}

/// Transcripts without any boundary file: exit 2, one message naming the folder, what was
/// looked for and the file that is there; nothing is written.
#[test]
fn a_sample_without_boundaries_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    std::fs::create_dir(&raw).unwrap();
    std::fs::copy(
        common::test_data("real/xenium_sfe/transcripts.parquet"),
        raw.join("transcripts.parquet"),
    )
    .unwrap();
    let out = tmp.path().join("ds");
    let o = segger()
        .args(["create_dataset", "--input"])
        .arg(&raw)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}: no boundaries file (looked for nucleus_boundaries.parquet",
            raw.display()
        )),
        "{err}"
    );
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("raw")]);
}
