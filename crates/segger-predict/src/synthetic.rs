//! Synthetic tiled samples for tests and benchmarks: Xenium-like density, transcripts
//! clustered around nuclei, tiles with core bounds and margins written as a
//! `segger-dataset/1` directory.

use std::collections::BTreeMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use segger_data::{DataError, DatasetInfo, SplitCounts, Tile, TileBounds, DATASET_FORMAT};
use segger_graph::knn::{knn_bipartite, knn_same, KnnParams};
use segger_graph::{EdgeStore, EdgeType, HeteroGraph, NodeFeatures, NodeIds, NodeStore};

/// Writes a model directory with seeded random weights for `cfg`, as `predict` reads a trained
/// one: `model.safetensors` (PyG parameter names), `config.json` and, when given, `vocab.json`.
pub fn write_model(
    dir: &Path,
    cfg: &segger_model::SeggerConfig,
    vocab: Option<&[String]>,
    seed: u64,
) -> Result<(), crate::PredictError> {
    use crate::PredictError;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PredictError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let model = segger_model::Segger::<burn::backend::Flex>::init(cfg, &Default::default(), seed)
        .map_err(|source| PredictError::Model {
        context: String::new(),
        source,
    })?;
    segger_model::pyg::save_pyg_state_dict(&model, &dir.join("model.safetensors")).map_err(
        |source| PredictError::Weights {
            context: String::new(),
            source,
        },
    )?;
    let config = dir.join("config.json");
    std::fs::write(&config, cfg.to_json()).map_err(io(&config))?;
    if let Some(v) = vocab {
        let path = dir.join("vocab.json");
        let json = serde_json::to_string(v).map_err(|e| PredictError::Runtime(e.to_string()))?;
        std::fs::write(&path, json).map_err(io(&path))?;
    }
    Ok(())
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone)]
pub struct SyntheticSample {
    /// Transcripts in the sample (each in exactly one tile core).
    pub transcripts: usize,
    /// Tiles written.
    pub tiles: usize,
    /// The gene vocabulary.
    pub genes: Vec<String>,
    /// Per transcript id: the index of the nucleus it was drawn around, if any.
    pub truth: Vec<Option<u32>>,
}

/// Writes a sample of `n_tx` transcripts (0.25 per µm², 3-D, `n_genes` genes) and one nucleus
/// per 100 µm² into `root/test_tiles/processed`, cut into `tile` µm tiles with a 10 µm margin,
/// with `dataset.json`. Transcript ids are `0..n_tx`; 70% of the transcripts lie around a
/// nucleus (σ = 3 µm) and carry genes of its type, the rest are uniform noise.
pub fn write_dataset(
    root: &Path,
    n_tx: usize,
    n_genes: usize,
    tile: f64,
    seed: u64,
) -> Result<SyntheticSample, DataError> {
    let s = draw(n_tx, n_genes, tile, seed);
    let side = s.side;
    let nt = (side / tile).ceil() as usize;
    let margin = 10.0;
    // Bucket transcripts and nuclei by tile core.
    let bucket = |x: f32, y: f32| {
        let i = ((x as f64 / tile) as usize).min(nt - 1);
        let j = ((y as f64 / tile) as usize).min(nt - 1);
        j * nt + i
    };
    let mut tx_b: Vec<Vec<u32>> = vec![Vec::new(); nt * nt];
    for (i, p) in s.pos.chunks_exact(3).enumerate() {
        tx_b[bucket(p[0], p[1])].push(i as u32);
    }
    let mut bd_b: Vec<Vec<u32>> = vec![Vec::new(); nt * nt];
    for (i, p) in s.nuclei.iter().enumerate() {
        bd_b[bucket(p[0], p[1])].push(i as u32);
    }
    let dir = root.join("test_tiles").join("processed");
    std::fs::create_dir_all(&dir).map_err(|e| DataError::Io {
        path: dir.clone(),
        source: e,
    })?;
    let written: Vec<usize> = (0..nt * nt)
        .into_par_iter()
        .map(|b| write_one_tile(&s, &tx_b, &bd_b, b, nt, tile, margin, &dir))
        .collect::<Result<_, _>>()?;
    let tiles = written.iter().sum();
    let vocab: Vec<String> = (0..n_genes).map(|g| format!("GENE{g}")).collect();
    DatasetInfo {
        format: DATASET_FORMAT.to_string(),
        vocab: vocab.clone(),
        settings: serde_json::json!({"synthetic": {"seed": seed, "tile": tile}}),
        tiles: SplitCounts {
            train: 0,
            val: 0,
            test: tiles,
        },
    }
    .write(root)?;
    Ok(SyntheticSample {
        transcripts: n_tx,
        tiles,
        genes: vocab,
        truth: s.truth,
    })
}

/// The drawn sample of [`write_dataset`], before tiling.
struct Drawn {
    /// Side of the square sample (µm).
    side: f64,
    /// Nucleus centroids.
    nuclei: Vec<[f32; 2]>,
    /// Transcript positions, 3 per transcript.
    pos: Vec<f32>,
    /// Transcript genes.
    genes: Vec<i64>,
    /// Per transcript: the nucleus it was drawn around, if any.
    truth: Vec<Option<u32>>,
    /// Boundary features, 4 per nucleus.
    bd_x: Vec<f32>,
}

