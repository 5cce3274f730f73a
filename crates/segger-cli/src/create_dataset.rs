//! `segger create_dataset --input DIR --output DIR [--platform xenium|merscope|cosmx] [options]`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use segger_data::create::{
    create_dataset, CreateOptions, Negatives, Progress, Summary, DEFAULT_TILE_SIZE,
};
use segger_data::raw::{BoundaryKind, Platform, RawOptions};
use segger_data::tiling::TileMode;
use segger_data::DataError;

use crate::values::PlatformArg;
use crate::CliError;

/// Arguments of `segger create_dataset`.
#[derive(Debug, Args)]
pub struct CreateDatasetArgs {
    /// The raw sample directory (instrument output).
    #[arg(long)]
    pub input: PathBuf,
    /// The dataset directory to create.
    #[arg(long)]
    pub output: PathBuf,
    /// The instrument: xenium, merscope or cosmx (default: detected from the transcript file in
    /// --input).
    #[arg(long, value_enum, ignore_case = true)]
    pub platform: Option<PlatformArg>,
    /// How to read the sample: boundaries, files, columns, filters.
    #[command(flatten)]
    pub raw: RawReadArgs,

    /// Square tile side in µm (sets width and height; default 20; the reference's 50 gives about a
    /// sixth of the training steps per epoch).
    #[arg(long = "tile_size", alias = "tile-size")]
    pub tile_size: Option<f64>,
    /// Tile width in µm.
    #[arg(long = "tile_width", alias = "tile-width")]
    pub tile_width: Option<f64>,
    /// Tile height in µm.
    #[arg(long = "tile_height", alias = "tile-height")]
    pub tile_height: Option<f64>,
    /// Balanced kd tiling with at most this many core transcripts per tile (instead of a grid).
    #[arg(long = "max_transcripts_per_tile", alias = "max-transcripts-per-tile", conflicts_with_all = ["tile_size", "tile_width", "tile_height"])]
    pub max_transcripts_per_tile: Option<usize>,
    /// Context margin around each tile in µm.
    #[arg(long, default_value_t = 10.0)]
    pub margin: f64,

    /// Transcript neighbours per transcript (1–1024).
    #[arg(long = "k_tx", alias = "k-tx", default_value_t = 3)]
    pub k_tx: usize,
    /// Transcript neighbour radius in µm.
    #[arg(long = "dist_tx", alias = "dist-tx", default_value_t = 5.0)]
    pub dist_tx: f32,
    /// Boundary neighbours per transcript, 1–1024 (message-passing edges; the reference uses 3: with
    /// more than one, neighbouring nuclei receive the same transcripts and the model cannot
    /// tell them apart, docs/accuracy.md).
    #[arg(long = "k_bd", alias = "k-bd", default_value_t = 1)]
    pub k_bd: usize,
    /// Boundary neighbour radius in µm (to the centroid).
    #[arg(long = "dist_bd", alias = "dist-bd", default_value_t = 15.0)]
    pub dist_bd: f32,
    /// Negatives per positive.
    #[arg(
        long = "neg_sampling_ratio",
        alias = "neg-sampling-ratio",
        default_value_t = 5.0
    )]
    pub neg_sampling_ratio: f64,
    /// Which pairs are the negatives: `competing` = the other boundaries among each nuclear
    /// transcript's 4 nearest within --dist_bd (the candidates `segger predict` compares);
    /// `random` = random pairs of the tile, as the reference Segger draws them.
    #[arg(long, value_enum, default_value = "competing")]
    pub negatives: NegativesArg,
    /// Probability that a tile goes to validation.
    #[arg(long = "val_prob", alias = "val-prob", default_value_t = 0.1)]
    pub val_prob: f64,
    /// Probability that a tile goes to test.
    #[arg(long = "test_prob", alias = "test-prob", default_value_t = 0.2)]
    pub test_prob: f64,
    /// Seed of the split draw and of negative sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Replace an earlier dataset at --output (never another folder: docs/reliability.md).
    #[arg(long)]
    pub overwrite: bool,
    /// Worker threads, 1–1024 (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How to read a raw sample (`create_dataset`'s and `segment`'s flags): boundaries, files,
