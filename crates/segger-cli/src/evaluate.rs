//! `segger evaluate --prediction DIR [--truth FILE] [--gene_pairs FILE] [--baseline RAW_DIR]`.

use std::path::PathBuf;

use clap::Args;
use segger_sim::baselines::{cell_outlines, judged_transcripts, standard_baselines};
use segger_sim::evaluate::{
    evaluate, read_gene_pairs, read_prediction, read_truth, Assignments, Evaluation, Truth,
};

use crate::simulate::to_cli;
use crate::CliError;

/// Arguments of `segger evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Prediction directory (holds segger_transcripts.parquet) or the parquet file itself.
    /// Without it, `--baseline` and `--truth` evaluate the geometric rules alone, on the raw
    /// transcripts with qv ≥ `--min_qv`.
    #[arg(long)]
    pub prediction: Option<PathBuf>,
    /// Ground truth (ground_truth.parquet: transcript_id, true_cell_id, true_cell_type).
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Mutually exclusive gene pairs for MECR, one `gene1,gene2` per line (default with
    /// --truth: derived from the truth).
    #[arg(long = "gene_pairs", alias = "gene-pairs")]
    pub gene_pairs: Option<PathBuf>,
    /// Raw Xenium-schema sample directory: also evaluate the geometric baselines on the same
    /// transcripts (nucleus only; nuclei expanded by 5 and 15 µm; nearest nucleus centroid;
    /// expansion by 3 µm, then the rest linked within 1.5 µm into components of ≥ 10) and,
    /// when it has cell_boundaries.parquet, the cell outlines (each transcript in the polygon
    /// that holds it: the truth's geometry on a simulated sample, the instrument's own cells
    /// on an export).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Without `--prediction`: the lowest quality value of the judged transcripts.
    #[arg(long = "min_qv", alias = "min-qv", default_value_t = 20.0)]
    pub min_qv: f64,
    /// Where to write evaluation.json (default: in the prediction directory).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn fmt(v: f64, pct: bool) -> String {
    if v.is_nan() {
        "-".into()
    } else if pct {
        format!("{:.1} %", 100.0 * v)
    } else {
        format!("{v:.3}")
    }
}

/// Prints one or more evaluations as a table with one column each.
pub fn print_table(cols: &[(&str, &Evaluation)]) {
    print!("{:<30}", "");
    for (name, _) in cols {
        print!("{name:>17}");
    }
    println!();
    let row = |label: &str, f: &dyn Fn(&Evaluation) -> String| {
        print!("{label:<30}");
        for (_, e) in cols {
            print!("{:>17}", f(e));
        }
        println!();
    };
    row("transcripts", &|e| e.transcripts.to_string());
    row("cells", &|e| e.cells.to_string());
    row("assigned", &|e| fmt(e.assigned_fraction, true));
    if cols.iter().any(|(_, e)| e.truth.is_some()) {
        let t = |f: fn(&segger_sim::evaluate::TruthMetrics) -> f64, pct: bool| {
            move |e: &Evaluation| e.truth.as_ref().map_or("-".into(), |m| fmt(f(m), pct))
        };
        row("true cell (correct)", &t(|m| m.correct, true));
        row("another cell (wrong)", &t(|m| m.wrong, true));
        row("unassigned", &t(|m| m.unassigned, true));
        row(
            "correct (majority-matched)",
            &t(|m| m.correct_majority, true),
        );
        row("wrong (majority-matched)", &t(|m| m.wrong_majority, true));
        row("purity (median)", &t(|m| m.purity_median, false));
        row(
            "completeness (median)",
            &t(|m| m.completeness_median, false),
        );
        row("ARI (assigned)", &t(|m| m.ari, false));
        row("background assigned", &t(|m| m.background_assigned, true));
    }
    row("MECR", &|e| {
        e.mecr.as_ref().map_or("-".into(), |m| fmt(m.value, false))
    });
    if let Some((_, e)) = cols.iter().find(|(_, e)| e.mecr.is_some()) {
        if let Some(m) = &e.mecr {
            println!(
                "  MECR: mean over {} mutually exclusive gene pairs (from {}){}",
                m.pairs,
                m.pairs_source,
                m.truth_value
                    .map_or(String::new(), |v| format!("; true cells: {v:.3}"))
            );
        }
    }
    if let Some((_, e)) = cols.first() {
        if let Some(m) = &e.truth {
            println!(
                "  over {} transcripts with a true cell; {} background; {} true-cell transcripts not in the prediction (filtered); {} rows not in the truth",
                m.evaluated, m.background, m.missing_from_prediction, m.not_in_truth
            );
        }
    }
}

