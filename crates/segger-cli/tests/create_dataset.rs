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

/// `--split_merged_nuclei`: on by default, the hard preset's merged-looking nuclei are cut and
/// counted (summary and `dataset.json`); `false` keeps every nucleus whole and is recorded.
#[test]
fn merged_nuclei_are_cut_unless_asked_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let bin = env!("CARGO_BIN_EXE_segger");
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let o = run(&[
        "simulate",
        "--preset",
        "hard",
        "--cells",
        "700",
        "--seed",
        "1",
        "--out",
        raw.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let settings = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "create_dataset",
            "--input",
            raw.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let json = std::fs::read_to_string(out.join("dataset.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        (text, v["settings"].clone())
    };
    let (text, on) = settings("on", &[]);
    let cut = on["load"]["merged_nuclei_split"].as_u64().unwrap();
    assert!((5..=25).contains(&cut), "{cut}");
    assert!(
        text.contains(&format!("{cut}  nuclei cut in two as merged")),
        "{text}"
    );
    assert_eq!(on["raw"]["split_merged"], true);
    let (text, off) = settings("off", &["--split_merged_nuclei", "false"]);
    assert_eq!(off["load"]["merged_nuclei_split"], 0);
    assert_eq!(off["raw"]["split_merged"], false);
    assert!(!text.contains("cut in two"), "{text}");
}
