//! `segger demo [--out DIR]`: simulate a small tissue, build the dataset, train a few epochs,
//! predict, evaluate against the truth next to the nucleus-only baseline, and draw the result.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use segger_data::create::{create_dataset, CreateOptions};
use segger_data::raw::{Platform, RawOptions};
use segger_model::SeggerConfig;
use segger_predict::{predict, PredictConfig};
use segger_sim::baselines::standard_baselines;
use segger_sim::evaluate::{evaluate, read_prediction, read_truth, Evaluation};
use segger_sim::picture::draw_titled_segmentation;
use segger_sim::simulate::{simulate, SimConfig};
use segger_train::{Accelerator, TrainConfig};

use crate::evaluate::{evaluate_all, print_table, report_json};
use crate::simulate::{to_cli, PresetArg};
use crate::values::AcceleratorArg;
use crate::CliError;

/// The sub-directories the demo writes (and replaces on a rerun).
const PARTS: [&str; 4] = ["raw", "dataset", "model", "prediction"];

/// Arguments of `segger demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output directory: raw/, dataset/, model/, prediction/, evaluation.json, segmentation.png.
    #[arg(long, default_value = "segger-demo")]
    pub out: PathBuf,
    /// Approximate number of transcripts to simulate.
    #[arg(long, default_value_t = 50_000)]
    pub transcripts: usize,
    /// Training epochs.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Minimum score of an assignment (default: `segger predict`'s, the cut the training run
    /// picked on validation data).
    #[arg(long = "score_cut", alias = "score-cut")]
    pub score_cut: Option<f32>,
    /// Seed of the simulation and the training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The simulated tissue (`segger simulate --preset`): `hard` has cells without a nucleus
    /// in the section, large and elongated cells, off-centre, merged and split nuclei.
    #[arg(long, value_enum, default_value = "hard")]
    pub preset: PresetArg,
    /// Backend: cpu, wgpu, cuda or auto.
    #[arg(long, value_enum, ignore_case = true, default_value = "cpu")]
    pub accelerator: AcceleratorArg,
}

fn step(n: usize, what: &str) {
    eprintln!("\n[{n}/5] {what}");
}

fn remove_previous(out: &Path) -> Result<(), CliError> {
    for p in PARTS {
        let d = out.join(p);
        if d.exists() {
            std::fs::remove_dir_all(&d).map_err(|e| {
                CliError::runtime(anyhow::anyhow!("{}: cannot remove: {e}", d.display()))
            })?;
        }
    }
    Ok(())
}

