//! `segger simulate --out DIR --cells N --seed S [--preset easy|hard] [--genes G ...]`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use segger_sim::simulate::{simulate, Preset, SimConfig, SimSummary};
use segger_sim::SimError;

use crate::CliError;

/// `--preset`: the tissue geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// Convex Voronoi cells of one size, a centred nucleus in every cell.
    Easy,
    /// Like real sections: cells of 1–4 regions, off-centre, missing, merged and split
    /// nuclei, transcript diffusion.
    Hard,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Self {
        match p {
            PresetArg::Easy => Preset::Easy,
            PresetArg::Hard => Preset::Hard,
        }
    }
}

/// Arguments of `segger simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Output directory: missing or empty, or an earlier simulated sample with --overwrite
    /// (a folder without ground_truth.parquet is never replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an earlier simulated sample at --out.
    #[arg(long)]
    pub overwrite: bool,
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
    /// Settings of the geometry and nuclei; the options below override the preset's.
    #[arg(long, value_enum, default_value_t = PresetArg::Easy)]
    pub preset: PresetArg,
    /// Fraction of the cells without a nucleus in the section.
    #[arg(long = "no_nucleus_fraction", alias = "no-nucleus-fraction")]
    pub no_nucleus_fraction: Option<f64>,
    /// Fractions of the cells made of 1, 2, 3 and 4 regions, e.g. 0.6,0.25,0.1,0.05.
    #[arg(long = "region_chain", alias = "region-chain", value_delimiter = ',')]
    pub region_chain: Option<Vec<f64>>,
    /// Power-diagram weight spread of the regions, in (region spacing)².
    #[arg(long = "size_spread", alias = "size-spread")]
    pub size_spread: Option<f64>,
    /// Largest nucleus offset from its region's centroid, as a fraction of the way to the edge.
    #[arg(long = "nucleus_offset", alias = "nucleus-offset")]
    pub nucleus_offset: Option<f64>,
    /// Merged nuclei (two cells' nuclei as one polygon) as a fraction of the cells.
    #[arg(long = "merged_nuclei", alias = "merged-nuclei")]
    pub merged_nuclei: Option<f64>,
    /// Split nuclei (one nucleus as two polygons) as a fraction of the cells.
    #[arg(long = "split_nuclei", alias = "split-nuclei")]
    pub split_nuclei: Option<f64>,
    /// σ in µm of the Gaussian displacement of the cells' transcripts.
    #[arg(long)]
    pub diffusion: Option<f64>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Maps a library error to an exit code: bad parameters and input are 2, I/O failures 1.
pub fn to_cli(e: SimError) -> CliError {
    CliError {
        code: e.exit_code(),
        error: anyhow::anyhow!(e),
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
    let of_cells = |n: usize| 100.0 * n as f64 / s.cells.max(1) as f64;
    println!(
        "nuclei        {} polygons; cells without a nucleus {} ({:.1} %), merged {} ({:.1} %), split {} ({:.1} %)",
        s.nuclei,
        s.no_nucleus,
        of_cells(s.no_nucleus),
        s.merged_nuclei,
        of_cells(s.merged_nuclei),
        s.split_nuclei,
        of_cells(s.split_nuclei)
    );
    println!("time          {:.2} s", s.seconds);
}

/// Runs `segger simulate`.
pub fn run(a: SimulateArgs) -> Result<(), CliError> {
    let mut cfg = SimConfig::preset(a.preset.into(), a.cells, a.seed);
    cfg.genes = a.genes;
    cfg.cell_types = a.cell_types;
    cfg.transcripts_per_cell = a.transcripts_per_cell;
    cfg.density = a.density;
    cfg.nuclear_fraction = a.nuclear_fraction;
    cfg.noise_fraction = a.noise_fraction;
    cfg.control_fraction = a.control_fraction;
    cfg.patchiness = a.patchiness;
    if let Some(chain) = &a.region_chain {
        cfg.region_chain = chain.as_slice().try_into().map_err(|_| {
            CliError::input(SimError::Invalid(
                "--region_chain takes four comma-separated fractions".into(),
            ))
        })?;
    }
    let overrides = [
        (a.no_nucleus_fraction, &mut cfg.no_nucleus_fraction),
        (a.size_spread, &mut cfg.size_spread),
        (a.nucleus_offset, &mut cfg.nucleus_offset),
        (a.merged_nuclei, &mut cfg.merged_nuclei),
        (a.split_nuclei, &mut cfg.split_nuclei),
        (a.diffusion, &mut cfg.diffusion),
    ];
    for (value, field) in overrides {
        if let Some(v) = value {
            *field = v;
        }
    }
    let s = simulate(&cfg, &a.out, a.overwrite).map_err(to_cli)?;
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
