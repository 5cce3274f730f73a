//! `segger train` killed with SIGKILL at random moments, each time followed by `--resume`: the
//! finished run equals an uninterrupted one (every `metrics.csv` value but the timings, and the
//! model's bytes), and leaves no temporary files or stale checkpoints behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EPOCHS: &str = "6";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_segger"))
}

/// 24 copies of the parity tile for training, one for validation.
fn dataset(root: &Path) -> (PathBuf, PathBuf) {
    let train = root.join("train_tiles");
    let val = root.join("val_tiles");
    std::fs::create_dir_all(train.join("processed")).unwrap();
    std::fs::create_dir_all(val.join("processed")).unwrap();
    let tile = common::test_data("parity/tile.safetensors");
    for i in 0..24 {
        std::fs::copy(&tile, train.join(format!("processed/t{i:03}.safetensors"))).unwrap();
    }
    std::fs::copy(&tile, val.join("processed/v.safetensors")).unwrap();
    (train, val)
}

fn train_cmd(train: &Path, val: &Path, run: &Path) -> Command {
    let mut c = bin();
    c.args(["train", "--train_dir"])
        .arg(train)
        .arg("--val_dir")
        .arg(val)
        .arg("--default_root_dir")
        .arg(run)
        .args([
            "--accelerator",
            "cpu",
            "--epochs",
            EPOCHS,
            "--batch_size_train",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // A run killed before it wrote its configuration is started afresh; after that, resumed.
    if run.join("run_config.json").exists() {
        c.arg("--resume");
    }
    c
}

/// The rows of `metrics.csv` without the timing columns (wall seconds, transcripts/s, loader
/// wait), which differ between runs.
fn values(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
        .collect()
}

/// Every file under `dir` whose name starts with a dot: a temporary file a killed run left.
fn hidden_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            out.push(p.clone());
        }
        if p.is_dir() {
            out.extend(hidden_files(&p));
        }
    }
    out
}

/// The checks a finished run must pass against the uninterrupted `reference`.
fn check_finished(run: &Path, reference: &Path, kills: usize) {
    assert_eq!(
        values(run),
        values(reference),
        "metrics.csv of {} (killed {kills} times) differs from the uninterrupted run's",
        run.display()
    );
    assert!(
        std::fs::read(run.join("model.safetensors")).unwrap()
            == std::fs::read(reference.join("model.safetensors")).unwrap(),
        "model of {} (killed {kills} times) differs from the uninterrupted run's",
        run.display()
    );
    assert!(
        hidden_files(run).is_empty(),
        "temporary files left: {:?}",
        hidden_files(run)
    );
    let models = std::fs::read_dir(run.join("checkpoint"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("model-"))
        .count();
    assert!(models <= 3, "{models} model checkpoints kept");
}

/// Trains once without interruption, then kills `kills` runs of the same training at moments
/// drawn from `seed` (uniform over 1.2 times the uninterrupted run's wall time), resuming after
/// each. A run that finishes before the next kill is checked and a new one started.
fn kill_and_resume(kills: usize, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let (train, val) = dataset(tmp.path());
    let reference = tmp.path().join("reference");
    let t0 = Instant::now();
    let out = train_cmd(&train, &val, &reference).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wall = t0.elapsed().as_secs_f64();
    assert_eq!(values(&reference).len(), 7, "header and six epochs");

    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut uniform = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut run_no = 0;
    let mut run = tmp.path().join("run-0");
    let mut killed = 0;
    let mut killed_this_run = 0;
    while killed < kills {
        let mut child = train_cmd(&train, &val, &run).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs_f64(uniform() * 1.2 * wall);
        let mut finished = None;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match finished {
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
                killed_this_run += 1;
            }
            Some(status) => {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
                assert!(status.success(), "run {} failed: {err}", run.display());
                check_finished(&run, &reference, killed_this_run);
                run_no += 1;
                run = tmp.path().join(format!("run-{run_no}"));
                killed_this_run = 0;
            }
        }
    }
    let out = train_cmd(&train, &val, &run).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_finished(&run, &reference, killed_this_run);
}

#[test]
fn five_kills_then_resume_equal_an_uninterrupted_run() {
    kill_and_resume(5, 1);
}

#[test]
#[ignore = "slow (about 2 minutes): run with `cargo test --release -p segger-cli --test kill_resume -- --ignored`"]
fn twenty_kills_then_resume_equal_an_uninterrupted_run() {
    kill_and_resume(20, 20);
}
