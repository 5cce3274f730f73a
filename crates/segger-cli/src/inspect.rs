//! `segger inspect PATH [--json]`.

use std::path::{Path, PathBuf};

use clap::Args;
use segger_data::{read_tile, DatasetInfo, Split, Tile, TileDataset};
use segger_graph::{NodeFeatures, NodeType, NEIGHBORS_BD, NEIGHBORS_TX};
use serde_json::{json, Value};

use crate::CliError;

/// Arguments of `segger inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A tile file (.safetensors or a reference .pt), a split directory (with processed/) or a
    /// dataset directory (with dataset.json, or {train,val,test}_tiles/ of .pt tiles).
    pub path: PathBuf,
    /// Print one machine-readable JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn tile_summary(path: &Path, t: &Tile) -> Value {
    let g = &t.graph;
    let labels = g.labels();
    let (tokens, width) = match &g.tx.x {
        NodeFeatures::Tokens(_) => (true, 1),
        NodeFeatures::Dense { width, .. } => (false, *width),
    };
    json!({
        "path": path.display().to_string(),
        "valid": true,
        "tx": g.num_nodes(NodeType::Tx),
        "bd": g.num_nodes(NodeType::Bd),
        "tx_features": if tokens { "tokens".to_string() } else { format!("embedding[{width}]") },
        "pos_dim": g.tx.pos_dim,
        "edges": g.edges.iter().map(|(k, e)| (k.key(), json!(e.num_edges()))).collect::<serde_json::Map<_, _>>(),
        "tx_neighbors_tx": g.num_edges(NEIGHBORS_TX),
        "tx_neighbors_bd": g.num_edges(NEIGHBORS_BD),
        "positives": g.num_positive(),
        "label_pairs": labels.map_or(0, |l| l.len()),
        "label_positives": labels.map_or(0, |l| l.positives()),
        "label_negatives": labels.map_or(0, |l| l.len() - l.positives()),
        "bounds": t.bounds,
    })
}

fn print_tile(v: &Value) {
    println!("tile          {}", v["path"].as_str().unwrap_or(""));
    if let Some(b) = v.get("bounds").filter(|b| !b.is_null()) {
        println!(
            "bounds        x={} y={} width={} height={} margin={}",
            b["x"], b["y"], b["width"], b["height"], b["margin"]
        );
    }
    println!(
        "nodes         tx={} bd={}  (tx features: {}, {}-D positions)",
        v["tx"],
        v["bd"],
        v["tx_features"].as_str().unwrap_or(""),
        v["pos_dim"]
    );
    if let Some(edges) = v["edges"].as_object() {
        for (k, n) in edges {
            println!("edges         {k:<22} {n}");
        }
    }
    println!(
        "labels        {} pairs: {} positive, {} negative",
        v["label_pairs"], v["label_positives"], v["label_negatives"]
    );
    println!("validation    ok");
}

fn inspect_dir(path: &Path) -> Result<Value, CliError> {
    // A dataset root: dataset.json, or (a reference Segger dataset of .pt tiles) split dirs.
    let has_info = path.join("dataset.json").is_file();
    let is_root = has_info || Split::ALL.iter().any(|s| path.join(s.dir_name()).is_dir());
    let info = if has_info {
        Some(DatasetInfo::read(path).map_err(CliError::input)?)
    } else {
        None
    };
    let splits: Vec<(String, PathBuf)> = if is_root {
        Split::ALL
            .iter()
            .map(|s| (s.dir_name().to_string(), path.join(s.dir_name())))
            .filter(|(_, p)| p.is_dir())
            .collect()
    } else {
        vec![(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path.to_path_buf(),
        )]
    };
    let vocab = info.as_ref().map(|i| i.vocab.len()).filter(|&n| n > 0);
    let mut out_splits = serde_json::Map::new();
    let mut errors = Vec::new();
    let mut totals = [0usize; 5];
    // Every tile of a dataset is batched with the others and read by one model: one layout.
    let mut first_layout: Option<(segger_graph::Layout, PathBuf)> = None;
    for (name, dir) in splits {
        let ds = match TileDataset::open(&dir, vocab) {
            Ok(ds) => ds,
            Err(e) if is_root => {
                errors.push(e.to_string());
                continue;
            }
            Err(e) => return Err(CliError::input(e)),
        };
        let mut s = [0usize; 5];
        for i in 0..ds.len() {
            match ds.get(i) {
                Ok(t) => {
                    let g = &t.graph;
                    let layout = g.layout();
                    match &first_layout {
                        None => first_layout = Some((layout, ds.paths()[i].clone())),
                        Some((l, first)) if *l != layout => {
                            errors.push(format!(
                                "{}: tile layout ({layout}) differs from {} ({l}): a dataset's tiles must all be 2-D or all 3-D, with one feature layout",
                                ds.paths()[i].display(),
                                first.display()
                            ));
                            continue;
                        }
                        Some(_) => {}
                    }
                    s[0] += 1;
                    s[1] += g.num_nodes(NodeType::Tx);
                    s[2] += g.num_nodes(NodeType::Bd);
                    s[3] += g.num_positive();
                    s[4] += g.labels().map_or(0, |l| l.len());
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        for k in 0..5 {
            totals[k] += s[k];
        }
        out_splits.insert(name, json!({"tiles": ds.len(), "valid_tiles": s[0], "tx": s[1], "bd": s[2], "positives": s[3], "label_pairs": s[4]}));
    }
    Ok(json!({
        "path": path.display().to_string(),
        "valid": errors.is_empty(),
        "vocab": vocab,
        "splits": out_splits,
        "total": {"tiles_valid": totals[0], "tx": totals[1], "bd": totals[2], "positives": totals[3], "label_pairs": totals[4]},
        "errors": errors,
    }))
}

/// Runs `segger inspect`.
pub fn run(args: InspectArgs) -> Result<(), CliError> {
    if args.path.is_dir() {
        let v = inspect_dir(&args.path)?;
        if args.json {
            println!("{v}");
        } else {
            println!("dataset       {}", args.path.display());
            if let Some(n) = v["vocab"].as_u64() {
                println!("vocabulary    {n} genes");
            }
            println!(
                "{:<12} {:>7} {:>10} {:>8} {:>10} {:>12}",
                "split", "tiles", "tx", "bd", "positives", "label pairs"
            );
            for (name, s) in v["splits"].as_object().into_iter().flatten() {
                let n = |k: &str| s[k].as_u64().unwrap_or(0);
                println!(
                    "{:<12} {:>7} {:>10} {:>8} {:>10} {:>12}",
                    name,
                    n("tiles"),
                    n("tx"),
                    n("bd"),
                    n("positives"),
                    n("label_pairs")
                );
            }
            let errs = v["errors"].as_array().cloned().unwrap_or_default();
            if errs.is_empty() {
                println!("validation    ok");
            } else {
                println!("validation    {} problem(s):", errs.len());
                for e in &errs {
                    println!("  {}", e.as_str().unwrap_or(""));
                }
            }
        }
        if v["valid"] != json!(true) {
            return Err(CliError::input(anyhow::anyhow!(
                "{}: {} invalid tile(s) or split(s)",
                args.path.display(),
                v["errors"].as_array().map_or(0, Vec::len)
            )));
        }
        return Ok(());
    }
    let tile = read_tile(&args.path, None).map_err(CliError::input)?;
    let v = tile_summary(&args.path, &tile);
    if args.json {
        println!("{v}");
    } else {
        print_tile(&v);
    }
    Ok(())
}