/// Evaluates named segmentations (the geometric baselines), keeping their names.
pub fn evaluate_all(
    segmentations: &[(String, Assignments)],
    truth: Option<&Truth>,
    pairs: Option<(&[(String, String)], &str)>,
) -> Vec<(String, Evaluation)> {
    segmentations
        .iter()
        .map(|(name, a)| (name.clone(), evaluate(a, truth, pairs)))
        .collect()
}

/// The JSON report: the segmentation (when there is one) and each baseline by name.
pub fn report_json(
    seg: Option<&Evaluation>,
    baselines: &[(String, Evaluation)],
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    if let Some(e) = seg {
        m.insert("segmentation".into(), serde_json::json!(e));
    }
    if !baselines.is_empty() {
        let b: serde_json::Map<String, serde_json::Value> = baselines
            .iter()
            .map(|(n, e)| (n.clone(), serde_json::json!(e)))
            .collect();
        m.insert("baselines".into(), serde_json::Value::Object(b));
    }
    serde_json::Value::Object(m)
}

/// Runs `segger evaluate`.
pub fn run(a: EvaluateArgs) -> Result<(), CliError> {
    if !a.min_qv.is_finite() {
        return Err(CliError::input(anyhow::anyhow!(
            "--min_qv must be a finite number, got {}",
            a.min_qv
        )));
    }
    let truth = match &a.truth {
        Some(p) => Some(read_truth(p).map_err(to_cli)?),
        None => None,
    };
    let pairs = match &a.gene_pairs {
        Some(p) => Some(read_gene_pairs(p).map_err(to_cli)?),
        None => None,
    };
    let name = a
        .gene_pairs
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let pairs_arg = pairs.as_deref().map(|p| (p, name.as_str()));
    let pred = match (&a.prediction, &a.baseline) {
        (Some(p), _) => Some(read_prediction(p).map_err(to_cli)?),
        (None, Some(_)) if a.truth.is_some() => None,
        _ => {
            return Err(CliError::input(anyhow::anyhow!(
                "--prediction is required unless --baseline and --truth are both given"
            )))
        }
    };
    let e = pred
        .as_ref()
        .map(|p| evaluate(p, truth.as_ref(), pairs_arg));
    let base = match &a.baseline {
        Some(raw) => {
            let like = match &pred {
                Some(p) => p.clone(),
                None => judged_transcripts(raw, a.min_qv).map_err(to_cli)?,
            };
            let mut rules = standard_baselines(raw, &like).map_err(to_cli)?;
            rules.extend(cell_outlines(raw, &like).map_err(to_cli)?);
            evaluate_all(&rules, truth.as_ref(), pairs_arg)
        }
        None => Vec::new(),
    };
    let out = a.output.clone().unwrap_or_else(|| match &a.prediction {
        Some(p) if p.is_dir() => p.join("evaluation.json"),
        Some(p) => p.parent().map_or_else(
            || PathBuf::from("evaluation.json"),
            |p| p.join("evaluation.json"),
        ),
        None => PathBuf::from("evaluation.json"),
    });
    let json = report_json(e.as_ref(), &base);
    let text = serde_json::to_string_pretty(&json).map_err(CliError::runtime)?;
    std::fs::write(&out, &text)
        .map_err(|err| CliError::runtime(anyhow::anyhow!("{}: {err}", out.display())))?;
    if a.json {
        println!("{text}");
    } else {
        let mut cols: Vec<(&str, &Evaluation)> = Vec::new();
        if let Some(e) = &e {
            cols.push(("segmentation", e));
        }
        cols.extend(base.iter().map(|(n, e)| (n.as_str(), e)));
        print_table(&cols);
        println!("written       {}", out.display());
    }
    Ok(())
}
