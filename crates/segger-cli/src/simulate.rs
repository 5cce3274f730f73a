//! `segger simulate --out DIR --cells N --seed S [--genes G --cell_types T ...]`.

use std::path::PathBuf;

use clap::Args;
use segger_sim::simulate::{simulate, SimConfig, SimSummary};
use segger_sim::SimError;

use crate::CliError;

/// Arguments of `segger simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Output directory (created; its files are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of cells (rounded to a full lattice).
    #[arg(long, default_value_t = 1000)]
    pub cells: usize,
    /// Seed: the same seed writes the same files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of genes.
    #[arg(long, default_value_t = 100)]
    pub genes: usize,
    /// Number of cell types.
    #[arg(long = "cell_types", alias = "cell-types", default_value_t = 5)]
    pub cell_types: usize,
    /// Mean transcripts per cell.
    #[arg(
        long = "transcripts_per_cell",
        alias = "transcripts-per-cell",
        default_value_t = 60.0
    )]
    pub transcripts_per_cell: f64,
    /// Transcripts per µm² (background and control probes included).
    #[arg(long, default_value_t = 0.4)]
    pub density: f64,
    /// Fraction of a cell's transcripts inside its nucleus.
    #[arg(
        long = "nuclear_fraction",
        alias = "nuclear-fraction",
        default_value_t = 0.35
    )]
    pub nuclear_fraction: f64,
    /// Background transcripts (no cell) as a fraction of all.
    #[arg(
        long = "noise_fraction",
        alias = "noise-fraction",
        default_value_t = 0.05
    )]
    pub noise_fraction: f64,
    /// Control probes (low qv) as a fraction of all.
    #[arg(
        long = "control_fraction",
        alias = "control-fraction",
        default_value_t = 0.02
    )]
    pub control_fraction: f64,
    /// Probability that a cell takes its tissue patch's type (else a random type).
    #[arg(long, default_value_t = 0.2)]
    pub patchiness: f64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Maps a library error to an exit code: bad parameters and input are 2, I/O failures 1.
pub fn to_cli(e: SimError) -> CliError {
    match e {
        SimError::Io { .. } | SimError::Parquet { .. } => CliError::runtime(e),
        _ => CliError::input(e),
    }
}

/// Prints a simulation summary.
pub fn print_summary(s: &SimSummary) {
    let pct = |n: usize| 100.0 * n as f64 / s.transcripts.max(1) as f64;
    println!("sample        {}", s.out.display());
    println!(
        "tissue        {:.0} × {:.0} µm, {} cells of {} types, {} genes",
        s.width_um, s.height_um, s.cells, s.cell_types, s.genes
    );
    println!(
        "transcripts   {} ({:.2} per µm², {:.1} per cell)",
        s.transcripts,
        s.density,
        s.in_cells as f64 / s.cells.max(1) as f64
    );
    println!(
        "  in cells    {:>10}  ({:.1} %)",
        s.in_cells,
        pct(s.in_cells)
    );
    println!(
        "  in nuclei   {:>10}  ({:.1} %)",
        s.in_nuclei,
        pct(s.in_nuclei)
    );
    println!("  background  {:>10}  ({:.1} %)", s.noise, pct(s.noise));
    println!(
        "  controls    {:>10}  ({:.1} %)",
        s.controls,
        pct(s.controls)
    );
    println!("  qv < 20     {:>10}  ({:.1} %)", s.low_qv, pct(s.low_qv));
    println!("time          {:.2} s", s.seconds);
}

/// Runs `segger simulate`.
pub fn run(a: SimulateArgs) -> Result<(), CliError> {
    let mut cfg = SimConfig::new(a.cells, a.seed);
    cfg.genes = a.genes;
    cfg.cell_types = a.cell_types;
    cfg.transcripts_per_cell = a.transcripts_per_cell;
    cfg.density = a.density;
    cfg.nuclear_fraction = a.nuclear_fraction;
    cfg.noise_fraction = a.noise_fraction;
    cfg.control_fraction = a.control_fraction;
    cfg.patchiness = a.patchiness;
    let s = simulate(&cfg, &a.out).map_err(to_cli)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).map_err(CliError::runtime)?
        );
    } else {
        print_summary(&s);
    }
    Ok(())
}
