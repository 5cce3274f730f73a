//! `segger predict`: assign every transcript to a cell with a trained model.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use segger_data::raw::Platform;
use segger_predict::{BatchSize, CellTypes, DuplicateIds, PredictConfig};

use crate::create_dataset::RawReadArgs;
use crate::values::{AcceleratorArg, MatmulPrecisionArg, PlatformArg};
use crate::CliError;

/// Arguments of `segger predict`. Flags use the reference's spelling (`--score_cut`);
/// kebab-case aliases (`--score-cut`) are accepted too.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A trained run's directory: model.safetensors and config.json (vocab.json when written
    /// by `segger train`).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// A dataset directory (dataset.json + *_tiles/processed), one split directory, or a raw
    /// sample directory (tiles are then built with the training dataset's settings when the
    /// model's run_config.json leads to them, else with create_dataset's defaults).
    #[arg(long, value_name = "DIR")]
    pub input: PathBuf,
    /// Output directory; it must not exist unless --overwrite.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// Candidate boundaries per transcript (1–1024).
    #[arg(long = "k_bd", alias = "k-bd", default_value_t = segger_data::create::COMPETITORS)]
    pub k_bd: usize,
    /// Maximum distance (µm) from a transcript to a candidate boundary's centroid.
    #[arg(long = "dist_bd", alias = "dist-bd", default_value_t = 12.0)]
    pub dist_bd: f32,
    /// Minimum model score sigmoid(z_tx · z_bd) of an assignment (and of a --use_cc link).
    /// Default: the cut picked on validation data when the model was trained
    /// (calibration.json), else 0.5.
    #[arg(long = "score_cut", alias = "score-cut")]
    pub score_cut: Option<f32>,
    /// Distance term of the choice among candidates (µm per logit unit): a candidate whose
    /// centroid lies d µm beyond its equivalent radius ranks as if its logit were
    /// d / distance_scale lower; 0 = off (the reference: the highest score wins).
    #[arg(
        long = "distance_scale",
        alias = "distance-scale",
        default_value_t = 0.5
    )]
    pub distance_scale: f32,
    /// Weight of the expression term: a candidate boundary whose expression profile (from a
    /// first assignment within the tile) makes the transcript's gene r times likelier than the
    /// tile's gene distribution gains weight · ln r (r averaged in the log over the transcript
    /// and its 9 nearest neighbours within 3 µm), in the choice and in the score the cut
    /// applies to; 0 = off (the reference), 0–100.
    #[arg(
        long = "expression_weight",
        alias = "expression-weight",
        default_value_t = 4.0
    )]
    pub expression_weight: f32,
    /// A transcript within inner_reach equivalent radii (√(area/π)) of its chosen boundary's
    /// centroid is assigned to it whatever its score (the nucleus and its rim); 0 = off (the
    /// reference: the cut decides alone), 0–100.
    #[arg(
        long = "inner_reach",
        alias = "inner-reach",
        default_value_t = segger_predict::DEFAULT_INNER_REACH
    )]
    pub inner_reach: f32,
    /// Reach of a nucleus, in equivalent radii (√(area/π)): a transcript farther than that from
    /// a boundary's centroid is not its candidate; 0 = no limit but --dist_bd (the reference).
    /// A transcript it keeps away may still return (--return_reach).
    #[arg(long, default_value_t = segger_predict::DEFAULT_REACH)]
    pub reach: f32,
    /// Beyond lone_reach equivalent radii (and within --reach), a nucleus reaches a transcript
    /// only when another candidate nucleus lies within 1.5 times the distance (each in its own
    /// radii): far cytoplasm between packed nuclei stays theirs, far transcripts in open space
    /// go to new cells; 0 = off, 0–100.
    #[arg(
        long = "lone_reach",
        alias = "lone-reach",
        default_value_t = segger_predict::DEFAULT_LONE_REACH
    )]
    pub lone_reach: f32,
    /// A transcript that --reach or --lone_reach kept from a nucleus within return_reach
    /// equivalent radii, and that joined no new cell, goes to its best such nucleus when the
    /// score passes the cut: the limits only give new cells the first pick; 0 = off, 0–100.
    #[arg(
        long = "return_reach",
        alias = "return-reach",
        default_value_t = segger_predict::DEFAULT_RETURN_REACH
    )]
    pub return_reach: f32,
    /// Group unassigned transcripts into new cells (connected components of similar
    /// neighbours within --dist_tx in the x-y plane). On by default; `--use_cc false` turns it
    /// off (the reference's default). A bare flag, or a value as the reference spells it
    /// (`--use_cc True`).
    #[arg(
        long = "use_cc",
        alias = "use-cc",
        num_args = 0..=1,
        default_value = "true",
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub use_cc: bool,
    /// Neighbours per transcript considered for --use_cc links (1–1024).
    #[arg(long = "k_tx", alias = "k-tx", default_value_t = 10)]
    pub k_tx: usize,
    /// Maximum distance (µm, in the x-y plane) of a --use_cc link.
    #[arg(long = "dist_tx", alias = "dist-tx", default_value_t = 1.5)]
    pub dist_tx: f32,
    /// Smallest --use_cc component kept as a cell.
    #[arg(
        long = "min_transcripts",
        alias = "min-transcripts",
        default_value_t = 5
    )]
    pub min_transcripts: usize,
    /// Cell-type stage: K expression types from each transcript's 10 nearest neighbours; a
    /// transcript whose boundary is clearly of another type leaves it, and the new cells are
    /// linked within one type and cut to the typical cell size, replacing --use_cc's
    /// components (docs/prediction.md). auto (K from the data by BIC; one type = no stage),
    /// 0 (off) or 2–256.
    #[arg(long = "cell_types", alias = "cell-types", default_value = "auto")]
    pub cell_types: CellTypes,
    /// Cell-type stage: a transcript whose chosen nucleus (within --reach) scored below the cut
    /// joins it when the nucleus's type is its own and at least this many of its 10 nearest
    /// transcripts (itself among them) are in that cell; 0 = off, 0–9.
    #[arg(
        long = "join_neighbours",
        alias = "join-neighbours",
        default_value_t = segger_predict::cell_types::JOIN_NEIGHBOURS
    )]
    pub join_neighbours: usize,
    /// Cell-type stage: rounds of the border refinement of the new cells. Each round, a
    /// transcript at the border of a new cell takes the neighbouring cell that its 20 nearest
    /// transcripts (Gaussian weights) and its gene's likelihood under that cell's type favour;
    /// only moves into or out of a new cell (docs/prediction.md). 0 = off, 0–10.
    #[arg(
        long = "border_rounds",
        alias = "border-rounds",
        default_value_t = segger_predict::cell_types::BORDER_ROUNDS
    )]
    pub border_rounds: usize,
    /// Backend: cpu, wgpu, cuda or auto (cuda when built in and present, else cpu).
    #[arg(long, value_enum, ignore_case = true, default_value = "auto")]
    pub accelerator: AcceleratorArg,
    /// Float32 matmuls on the GPU: highest (plain f32) or high (TF32 on CUDA's tensor cores);
    /// see `segger train --help`.
    #[arg(
        long = "float32_matmul_precision",
        alias = "float32-matmul-precision",
        value_enum,
        default_value = "highest"
    )]
    pub float32_matmul_precision: MatmulPrecisionArg,
    /// Tiles per forward pass: auto (consecutive tiles share a pass of at most 4,096 nodes;
    /// a larger tile goes alone) or 1–4096 (the reference's default is 1).
    #[arg(long = "batch_size", alias = "batch-size", default_value = "auto")]
    pub batch_size: BatchSize,
    /// Background threads reading tiles (0–256).
    #[arg(long = "num_workers", alias = "num-workers", default_value_t = 2)]
    pub num_workers: usize,
    /// Raw input only: xenium, merscope or cosmx (default: detected from the files, else the
    /// training dataset's).
    #[arg(long, value_enum, ignore_case = true)]
    pub platform: Option<PlatformArg>,
    /// Raw input only: side in µm of the square tiles built from the sample (0: tile it as the
    /// training dataset was). The model's graph is local, so larger tiles than training's give
    /// the same assignments with fewer margin transcripts: 100 µm tiles predict about twice as
    /// fast as 20 µm ones (docs/prediction.md, "Tile size").
    #[arg(long = "tile_size", alias = "tile-size", default_value_t = segger_predict::DEFAULT_RAW_TILE_SIZE)]
    pub tile_size: f64,
    /// A transcript id that names different transcripts (another position or gene) in different
    /// tiles: error (refuse the input) or merge (keep the one with the higher score and count
    /// the others in the summary). One transcript seen by two tiles is always kept once.
    #[arg(
        long = "duplicate_ids",
        alias = "duplicate-ids",
        value_enum,
        default_value_t = DuplicateIdsArg::Error
    )]
    pub duplicate_ids: DuplicateIdsArg,
    /// Raw input only: how to read the sample, as `create_dataset` takes it. Given, these
    /// flags replace the training dataset's reading settings (each flag left out takes
    /// `create_dataset`'s default); left out, the sample is read as the training dataset was.
    #[command(
        flatten,
        next_help_heading = "Reading a raw sample (create_dataset's flags)"
    )]
    pub raw: RawReadArgs,
    /// Replace an existing output directory.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--duplicate_ids`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DuplicateIdsArg {
    /// Refuse the input.
    Error,
    /// Keep one transcript per id.
    Merge,
}