/// column names, filters, scale, the gene embedding and the merged-nuclei cut.
#[derive(Debug, Clone, Args)]
pub struct RawReadArgs {
    /// Boundaries to use: nucleus or cell (default: nucleus; `predict`: the training
    /// dataset's).
    #[arg(long, value_enum, ignore_case = true)]
    pub boundaries: Option<BoundariesArg>,
    /// Transcript file (default: the platform's file name in --input).
    #[arg(long = "transcripts_file", alias = "transcripts-file")]
    pub transcripts_file: Option<PathBuf>,
    /// Boundary file (default: the platform's file name in --input).
    #[arg(long = "boundaries_file", alias = "boundaries-file")]
    pub boundaries_file: Option<PathBuf>,

    /// Transcript x column.
    #[arg(long = "x_column", alias = "x-column")]
    pub x_column: Option<String>,
    /// Transcript y column.
    #[arg(long = "y_column", alias = "y-column")]
    pub y_column: Option<String>,
    /// Transcript z column ("none" for 2-D).
    #[arg(long = "z_column", alias = "z-column")]
    pub z_column: Option<String>,
    /// Gene name column.
    #[arg(long = "gene_column", alias = "gene-column")]
    pub gene_column: Option<String>,
    /// Transcript cell-id column(s), comma-separated names are joined with "_".
    #[arg(long = "cell_column", alias = "cell-column")]
    pub cell_column: Option<String>,
    /// Integer transcript-id column ("none": row numbers).
    #[arg(long = "id_column", alias = "id-column")]
    pub id_column: Option<String>,
    /// In-nucleus flag column ("none": point-in-polygon).
    #[arg(long = "nuclear_column", alias = "nuclear-column")]
    pub nuclear_column: Option<String>,
    /// Value of the nuclear column meaning "in the nucleus".
    #[arg(long = "nuclear_value", alias = "nuclear-value")]
    pub nuclear_value: Option<String>,
    /// Quality column ("none": no quality filter).
    #[arg(long = "qv_column", alias = "qv-column")]
    pub qv_column: Option<String>,
    /// Boundary id column(s), comma-separated names are joined with "_".
    #[arg(long = "boundary_id_column", alias = "boundary-id-column")]
    pub boundary_id_column: Option<String>,
    /// Boundary vertex x column.
    #[arg(long = "boundary_x_column", alias = "boundary-x-column")]
    pub boundary_x_column: Option<String>,
    /// Boundary vertex y column.
    #[arg(long = "boundary_y_column", alias = "boundary-y-column")]
    pub boundary_y_column: Option<String>,
    /// Boundary WKB geometry column (MERSCOPE).
    #[arg(long = "boundary_geometry_column", alias = "boundary-geometry-column")]
    pub boundary_geometry_column: Option<String>,

    /// Minimum quality value (default: 20 for Xenium, none elsewhere).
    #[arg(long = "min_qv", alias = "min-qv")]
    pub min_qv: Option<f32>,
    /// Gene-name prefixes to drop, comma-separated (default: the control probes and codewords).
    #[arg(long = "drop_prefixes", alias = "drop-prefixes", value_delimiter = ',')]
    pub drop_prefixes: Option<Vec<String>>,
    /// Micrometres per file coordinate unit; `--pixel_size` is the same flag (default: 1;
    /// CosMx: the pixel size the fov positions file states, x_global_mm · 1000 / x_global_px,
    /// else 0.12028).
    #[arg(long, visible_alias = "pixel_size", alias = "pixel-size")]
    pub scale: Option<f64>,
    /// Make bad polygons and nuclear transcripts without a polygon errors instead of counted
    /// skips.
    #[arg(long)]
    pub strict: bool,
    /// Gene × features table (CSV or parquet) giving float transcript features.
    #[arg(long = "gene_embedding", alias = "gene-embedding")]
    pub gene_embedding: Option<PathBuf>,
    /// Cut nuclei that look like two touching nuclei segmented as one (area an outlier of the
    /// sample's own nuclei, 2.5 robust standard deviations of log area above the median and at
    /// least 1.5 times it, and axis ratio ≥ 1.5) across their long axis; the second half is
    /// `<id>_b`. On by default (`predict`: the training dataset's setting);
    /// `--split_merged_nuclei false` keeps every nucleus whole.
    #[arg(
        long = "split_merged_nuclei",
        alias = "split-merged-nuclei",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub split_merged_nuclei: Option<bool>,
}

