//! What `segger predict` is asked to do ([`PredictConfig`]) and how it fails ([`PredictError`]).

use std::path::PathBuf;

use segger_model::mp::MatmulPrecision;
use serde::Serialize;
use thiserror::Error;

use crate::Accelerator;

/// Everything `segger predict` needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictConfig {
    /// A trained run's directory (`model.safetensors`, `config.json`).
    pub model: PathBuf,
    /// A dataset directory, one split of it, or a raw sample directory.
    pub input: PathBuf,
    /// Output directory (must not exist unless `overwrite`).
    pub output: PathBuf,
    /// Candidate boundaries per transcript.
    pub k_bd: usize,
    /// Maximum transcript-to-boundary-centroid distance of a candidate (µm).
    pub dist_bd: f32,
    /// Minimum score `sigmoid(z_tx · z_bd)` of an assignment (of the candidate chosen with the
    /// distance term); also the link threshold of `use_cc`. `None`: the cut the model was
    /// calibrated with at training (`calibration.json`), else [`DEFAULT_SCORE_CUT`].
    pub score_cut: Option<f32>,
    /// Distance term of the choice among a transcript's candidates (µm per logit unit): a
    /// candidate whose centroid lies `d` µm beyond its equivalent radius (√(area/π)) ranks as
    /// if its logit were `d / distance_scale` lower. 0 turns the term off (the reference's
    /// choice: the highest score).
    pub distance_scale: f32,
    /// Reach of a boundary, in equivalent radii: a boundary whose centroid lies farther than
    /// `reach × √(area/π)` from a transcript is not its candidate. 0 turns the limit off (the
    /// reference: every boundary within `dist_bd`).
    pub reach: f32,
    /// Beyond `lone_reach` equivalent radii (and within `reach`), a boundary reaches a
    /// transcript only when another candidate boundary is near it too: within [`LONE_RATIO`]
    /// times the distance, each distance in its own boundary's radii. Far cytoplasm between
    /// packed nuclei stays theirs; far transcripts in open space (a cell whose nucleus is out
    /// of the section) are left to new cells. 0 turns this off (every candidate within
    /// `reach`).
    pub lone_reach: f32,
    /// A transcript that the reach or the lone reach kept from a boundary within
    /// `return_reach` equivalent radii, and that is still unassigned once the new cells are
    /// made, goes to that boundary: its best candidate within `return_reach` (the lone reach
    /// ignored), when that candidate's score passes the cut. The limits then only give new
    /// cells the first pick of far transcripts. 0 turns this off.
    pub return_reach: f32,
    /// Weight of the expression term in the choice among a transcript's candidates and in the
    /// score the cut applies to: `weight · mean ln(p_b(g) / p(g))` over the genes of the
    /// transcript and its nearest neighbours ([`NEIGHBOURHOOD_SIZE`] within
    /// [`NEIGHBOURHOOD_RADIUS`]), the log-ratio under the boundary's expression profile (from a
    /// first assignment within the tile) and under the tile's. 0 turns it off.
    pub expression_weight: f32,
    /// A transcript within `inner_reach` equivalent radii (√(area/π)) of its chosen boundary's
    /// centroid is assigned to it whatever its score (the nucleus and its rim); 0 turns this
    /// off (the reference: the cut decides alone).
    pub inner_reach: f32,
    /// Group unassigned transcripts into new cells by connected components.
    pub use_cc: bool,
    /// Neighbours per transcript considered for links (`use_cc`).
    pub k_tx: usize,
    /// Maximum distance of a link (µm, `use_cc`).
    pub dist_tx: f32,
    /// Smallest component kept as a cell (`use_cc`).
    pub min_transcripts: usize,
    /// Number of cell types for the cell-type stage ([`crate::cell_types`]): chosen from the
    /// data, given, or off. When it runs with two types or more, it replaces the components of
    /// `use_cc`.
    pub cell_types: CellTypes,
    /// Cell-type stage: a transcript whose chosen boundary scored below the cut joins it when
    /// the boundary's type is its own and at least this many of its
    /// [`crate::cell_types::NEIGHBOURS`] nearest transcripts (itself among them) are in the
    /// boundary's cell; 0 turns this off, at most `NEIGHBOURS − 1`.
    pub join_neighbours: usize,
    /// Cell-type stage: rounds of the border refinement of the new cells (step 7 of
    /// [`crate::cell_types`]); 0 turns it off, at most
    /// [`crate::cell_types::MAX_BORDER_ROUNDS`].
    pub border_rounds: usize,
    /// Backend.
    pub accelerator: Accelerator,
    /// Tiles per forward pass.
    pub batch_size: BatchSize,
    /// Background threads reading tiles.
    pub num_workers: usize,
    /// Replace an existing output directory.
    pub overwrite: bool,
    /// Raw input only: the platform (`xenium`, `merscope`, `cosmx`).
    pub platform: Option<String>,
    /// Raw input only: the side in µm of the square tiles built from it; `None` tiles it as
    /// the training dataset was. The tiles predicted on need not be those trained on: the
    /// model's graph is local (docs/prediction.md, "Tile size"), and larger tiles carry fewer
    /// margin transcripts per decided transcript.
    pub raw_tile_size: Option<f64>,
    /// Raw input only (refused with a tile dataset): how to read the sample (platform,
    /// boundaries, files, columns, filters), replacing the training dataset's reading
    /// settings; `None` takes those ([`PredictConfig::platform`] and the `dataset.json` the
    /// model's run leads to). `segger predict` passes its reading flags when any is given;
    /// `segger segment` the options its dataset stage read the sample with.
    pub raw_options: Option<segger_data::raw::RawOptions>,
    /// Float32 matmuls on the GPU: plain f32 (`Highest`, as trained) or TF32 (`High`).
    pub float32_matmul_precision: MatmulPrecision,
    /// What to do with a transcript id that names different transcripts in different tiles.
    pub duplicate_ids: DuplicateIds,
}