/// The platform the reading flags `raw` are for: as without them
/// ([`segger_predict::raw_platform`]: `--platform`, else detected, else the training
/// dataset's). A tile dataset is refused, naming the flags: it was read already.
fn reading_platform(cfg: &PredictConfig, raw: &RawReadArgs) -> Result<Platform, CliError> {
    let to_cli = |e: segger_predict::PredictError| CliError {
        code: e.exit_code(),
        error: anyhow::anyhow!(e),
    };
    if segger_predict::resolve_tiles(&cfg.input)
        .map_err(to_cli)?
        .is_some()
    {
        return Err(CliError::input(anyhow::anyhow!(
            "--input: {} is a tile dataset, already read: {} apply only to a raw sample; leave \
             them out or pass the raw sample's folder",
            cfg.input.display(),
            raw.flags().join(" ")
        )));
    }
    segger_predict::raw_platform(cfg).map_err(to_cli)
}

/// Runs `segger predict`.
pub fn run(a: PredictArgs) -> Result<(), CliError> {
    let mut cfg = PredictConfig::new(a.model, a.input, a.output);
    cfg.float32_matmul_precision = a.float32_matmul_precision.into();
    cfg.k_bd = a.k_bd;
    cfg.dist_bd = a.dist_bd;
    cfg.score_cut = a.score_cut;
    cfg.distance_scale = a.distance_scale;
    cfg.expression_weight = a.expression_weight;
    cfg.inner_reach = a.inner_reach;
    cfg.reach = a.reach;
    cfg.lone_reach = a.lone_reach;
    cfg.return_reach = a.return_reach;
    cfg.use_cc = a.use_cc;
    cfg.k_tx = a.k_tx;
    cfg.dist_tx = a.dist_tx;
    cfg.min_transcripts = a.min_transcripts;
    cfg.cell_types = a.cell_types;
    cfg.join_neighbours = a.join_neighbours;
    cfg.border_rounds = a.border_rounds;
    cfg.accelerator = a.accelerator.into();
    cfg.batch_size = a.batch_size;
    cfg.num_workers = a.num_workers;
    cfg.overwrite = a.overwrite;
    cfg.duplicate_ids = match a.duplicate_ids {
        DuplicateIdsArg::Error => DuplicateIds::Error,
        DuplicateIdsArg::Merge => DuplicateIds::Merge,
    };
    cfg.platform = a.platform.map(|p| Platform::from(p).name().to_string());
    cfg.raw_tile_size = (a.tile_size != 0.0).then_some(a.tile_size);
    if a.raw.given() {
        let platform = reading_platform(&cfg, &a.raw)?;
        cfg.raw_options = Some(a.raw.options(platform));
    }
    let s = segger_predict::predict(&cfg).map_err(|e| CliError {
        code: e.exit_code(),
        error: anyhow::anyhow!(e),
    })?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).expect("summary serialises")
        );
        return Ok(());
    }
    println!(
        "segger predict: {} transcripts in {} tiles on {} in {:.1} s ({:.0} transcripts/s)",
        s.transcripts, s.tiles, s.backend, s.timings.total_s, s.transcripts_per_second
    );
    println!(
        "  assigned   {:.1}%: {} to boundaries, {} to components, {} unassigned",
        s.assigned_percent, s.assigned_to_boundary, s.assigned_to_component, s.unassigned
    );
    println!(
        "  cells      {} ({} boundaries, {} components; {} components dropped)",
        s.cells, s.boundary_cells, s.component_cells, s.components_dropped
    );
    if s.returned_within_reach > 0 {
        println!(
            "  returned   {} transcripts joined no new cell and returned within the return reach",
            s.returned_within_reach
        );
    }
    println!(
        "  per cell   median {} transcripts (quartiles {} / {})",
        s.transcripts_per_cell.median, s.transcripts_per_cell.q1, s.transcripts_per_cell.q3
    );
    if let Some(t) = &s.cell_types {
        if t.applied() {
            println!(
                "  types      {} (transcripts per type {:?}); {} left a boundary of another type ({} of them back, unconfirmed), {} below the cut joined one of theirs; {} new cells of about {} transcripts (links up to {:.1} µm), {} moved at their borders",
                t.types,
                t.per_type,
                t.vetoed,
                t.returned,
                t.joined,
                t.new_cells,
                t.typical_size,
                t.link,
                t.border_moved
            );
        } else {
            println!(
                "  types      {}: no cell-type stage (--use_cc made the new cells)",
                if t.criterion.is_empty() {
                    "too few transcripts"
                } else {
                    "one expression type fits best"
                }
            );
        }
    }
    if s.ids_merged > 0 {
        println!(
            "  merged     {} transcripts shared their id with another (--duplicate_ids merge) and are not in the output",
            s.ids_merged
        );
    }
    println!("  output     {}", s.output.display());
    Ok(())
}
