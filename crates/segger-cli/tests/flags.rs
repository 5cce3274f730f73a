//! No command panics or aborts on a flag value or a path: every numeric flag of every command
//! at 0, −1, 10⁸, 10¹² and NaN, and a path that is not UTF-8, either runs (exit 0) or is
//! refused with exit 2 and a message that names the flag (docs/reliability.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const VALUES: [&str; 5] = ["0", "-1", "100000000", "1e12", "NaN"];

/// The numeric flags of each command.
const CREATE: &[&str] = &[
    "min_qv",
    "scale",
    "tile_size",
    "tile_width",
    "tile_height",
    "max_transcripts_per_tile",
    "margin",
    "k_tx",
    "dist_tx",
    "k_bd",
    "dist_bd",
    "neg_sampling_ratio",
    "val_prob",
    "test_prob",
    "seed",
    "threads",
];
const TRAIN: &[&str] = &[
    "batch_size_train",
    "batch_size_val",
    "num_tx_tokens",
    "init_emb",
    "hidden_channels",
    "out_channels",
    "heads",
    "mid_layers",
    "devices",
    "epochs",
    "learning_rate",
    "weight_decay",
    "gradient_clip_val",
    "seed",
    "num_workers",
];
const PREDICT: &[&str] = &[
    "k_bd",
    "dist_bd",
    "score_cut",
    "distance_scale",
    "expression_weight",
    "inner_reach",
    "reach",
    "lone_reach",
    "return_reach",
    "k_tx",
    "dist_tx",
    "min_transcripts",
    "cell_types",
    "join_neighbours",
    "border_rounds",
    "batch_size",
    "num_workers",
    "tile_size",
    "min_qv",
    "scale",
];
const SIMULATE: &[&str] = &[
    "cells",
    "seed",
    "genes",
    "cell_types",
    "transcripts_per_cell",
    "density",
    "nuclear_fraction",
    "noise_fraction",
    "control_fraction",
    "patchiness",
    "no_nucleus_fraction",
    "region_chain",
    "size_spread",
    "nucleus_offset",
    "merged_nuclei",
    "split_nuclei",
    "diffusion",
];
const IMPORT: &[&str] = &[
    "num_tx_tokens",
    "init_emb",
    "hidden_channels",
    "out_channels",
    "heads",
    "mid_layers",
];

/// Flag values that are valid but ask for a run of unbounded length: not tried.
const LONG: &[(&str, &str, &str)] = &[("train", "epochs", "100000000")];

struct Run {
    code: Option<i32>,
    stderr: String,
}

/// Runs the binary with a time limit.
fn segger(args: &[std::ffi::OsString]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_segger"))
        .args(args)
        .env("SEGGER_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{args:?} ran for more than 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(|a| a.into()).collect()
}

struct Fixture {
    root: PathBuf,
    raw: PathBuf,
    dataset: PathBuf,
    model: PathBuf,
    prediction: PathBuf,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small simulated sample, its dataset, a one-epoch model and a prediction.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("segger-flags-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let f = Fixture {
            raw: root.join("raw"),
            dataset: root.join("dataset"),
            model: root.join("model"),
            prediction: root.join("prediction"),
            root,
        };
        let (tr, va) = (f.dataset.join("train_tiles"), f.dataset.join("val_tiles"));
        for args in [
            vec![
                "simulate",
                "--out",
                s(&f.raw),
                "--cells",
                "80",
                "--seed",
                "4",
            ],
            vec![
                "create_dataset",
                "--platform",
                "xenium",
                "--input",
                s(&f.raw),
            ]
            .into_iter()
            .chain(["--output", s(&f.dataset)])
            .collect(),
            vec!["train", "--train_dir", s(&tr), "--val_dir", s(&va)]
                .into_iter()
                .chain(["--epochs", "1", "--accelerator", "cpu"])
                .chain(["--default_root_dir", s(&f.model)])
                .collect(),
            vec!["predict", "--model", s(&f.model), "--input", s(&f.dataset)]
                .into_iter()
                .chain(["--output", s(&f.prediction), "--accelerator", "cpu"])
                .collect(),
        ] {
            let r = segger(&os(&args));
            assert_eq!(r.code, Some(0), "{args:?}: {}", r.stderr);
        }
        f
    })
}