impl RawReadArgs {
    /// The flags given, as `create_dataset` and `predict` take them (for the commands
    /// `segment` records); empty when none was given.
    pub fn flags(&self) -> Vec<String> {
        let mut f = Vec::new();
        if let Some(b) = self.boundaries {
            f.push(format!(
                "--boundaries {}",
                match b {
                    BoundariesArg::Nucleus => "nucleus",
                    BoundariesArg::Cell => "cell",
                }
            ));
        }
        let mut text = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                f.push(format!("--{name} {v}"));
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        text("transcripts_file", path(&self.transcripts_file));
        text("boundaries_file", path(&self.boundaries_file));
        for (name, v) in [
            ("x_column", &self.x_column),
            ("y_column", &self.y_column),
            ("z_column", &self.z_column),
            ("gene_column", &self.gene_column),
            ("cell_column", &self.cell_column),
            ("id_column", &self.id_column),
            ("nuclear_column", &self.nuclear_column),
            ("nuclear_value", &self.nuclear_value),
            ("qv_column", &self.qv_column),
            ("boundary_id_column", &self.boundary_id_column),
            ("boundary_x_column", &self.boundary_x_column),
            ("boundary_y_column", &self.boundary_y_column),
            ("boundary_geometry_column", &self.boundary_geometry_column),
        ] {
            text(name, v.clone());
        }
        text("min_qv", self.min_qv.map(|q| q.to_string()));
        text(
            "drop_prefixes",
            self.drop_prefixes.as_ref().map(|p| p.join(",")),
        );
        text("scale", self.scale.map(|s| s.to_string()));
        text("gene_embedding", path(&self.gene_embedding));
        if self.strict {
            f.push("--strict".to_string());
        }
        if let Some(v) = self.split_merged_nuclei {
            f.push(format!("--split_merged_nuclei {v}"));
        }
        f
    }

    /// Whether any reading flag was given.
    pub fn given(&self) -> bool {
        !self.flags().is_empty()
    }

    /// The raw-reading options for `platform`: the flags given, the defaults for the others.
    pub fn options(&self, platform: Platform) -> RawOptions {
        let mut raw = RawOptions::new(platform);
        raw.boundaries = self.boundaries.unwrap_or(BoundariesArg::Nucleus).into();
        raw.transcripts_file = self.transcripts_file.clone();
        raw.boundaries_file = self.boundaries_file.clone();
        let c = &mut raw.columns;
        c.x = self.x_column.clone();
        c.y = self.y_column.clone();
        c.z = self.z_column.clone();
        c.gene = self.gene_column.clone();
        c.cell = self.cell_column.clone();
        c.id = self.id_column.clone();
        c.nuclear = self.nuclear_column.clone();
        c.nuclear_value = self.nuclear_value.clone();
        c.qv = self.qv_column.clone();
        c.bd_id = self.boundary_id_column.clone();
        c.bd_x = self.boundary_x_column.clone();
        c.bd_y = self.boundary_y_column.clone();
        c.bd_geometry = self.boundary_geometry_column.clone();
        raw.min_qv = self.min_qv;
        if let Some(p) = &self.drop_prefixes {
            raw.drop_prefixes = p.iter().filter(|s| !s.is_empty()).cloned().collect();
        }
        raw.scale = self.scale;
        raw.strict = self.strict;
        raw.gene_embedding = self.gene_embedding.clone();
        raw.split_merged = self.split_merged_nuclei.unwrap_or(true);
        raw
    }
}

