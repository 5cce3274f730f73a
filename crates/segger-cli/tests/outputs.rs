//! No command destroys user data: an output that is, contains or lies inside an input is
//! refused with or without `--overwrite`; a non-empty folder that is not the command's own
//! earlier output is never replaced; the inputs are byte-identical afterwards (docs/reliability.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn segger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segger"))
        .args(args)
        .env("SEGGER_LOG", "error")
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Asserts a refusal: exit code 2, a message naming `flag` and containing `what`.
fn refused(o: &Output, flag: &str, what: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(flag), "{flag} not named: {err}");
    assert!(err.contains(what), "{what:?} not in: {err}");
}

/// `segger create_dataset` of a Xenium sample.
fn create(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["create_dataset", "--platform", "xenium"];
    args.extend(["--input", s(input), "--output", s(output)]);
    args.extend_from_slice(extra);
    segger(&args)
}

/// `segger train` for one epoch on the CPU.
fn train(dataset: &Path, root: &Path) -> Output {
    let (tr, va) = (dataset.join("train_tiles"), dataset.join("val_tiles"));
    let mut args = vec!["train", "--train_dir", s(&tr), "--val_dir", s(&va)];
    args.extend(["--epochs", "1", "--accelerator", "cpu"]);
    args.extend(["--default_root_dir", s(root)]);
    segger(&args)
}

/// `segger predict` on the CPU.
fn predict(model: &Path, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["predict", "--accelerator", "cpu", "--model", s(model)];
    args.extend(["--input", s(input), "--output", s(output)]);
    args.extend_from_slice(extra);
    segger(&args)
}

/// `segger simulate` of 100 cells.
fn simulate(out: &Path, seed: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "simulate",
        "--out",
        s(out),
        "--cells",
        "100",
        "--seed",
        seed,
    ];
    args.extend_from_slice(extra);
    segger(&args)
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", stderr(o));
}

struct Fixture {
    root: PathBuf,
    raw: PathBuf,
    dataset: PathBuf,
    model: PathBuf,
}

/// A simulated sample, its dataset and a model trained for one epoch, made once.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("segger-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let raw = root.join("raw");
        let dataset = root.join("dataset");
        let model = root.join("model");
        ok(&segger(&[
            "simulate",
            "--out",
            s(&raw),
            "--cells",
            "150",
            "--seed",
            "3",
        ]));
        ok(&create(&raw, &dataset, &[]));
        ok(&train(&dataset, &model));
        Fixture {
            root,
            raw,
            dataset,
            model,
        }
    })
}

#[test]
fn create_dataset_never_writes_over_its_input() {
    let f = fixture();
    let before = snapshot(&f.raw);
    for (out, what) in [
        (f.raw.clone(), "same folder as --input"),
        (f.root.clone(), "contains --input"),
        (f.raw.join("dataset"), "lies inside --input"),
    ] {
        for extra in [&[][..], &["--overwrite"][..]] {
            refused(&create(&f.raw, &out, extra), "--output", what);
            assert_eq!(snapshot(&f.raw), before, "the raw sample changed");
        }
    }
}

#[test]
fn create_dataset_replaces_only_an_earlier_dataset() {
    let f = fixture();
    let d = f.root.join("cd");
    // A folder of the user's: refused, even with --overwrite; nothing touched.
    let user = d.join("user");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("notes.txt"), b"mine").unwrap();
    let o = create(&f.raw, &user, &["--overwrite"]);
    refused(
        &o,
        "--output",
        "not an earlier `segger create_dataset` output",
    );
    assert_eq!(std::fs::read(user.join("notes.txt")).unwrap(), b"mine");
    // An empty folder is written.
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    ok(&create(&f.raw, &empty, &[]));
    assert!(empty.join("dataset.json").is_file());
    // The earlier dataset: refused without --overwrite, replaced with it.
    refused(&create(&f.raw, &empty, &[]), "--output", "--overwrite");
    ok(&create(&f.raw, &empty, &["--overwrite"]));
    // A file of the user's inside an earlier dataset: the folder is not replaced.
    std::fs::write(empty.join("notes.txt"), b"mine").unwrap();
    let before = snapshot(&empty);
    refused(
        &create(&f.raw, &empty, &["--overwrite"]),
        "--output",
        "notes.txt",
    );
    assert_eq!(snapshot(&empty), before);
}

