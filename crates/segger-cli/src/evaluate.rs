//! `segger evaluate --prediction DIR [--truth FILE] [--gene_pairs FILE] [--baseline RAW_DIR]`.

use std::path::PathBuf;

use clap::Args;
use segger_sim::evaluate::{
    evaluate, nucleus_baseline, read_gene_pairs, read_prediction, read_truth, Evaluation,
};

use crate::simulate::to_cli;
use crate::CliError;

/// Arguments of `segger evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Prediction directory (holds segger_transcripts.parquet) or the parquet file itself.
    #[arg(long)]
    pub prediction: PathBuf,
    /// Ground truth (ground_truth.parquet: transcript_id, true_cell_id, true_cell_type).
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Mutually exclusive gene pairs for MECR, one `gene1,gene2` per line (default with
    /// --truth: derived from the truth).
    #[arg(long = "gene_pairs", alias = "gene-pairs")]
    pub gene_pairs: Option<PathBuf>,
    /// Raw Xenium sample directory: also evaluate the nucleus-only baseline on the same
    /// transcripts.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
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
        print!("{name:>16}");
    }
    println!();
    let row = |label: &str, f: &dyn Fn(&Evaluation) -> String| {
        print!("{label:<30}");
        for (_, e) in cols {
            print!("{:>16}", f(e));
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

/// Runs `segger evaluate`.
pub fn run(a: EvaluateArgs) -> Result<(), CliError> {
    let pred = read_prediction(&a.prediction).map_err(to_cli)?;
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
    let e = evaluate(&pred, truth.as_ref(), pairs_arg);
    let base = match &a.baseline {
        Some(raw) => {
            let b = nucleus_baseline(&raw.join("transcripts.parquet"), &pred).map_err(to_cli)?;
            Some(evaluate(&b, truth.as_ref(), pairs_arg))
        }
        None => None,
    };
    let out = a.output.clone().unwrap_or_else(|| {
        if a.prediction.is_dir() {
            a.prediction.join("evaluation.json")
        } else {
            a.prediction.parent().map_or_else(
                || PathBuf::from("evaluation.json"),
                |p| p.join("evaluation.json"),
            )
        }
    });
    let json = match &base {
        Some(b) => serde_json::json!({ "segmentation": e, "nucleus_baseline": b }),
        None => serde_json::to_value(&e).map_err(CliError::runtime)?,
    };
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json).map_err(CliError::runtime)?,
    )
    .map_err(|err| CliError::runtime(anyhow::anyhow!("{}: {err}", out.display())))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json).map_err(CliError::runtime)?
        );
    } else {
        match &base {
            Some(b) => print_table(&[("segmentation", &e), ("nucleus only", b)]),
            None => print_table(&[("segmentation", &e)]),
        }
        println!("written       {}", out.display());
    }
    Ok(())
}
