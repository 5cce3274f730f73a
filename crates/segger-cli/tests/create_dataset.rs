//! `segger create_dataset` then `segger inspect` on the Xenium lung preview.

mod common;

use std::process::Command;

#[test]
fn create_dataset_then_inspect_shows_all_three_splits() {
    let input = common::test_data("xenium_lung_10k");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lung");
    let bin = env!("CARGO_BIN_EXE_segger");
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let o = run(&[
        "create-dataset",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--platform",
        "xenium",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("qv < 20") && text.contains("tiles"), "{text}");

    let o = run(&["inspect", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true);
    for split in ["train_tiles", "val_tiles", "test_tiles"] {
        assert!(
            v["splits"][split]["tiles"].as_u64().unwrap() > 0,
            "{split}: {v}"
        );
    }

    // Existing output without --overwrite: exit code 2 and a message naming the directory.
    let o = run(&[
        "create_dataset",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--platform",
        "xenium",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("already exists") && err.contains("lung"),
        "{err}"
    );

    // A missing input column: exit code 2, the file and the column named.
    let o = run(&[
        "create_dataset",
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.path().join("x").to_str().unwrap(),
        "--platform",
        "xenium",
        "--gene_column",
        "gene",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("transcripts.parquet") && err.contains("`gene`"),
        "{err}"
    );
}
