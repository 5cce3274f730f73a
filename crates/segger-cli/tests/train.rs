//! `segger train` end to end, through the binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segger"));
    c.env("SEGGER_LOG", "info");
    c
}

fn fixture_tile() -> PathBuf {
    common::test_data("parity/tile.safetensors")
}

/// A dataset of `n_train` copies of the parity tile for training and one for validation.
fn dataset(root: &Path, n_train: usize) -> (PathBuf, PathBuf) {
    let train = root.join("train_tiles");
    let val = root.join("val_tiles");
    std::fs::create_dir_all(train.join("processed")).unwrap();
    std::fs::create_dir_all(val.join("processed")).unwrap();
    for i in 0..n_train {
        std::fs::copy(
            fixture_tile(),
            train.join(format!("processed/t{i:03}.safetensors")),
        )
        .unwrap();
    }
    std::fs::copy(fixture_tile(), val.join("processed/v.safetensors")).unwrap();
    (train, val)
}

fn rows(run: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap_or_default();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// A finished two-epoch run on two training tiles in `root/run`, and the arguments that made it.
fn two_epoch_run(root: &Path) -> (PathBuf, Vec<String>) {
    let (train, val) = dataset(root, 2);
    let run = root.join("run");
    let args = train_args(&train, &val, &run);
    let out = bin().args(&args).args(["--epochs", "2"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (run, args)
}

fn train_args(train: &Path, val: &Path, run: &Path) -> Vec<String> {
    vec![
        "train".into(),
        "--train_dir".into(),
        train.display().to_string(),
        "--val_dir".into(),
        val.display().to_string(),
        "--default_root_dir".into(),
        run.display().to_string(),
        "--accelerator".into(),
        "cpu".into(),
    ]
}

#[test]
fn twenty_epochs_lower_the_loss_and_report_auroc() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, val) = dataset(tmp.path(), 4);
    let run = tmp.path().join("run");
    let out = bin()
        .args(train_args(&train, &val, &run))
        .args([
            "--epochs",
            "20",
            "--batch_size_train",
            "1",
            "--learning_rate",
            "0.003",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&run);
    assert_eq!(rows.len(), 20);
    let loss = |r: &Vec<String>| r[2].parse::<f64>().unwrap();
    let (first, last) = (loss(&rows[0]), loss(&rows[19]));
    assert!(
        last <= 0.7 * first,
        "training loss {first} -> {last} fell by less than 30%"
    );
    for r in &rows {
        let auroc: f64 = r[4].parse().unwrap();
        assert!((0.0..=1.0).contains(&auroc), "AUROC {auroc} reported");
    }
    assert!(
        rows[19][4].parse::<f64>().unwrap() > 0.8,
        "final AUROC {}",
        rows[19][4]
    );
    for f in ["model.safetensors", "config.json", "run_config.json"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // The saved weights load back with the saved config and reproduce the architecture.
    let cfg = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(cfg.contains("\"hidden_channels\": 64"), "{cfg}");
    let run_cfg = std::fs::read_to_string(run.join("run_config.json")).unwrap();
    assert!(
        run_cfg.contains("\"float32_matmul_precision\": \"highest\""),
        "{run_cfg}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("best validation loss"), "{stdout}");
}

#[test]
fn same_seed_same_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, val) = dataset(tmp.path(), 3);
    let mut losses = Vec::new();
    for (k, seed) in ["7", "7", "8"].iter().enumerate() {
        let run = tmp.path().join(format!("run{k}"));
        let st = bin()
            .args(train_args(&train, &val, &run))
            .args([
                "--epochs",
                "3",
                "--batch_size_train",
                "1",
                "--learning_rate",
                "0.003",
                "--seed",
                seed,
            ])
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        losses.push(
            rows(&run)
                .iter()
                .map(|r| (r[2].clone(), r[3].clone(), r[4].clone()))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(losses[0], losses[1], "same seed, different metrics");
    assert_ne!(losses[0], losses[2], "different seeds, same metrics");
}

#[test]
fn killed_run_resumes_at_the_next_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, val) = dataset(tmp.path(), 24);
    let run = tmp.path().join("run");
    let args = train_args(&train, &val, &run);
    let mut child = bin()
        .args(&args)
        .args(["--epochs", "5", "--batch_size_train", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until epoch 2 is complete (its row and checkpoint are written), then kill -9
    // during epoch 3.
    let t0 = Instant::now();
    loop {
        let done2 = rows(&run).len() >= 2
            && ["model-2.mpk", "optim-2.mpk", "scheduler-2.mpk"]
                .iter()
                .all(|f| run.join("checkpoint").join(f).is_file());
        if done2 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "epoch 2 never finished"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "training ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(rows(&run).len() < 5, "the run finished before the kill");
    assert!(!run.join("model.safetensors").exists());

    let out = bin()
        .args(&args)
        .args(["--epochs", "5", "--batch_size_train", "1", "--resume"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("resuming after epoch 2") || err.contains("resuming after epoch 3"),
        "{err}"
    );
    let epochs: Vec<String> = rows(&run).iter().map(|r| r[0].clone()).collect();
    assert_eq!(epochs, vec!["1", "2", "3", "4", "5"], "one row per epoch");
    // The resumed run did not start over: epoch 1's row is the original one, and steps grow.
    let steps: Vec<u64> = rows(&run).iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(steps, vec![24, 48, 72, 96, 120]);
    assert!(run.join("model.safetensors").is_file());
}

#[test]
fn resume_refuses_a_changed_model_and_skips_empty_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, args) = two_epoch_run(tmp.path());
    let snapshot = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = walk(d)
            .into_iter()
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    };
    // Another number of heads: refused before anything is written, naming the setting.
    let before = snapshot(&run);
    let out = bin()
        .args(&args)
        .args(["--epochs", "3", "--resume", "--heads", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--resume") && err.contains("heads 2"), "{err}");
    assert_eq!(snapshot(&run), before, "the run changed");
    // A checkpoint cut to zero bytes by a kill is not resumed from: the one before it is.
    std::fs::write(run.join("checkpoint/model-2.mpk"), b"").unwrap();
    let out = bin()
        .args(&args)
        .args(["--epochs", "3", "--resume"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming after epoch 1"), "{err}");
    let epochs: Vec<String> = rows(&run).iter().map(|r| r[0].clone()).collect();
    assert_eq!(epochs, vec!["1", "2", "3"], "one row per epoch");
}

#[test]
fn a_run_killed_in_its_first_epoch_starts_again_with_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, args) = two_epoch_run(tmp.path());
    // What a kill during epoch 1 leaves: the run's configuration, a metrics.csv without rows,
    // no checkpoint, a half-written temporary file of a process that is gone.
    for f in ["model.safetensors", "config.json", "calibration.json"] {
        std::fs::remove_file(run.join(f)).unwrap();
    }
    std::fs::remove_dir_all(run.join("checkpoint")).unwrap();
    std::fs::create_dir(run.join("checkpoint")).unwrap();
    std::fs::write(run.join("checkpoint/.model-1.mpk.mpk"), b"cut short").unwrap();
    let header = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    std::fs::write(run.join("metrics.csv"), header.lines().next().unwrap()).unwrap();
    let stale = run.join(".metrics.csv.tmp-4194999");
    std::fs::write(&stale, b"epoch,step").unwrap();

    let out = bin().args(&args).args(["--epochs", "2"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let out = bin()
        .args(&args)
        .args(["--epochs", "2", "--resume"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("starting the run from epoch 1"), "{err}");
    let epochs: Vec<String> = rows(&run).iter().map(|r| r[0].clone()).collect();
    assert_eq!(epochs, vec!["1", "2"]);
    assert!(run.join("model.safetensors").is_file());
    assert!(!stale.exists(), "the dead run's temporary file is removed");
    assert!(!run.join("checkpoint/.model-1.mpk.mpk").exists());
}

#[test]
fn a_diverging_run_stops_at_the_first_non_finite_epoch_and_writes_no_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, val) = dataset(tmp.path(), 4);
    // Boundary features near the largest float: the first layer overflows, the loss is NaN.
    for dir in [&train, &val] {
        for e in std::fs::read_dir(dir.join("processed")).unwrap() {
            let p = e.unwrap().path();
            let mut tile = segger_data::tile::read_tile(&p, None).unwrap();
            if let segger_graph::NodeFeatures::Dense { values, .. } = &mut tile.graph.bd.x {
                values.iter_mut().for_each(|v| *v = 3.0e38);
            }
            segger_data::tile::write_tile(&p, &tile).unwrap();
        }
    }
    let run = tmp.path().join("run");
    let out = bin()
        .args(train_args(&train, &val, &run))
        .args(["--epochs", "5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("training diverged") && err.contains("epoch 1 (step 1)"),
        "{err}"
    );
    assert!(
        rows(&run).len() < 5,
        "the run went on after the loss left the numbers"
    );
    for f in ["model.safetensors", "config.json", "calibration.json"] {
        assert!(!run.join(f).exists(), "{f} written from a diverged run");
    }
}

#[test]
fn tiles_mixing_2d_and_3d_positions_are_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, val) = dataset(tmp.path(), 2);
    // One more training tile, the same one without its z column.
    let mut tile = segger_data::tile::read_tile(&fixture_tile(), None).unwrap();
    let tx = &mut tile.graph.tx;
    assert_eq!(tx.pos_dim, 3, "the fixture is 3-D");
    tx.pos = tx.pos.chunks(3).flat_map(|p| [p[0], p[1]]).collect();
    tx.pos_dim = 2;
    let odd = train.join("processed/z.safetensors");
    segger_data::tile::write_tile(&odd, &tile).unwrap();
    let run = tmp.path().join("run");
    let out = bin()
        .args(train_args(&train, &val, &run))
        .args(["--epochs", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("z.safetensors") && err.contains("3-D"),
        "{err}"
    );
    assert!(!run.exists(), "nothing is written");
    // `inspect` names the odd tile too.
    let out = bin().arg("inspect").arg(&train).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("z.safetensors") && text.contains("transcripts 2-D"),
        "{text}"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, val) = dataset(tmp.path(), 1);
    let empty = tmp.path().join("empty_tiles");
    std::fs::create_dir_all(empty.join("processed")).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            train_args(&empty, &val, &tmp.path().join("r1")),
            "no tile files",
        ),
        (
            [
                train_args(&train, &val, &tmp.path().join("r2")),
                vec!["--num_tx_tokens".into(), "100".into()],
            ]
            .concat(),
            "vocabulary of 100 tokens (raise --num_tx_tokens",
        ),
        (
            train_args(&train, &tmp.path().join("nope"), &tmp.path().join("r3")),
            "does not exist",
        ),
        (
            [
                train_args(&train, &val, &tmp.path().join("r4")),
                vec!["--devices".into(), "0".into()],
            ]
            .concat(),
            "--devices",
        ),
        (
            [
                train_args(&train, &val, &tmp.path().join("r5")),
                vec!["--precision".into(), "8-bit".into()],
            ]
            .concat(),
            "invalid value '8-bit' for '--precision <PRECISION>'",
        ),
        (
            [
                train_args(&train, &val, &tmp.path().join("r6")),
                vec!["--precision".into(), "16-mixed".into()],
            ]
            .concat(),
            "--precision 16-mixed runs on the GPU backends only",
        ),
        (
            [
                train_args(&train, &val, &tmp.path().join("r8")),
                vec!["--precision".into(), "bf16-mixed".into()],
            ]
            .concat(),
            "--precision bf16-mixed runs on the GPU backends only",
        ),
        (
            [
                train_args(&train, &val, &tmp.path().join("r7")),
                vec!["--float32_matmul_precision".into(), "medium".into()],
            ]
            .concat(),
            "invalid value 'medium' for '--float32_matmul_precision",
        ),
    ];
    for (args, needle) in cases {
        let out = bin().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
        let run = PathBuf::from(&args[6]);
        assert!(!run.exists(), "{args:?} wrote {}", run.display());
    }
}

#[test]
fn lung_dataset_trains_loss_falls_30_percent_in_20_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("lung");
    let raw = common::test_data("xenium_lung_10k");
    let out = bin()
        .args(["create_dataset", "--platform", "xenium", "--input"])
        .arg(&raw)
        .arg("--output")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = tmp.path().join("run");
    let out = bin()
        .args(train_args(
            &data.join("train_tiles"),
            &data.join("val_tiles"),
            &run,
        ))
        .args([
            "--epochs",
            "20",
            "--batch_size_train",
            "1",
            "--learning_rate",
            "0.003",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&run);
    assert_eq!(rows.len(), 20);
    let loss = |r: &Vec<String>| r[2].parse::<f64>().unwrap();
    assert!(
        loss(&rows[19]) <= 0.7 * loss(&rows[0]),
        "training loss {} -> {}",
        loss(&rows[0]),
        loss(&rows[19])
    );
    for r in &rows {
        let auroc: f64 = r[4].parse().unwrap();
        assert!(
            auroc.is_finite() && (0.0..=1.0).contains(&auroc),
            "AUROC not reported: {r:?}"
        );
        let wall: f64 = r[6].parse().unwrap();
        let tps: f64 = r[7].parse().unwrap();
        assert!(wall > 0.0 && tps > 0.0, "timing columns empty: {r:?}");
    }
}

#[test]
fn a_dataset_without_a_validation_split_validates_on_its_training_tiles() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("lung");
    let out = bin()
        .args(["create_dataset", "--val_prob", "0", "--input"])
        .arg(common::test_data("xenium_lung_10k"))
        .arg("--output")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!data.join("val_tiles").exists());
    let run = tmp.path().join("run");
    let out = bin()
        .args(train_args(
            &data.join("train_tiles"),
            &data.join("val_tiles"),
            &run,
        ))
        .args(["--epochs", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("no validation split").count(), 1, "{err}");
    assert_eq!(rows(&run).len(), 1);
    // A --val_dir that names nothing in a dataset that has a validation split stays an error.
    let out = bin()
        .args(train_args(
            &data.join("train_tiles"),
            &tmp.path().join("nope"),
            &tmp.path().join("run2"),
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_panel_larger_than_500_genes_trains_without_num_tx_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let out = bin()
        .args(["simulate", "--cells", "60", "--genes", "700", "--seed", "3"])
        .arg("--out")
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = tmp.path().join("ds");
    let out = bin()
        .args([
            "create_dataset",
            "--val_prob",
            "0",
            "--test_prob",
            "0",
            "--input",
        ])
        .arg(&raw)
        .arg("--output")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("dataset.json")).unwrap()).unwrap();
    let genes = info["vocab"].as_array().unwrap().len();
    assert!(genes > 500, "{genes} genes");

    let run = tmp.path().join("run");
    let out = bin()
        .args([
            "train",
            "--accelerator",
            "cpu",
            "--epochs",
            "1",
            "--train_dir",
        ])
        .arg(data.join("train_tiles"))
        .arg("--val_dir")
        .arg(data.join("train_tiles"))
        .arg("--default_root_dir")
        .arg(&run)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Burn's per-step "Iteration N" lines are filtered out of the default log.
    assert!(!err.contains("Iteration "), "{err}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["num_tx_tokens"].as_u64(), Some(genes as u64), "{cfg}");
    // Given explicitly below the panel, the error says what to pass.
    let out = bin()
        .args([
            "train",
            "--accelerator",
            "cpu",
            "--epochs",
            "1",
            "--num_tx_tokens",
            "500",
        ])
        .arg("--train_dir")
        .arg(data.join("train_tiles"))
        .arg("--val_dir")
        .arg(data.join("train_tiles"))
        .arg("--default_root_dir")
        .arg(tmp.path().join("run2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--num_tx_tokens"), "{err}");
}