/// A fresh output path under the fixture's root.
fn fresh(f: &Fixture) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    f.root
        .join(format!("out{}", N.fetch_add(1, Ordering::Relaxed)))
}

/// The command line of `cmd` with `out` as its output and the fixture as its input.
fn base(cmd: &str, f: &Fixture, out: &Path) -> Vec<String> {
    let tr = f.dataset.join("train_tiles");
    let va = f.dataset.join("val_tiles");
    let v: Vec<&str> = match cmd {
        "create_dataset" => vec!["--platform", "xenium", "--input", s(&f.raw)]
            .into_iter()
            .chain(["--output", s(out)])
            .collect(),
        "train" => vec!["--train_dir", s(&tr), "--val_dir", s(&va)]
            .into_iter()
            .chain(["--epochs", "1", "--accelerator", "cpu"])
            .chain(["--default_root_dir", s(out)])
            .collect(),
        "predict" => vec!["--model", s(&f.model), "--input", s(&f.dataset)]
            .into_iter()
            .chain(["--output", s(out), "--accelerator", "cpu"])
            .collect(),
        "simulate" => vec!["--out", s(out), "--cells", "60"],
        "import_checkpoint" => vec!["--ckpt", "/nonexistent.ckpt", "--output", s(out)],
        _ => unreachable!(),
    };
    std::iter::once(cmd).chain(v).map(String::from).collect()
}

/// Exit 0, or exit 2 naming the flag; never a panic, an abort or another code.
fn check(args: &[String], flag: &str, r: &Run) {
    let err = &r.stderr;
    assert!(
        !err.contains("panicked") && !err.contains("memory allocation"),
        "{args:?}: {err}"
    );
    match r.code {
        Some(0) => {}
        Some(2) => assert!(err.contains(flag), "{args:?}: {flag} not named: {err}"),
        c => panic!("{args:?}: exit {c:?}: {err}"),
    }
}

fn sweep(cmd: &str, flags: &[&str]) {
    let f = fixture();
    for flag in flags {
        for v in VALUES {
            if LONG.contains(&(cmd, flag, v)) {
                continue;
            }
            let out = fresh(f);
            let mut args = base(cmd, f, &out);
            args.push(format!("--{flag}={v}"));
            let r = segger(&args.iter().map(Into::into).collect::<Vec<_>>());
            // import_checkpoint reads no checkpoint here: a valid value gets as far as the
            // missing file, which the message names.
            let missing_ckpt = cmd == "import_checkpoint"
                && r.code == Some(2)
                && r.stderr.contains("/nonexistent.ckpt");
            if !missing_ckpt {
                check(&args, &format!("--{flag}"), &r);
            }
            let _ = std::fs::remove_dir_all(&out);
        }
    }
}

#[test]
fn create_dataset_flags() {
    sweep("create_dataset", CREATE);
}

#[test]
fn train_flags() {
    sweep("train", TRAIN);
}

#[test]
fn predict_flags() {
    sweep("predict", PREDICT);
}

#[test]
fn simulate_flags() {
    sweep("simulate", SIMULATE);
}

#[test]
fn import_checkpoint_flags() {
    sweep("import_checkpoint", IMPORT);
}

#[test]
fn evaluate_flags() {
    let f = fixture();
    for v in VALUES {
        let args: Vec<String> = [
            "evaluate",
            "--prediction",
            s(&f.prediction),
            "--truth",
            s(&f.raw.join("ground_truth.parquet")),
        ]
        .into_iter()
        .map(String::from)
        .chain([format!("--min_qv={v}")])
        .collect();
        let r = segger(&args.iter().map(Into::into).collect::<Vec<_>>());
        check(&args, "--min_qv", &r);
    }
}