/// `--negatives`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NegativesArg {
    /// The boundaries a transcript competes between at prediction.
    Competing,
    /// Random pairs of the tile (the reference's).
    Random,
}

/// `--boundaries` (any letter case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BoundariesArg {
    /// Nucleus segmentation.
    #[value(alias = "nuclei")]
    Nucleus,
    /// Cell segmentation.
    #[value(alias = "cells")]
    Cell,
}

impl From<BoundariesArg> for BoundaryKind {
    fn from(b: BoundariesArg) -> Self {
        match b {
            BoundariesArg::Nucleus => BoundaryKind::Nucleus,
            BoundariesArg::Cell => BoundaryKind::Cell,
        }
    }
}

impl CreateDatasetArgs {
    /// The dataset creation's options; `platform` is `--platform`, or the one detected.
    fn options(&self, platform: Platform) -> CreateOptions {
        let raw = self.raw.options(platform);
        let mut o = CreateOptions::new(self.input.clone(), self.output.clone(), raw);
        o.tiling = match self.max_transcripts_per_tile {
            Some(m) => TileMode::Balanced { max_transcripts: m },
            None => {
                let side = self.tile_size.unwrap_or(DEFAULT_TILE_SIZE);
                TileMode::Grid {
                    width: self.tile_width.unwrap_or(side),
                    height: self.tile_height.unwrap_or(side),
                }
            }
        };
        o.graph.margin = self.margin;
        o.graph.k_tx = self.k_tx;
        o.graph.dist_tx = self.dist_tx;
        o.graph.k_bd = self.k_bd;
        o.graph.dist_bd = self.dist_bd;
        o.graph.neg_sampling_ratio = self.neg_sampling_ratio;
        o.graph.negatives = match self.negatives {
            NegativesArg::Competing => Negatives::Competing,
            NegativesArg::Random => Negatives::Random,
        };
        o.val_prob = self.val_prob;
        o.test_prob = self.test_prob;
        o.seed = self.seed;
        o.overwrite = self.overwrite;
        o
    }
}

/// A data-layer error with its exit code: 1 when the file system failed, 2 otherwise.
pub(crate) fn to_cli(e: DataError) -> CliError {
    match &e {
        DataError::Output(o) if o.exit_code() == 1 => CliError::runtime(e),
        DataError::Io { source, .. } if source.kind() != std::io::ErrorKind::NotFound => {
            CliError::runtime(e)
        }
        _ => CliError::input(e),
    }
}