/// How many expression types the cell-type stage uses ([`crate::cell_types`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CellTypes {
    /// No cell-type stage (`--use_cc` makes the new cells).
    Off,
    /// The number that minimises the types' Bayesian information criterion
    /// ([`crate::cell_types::choose_types`]); with one type the stage does nothing.
    #[default]
    Auto,
    /// This many types (2–[`CellTypes::MAX`]).
    Fixed(usize),
}

impl CellTypes {
    /// The largest number of types.
    pub const MAX: usize = 256;
}

impl std::fmt::Display for CellTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CellTypes::Off => f.write_str("0"),
            CellTypes::Auto => f.write_str("auto"),
            CellTypes::Fixed(k) => write!(f, "{k}"),
        }
    }
}

impl std::str::FromStr for CellTypes {
    type Err = String;

    /// `auto`, `0` (off) or a number of types from 2 to [`CellTypes::MAX`].
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected auto, 0 (off) or 2–{}, got {s:?}", CellTypes::MAX);
        match s.trim() {
            "auto" => Ok(CellTypes::Auto),
            "0" | "off" => Ok(CellTypes::Off),
            t => match t.parse::<usize>() {
                Ok(k) if (2..=CellTypes::MAX).contains(&k) => Ok(CellTypes::Fixed(k)),
                _ => Err(bad()),
            },
        }
    }
}

