//! `segger predict` through the binary: outputs, exactly-once, log counts, AnnData, bad input.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::{Array, BooleanArray, Int64Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use segger_model::{Segger, SeggerConfig};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segger"));
    c.env("SEGGER_LOG", "info");
    c
}

fn small_config(genes: usize) -> SeggerConfig {
    let mut c = SeggerConfig::new(genes);
    c.hidden_channels = 8;
    c.out_channels = 4;
    c.heads = 2;
    c
}

/// A model directory with random weights, its config and (optionally) a vocabulary.
fn model_dir(dir: &Path, cfg: &SeggerConfig, vocab: Option<&[String]>) -> PathBuf {
    segger_predict::synthetic::write_model(dir, cfg, vocab, 7).unwrap();
    dir.to_path_buf()
}

fn predict(model: &Path, input: &Path, output: &Path, extra: &[&str]) -> Output {
    bin()
        .args(["predict", "--accelerator", "cpu", "--model"])
        .arg(model)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Columns of a parquet file as (name → rows of debug strings) is overkill: read the three we
/// check.
struct TxTable {
    ids: Vec<i64>,
    cells: Vec<Option<String>>,
    genes: Vec<Option<String>>,
    assigned: Vec<bool>,
}

fn read_transcripts(path: &Path) -> TxTable {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut t = TxTable {
        ids: vec![],
        cells: vec![],
        genes: vec![],
        assigned: vec![],
    };
    for b in reader {
        let b = b.unwrap();
        let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
        let ids = col("transcript_id");
        let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
        let cells = col("segger_cell_id");
        let cells = cells.as_any().downcast_ref::<StringArray>().unwrap();
        let genes = col("feature_name");
        let genes = genes.as_any().downcast_ref::<StringArray>().unwrap();
        let assigned = col("assigned");
        let assigned = assigned.as_any().downcast_ref::<BooleanArray>().unwrap();
        for i in 0..b.num_rows() {
            t.ids.push(ids.value(i));
            t.cells
                .push((!cells.is_null(i)).then(|| cells.value(i).to_string()));
            t.genes
                .push((!genes.is_null(i)).then(|| genes.value(i).to_string()));
            t.assigned.push(assigned.value(i));
        }
    }
    t
}

fn parquet_rows(path: &Path) -> usize {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .metadata()
        .file_metadata()
        .num_rows() as usize
}

/// A Python with anndata: `SEGGER_PYTHON`, else `python3`; `None` when anndata is missing.
fn anndata_python() -> Option<String> {
    let py = std::env::var("SEGGER_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import anndata"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

#[test]
fn predicts_every_transcript_once_and_writes_every_output() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sample = segger_predict::synthetic::write_dataset(&data, 6000, 12, 60.0, 1).unwrap();
    assert!(sample.tiles >= 4);
    let model = model_dir(
        &tmp.path().join("model"),
        &small_config(12),
        Some(&sample.genes),
    );
    let out = tmp.path().join("out");
    let o = predict(&model, &data, &out, &["--use_cc", "--min_transcripts", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Every transcript exactly once.
    let t = read_transcripts(&out.join("segger_transcripts.parquet"));
    assert_eq!(t.ids.len(), sample.transcripts);
    let unique: HashSet<i64> = t.ids.iter().copied().collect();
    assert_eq!(unique.len(), sample.transcripts);
    assert!(unique
        .iter()
        .all(|&i| (0..sample.transcripts as i64).contains(&i)));
    assert!(t
        .genes
        .iter()
        .all(|g| g.as_deref().is_some_and(|g| g.starts_with("GENE"))));

    // The log's counts match the table.
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("segmentation_log.json")).unwrap())
            .unwrap();
    let c = &log["counts"];
    let in_cell = t.cells.iter().filter(|c| c.is_some()).count();
    let on_boundary = t.assigned.iter().filter(|a| **a).count();
    assert_eq!(c["transcripts"], sample.transcripts);
    assert_eq!(c["assigned_to_boundary"], on_boundary);
    assert_eq!(c["assigned_to_component"], in_cell - on_boundary);
    assert_eq!(c["unassigned"], sample.transcripts - in_cell);
    let cells: HashSet<&String> = t.cells.iter().flatten().collect();
    assert_eq!(c["cells"], cells.len());
    assert!(log["settings"]["use_cc"].as_bool().unwrap());
    assert!(log["timings"]["total_s"].as_f64().unwrap() > 0.0);

    // Component ids cannot be input ids; boundary-assigned transcripts carry input ids.
    for (cell, a) in t.cells.iter().zip(&t.assigned) {
        if let Some(cell) = cell {
            assert_eq!(*a, cell.starts_with("nucleus-"), "{cell}");
        }
    }

    // Cells, polygons, Baysor CSV.
    assert_eq!(parquet_rows(&out.join("segger_cells.parquet")), cells.len());
    let gj: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("segger_cell_boundaries.geojson")).unwrap(),
    )
    .unwrap();
    let features = gj["features"].as_array().unwrap();
    assert_eq!(features.len(), cells.len());
    for f in features {
        let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
        assert!(ring.len() >= 4);
        assert_eq!(ring.first(), ring.last());
    }
    let csv = std::fs::read_to_string(out.join("segger_baysor_segmentation.csv")).unwrap();
    assert_eq!(csv.lines().count(), sample.transcripts + 1);
    assert!(csv.starts_with("transcript_id,cell,is_noise,"));

    // AnnData, when Python with anndata is available.
    if let Some(py) = anndata_python() {
        let script = format!(
            "import anndata, json\na = anndata.read_h5ad({:?})\nprint(json.dumps({{'n_obs': a.n_obs, 'n_vars': a.n_vars, 'total': float(a.X.sum()), 'fmt': a.X.format, 'obs': list(a.obs_names[:3]), 'var0': a.var_names[0], 'cols': list(a.obs.columns), 'spatial': list(a.obsm['spatial'].shape)}}))",
            out.join("segger_adata.h5ad").display().to_string()
        );
        let o = Command::new(py).args(["-c", &script]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("anndata summary JSON");
        assert_eq!(v["n_obs"], cells.len());
        assert_eq!(v["n_vars"], 12);
        assert_eq!(v["total"].as_f64().unwrap() as usize, in_cell);
        assert_eq!(v["fmt"], "csr");
        assert_eq!(v["var0"], "GENE0");
        assert_eq!(v["spatial"], serde_json::json!([cells.len(), 2]));
    } else {
        eprintln!("skipping the AnnData check: no Python with anndata (set SEGGER_PYTHON)");
    }

    // An existing output needs --overwrite; with it, the run replaces the directory.
    let o = predict(&model, &data, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    let o = predict(&model, &data, &out, &["--overwrite", "--use_cc", "False"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("segmentation_log.json")).unwrap())
            .unwrap();
    assert!(!log["settings"]["use_cc"].as_bool().unwrap());
    assert_eq!(log["counts"]["assigned_to_component"], 0);
}

#[test]
fn the_inner_reach_assigns_transcripts_near_a_nucleus_whatever_their_score() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sample = segger_predict::synthetic::write_dataset(&data, 1500, 6, 40.0, 4).unwrap();
    let model = model_dir(
        &tmp.path().join("model"),
        &small_config(6),
        Some(&sample.genes),
    );
    let on_boundaries = |extra: &[&str], name: &str| -> u64 {
        let out = tmp.path().join(name);
        let mut args = vec!["--score_cut", "1", "--use_cc", "false", "--json"];
        args.extend_from_slice(extra);
        let o = predict(&model, &data, &out, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        s["assigned_to_boundary"].as_u64().unwrap()
    };
    // A cut of 1 passes no score: only the inner reach assigns.
    assert_eq!(on_boundaries(&["--inner_reach", "0"], "off"), 0);
    let near = on_boundaries(&[], "default");
    let nearer = on_boundaries(&["--inner_reach", "0.5"], "half");
    assert!(near > 0 && nearer > 0 && nearer < near, "{nearer} / {near}");
}

#[test]
fn an_id_shared_by_different_transcripts_is_refused_unless_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sample = segger_predict::synthetic::write_dataset(&data, 1500, 6, 40.0, 3).unwrap();
    assert!(sample.tiles >= 2);
    let model = model_dir(
        &tmp.path().join("model"),
        &small_config(6),
        Some(&sample.genes),
    );
    // Give the transcripts of one tile the ids of another's: the same ids now name
    // transcripts at other positions, as when tiles of two samples are mixed.
    let mut tiles: Vec<PathBuf> = std::fs::read_dir(data.join("test_tiles/processed"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tiles.sort();
    let ids = |t: &segger_data::Tile| match &t.graph.tx.ids {
        segger_graph::NodeIds::Int(v) => v.clone(),
        other => panic!("integer ids expected, got {other:?}"),
    };
    let donor = ids(&segger_data::read_tile(&tiles[0], None).unwrap());
    let mut victim = segger_data::read_tile(&tiles[1], None).unwrap();
    let mut v = ids(&victim);
    let shared = v.len().min(donor.len()).min(50);
    v[..shared].copy_from_slice(&donor[..shared]);
    victim.graph.tx.ids = segger_graph::NodeIds::Int(v);
    segger_data::write_tile(&tiles[1], &victim).unwrap();

    let out = tmp.path().join("out");
    let o = predict(&model, &data, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    // Only the transcripts in the victim's core are decided by it (the rest are its margin).
    let n: usize = err
        .split(" transcript ids name more than one transcript")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {err}"));
    assert!(n > 0 && n <= shared, "{err}");
    assert!(err.contains("--duplicate_ids merge"), "{err}");
    assert!(!out.exists(), "nothing is written");

    let o = predict(&model, &data, &out, &["--duplicate_ids", "merge", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["ids_merged"], n);
    let t = read_transcripts(&out.join("segger_transcripts.parquet"));
    assert_eq!(t.ids.len(), sample.transcripts - n);
}

#[test]
fn bad_inputs_get_clear_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sample = segger_predict::synthetic::write_dataset(&data, 800, 6, 40.0, 2).unwrap();
    let good = model_dir(
        &tmp.path().join("good"),
        &small_config(6),
        Some(&sample.genes),
    );
    let out = tmp.path().join("out");
    let expect = |o: Output, needle: &str| {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(needle),
            "expected {needle:?} in: {}",
            stderr(&o)
        );
        assert!(!out.exists());
    };

    // A model directory without weights.
    let empty = tmp.path().join("empty_model");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("config.json"), small_config(6).to_json()).unwrap();
    expect(predict(&empty, &data, &out, &[]), "no model.safetensors");

    // A config that does not match the weights.
    let mismatched = model_dir(&tmp.path().join("mismatch"), &small_config(6), None);
    let mut other = small_config(6);
    other.hidden_channels = 16;
    std::fs::write(mismatched.join("config.json"), other.to_json()).unwrap();
    expect(
        predict(&mismatched, &data, &out, &[]),
        "does not match the weights",
    );

    // A vocabulary mismatch: genes the model does not know.
    let other_genes: Vec<String> = (0..6).map(|i| format!("OTHER{i}")).collect();
    let foreign = model_dir(
        &tmp.path().join("foreign"),
        &small_config(6),
        Some(&other_genes),
    );
    expect(predict(&foreign, &data, &out, &[]), "vocabulary mismatch");
    // Too few token embeddings for the data, without a model vocabulary.
    let tiny = model_dir(&tmp.path().join("tiny"), &small_config(3), None);
    expect(predict(&tiny, &data, &out, &[]), "vocabulary mismatch");

    // Empty inputs: a dataset without tiles, an empty split, a missing directory.
    let empty_ds = tmp.path().join("empty_ds");
    std::fs::create_dir_all(&empty_ds).unwrap();
    std::fs::copy(data.join("dataset.json"), empty_ds.join("dataset.json")).unwrap();
    expect(predict(&good, &empty_ds, &out, &[]), "empty");
    std::fs::create_dir_all(empty_ds.join("test_tiles/processed")).unwrap();
    expect(predict(&good, &empty_ds, &out, &[]), "no tile files");
    expect(
        predict(&good, &tmp.path().join("nowhere"), &out, &[]),
        "does not exist",
    );

    // Bad flags.
    expect(
        predict(&good, &data, &out, &["--score_cut", "1.5"]),
        "--score_cut",
    );
    expect(
        predict(&good, &data, &out, &["--batch_size", "0"]),
        "--batch_size",
    );
    for v in [
        "--distance_scale=-1",
        "--distance_scale=nan",
        "--distance_scale=inf",
    ] {
        expect(predict(&good, &data, &out, &[v]), "--distance_scale");
    }
    for v in ["--cell_types=1", "--cell_types=257"] {
        expect(predict(&good, &data, &out, &[v]), "--cell_types");
    }
    // A model directory whose calibration.json is broken is refused, naming the file.
    let broken = model_dir(
        &tmp.path().join("broken_cal"),
        &small_config(6),
        Some(&sample.genes),
    );
    std::fs::write(broken.join("calibration.json"), "{\"score_cut\": 7}").unwrap();
    expect(predict(&broken, &data, &out, &[]), "calibration.json");

    // The good model works on the same data, and on one split directory.
    let o = predict(&good, &data.join("test_tiles"), &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        read_transcripts(&out.join("segger_transcripts.parquet"))
            .ids
            .len(),
        sample.transcripts
    );
    // With the cell-type stage, every transcript is still written once.
    let typed = tmp.path().join("typed");
    let o = predict(
        &good,
        &data.join("test_tiles"),
        &typed,
        &["--cell_types", "3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("types      3"));
    let mut ids = read_transcripts(&typed.join("segger_transcripts.parquet")).ids;
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), sample.transcripts);
}

#[test]
fn genes_are_remapped_onto_the_model_vocabulary() {
    // The model knows the dataset's genes in another order (plus one more): predictions must
    // equal those of a model whose token rows are permuted to the dataset's order.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sample = segger_predict::synthetic::write_dataset(&data, 1500, 5, 40.0, 3).unwrap();
    let cfg = small_config(6);
    let m = Segger::<burn::backend::Flex>::init(&cfg, &Default::default(), 11).unwrap();
    let model_vocab: Vec<String> = ["EXTRA", "GENE4", "GENE3", "GENE2", "GENE1", "GENE0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let a = tmp.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    segger_model::pyg::save_pyg_state_dict(&m, &a.join("model.safetensors")).unwrap();
    std::fs::write(a.join("config.json"), cfg.to_json()).unwrap();
    std::fs::write(
        a.join("vocab.json"),
        serde_json::to_string(&model_vocab).unwrap(),
    )
    .unwrap();
    // Model b: the same weights with the embedding rows in the dataset's order.
    let (mut tensors, _) =
        segger_model::pyg::read_safetensors(&a.join("model.safetensors")).unwrap();
    let emb = tensors.get_mut("tx_embedding.tx.weight").unwrap();
    let w = cfg.init_emb;
    let old = emb.values.clone();
    for g in 0..5 {
        let src = model_vocab
            .iter()
            .position(|v| *v == sample.genes[g])
            .unwrap();
        emb.values[g * w..(g + 1) * w].copy_from_slice(&old[src * w..(src + 1) * w]);
    }
    let mb = segger_model::pyg::from_tensors::<burn::backend::Flex>(
        &cfg,
        &tensors,
        &Default::default(),
        Path::new("b"),
    )
    .unwrap();
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    segger_model::pyg::save_pyg_state_dict(&mb, &b.join("model.safetensors")).unwrap();
    std::fs::write(b.join("config.json"), cfg.to_json()).unwrap();
    let mut vb = sample.genes.clone();
    vb.push("EXTRA".into());
    std::fs::write(b.join("vocab.json"), serde_json::to_string(&vb).unwrap()).unwrap();

    let (oa, ob) = (tmp.path().join("oa"), tmp.path().join("ob"));
    assert!(predict(&a, &data, &oa, &[]).status.success());
    assert!(predict(&b, &data, &ob, &[]).status.success());
    let ta = read_transcripts(&oa.join("segger_transcripts.parquet"));
    let tb = read_transcripts(&ob.join("segger_transcripts.parquet"));
    assert_eq!(ta.ids, tb.ids);
    assert_eq!(ta.cells, tb.cells);
    let assigned: HashMap<bool, usize> = ta.assigned.iter().fold(HashMap::new(), |mut m, a| {
        *m.entry(*a).or_default() += 1;
        m
    });
    assert_eq!(assigned.values().sum::<usize>(), sample.transcripts);
}
