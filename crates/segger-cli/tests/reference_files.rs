//! The `segger` binary on the reference implementation's own files: `.pt` tiles and datasets.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    common::test_data("pyg")
}

fn segger(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segger"))
        .args(args)
        .env("SEGGER_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh scratch directory (removed first if a previous run left it).
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("segger-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn inspect_reads_pt_tiles() {
    let pt = fixtures().join("tiles_x=2247_y=2199_w=33_h=35.pt");
    let (code, out, err) = segger(&["inspect", "--json", pt.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["tx"].as_u64(), v["bd"].as_u64()), (Some(1141), Some(7)));
    assert_eq!(v["label_pairs"], 268);
    assert_eq!(v["bounds"]["margin"], 10.0);
}

#[test]
fn convert_then_inspect_a_segger_dataset() {
    let d = scratch("convert");
    let input = d.join("segger");
    for (split, stem) in [
        ("train_tiles", "tiles_x=2247_y=2199_w=33_h=35"),
        ("test_tiles", "tiles_x=2160_y=2110_w=48_h=40"),
    ] {
        let dir = input.join(split).join("processed");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(
            fixtures().join(format!("{stem}.pt")),
            dir.join(format!("{stem}.pt")),
        )
        .unwrap();
    }
    // The .pt dataset itself can be inspected.
    let (code, _, err) = segger(&["inspect", input.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let out = d.join("out");
    let args = [
        "convert",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    let (code, stdout, err) = segger(&args);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("train=1 val=0 test=1"), "{stdout}");
    let (code, stdout, err) = segger(&["inspect", "--json", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["total"]["tx"], 1141 + 1174);
    // Converting again needs --overwrite: bad usage, exit 2.
    let (code, _, err) = segger(&args);
    assert_eq!(code, 2);
    assert!(err.contains("--overwrite"), "{err}");
    let mut again = args.to_vec();
    again.push("--overwrite");
    assert_eq!(segger(&again).0, 0);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn import_checkpoint_reports_bad_inputs() {
    let d = scratch("ckpt");
    let out = d.join("model");
    // Both spellings of the sub-command exist.
    for cmd in ["import_checkpoint", "import-checkpoint"] {
        let (code, _, err) = segger(&[
            cmd,
            "--ckpt",
            "/nonexistent/last.ckpt",
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("/nonexistent/last.ckpt"), "{err}");
    }
    // A tile is not a checkpoint.
    let pt = fixtures().join("tiles_x=2218_y=2110_w=14_h=16.pt");
    let (code, _, err) = segger(&[
        "import_checkpoint",
        "--ckpt",
        pt.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--heads",
        "2",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected a checkpoint dict"), "{err}");
    assert!(!out.exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn imported_checkpoint_loads_as_segger_model_weights() {
    // The parity seed weights, saved as a bare torch state dict with `model.` prefixes, go
    // through `segger import_checkpoint` and come out loadable by segger-model.
    let fixture = common::test_data("parity/seed.weights.safetensors");
    let (tensors, meta) = segger_model::pyg::read_safetensors(&fixture).unwrap();
    let mut sd: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|(n, t)| (format!("model.{n}"), t.shape.clone(), t.values.clone()))
        .collect();
    sd.sort_by(|a, b| a.0.cmp(&b.0));
    let d = scratch("import");
    let ckpt = d.join("seed.ckpt");
    std::fs::write(
        &ckpt,
        segger_data::torch::save::state_dict_bytes(&sd, "seed").unwrap(),
    )
    .unwrap();
    let out = d.join("model");
    let (code, stdout, err) = segger(&[
        "import-checkpoint",
        "--ckpt",
        ckpt.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("348520 parameters"), "{stdout}");
    let cfg_text = std::fs::read_to_string(out.join("config.json")).unwrap();
    let cfg = segger_model::SeggerConfig::from_json(&cfg_text).unwrap();
    assert_eq!(
        cfg,
        segger_model::SeggerConfig::from_json(&meta["config"]).unwrap()
    );
    let (got, got_meta) =
        segger_model::pyg::read_safetensors(&out.join("model.safetensors")).unwrap();
    assert!(segger_model::pyg::check_names(&cfg, &got).is_empty());
    assert_eq!(got, tensors);
    assert_eq!(
        segger_model::SeggerConfig::from_json(&got_meta["config"]).unwrap(),
        cfg
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn converted_lung_tiles_train() {
    let d = scratch("convert-train");
    let input = d.join("segger");
    for (split, stem) in [
        ("train_tiles", "tiles_x=2247_y=2199_w=33_h=35"),
        ("val_tiles", "tiles_x=2218_y=2110_w=14_h=16"),
    ] {
        let dir = input.join(split).join("processed");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(
            fixtures().join(format!("{stem}.pt")),
            dir.join(format!("{stem}.pt")),
        )
        .unwrap();
    }
    let out = d.join("out");
    let (code, _, err) = segger(&[
        "convert",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let run = d.join("run");
    let (code, _, err) = segger(&[
        "train",
        "--train_dir",
        out.join("train_tiles").to_str().unwrap(),
        "--val_dir",
        out.join("val_tiles").to_str().unwrap(),
        "--epochs",
        "3",
        "--accelerator",
        "cpu",
        "--learning_rate",
        "0.003",
        // The reference's tiles (k_bd 3, random negatives) with the reference's graph.
        "--architecture",
        "reference",
        "--default_root_dir",
        run.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let losses: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 3);
    assert!(losses[2] < losses[0], "loss did not fall: {losses:?}");
    assert!(run.join("model.safetensors").is_file());
    std::fs::remove_dir_all(&d).unwrap();
}
