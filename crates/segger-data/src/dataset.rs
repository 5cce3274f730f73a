//! Dataset layout and streaming tile loading.
//!
//! A dataset directory holds `dataset.json` and one directory per split,
//! `{train,val,test}_tiles/`, each with the tile files in `processed/`. The seed's
//! `--train_dir` / `--val_dir` point at such a split directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Receiver};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use segger_graph::Batch;
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::tile::{read_tile, Tile};

/// The three splits of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training tiles.
    Train,
    /// Validation tiles.
    Val,
    /// Test tiles (and tiles without positives).
    Test,
}

impl Split {
    /// All splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The split directory name: `train_tiles`, `val_tiles` or `test_tiles`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Split::Train => "train_tiles",
            Split::Val => "val_tiles",
            Split::Test => "test_tiles",
        }
    }
}

/// Number of tiles per split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    /// Training tiles.
    pub train: usize,
    /// Validation tiles.
    pub val: usize,
    /// Test tiles.
    pub test: usize,
}

/// The content of `dataset.json` at a dataset's root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Always `segger-dataset/1`.
    pub format: String,
    /// Gene vocabulary: token id `i` is gene `vocab[i]`. Empty for embedding-based datasets.
    #[serde(default)]
    pub vocab: Vec<String>,
    /// The settings that built the dataset (free-form).
    #[serde(default)]
    pub settings: serde_json::Value,
    /// Tile counts per split.
    #[serde(default)]
    pub tiles: SplitCounts,
}

/// The value of [`DatasetInfo::format`].
pub const DATASET_FORMAT: &str = "segger-dataset/1";

impl DatasetInfo {
    /// Reads `dataset.json` from a dataset root.
    pub fn read(root: &Path) -> Result<Self, DataError> {
        let path = root.join("dataset.json");
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        let info: DatasetInfo = serde_json::from_str(&text)
            .map_err(|e| DataError::format(&path, "dataset.json", format!("invalid JSON ({e})")))?;
        if info.format != DATASET_FORMAT {
            return Err(DataError::format(
                &path,
                "format",
                format!("is {:?}, expected {DATASET_FORMAT:?}", info.format),
            ));
        }
        Ok(info)
    }

    /// Writes `dataset.json` into a dataset root, atomically.
    pub fn write(&self, root: &Path) -> Result<(), DataError> {
        let text = serde_json::to_string_pretty(self).expect("dataset info serialises");
        crate::tile::write_atomic(&root.join("dataset.json"), text.as_bytes())
    }
}

fn is_tile_file(p: &Path) -> bool {
    p.is_file()
        && (p.extension().is_some_and(|e| e == "safetensors") || crate::torch::pyg::is_pt_tile(p))
}

/// A split's tiles, read lazily: listing the directory is all that happens up front.
#[derive(Debug, Clone)]
pub struct TileDataset {
    dir: PathBuf,
    paths: Arc<Vec<PathBuf>>,
    vocab: Option<usize>,
}

