//! `segger segment` on the bundled lung preview: one command from the raw folder to the
//! segmentation; a second call skips what is done; other settings are refused; a run killed
//! at any moment and called again ends with the same segmentation as an uninterrupted one.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const EPOCHS: &str = "3";

fn segment(out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segger"));
    c.arg("segment")
        .arg("--input")
        .arg(common::test_data("xenium_lung_10k"))
        .arg("--output")
        .arg(out)
        .args(["--accelerator", "cpu", "--epochs", EPOCHS])
        .args(extra);
    c
}

fn run(out: &Path, extra: &[&str]) -> Output {
    segment(out, extra).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn transcripts(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("segmentation/segger_transcripts.parquet")).unwrap()
}

fn run_record(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap()
}

#[test]
fn one_command_then_nothing_redone_and_other_settings_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = run(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let log = text(&o);
    assert!(log.contains("xenium (detected"), "{log}");
    let rec = run_record(&out);
    assert_eq!(
        common::completed_stages(&rec),
        ["dataset", "model", "segmentation"]
    );
    for st in rec["completed"].as_array().unwrap() {
        let rate = st["transcripts_per_second"].as_f64().unwrap_or(0.0);
        assert!(rate > 100.0, "{st}");
    }
    assert!(log.contains("transcripts/s"), "{log}");
    assert_eq!(rec["settings"]["epochs"], 3);
    // The recorded train command names the token count the train stage used: the dataset's
    // vocabulary size.
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("dataset/dataset.json")).unwrap())
            .unwrap();
    let genes = info["vocab"].as_array().unwrap().len();
    let train_cmd = rec["commands"][1].as_str().unwrap();
    assert!(
        train_cmd.ends_with(&format!("--num_tx_tokens {genes}")),
        "{train_cmd}"
    );
    // The predict stage reads the raw sample (100 µm prediction tiles), and its temporary
    // tiles are gone.
    let predict_cmd = rec["commands"][2].as_str().unwrap();
    assert!(
        predict_cmd.contains(&format!(
            "--input {}",
            common::test_data("xenium_lung_10k").display()
        )) && predict_cmd.ends_with("--platform xenium"),
        "{predict_cmd}"
    );
    let seg_log: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("segmentation/segmentation_log.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(seg_log["input"]["kind"], "raw");
    assert_eq!(seg_log["settings"]["raw_tile_size"], 100.0);
    let hidden: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    for f in [
        "dataset/dataset.json",
        "model/model.safetensors",
        "segmentation/segmentation_log.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // Every transcript the dataset kept is in the output once.
    let log_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("segmentation/segmentation_log.json")).unwrap(),
    )
    .unwrap();
    let n = log_json["counts"]["transcripts"].as_u64().unwrap();
    assert!(n > 8000, "{n} transcripts in the output");
    let first = transcripts(&out);

    // Called again: every stage is skipped, nothing changes.
    let o = run(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).matches("done in an earlier run").count(),
        3,
        "{}",
        text(&o)
    );
    assert_eq!(transcripts(&out), first);

    // Other settings: refused, nothing touched.
    let o = run(&out, &["--seed", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--overwrite"), "{}", text(&o));
    assert_eq!(transcripts(&out), first);

    // A folder holding a file of the user's: refused, the file kept.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    let o = run(&other, &["--overwrite"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(std::fs::read(other.join("notes.txt")).unwrap(), b"mine");

    // No transcript file of a known platform: exit 2, nothing written.
    let empty = tmp.path().join("empty_raw");
    std::fs::create_dir_all(&empty).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_segger"))
        .args(["segment", "--input"])
        .arg(&empty)
        .arg("--output")
        .arg(tmp.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--platform"), "{}", text(&o));
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn killed_at_any_moment_the_next_call_finishes_with_the_same_segmentation() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let t0 = Instant::now();
    let o = run(&whole, &[]);
    let wall = t0.elapsed();
    assert!(o.status.success(), "{}", text(&o));
    let expected = transcripts(&whole);

    // Kills spread over the uninterrupted run's wall time: in dataset creation, training and
    // prediction.
    let out = tmp.path().join("killed");
    for frac in [0.02, 0.04, 0.3, 0.6, 0.97] {
        let mut child = segment(&out, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs_f64(wall.as_secs_f64() * frac));
        let _ = child.kill();
        let _ = child.wait();
    }
    // What a kill inside the dataset stage leaves (the moment is hard to hit): the stage's
    // temporary folder, of a process that no longer runs.
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    if out.join("run.json").is_file() {
        let stale = out.join(format!(".dataset.tmp-{}", dead.id()));
        std::fs::create_dir_all(stale.join("train_tiles")).unwrap();
    }
    let o = run(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(transcripts(&out), expected, "the segmentation differs");
    let stray: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .chain(std::fs::read_dir(&out).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}