/// Draws the transcripts and nuclei of [`write_dataset`].
fn draw(n_tx: usize, n_genes: usize, tile: f64, seed: u64) -> Drawn {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let side = (n_tx as f64 / 0.25).sqrt().max(tile);
    let n_bd = ((side * side) / 100.0).max(1.0) as usize;
    let nuclei: Vec<[f32; 2]> = (0..n_bd)
        .map(|_| {
            [
                rng.random_range(0.0..side as f32),
                rng.random_range(0.0..side as f32),
            ]
        })
        .collect();
    let types = 5.min(n_genes.max(1));
    let per_type = (n_genes / types).max(1);
    let mut pos = Vec::with_capacity(n_tx * 3);
    let mut genes = Vec::with_capacity(n_tx);
    let mut truth = Vec::with_capacity(n_tx);
    for _ in 0..n_tx {
        if rng.random_bool(0.7) {
            let c = rng.random_range(0..n_bd);
            let (u1, u2): (f32, f32) = (rng.random_range(1e-6..1.0), rng.random());
            let r = 3.0 * (-2.0 * u1.ln()).sqrt();
            let a = 2.0 * std::f32::consts::PI * u2;
            let x = (nuclei[c][0] + r * a.cos()).clamp(0.0, side as f32 - 1e-3);
            let y = (nuclei[c][1] + r * a.sin()).clamp(0.0, side as f32 - 1e-3);
            pos.extend([x, y, rng.random_range(0.0..10.0)]);
            let t = c % types;
            genes.push(((t * per_type + rng.random_range(0..per_type)) % n_genes) as i64);
            truth.push(Some(c as u32));
        } else {
            pos.extend([
                rng.random_range(0.0..side as f32),
                rng.random_range(0.0..side as f32),
                rng.random_range(0.0..10.0),
            ]);
            genes.push(rng.random_range(0..n_genes) as i64);
            truth.push(None);
        }
    }
    let bd_x: Vec<f32> = (0..n_bd * 4).map(|_| rng.random_range(0.0..1.0)).collect();
    Drawn {
        side,
        nuclei,
        pos,
        genes,
        truth,
        bd_x,
    }
}

/// Writes tile `b` (of `nt` × `nt`, `tile` µm with a `margin`) of the sample into `dir`: 1 when
/// it holds transcripts, else 0 (nothing written).
#[allow(clippy::too_many_arguments)]
fn write_one_tile(
    s: &Drawn,
    tx_b: &[Vec<u32>],
    bd_b: &[Vec<u32>],
    b: usize,
    nt: usize,
    tile: f64,
    margin: f64,
    dir: &Path,
) -> Result<usize, DataError> {
    let (bi, bj) = (b % nt, b / nt);
    let bounds = TileBounds {
        x: bi as f64 * tile,
        y: bj as f64 * tile,
        width: tile,
        height: tile,
        margin,
    };
    let inside = |x: f32, y: f32| {
        let (x, y) = (x as f64, y as f64);
        x >= bounds.x - margin
            && x < bounds.x + tile + margin
            && y >= bounds.y - margin
            && y < bounds.y + tile + margin
    };
    let mut txs = Vec::new();
    let mut bds = Vec::new();
    for dj in -1i64..=1 {
        for di in -1i64..=1 {
            let (ni, nj) = (bi as i64 + di, bj as i64 + dj);
            if ni < 0 || nj < 0 || ni >= nt as i64 || nj >= nt as i64 {
                continue;
            }
            let nb = nj as usize * nt + ni as usize;
            txs.extend(tx_b[nb].iter().copied().filter(|&i| {
                let p = &s.pos[i as usize * 3..];
                inside(p[0], p[1])
            }));
            bds.extend(bd_b[nb].iter().copied().filter(|&i| {
                let p = s.nuclei[i as usize];
                inside(p[0], p[1])
            }));
        }
    }
    if txs.is_empty() {
        return Ok(0);
    }
    txs.sort_unstable();
    bds.sort_unstable();
    let tpos: Vec<f32> = txs
        .iter()
        .flat_map(|&i| s.pos[i as usize * 3..i as usize * 3 + 3].iter().copied())
        .collect();
    let txy: Vec<f32> = tpos.chunks_exact(3).flat_map(|p| [p[0], p[1]]).collect();
    let bpos: Vec<f32> = bds.iter().flat_map(|&i| s.nuclei[i as usize]).collect();
    let tt = knn_same(&tpos, 3, KnnParams::new(3, 5.0)).expect("finite");
    let tb = knn_bipartite(&txy, &bpos, 2, KnnParams::new(3, 15.0)).expect("finite");
    let mut edges = BTreeMap::new();
    edges.insert(
        EdgeType::parse(segger_graph::NEIGHBORS_TX).expect("key"),
        EdgeStore::new(tt.src, tt.dst),
    );
    edges.insert(
        EdgeType::parse(segger_graph::NEIGHBORS_BD).expect("key"),
        EdgeStore::new(tb.src, tb.dst),
    );
    let graph = HeteroGraph {
        tx: NodeStore {
            x: NodeFeatures::Tokens(txs.iter().map(|&i| s.genes[i as usize]).collect()),
            pos: tpos,
            pos_dim: 3,
            ids: NodeIds::Int(txs.iter().map(|&i| i as i64).collect()),
        },
        bd: NodeStore {
            x: NodeFeatures::Dense {
                values: bds
                    .iter()
                    .flat_map(|&i| s.bd_x[i as usize * 4..i as usize * 4 + 4].iter().copied())
                    .collect(),
                width: 4,
            },
            pos: bpos,
            pos_dim: 2,
            ids: NodeIds::Str(bds.iter().map(|&i| format!("nucleus-{i}")).collect()),
        },
        edges,
    };
    let t = Tile {
        graph,
        bounds: Some(bounds),
    };
    segger_data::write_tile(&dir.join(bounds.file_name()), &t)?;
    Ok(1)
}