/// Every enum-valued flag of every command refuses a value outside its list with clap's
/// usage error: exit 2, a message naming the flag, the value and the values it takes, and
/// nothing written.
#[test]
fn enum_flags_refuse_unknown_values() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("segger-enum-flags-{}", std::process::id()));
    let (inp, out) = (root.join("in"), root.join("out"));
    let (inp, out) = (s(&inp), s(&out));
    let train = ["train", "--train_dir", inp, "--val_dir", inp];
    let train = [&train[..], &["--default_root_dir", out]].concat();
    let predict = ["predict", "--model", inp, "--input", inp, "--output", out];
    let create = ["create_dataset", "--input", inp, "--output", out];
    let create_xenium = [&create[..], &["--platform", "xenium"]].concat();
    let demo = ["demo", "--out", out];
    let simulate = ["simulate", "--out", out];
    let cases: Vec<(&[&str], &str, &str)> = vec![
        (&create, "platform", "xenium, merscope, cosmx"),
        (&create_xenium, "boundaries", "nucleus, cell"),
        (&create_xenium, "negatives", "competing, random"),
        (&train, "aggr", "sum, mean, max"),
        (&train, "architecture", "bidirectional, reference"),
        (&train, "accelerator", "cpu, wgpu, cuda, auto"),
        (&train, "strategy", "auto, ddp"),
        (&train, "precision", "32, 16-mixed, bf16-mixed"),
        (&train, "float32_matmul_precision", "highest, high"),
        (&predict, "accelerator", "cpu, wgpu, cuda, auto"),
        (&predict, "float32_matmul_precision", "highest, high"),
        (&predict, "platform", "xenium, merscope, cosmx"),
        (&predict, "duplicate_ids", "error, merge"),
        (&demo, "accelerator", "cpu, wgpu, cuda, auto"),
        (&demo, "preset", "easy, hard"),
        (&simulate, "preset", "easy, hard"),
    ];
    for (base, flag, values) in cases {
        let mut args = os(base);
        args.push(format!("--{flag}=bogus").into());
        let r = segger(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        for needle in [
            format!("invalid value 'bogus' for '--{flag} <"),
            format!("[possible values: {values}]"),
        ] {
            assert!(
                r.stderr.contains(&needle),
                "{args:?}: no {needle:?} in {}",
                r.stderr
            );
        }
        assert!(!root.exists(), "{args:?} wrote {}", root.display());
    }
}

/// A path that is not UTF-8, as output or as input of every command: it works or is refused
/// with exit 2, never a panic.
#[cfg(unix)]
#[test]
fn non_utf8_paths() {
    use std::os::unix::ffi::OsStrExt;
    let f = fixture();
    let odd = f.root.join(std::ffi::OsStr::from_bytes(b"odd\xff"));
    let odd_s = odd.as_os_str().to_owned();
    // `base` with its argument at `at` replaced by the odd path.
    let with = |cmd: &str, at: usize| -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = base(cmd, f, Path::new("x"))
            .into_iter()
            .map(Into::into)
            .collect();
        a[at] = odd_s.clone();
        a
    };
    let cases: Vec<(&str, Vec<std::ffi::OsString>)> = vec![
        ("train --default_root_dir", with("train", 10)),
        ("predict --output", with("predict", 6)),
        ("create_dataset --input", with("create_dataset", 4)),
        ("create_dataset --output", with("create_dataset", 6)),
        ("simulate", {
            let mut a: Vec<std::ffi::OsString> = os(&["simulate", "--cells", "60", "--out"]);
            a.push(odd_s.clone());
            a
        }),
        ("inspect", vec!["inspect".into(), odd_s.clone()]),
        ("evaluate", {
            let mut a = os(&[
                "evaluate",
                "--truth",
                "/nonexistent.parquet",
                "--prediction",
            ]);
            a.push(odd_s.clone());
            a
        }),
    ];
    for (what, args) in cases {
        let r = segger(&args);
        assert!(
            !r.stderr.contains("panicked"),
            "{what}: {args:?}: {}",
            r.stderr
        );
        assert!(
            matches!(r.code, Some(0) | Some(2)),
            "{what}: {args:?}: exit {:?}: {}",
            r.code,
            r.stderr
        );
        let _ = std::fs::remove_dir_all(&odd);
    }
}