#[test]
fn predict_never_writes_over_the_model_or_the_input() {
    let f = fixture();
    let model_before = snapshot(&f.model);
    let data_before = snapshot(&f.dataset);
    for (out, what) in [
        (f.model.clone(), "same folder as --model"),
        (f.dataset.clone(), "same folder as --input"),
        (f.model.join("pred"), "lies inside --model"),
        (f.dataset.join("pred"), "lies inside --input"),
        (f.root.clone(), "contains --model"),
    ] {
        let o = predict(&f.model, &f.dataset, &out, &["--overwrite"]);
        refused(&o, "--output", what);
    }
    assert_eq!(snapshot(&f.model), model_before, "the model changed");
    assert_eq!(snapshot(&f.dataset), data_before, "the dataset changed");
    // Predicting from the raw sample into the raw sample: refused too.
    let raw_before = snapshot(&f.raw);
    let o = predict(&f.model, &f.raw, &f.raw.join("pred"), &[]);
    refused(&o, "--output", "lies inside --input");
    assert_eq!(snapshot(&f.raw), raw_before);
}

#[test]
fn predict_replaces_only_an_earlier_prediction() {
    let f = fixture();
    let out = f.root.join("pred");
    ok(&predict(&f.model, &f.dataset, &out, &[]));
    refused(
        &predict(&f.model, &f.dataset, &out, &[]),
        "--output",
        "--overwrite",
    );
    ok(&predict(&f.model, &f.dataset, &out, &["--overwrite"]));
    // A user's folder with a file of the same name as an output: never replaced.
    let user = f.root.join("user-pred");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("segger_transcripts.parquet"), b"mine").unwrap();
    let o = predict(&f.model, &f.dataset, &user, &["--overwrite"]);
    refused(&o, "--output", "segmentation_log.json");
    let kept = std::fs::read(user.join("segger_transcripts.parquet")).unwrap();
    assert_eq!(kept, b"mine");
}

#[test]
fn simulate_never_replaces_a_real_sample() {
    let f = fixture();
    let d = f.root.join("sim");
    // A "real" sample: a Xenium-like folder without ground_truth.parquet.
    let real = d.join("real");
    std::fs::create_dir_all(&real).unwrap();
    let tx = "transcripts.parquet";
    std::fs::copy(f.raw.join(tx), real.join(tx)).unwrap();
    let before = snapshot(&real);
    for extra in [&[][..], &["--overwrite"][..]] {
        refused(
            &simulate(&real, "1", extra),
            "--out",
            "ground_truth.parquet",
        );
        assert_eq!(snapshot(&real), before, "the real sample changed");
    }
    // An earlier simulation: refused without --overwrite, replaced with it.
    let sim = d.join("earlier");
    ok(&simulate(&sim, "1", &[]));
    let first = snapshot(&sim);
    refused(&simulate(&sim, "2", &[]), "--out", "--overwrite");
    assert_eq!(snapshot(&sim), first);
    ok(&simulate(&sim, "2", &["--overwrite"]));
    assert_ne!(snapshot(&sim), first);
}

#[test]
fn import_checkpoint_never_writes_into_a_run() {
    let f = fixture();
    let before = snapshot(&f.model);
    let ckpt = f.root.join("any.ckpt");
    std::fs::write(&ckpt, b"not read: the output is checked first").unwrap();
    for extra in [&[][..], &["--overwrite"][..]] {
        let mut args = vec!["import_checkpoint", "--ckpt", s(&ckpt)];
        args.extend(["--output", s(&f.model)]);
        args.extend_from_slice(extra);
        refused(&segger(&args), "--output", "does not write");
        assert_eq!(snapshot(&f.model), before, "the run changed");
    }
}

#[test]
fn train_never_writes_into_a_folder_of_the_user() {
    let f = fixture();
    let user = f.root.join("user-train");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("config.json"), b"{\"mine\": true}").unwrap();
    let before = snapshot(&user);
    let o = train(&f.dataset, &user);
    refused(&o, "--default_root_dir", "not empty and holds no run");
    assert_eq!(snapshot(&user), before);
    // Inside the training tiles: refused before anything is written.
    let data_before = snapshot(&f.dataset);
    let o = train(&f.dataset, &f.dataset.join("train_tiles").join("run"));
    refused(&o, "--default_root_dir", "lies inside --train_dir");
    assert_eq!(snapshot(&f.dataset), data_before);
}

#[test]
fn each_error_cause_is_printed_once() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("never-written");
    let ckpt_args = ["--ckpt", "/nonexistent/last.ckpt", "--output", s(&out)];
    for args in [
        vec!["inspect", "/nonexistent/tile.safetensors"],
        [&["import_checkpoint"][..], &ckpt_args[..]].concat(),
    ] {
        let o = segger(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        let n = err.matches("No such file or directory").count();
        assert_eq!(n, 1, "{args:?}: {err}");
        assert!(err.contains("/nonexistent/"), "{err}");
    }
    assert!(!out.exists());
}
