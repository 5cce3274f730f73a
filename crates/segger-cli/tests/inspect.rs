//! `segger inspect` through the binary.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn fixture() -> PathBuf {
    common::test_data("parity/tile.safetensors")
}

#[test]
fn inspect_json_prints_the_parity_tile_counts() {
    let out = Command::new(env!("CARGO_BIN_EXE_segger"))
        .args(["inspect", "--json"])
        .arg(fixture())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["tx"], 1141);
    assert_eq!(v["bd"], 7);
    assert_eq!(v["edges"]["tx__neighbors__tx"], 3423);
    assert_eq!(v["edges"]["tx__neighbors__bd"], 3423);
    assert_eq!(v["positives"], 163);
    assert_eq!(v["label_pairs"], 268);
    assert_eq!(v["label_negatives"], 105);
    assert_eq!(v["valid"], true);
    assert_eq!(v["bounds"]["width"], 33.0);
}

#[test]
fn inspect_text_and_dataset_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let split = tmp.path().join("train_tiles/processed");
    std::fs::create_dir_all(&split).unwrap();
    std::fs::copy(fixture(), split.join("a.safetensors")).unwrap();
    std::fs::copy(fixture(), split.join("b.safetensors")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_segger"))
        .args(["inspect", "--json"])
        .arg(tmp.path().join("train_tiles"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"]["tx"], 2 * 1141);
    assert_eq!(v["total"]["label_pairs"], 2 * 268);
    let text = Command::new(env!("CARGO_BIN_EXE_segger"))
        .arg("inspect")
        .arg(fixture())
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&text.stdout);
    assert!(
        s.contains("tx=1141 bd=7") && s.contains("validation    ok"),
        "{s}"
    );
}

#[test]
fn inspect_bad_file_names_file_and_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.safetensors");
    let bytes = std::fs::read(fixture()).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_segger"))
        .arg("inspect")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
    // A broken tile inside a dataset directory makes the verdict fail and names the tile.
    let split = tmp.path().join("val_tiles/processed");
    std::fs::create_dir_all(&split).unwrap();
    std::fs::copy(fixture(), split.join("ok.safetensors")).unwrap();
    std::fs::write(split.join("broken.safetensors"), b"junk").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_segger"))
        .arg("inspect")
        .arg(tmp.path().join("val_tiles"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("broken.safetensors"), "{all}");
}