fn print_summary(s: &Summary) {
    let l = &s.load;
    let t = &s.timings;
    println!("dataset       {}", s.output.display());
    println!(
        "transcripts   {} read from {}",
        l.rows,
        l.transcripts_file.display()
    );
    for (p, n) in l.dropped_prefix.iter().filter(|(_, n)| **n > 0) {
        println!("  dropped     {n:>10}  gene prefix {p}");
    }
    if let Some(q) = l.min_qv {
        println!("  dropped     {:>10}  qv < {q}", l.dropped_qv);
    }
    if l.dropped_no_embedding > 0 {
        println!(
            "  dropped     {:>10}  gene not in the embedding",
            l.dropped_no_embedding
        );
    }
    println!(
        "  kept        {:>10}  ({} genes, {}-D{}{}{})",
        l.kept,
        s.genes,
        if l.has_z { 3 } else { 2 },
        if l.ids_from_rows {
            ", ids = row numbers"
        } else {
            ""
        },
        if l.nuclear_from_polygons {
            ", nuclear by point-in-polygon"
        } else {
            ""
        },
        match (l.cells_from_polygons, l.cell_ids_set_aside) {
            (false, _) => "",
            (true, 0) => ", cells by point-in-polygon (no cell-id column)",
            (true, _) => ", cells by point-in-polygon (cell ids name too few polygons)",
        }
    );
    if l.cell_ids_set_aside > 0 {
        println!(
            "  note        {:>10}  cell ids set aside: only {} name a polygon; each transcript's \
             cell is the polygon that contains it",
            l.cell_ids_set_aside, l.cell_ids_matched
        );
    }
    if l.cell_without_polygon > 0 {
        println!(
            "  note        {:>10}  cell ids name no polygon ({} of them nuclear: no positive)",
            l.cell_without_polygon, l.nuclear_without_polygon
        );
    }
    if let (Some(p), Some(from)) = (l.pixel_size, &l.pixel_size_source) {
        println!("pixel size    {p} µm ({from})");
    }
    println!(
        "boundaries    {} kept of {} from {}",
        l.boundaries_kept,
        l.boundaries_read,
        l.boundaries_file.display()
    );
    for (p, n) in &l.boundaries_skipped {
        println!("  skipped     {n:>10}  {p}");
    }
    if l.merged_nuclei_split > 0 {
        println!(
            "  note        {:>10}  nuclei cut in two as merged (second halves named <id>_b)",
            l.merged_nuclei_split
        );
    }
    if l.rings_closed_implicitly > 0 {
        println!(
            "  note        {:>10}  rings closed implicitly",
            l.rings_closed_implicitly
        );
    }
    if l.boundary_duplicate_rows > 0 || l.multipart_geometries > 0 {
        println!(
            "  note        {:>10}  duplicate rows, {} multi-part geometries (largest kept)",
            l.boundary_duplicate_rows, l.multipart_geometries
        );
    }
    println!(
        "tiles         train {}  val {}  test {}  ({} without positives, {} empty cells skipped)",
        s.tiles.train, s.tiles.val, s.tiles.test, s.tiles_without_positives, s.empty_cells
    );
    println!(
        "graph         {} tx nodes, {} bd nodes, {} tx-tx, {} tx-bd edges, {} positives, {} negatives",
        s.tx_nodes, s.bd_nodes, s.tx_tx_edges, s.tx_bd_edges, s.positives, s.negatives
    );
    println!(
        "time          {:.2} s wall ({:.0} transcripts/s), {:.1} MB written",
        t.wall,
        l.kept as f64 / t.wall.max(1e-9),
        s.bytes as f64 / 1e6
    );
    println!(
        "  stages      read {:.2}  filter {:.2}  features {:.2}  tile {:.2}  kNN {:.2}  labels {:.2}  write {:.2}  (CPU s)",
        t.read, t.filter, t.features, t.tile, t.knn, t.labels, t.write
    );
}

/// Runs `segger create_dataset`.
pub fn run(args: CreateDatasetArgs) -> Result<(), CliError> {
    if let Some(n) = args.threads {
        if !(1..=1024).contains(&n) {
            return Err(CliError::input(anyhow::anyhow!(
                "--threads must be between 1 and 1024, got {n}"
            )));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .map_err(|e| CliError::runtime(anyhow::anyhow!("thread pool: {e}")))?;
    }
    let platform = match args.platform {
        Some(p) => p.into(),
        None => {
            let p =
                Platform::detect(&args.input).map_err(|e| CliError::input(anyhow::anyhow!(e)))?;
            eprintln!("platform: {p} (detected from the transcript file in --input)");
            p
        }
    };
    let opts = args.options(platform);
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
            .expect("valid template"),
    );
    bar.set_message("loading transcripts and boundaries");
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    // The transcript rate counts from the first tile, not from the start of loading.
    let tiles_start: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let on_progress = |p: Progress| {
        let t0 = *tiles_start.get_or_init(|| {
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} tiles {pos}/{len} {wide_bar} {msg} [{elapsed_precise}]",
                )
                .expect("valid template"),
            );
            Instant::now()
        });
        bar.set_length(p.tiles_total as u64);
        bar.set_position(p.tiles_done as u64);
        let rate = p.transcripts_done as f64 / t0.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!("{rate:.0} transcripts/s"));
    };
    let res = create_dataset(&opts, &on_progress);
    bar.finish_and_clear();
    let summary = res.map_err(to_cli)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("summary serialises")
        );
    } else {
        print_summary(&summary);
    }
    Ok(())
}
