//! `segger demo` end to end on a small seeded tissue: the segmentation puts more transcripts
//! in their true cell than the nucleus-only baseline; `segger simulate` and `segger evaluate`
//! from the command line.

use std::process::Command;

fn segger() -> Command {
    Command::new(env!("CARGO_BIN_EXE_segger"))
}

#[test]
fn demo_beats_the_nucleus_only_baseline() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("demo");
    let o = segger()
        .args(["demo", "--seed", "1"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("evaluation.json")).unwrap())
            .unwrap();
    let seg = v["segmentation"]["truth"]["correct"].as_f64().unwrap();
    let base = v["baselines"]["nucleus only"]["truth"]["correct"]
        .as_f64()
        .unwrap();
    assert!(
        seg > base,
        "segmentation {seg} vs nucleus only {base}\n{stdout}"
    );
    let png = std::fs::read(out.join("segmentation.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(stdout.contains("nucleus only"));
}

#[test]
fn simulate_and_evaluate_commands() {
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("raw");
    let o = segger()
        .args([
            "simulate",
            "--cells",
            "200",
            "--seed",
            "4",
            "--genes",
            "40",
            "--cell_types",
            "4",
            "--json",
        ])
        .arg("--out")
        .arg(&raw)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["genes"], 40);
    // Evaluate the raw file's own nucleus assignment, written as a prediction.
    let o = segger()
        .args(["evaluate", "--prediction"])
        .arg(d.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("segger_transcripts.parquet") && err.contains("not found"),
        "{err}"
    );
    let o = segger()
        .args(["evaluate", "--prediction"])
        .arg(raw.join("transcripts.parquet"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("transcripts.parquet") && err.contains("segger_cell_id"),
        "{err}"
    );
    // A file that is not parquet, and one cut short: bad input (2), naming the file.
    for (name, bytes) in [
        (
            "random.parquet",
            (0..3000u32)
                .map(|i| (i * 7919 % 251) as u8)
                .collect::<Vec<u8>>(),
        ),
        (
            "cut.parquet",
            std::fs::read(raw.join("transcripts.parquet")).unwrap()[..500].to_vec(),
        ),
    ] {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let o = segger()
            .args(["evaluate", "--prediction"])
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(name) && err.contains("not a readable parquet file"),
            "{err}"
        );
    }
    // The geometric rules alone, without a prediction.
    let out = d.path().join("rules.json");
    let o = segger()
        .args(["evaluate", "--json", "--baseline"])
        .arg(&raw)
        .arg("--truth")
        .arg(raw.join("ground_truth.parquet"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.get("segmentation").is_none());
    let nc = &v["baselines"]["nearest centroid"]["truth"];
    let only = &v["baselines"]["nucleus only"]["truth"];
    assert!(nc["correct_majority"].as_f64().unwrap() > 0.9, "{nc}");
    assert!(only["unassigned"].as_f64().unwrap() > 0.5, "{only}");
    // the sample's cell outlines are its true cells
    let outlines = &v["baselines"]["cell outlines"]["truth"];
    assert!(
        outlines["correct_majority"].as_f64().unwrap() > 0.99,
        "{outlines}"
    );
    assert!(out.is_file());
    // Neither a prediction nor the pair --baseline + --truth: a usage error.
    let o = segger()
        .args(["evaluate", "--baseline"])
        .arg(&raw)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--prediction"));
}