impl Serialize for CellTypes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How many tiles go through the model in one forward pass (`predict --batch_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchSize {
    /// Consecutive tiles share a pass while it holds at most [`BatchSize::AUTO_NODES`] nodes
    /// (transcripts and boundaries, margins included; read from the tile headers): small tiles
    /// are batched, a large one goes alone. A reference `.pt` tile goes alone.
    #[default]
    Auto,
    /// This many tiles per pass (1–[`BatchSize::MAX`]); the reference's default is 1.
    Tiles(usize),
}

impl BatchSize {
    /// The most nodes `Auto` puts in one pass: about six 20 µm tiles of a Xenium sample, one
    /// 100 µm tile (docs/benchmarks.md, "Prediction").
    pub const AUTO_NODES: usize = 4096;
    /// The most tiles per pass.
    pub const MAX: usize = 4096;
}

impl std::fmt::Display for BatchSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchSize::Auto => f.write_str("auto"),
            BatchSize::Tiles(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for BatchSize {
    type Err = String;

    /// `auto` or a number of tiles from 1 to [`BatchSize::MAX`].
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(BatchSize::Auto),
            t => match t.parse::<usize>() {
                Ok(n) if (1..=BatchSize::MAX).contains(&n) => Ok(BatchSize::Tiles(n)),
                _ => Err(format!(
                    "expected auto or a number of tiles from 1 to {}, got {s:?}",
                    BatchSize::MAX
                )),
            },
        }
    }
}

impl Serialize for BatchSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What `predict` does with a transcript id shared by different transcripts (another position
/// or gene) across the input tiles. One transcript decided by two tiles (overlapping tiles
/// without core bounds) is always kept once, with its higher score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateIds {
    /// Refuse the input, naming an example (the default: such tiles come from different samples
    /// or were edited, and their output could not be joined back to the transcripts).
    #[default]
    Error,
    /// Keep one transcript per id, the one with the higher score; the others are counted in
    /// the summary (`ids_merged`) and are not in the output.
    Merge,
}

impl PredictConfig {
    /// The defaults of `segger predict` for the given directories.
    pub fn new(model: PathBuf, input: PathBuf, output: PathBuf) -> Self {
        Self {
            model,
            input,
            output,
            k_bd: segger_data::create::COMPETITORS,
            dist_bd: 12.0,
            score_cut: None,
            distance_scale: 0.5,
            reach: DEFAULT_REACH,
            lone_reach: DEFAULT_LONE_REACH,
            return_reach: DEFAULT_RETURN_REACH,
            expression_weight: 4.0,
            inner_reach: DEFAULT_INNER_REACH,
            use_cc: true,
            k_tx: 10,
            dist_tx: 1.5,
            min_transcripts: 5,
            cell_types: CellTypes::Auto,
            join_neighbours: crate::cell_types::JOIN_NEIGHBOURS,
            border_rounds: crate::cell_types::BORDER_ROUNDS,
            accelerator: Accelerator::Auto,
            batch_size: BatchSize::Auto,
            num_workers: 2,
            overwrite: false,
            platform: None,
            raw_tile_size: Some(DEFAULT_RAW_TILE_SIZE),
            raw_options: None,
            float32_matmul_precision: MatmulPrecision::Highest,
            duplicate_ids: DuplicateIds::Error,
        }
    }

    /// The score cut in force ([`PredictConfig::score_cut`], resolved when the model was
    /// opened).
    pub fn cut(&self) -> f32 {
        self.score_cut.unwrap_or(DEFAULT_SCORE_CUT)
    }
}

/// The score cut of a model without a calibration (the reference's).
pub const DEFAULT_SCORE_CUT: f32 = 0.5;

/// The default of [`PredictConfig::reach`] (`--reach`), in equivalent radii (docs/accuracy.md,
/// "Reach").
pub const DEFAULT_REACH: f32 = 2.5;

/// The default of [`PredictConfig::lone_reach`] (`--lone_reach`), in equivalent radii
/// (docs/accuracy.md, "Lone reach").
pub const DEFAULT_LONE_REACH: f32 = 2.0;

/// The default of [`PredictConfig::return_reach`] (`--return_reach`), in equivalent radii
/// (docs/accuracy.md, "Return within 2.5 radii").
pub const DEFAULT_RETURN_REACH: f32 = 2.5;

/// Beyond [`PredictConfig::lone_reach`], another candidate boundary must lie within this many
/// times a boundary's distance (each in its own radii) for the boundary to reach the
/// transcript.
pub const LONE_RATIO: f32 = 1.5;

/// The default of [`PredictConfig::inner_reach`] (`--inner_reach`), in equivalent radii: the
/// nucleus and a thin rim (docs/accuracy.md, "Inner reach").
pub const DEFAULT_INNER_REACH: f32 = 1.25;

/// The default of [`PredictConfig::raw_tile_size`] (`--tile_size`), in µm: a raw input is
/// predicted on 100 µm tiles, about twice as fast as on the 20 µm tiles of training with the
/// same assignments (docs/prediction.md, "Tile size").
pub const DEFAULT_RAW_TILE_SIZE: f64 = 100.0;

/// The largest [`PredictConfig::raw_tile_size`] accepted, in µm.
pub const MAX_RAW_TILE_SIZE: f64 = 100_000.0;

/// Errors of `segger predict`.
#[derive(Debug, Error)]
pub enum PredictError {
    /// Bad input (flags, model, data): nothing was written. Exit code 2.
    #[error("{0}")]
    Input(String),
    /// The requested backend is not available. Exit code 2.
    #[error("{0}")]
    Backend(String),
    /// The input's tiles or dataset description cannot be read. Exit code 2.
    #[error("{context}{source}")]
    Data {
        /// The flag (and file) concerned, ending in `": "`.
        context: String,
        /// The data layer's error (names the file).
        #[source]
        source: Box<segger_data::DataError>,
    },
    /// The model's configuration is invalid, or a tile does not fit it. Exit code 2.
    #[error("{context}{source}")]
    Model {
        /// The flag and file concerned, ending in `": "`.
        context: String,
        /// The configuration problem (names the field).
        #[source]
        source: segger_model::ConfigError,
    },
    /// The model's weights cannot be read. Exit code 2.
    #[error("{context}{source}")]
    Weights {
        /// The flag concerned, ending in `": "`.
        context: String,
        /// The weights' problem (names the file).
        #[source]
        source: segger_model::pyg::WeightsError,
    },
    /// A tile's positions cannot be searched for neighbours (non-finite values). Exit code 2.
    #[error("{}: {source}", path.display())]
    Graph {
        /// The tile.
        path: PathBuf,
        /// The graph problem.
        #[source]
        source: segger_graph::GraphError,
    },
    /// An output file cannot be written. Exit code 1.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// Another failure while running. Exit code 1.
    #[error("{0}")]
    Runtime(String),
    /// `--output` cannot be written where it was asked for (segger-fs's rules). Exit code 2,
    /// or 1 when the file system failed.
    #[error(transparent)]
    Output(#[from] segger_fs::OutputError),
}

impl PredictError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            PredictError::Input(_)
            | PredictError::Backend(_)
            | PredictError::Data { .. }
            | PredictError::Model { .. }
            | PredictError::Weights { .. }
            | PredictError::Graph { .. } => 2,
            PredictError::Io { .. } | PredictError::Runtime(_) => 1,
            PredictError::Output(e) => e.exit_code(),
        }
    }
}