/// Runs `segger demo`.
pub fn run(a: DemoArgs) -> Result<(), CliError> {
    let t0 = Instant::now();
    let accelerator: Accelerator = a.accelerator.into();
    std::fs::create_dir_all(&a.out).map_err(|e| {
        CliError::runtime(anyhow::anyhow!("{}: cannot create: {e}", a.out.display()))
    })?;
    remove_previous(&a.out)?;
    let raw = a.out.join("raw");
    let dataset = a.out.join("dataset");
    let model = a.out.join("model");
    let prediction = a.out.join("prediction");

    step(1, "simulate a tissue with a known truth");
    let mut sim = SimConfig::preset(a.preset.into(), 0, a.seed);
    sim.cells = sim.cells_for_transcripts(a.transcripts);
    let s = simulate(&sim, &raw, false).map_err(to_cli)?;
    crate::simulate::print_summary(&s);

    step(
        2,
        "build the tile dataset (create_dataset --platform xenium)",
    );
    let mut opts = CreateOptions::new(
        raw.clone(),
        dataset.clone(),
        RawOptions::new(Platform::Xenium),
    );
    opts.val_prob = 0.15;
    opts.test_prob = 0.0;
    opts.seed = a.seed;
    let ds = create_dataset(&opts, &|_| {}).map_err(|e| CliError::runtime(anyhow::anyhow!(e)))?;
    println!(
        "dataset       {} genes, tiles: train {}  val {}, {} positives",
        ds.genes, ds.tiles.train, ds.tiles.val, ds.positives
    );

    train_model(&a, &dataset, ds.genes, &model, accelerator)?;

    step(4, "predict: assign every transcript to a cell");
    let mut pc = PredictConfig::new(model.clone(), dataset.clone(), prediction.clone());
    pc.accelerator = accelerator;
    pc.overwrite = true;
    pc.score_cut = a.score_cut;
    let ps = predict(&pc).map_err(|e| CliError {
        code: e.exit_code(),
        error: anyhow::anyhow!(e),
    })?;
    println!(
        "prediction    {} transcripts, {:.1} % assigned, {} cells",
        ps.transcripts, ps.assigned_percent, ps.cells
    );

    evaluate_step(&a.out, &raw, &prediction)?;
    println!("total         {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Step 3 of the demo: trains the bidirectional model on `dataset` into `model`.
fn train_model(
    a: &DemoArgs,
    dataset: &Path,
    genes: usize,
    model: &Path,
    accelerator: Accelerator,
) -> Result<(), CliError> {
    step(3, "train the model");
    let train_dir = dataset.join("train_tiles");
    // Without a validation split (dataset.json counts none), training validates on the
    // training tiles, as `segger train` does.
    let val_dir = dataset.join("val_tiles");
    let cfg = TrainConfig {
        accelerator,
        epochs: a.epochs,
        seed: a.seed,
        ..TrainConfig::new(
            train_dir,
            val_dir,
            model.to_path_buf(),
            SeggerConfig::new(genes.max(1)).bidirectional(),
        )
    };
    let tr = segger_train::run::train(&cfg).map_err(|e| CliError {
        code: e.exit_code(),
        error: anyhow::anyhow!(e),
    })?;
    if let Some(r) = tr.rows.last() {
        println!(
            "model         {} epochs in {:.1} s; last validation loss {:.4}, AUROC {:.3}",
            tr.rows.len(),
            tr.wall_seconds,
            r.validation_loss,
            r.validation_auroc
        );
    }

    Ok(())
}

/// Step 5 of the demo: evaluates the prediction and the geometric rules against the truth,
/// writes `evaluation.json` and `segmentation.png` into `out` and prints the table.
fn evaluate_step(out: &Path, raw: &Path, prediction: &Path) -> Result<(), CliError> {
    step(
        5,
        "evaluate against the truth, next to the nucleus-only baseline",
    );
    let pred = read_prediction(prediction).map_err(to_cli)?;
    let truth = read_truth(&raw.join("ground_truth.parquet")).map_err(to_cli)?;
    let e = evaluate(&pred, Some(&truth), None);
    let base_assignments = standard_baselines(raw, &pred).map_err(to_cli)?;
    let bases = evaluate_all(&base_assignments, Some(&truth), None);
    let json = report_json(Some(&e), &bases);
    // The picture's left panel: the nucleus-only rule (the first standard rule).
    let base = &base_assignments[0].1;
    let b = &bases[0].1;
    let eval_path = out.join("evaluation.json");
    std::fs::write(
        &eval_path,
        serde_json::to_string_pretty(&json).map_err(CliError::runtime)?,
    )
    .map_err(|err| CliError::runtime(anyhow::anyhow!("{}: {err}", eval_path.display())))?;
    let png = out.join("segmentation.png");
    let title = |name: &str, e: &Evaluation| match &e.truth {
        Some(t) => format!(
            "{name}: {:.1} % correct, {:.1} % wrong",
            100.0 * t.correct_majority,
            100.0 * t.wrong_majority
        ),
        None => name.to_string(),
    };
    let (left, right) = (title("nucleus only", b), title("Segger", &e));
    draw_titled_segmentation(&png, raw, &[(&left, base), (&right, &pred)], 100.0)
        .map_err(to_cli)?;

    println!();
    let mut cols: Vec<(&str, &Evaluation)> = vec![("segger", &e)];
    cols.extend(bases.iter().map(|(n, e)| (n.as_str(), e)));
    print_table(&cols);
    if let (Some(m), Some(n)) = (&e.truth, &b.truth) {
        println!(
            "\nSegger puts {:.1} % of the transcripts in their true cell and {:.1} % in a wrong one \
             (majority-matched); nuclei alone {:.1} % and {:.1} %.",
            100.0 * m.correct_majority,
            100.0 * m.wrong_majority,
            100.0 * n.correct_majority,
            100.0 * n.wrong_majority
        );
        let best = bases
            .iter()
            .filter_map(|(name, e)| e.truth.as_ref().map(|t| (name, t)))
            .max_by(|a, b| a.1.correct_majority.total_cmp(&b.1.correct_majority));
        if let Some((name, t)) = best {
            println!(
                "The best geometric rule here, {name}, gives {:.1} % and {:.1} %.",
                100.0 * t.correct_majority,
                100.0 * t.wrong_majority
            );
        }
    }
    println!(
        "picture       {} (left: nucleus only, right: Segger)",
        png.display()
    );
    println!("evaluation    {}", eval_path.display());
    Ok(())
}