impl TileDataset {
    /// Opens a split directory (one with a `processed/` sub-directory) or a `processed/`
    /// directory itself. Tile files are listed and sorted by name; none is read yet. An empty
    /// or missing directory is an error. `vocab` bounds the token ids of every tile read.
    pub fn open(dir: &Path, vocab: Option<usize>) -> Result<Self, DataError> {
        if !dir.is_dir() {
            return Err(DataError::Dataset {
                path: dir.to_path_buf(),
                problem: "is not a directory (expected a split directory with processed/)".into(),
            });
        }
        let processed = if dir.file_name().is_some_and(|n| n == "processed") {
            dir.to_path_buf()
        } else {
            dir.join("processed")
        };
        if !processed.is_dir() {
            return Err(DataError::Dataset {
                path: dir.to_path_buf(),
                problem: "has no processed/ sub-directory with tile files".into(),
            });
        }
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&processed).map_err(|e| DataError::io(&processed, e))? {
            let p = entry.map_err(|e| DataError::io(&processed, e))?.path();
            if is_tile_file(&p) {
                paths.push(p);
            }
        }
        if paths.is_empty() {
            return Err(DataError::Dataset {
                path: processed,
                problem: "contains no tile files (*.safetensors or tiles_x*_y*_*_*.pt)".into(),
            });
        }
        paths.sort();
        Ok(Self {
            dir: dir.to_path_buf(),
            paths: Arc::new(paths),
            vocab,
        })
    }

    /// The directory the dataset was opened on.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of tiles.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when there are no tiles (never, for a dataset returned by [`TileDataset::open`]).
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The tile files, sorted.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Reads and validates tile `index`.
    pub fn get(&self, index: usize) -> Result<Tile, DataError> {
        read_tile(&self.paths[index], self.vocab)
    }

    /// The tile order of an epoch: sorted when `shuffle` is false, otherwise a permutation
    /// determined by `seed` and `epoch` alone.
    pub fn order(&self, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        if shuffle {
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            idx.shuffle(&mut rng);
        }
        idx
    }

    /// Streams the epoch's batches: `batch_size` tiles each (the last may be smaller), in the
    /// order given by [`TileDataset::order`]. Tiles are read and collated on `workers`
    /// background threads, up to `prefetch` batches ahead of the consumer.
    pub fn loader(
        &self,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        epoch: u64,
        workers: usize,
        prefetch: usize,
    ) -> TileLoader {
        let order = self.order(shuffle, seed, epoch);
        let chunks: Vec<Vec<usize>> = order
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        self.loader_for(chunks, workers, prefetch)
    }

    /// Groups the tiles, in order, into batches of at most `nodes` nodes each (transcripts and
    /// boundaries, margins included, as [`crate::tile::tile_nodes`] reads them from the
    /// headers), so small tiles share a forward pass; a tile larger than `nodes` goes alone. A
    /// reference `.pt` tile, whose size is unknown without reading it, makes a batch of its own.
    pub fn batches_by_nodes(&self, nodes: usize) -> Result<Vec<Vec<usize>>, DataError> {
        let sizes: Vec<Option<usize>> = {
            use rayon::prelude::*;
            self.paths
                .par_iter()
                .map(|p| crate::tile::tile_nodes(p))
                .collect::<Result<_, _>>()?
        };
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        let mut held = 0usize;
        for (i, size) in sizes.into_iter().enumerate() {
            let Some(n) = size else {
                if !current.is_empty() {
                    batches.push(std::mem::take(&mut current));
                    held = 0;
                }
                batches.push(vec![i]);
                continue;
            };
            if !current.is_empty() && held + n > nodes {
                batches.push(std::mem::take(&mut current));
                held = 0;
            }
            current.push(i);
            held += n;
        }
        if !current.is_empty() {
            batches.push(current);
        }
        Ok(batches)
    }

    /// Streams the given batches of tile indices, read and collated on `workers` background
    /// threads up to `prefetch` batches ahead, in order.
    pub fn loader_for(
        &self,
        batches: Vec<Vec<usize>>,
        workers: usize,
        prefetch: usize,
    ) -> TileLoader {
        TileLoader::spawn(self.clone(), batches, workers.max(1), prefetch.max(1))
    }
}

/// A collated batch of tiles together with the tiles' file paths.
#[derive(Debug, Clone)]
pub struct LoadedBatch {
    /// The collated graph.
    pub batch: Batch,
    /// The tiles' bounds, in batch order.
    pub bounds: Vec<Option<crate::tile::TileBounds>>,
    /// The tile files, in batch order.
    pub paths: Vec<PathBuf>,
}

/// An iterator over prefetched batches; see [`TileDataset::loader`]. Batches come out in
/// order, whatever the number of workers. Dropping it stops the workers.
pub struct TileLoader {
    receivers: Vec<Receiver<Result<LoadedBatch, DataError>>>,
    next: usize,
    total: usize,
    handles: Vec<thread::JoinHandle<()>>,
}

impl TileLoader {
    fn spawn(ds: TileDataset, chunks: Vec<Vec<usize>>, workers: usize, prefetch: usize) -> Self {
        let total = chunks.len();
        let chunks = Arc::new(chunks);
        let per_worker = prefetch.div_ceil(workers).max(1);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = bounded(per_worker);
            receivers.push(rx);
            let ds = ds.clone();
            let chunks = Arc::clone(&chunks);
            handles.push(thread::spawn(move || {
                // Worker w handles batches w, w + workers, ... so that batches stay in order.
                let mut b = w;
                while b < chunks.len() {
                    let res = load_batch(&ds, &chunks[b]);
                    if tx.send(res).is_err() {
                        return;
                    }
                    b += workers;
                }
            }));
        }
        Self {
            receivers,
            next: 0,
            total,
            handles,
        }
    }

    /// Number of batches in the epoch.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True when the epoch has no batches.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// Reads the tiles at `indices` and collates them.
pub fn load_batch(ds: &TileDataset, indices: &[usize]) -> Result<LoadedBatch, DataError> {
    let tiles: Vec<Tile> = indices
        .iter()
        .map(|&i| ds.get(i))
        .collect::<Result<_, _>>()?;
    let graphs: Vec<&segger_graph::HeteroGraph> = tiles.iter().map(|t| &t.graph).collect();
    let batch = Batch::collate(&graphs).map_err(|source| DataError::Graph {
        path: ds.paths[indices[0]].clone(),
        source,
    })?;
    Ok(LoadedBatch {
        batch,
        bounds: tiles.iter().map(|t| t.bounds).collect(),
        paths: indices.iter().map(|&i| ds.paths[i].clone()).collect(),
    })
}

impl Iterator for TileLoader {
    type Item = Result<LoadedBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let w = self.next % self.receivers.len();
        self.next += 1;
        Some(self.receivers[w].recv().unwrap_or_else(|_| {
            Err(DataError::Dataset {
                path: PathBuf::new(),
                problem: "a loader worker stopped unexpectedly".into(),
            })
        }))
    }
}

impl Drop for TileLoader {
    fn drop(&mut self) {
        // Closing the receivers makes blocked workers return.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
