//! `segger evaluate`: segmentation accuracy against a known truth, and MECR.
//!
//! Definitions (transcripts are matched by `transcript_id`):
//! - the evaluated transcripts are the prediction's rows whose truth row names a true cell
//!   (background and control transcripts have none; transcripts that dataset creation filtered
//!   out are absent from the prediction and counted separately);
//! - correct: assigned to its true cell; wrong: assigned to another cell; unassigned: null;
//! - purity of a predicted cell: the share of its evaluated transcripts that belong to its
//!   dominant true cell; completeness of a true cell: the share of its evaluated transcripts
//!   that went to the predicted cell holding most of them; both reported as medians;
//! - ARI: the adjusted Rand index between true and predicted cells over the evaluated
//!   transcripts that were assigned;
//! - MECR (Segger paper): for each mutually exclusive gene pair, the number of predicted cells
//!   expressing both genes divided by the number expressing at least one; the reported value
//!   is the mean over the pairs. The pairs come from a file (`gene1,gene2` lines; no truth
//!   needed) or from the truth with the paper's marker rule: per type, genes in the top 5 % of
//!   mean expression that at least half of the type's cells express, kept when more than 20 %
//!   of the type's cells and fewer than 5 % of the other cells express them; pairs join the
//!   genes of two different types.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::io::{ints_of, read_columns, strings_of, wrong_type};
use crate::SimError;

/// The prediction file inside a prediction directory.
pub const PREDICTION_FILE: &str = "segger_transcripts.parquet";

/// Transcript-to-cell assignments (a segmentation).
#[derive(Debug, Clone)]
pub struct Assignments {
    /// The file they were read from.
    pub path: PathBuf,
    /// Transcript ids.
    pub ids: Vec<i64>,
    /// Cell index per transcript (into `cell_names`), `None` when unassigned.
    pub cell: Vec<Option<u32>>,
    /// Cell ids.
    pub cell_names: Vec<String>,
    /// Gene index per transcript (into `gene_names`), when the file has `feature_name`.
    pub gene: Option<Vec<u32>>,
    /// Gene names.
    pub gene_names: Vec<String>,
}

/// Ground truth: the true cell and cell type of each transcript.
#[derive(Debug, Clone)]
pub struct Truth {
    /// The file it was read from.
    pub path: PathBuf,
    /// Transcript id → (true cell index, true type index), `None` for no cell.
    pub by_id: HashMap<i64, Option<(u32, u32)>>,
    /// True cell ids.
    pub cell_names: Vec<String>,
    /// True cell type names.
    pub type_names: Vec<String>,
}

pub(crate) struct Interner {
    map: HashMap<String, u32>,
    pub(crate) names: Vec<String>,
}

impl Interner {
    pub(crate) fn new() -> Self {
        Self {
            map: HashMap::new(),
            names: Vec::new(),
        }
    }
    pub(crate) fn get(&mut self, s: String) -> u32 {
        if let Some(&i) = self.map.get(&s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.map.insert(s.clone(), i);
        self.names.push(s);
        i
    }
}

pub(crate) fn col_strings(
    path: &Path,
    name: &str,
    a: &dyn arrow_array::Array,
) -> Result<Vec<Option<String>>, SimError> {
    strings_of(a).map_err(|_| wrong_type(path, name, a, "string"))
}

pub(crate) fn col_ids(
    path: &Path,
    name: &str,
    a: &dyn arrow_array::Array,
) -> Result<Vec<i64>, SimError> {
    let v = ints_of(a).map_err(|_| wrong_type(path, name, a, "integer"))?;
    v.into_iter()
        .enumerate()
        .map(|(row, v)| {
            v.ok_or_else(|| SimError::BadValue {
                path: path.to_path_buf(),
                column: name.to_string(),
                message: format!("null transcript id in row {row}"),
            })
        })
        .collect()
}

fn check_unique(path: &Path, ids: &[i64]) -> Result<(), SimError> {
    let mut s = ids.to_vec();
    s.sort_unstable();
    if let Some(w) = s.windows(2).find(|w| w[0] == w[1]) {
        return Err(SimError::BadValue {
            path: path.to_path_buf(),
            column: "transcript_id".into(),
            message: format!("duplicate transcript id {}", w[0]),
        });
    }
    Ok(())
}

/// Reads a prediction: `DIR/segger_transcripts.parquet` (or the file itself when `path` is a
/// file) with `transcript_id`, `segger_cell_id` (null = unassigned) and, optionally,
/// `feature_name`.
pub fn read_prediction(path: &Path) -> Result<Assignments, SimError> {
    let is_parquet = path.extension().is_some_and(|e| e == "parquet");
    let file = if path.is_dir() || !is_parquet {
        path.join(PREDICTION_FILE)
    } else {
        path.to_path_buf()
    };
    let cols = read_columns(
        &file,
        &["transcript_id", "segger_cell_id"],
        &["feature_name"],
    )?;
    let (ids_a, cell_a) = match (&cols[0], &cols[1]) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            return Err(SimError::Invalid(format!(
                "{}: columns were not read",
                file.display()
            )))
        }
    };
    let ids = col_ids(&file, "transcript_id", ids_a.as_ref())?;
    check_unique(&file, &ids)?;
    let mut cells = Interner::new();
    let cell = col_strings(&file, "segger_cell_id", cell_a.as_ref())?
        .into_iter()
        .map(|c| c.map(|c| cells.get(c)))
        .collect();
    let mut genes = Interner::new();
    let gene = match &cols[2] {
        Some(a) => Some(
            col_strings(&file, "feature_name", a.as_ref())?
                .into_iter()
                .map(|g| genes.get(g.unwrap_or_default()))
                .collect(),
        ),
        None => None,
    };
    Ok(Assignments {
        path: file,
        ids,
        cell,
        cell_names: cells.names,
        gene,
        gene_names: genes.names,
    })
}

/// Reads `ground_truth.parquet`: `transcript_id`, `true_cell_id` (null = no cell) and
/// `true_cell_type`.
pub fn read_truth(path: &Path) -> Result<Truth, SimError> {
    let cols = read_columns(
        path,
        &["transcript_id", "true_cell_id", "true_cell_type"],
        &[],
    )?;
    let get = |k: usize| {
        cols[k]
            .clone()
            .ok_or_else(|| SimError::Invalid(format!("{}: columns were not read", path.display())))
    };
    let ids = col_ids(path, "transcript_id", get(0)?.as_ref())?;
    check_unique(path, &ids)?;
    let cells_v = col_strings(path, "true_cell_id", get(1)?.as_ref())?;
    let types_v = col_strings(path, "true_cell_type", get(2)?.as_ref())?;
    let (mut cells, mut types) = (Interner::new(), Interner::new());
    let mut by_id = HashMap::with_capacity(ids.len());
    for ((id, c), t) in ids.into_iter().zip(cells_v).zip(types_v) {
        // An empty id is "no cell", as a null is.
        let v = c
            .filter(|c| !c.is_empty())
            .map(|c| (cells.get(c), types.get(t.unwrap_or_default())));
        by_id.insert(id, v);
    }
    Ok(Truth {
        path: path.to_path_buf(),
        by_id,
        cell_names: cells.names,
        type_names: types.names,
    })
}

/// Reads gene pairs: one `gene1,gene2` pair per line; blank lines, `#` comments and a
/// `gene1,gene2` header are skipped.
pub fn read_gene_pairs(path: &Path) -> Result<Vec<(String, String)>, SimError> {
    if !path.is_file() {
        return Err(SimError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.eq_ignore_ascii_case("gene1,gene2") {
            continue;
        }
        let mut parts = l.split(',').map(str::trim);
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                out.push((a.to_string(), b.to_string()))
            }
            _ => {
                return Err(SimError::BadValue {
                    path: path.to_path_buf(),
                    column: "gene1,gene2".into(),
                    message: format!("line {} is not two comma-separated gene names", n + 1),
                })
            }
        }
    }
    Ok(out)
}

/// Accuracy against the truth.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TruthMetrics {
    /// Prediction rows with a true cell (the denominator of the three fractions).
    pub evaluated: usize,
    /// Fraction assigned to their true cell.
    pub correct: f64,
    /// Fraction assigned to another cell.
    pub wrong: f64,
    /// Fraction left unassigned.
    pub unassigned: f64,
    /// Fraction assigned to a predicted cell whose majority true cell is their true cell
    /// (each predicted cell is matched to the true cell that holds most of its transcripts).
    pub correct_majority: f64,
    /// Fraction assigned to a predicted cell matched to another true cell.
    pub wrong_majority: f64,
    /// Median purity over predicted cells with evaluated transcripts.
    pub purity_median: f64,
    /// Median completeness over true cells with evaluated transcripts.
    pub completeness_median: f64,
    /// Adjusted Rand index over the evaluated transcripts that were assigned.
    pub ari: f64,
    /// Prediction rows without a true cell (background noise).
    pub background: usize,
    /// Fraction of those that were assigned to a cell.
    pub background_assigned: f64,
    /// Prediction rows whose id the truth does not have.
    pub not_in_truth: usize,
    /// Truth rows with a true cell that the prediction does not have (filtered out upstream).
    pub missing_from_prediction: usize,
}

/// Mutually exclusive co-expression rate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mecr {
    /// Mean MECR over the pairs, on the predicted cells.
    pub value: f64,
    /// The same on the true cells (with the truth), for reference.
    pub truth_value: Option<f64>,
    /// Gene pairs used.
    pub pairs: usize,
    /// Where they came from: "truth" or the pair file.
    pub pairs_source: String,
}

/// The full report written to `evaluation.json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evaluation {
    /// The prediction file.
    pub prediction: String,
    /// Prediction rows.
    pub transcripts: usize,
    /// Fraction of the prediction's rows that are assigned.
    pub assigned_fraction: f64,
    /// Predicted cells.
    pub cells: usize,
    /// Accuracy against the truth, when one was given.
    pub truth: Option<TruthMetrics>,
    /// MECR, when gene pairs were available (and the prediction has `feature_name`).
    pub mecr: Option<Mecr>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn comb2(n: u64) -> f64 {
    n as f64 * (n as f64 - 1.0) / 2.0
}

/// Adjusted Rand index of two labelings of the same items (1 for identical partitions).
pub fn adjusted_rand_index(a: &[u32], b: &[u32]) -> f64 {
    let n = a.len().min(b.len());
    let mut nij: HashMap<(u32, u32), u64> = HashMap::new();
    let mut ai: HashMap<u32, u64> = HashMap::new();
    let mut bj: HashMap<u32, u64> = HashMap::new();
    for k in 0..n {
        *nij.entry((a[k], b[k])).or_default() += 1;
        *ai.entry(a[k]).or_default() += 1;
        *bj.entry(b[k]).or_default() += 1;
    }
    let index: f64 = nij.values().map(|&v| comb2(v)).sum();
    let sa: f64 = ai.values().map(|&v| comb2(v)).sum();
    let sb: f64 = bj.values().map(|&v| comb2(v)).sum();
    let total = comb2(n as u64);
    if total == 0.0 {
        return 1.0;
    }
    let expected = sa * sb / total;
    let max = 0.5 * (sa + sb);
    if (max - expected).abs() < 1e-12 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

/// Per-gene bitsets of the cells expressing the gene.
struct Presence {
    words: usize,
    bits: Vec<Vec<u64>>,
}

impl Presence {
    fn new(genes: usize, cells: usize) -> Self {
        let words = cells.div_ceil(64);
        Self {
            words,
            bits: vec![Vec::new(); genes],
        }
    }
    fn set(&mut self, gene: usize, cell: usize) {
        let b = &mut self.bits[gene];
        if b.is_empty() {
            b.resize(self.words, 0);
        }
        b[cell / 64] |= 1 << (cell % 64);
    }
    fn count(&self, g: usize) -> u64 {
        self.bits[g].iter().map(|w| w.count_ones() as u64).sum()
    }
    fn both(&self, g: usize, h: usize) -> u64 {
        self.bits[g]
            .iter()
            .zip(&self.bits[h])
            .map(|(a, b)| (a & b).count_ones() as u64)
            .sum()
    }
}

/// Mean MECR over `pairs` (gene indices) for cells given as (cell, gene) presence.
fn mecr_of(p: &Presence, pairs: &[(usize, usize)]) -> f64 {
    if pairs.is_empty() {
        return f64::NAN;
    }
    let mut sum = 0.0;
    for &(g, h) in pairs {
        let both = p.both(g, h);
        let either = p.count(g) + p.count(h) - both;
        if either > 0 {
            sum += both as f64 / either as f64;
        }
    }
    sum / pairs.len() as f64
}

/// The paper's percentile (numpy's linear interpolation).
fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Mutually exclusive gene pairs from true cells: `counts[cell][gene]`, `kind[cell]`.
fn exclusive_pairs(
    counts: &[Vec<u32>],
    kind: &[u32],
    types: usize,
    genes: usize,
) -> Vec<(usize, usize)> {
    let mut excl: Vec<Vec<usize>> = vec![Vec::new(); types];
    for (t, ex) in excl.iter_mut().enumerate() {
        let in_t: Vec<usize> = (0..counts.len())
            .filter(|&c| kind[c] as usize == t)
            .collect();
        let out_t = counts.len() - in_t.len();
        if in_t.is_empty() {
            continue;
        }
        let mean: Vec<f64> = (0..genes)
            .map(|g| in_t.iter().map(|&c| counts[c][g] as f64).sum::<f64>() / in_t.len() as f64)
            .collect();
        let cut = percentile(&mean, 95.0);
        for g in 0..genes {
            if mean[g] < cut {
                continue;
            }
            let frac_in =
                in_t.iter().filter(|&&c| counts[c][g] > 0).count() as f64 / in_t.len() as f64;
            let n_out = (0..counts.len())
                .filter(|&c| kind[c] as usize != t && counts[c][g] > 0)
                .count();
            let frac_out = if out_t == 0 {
                0.0
            } else {
                n_out as f64 / out_t as f64
            };
            // Markers need >= 50 % (which implies the > 20 % of the exclusivity rule).
            if frac_in >= 0.5 && frac_out < 0.05 {
                ex.push(g);
            }
        }
    }
    let mut pairs = Vec::new();
    for a in 0..types {
        for b in a + 1..types {
            for &g in &excl[a] {
                for &h in &excl[b] {
                    if g != h {
                        pairs.push((g, h));
                    }
                }
            }
        }
    }
    pairs
}

/// Evaluates `pred` against `truth` (optional) and computes MECR with `pairs` (optional; with a
/// truth and no pairs, the pairs come from the truth).
pub fn evaluate(
    pred: &Assignments,
    truth: Option<&Truth>,
    pairs: Option<(&[(String, String)], &str)>,
) -> Evaluation {
    let n = pred.ids.len();
    let assigned = pred.cell.iter().filter(|c| c.is_some()).count();
    let mut out = Evaluation {
        prediction: pred.path.display().to_string(),
        transcripts: n,
        assigned_fraction: if n == 0 {
            0.0
        } else {
            assigned as f64 / n as f64
        },
        cells: pred.cell_names.len(),
        truth: None,
        mecr: None,
    };
    let true_of = true_cells_of(pred, truth);
    if let Some(t) = truth {
        out.truth = Some(truth_metrics(pred, t, &true_of));
    }
    let Some(gene) = &pred.gene else {
        return out;
    };
    out.mecr = mecr(pred, gene, truth, &true_of, pairs);
    out
}

/// The true cell of each prediction row, looked up by transcript id: `None` when the truth
/// does not have the id, `Some(None)` for background, `Some(Some((cell, type)))` otherwise.
/// Empty without a truth.
fn true_cells_of(pred: &Assignments, truth: Option<&Truth>) -> Vec<Option<Option<(u32, u32)>>> {
    match truth {
        Some(t) => pred.ids.iter().map(|id| t.by_id.get(id).copied()).collect(),
        None => Vec::new(),
    }
}

/// The counts of one pass over the prediction's rows against the truth.
#[derive(Default)]
struct Tally {
    /// Evaluated rows assigned to their true cell.
    correct: usize,
    /// Evaluated rows assigned to another cell.
    wrong: usize,
    /// Evaluated rows left unassigned.
    unassigned: usize,
    /// Rows without a true cell.
    background: usize,
    /// Rows without a true cell that were assigned to a cell.
    bg_assigned: usize,
    /// Rows whose id the truth does not have.
    not_in_truth: usize,
    /// The true cell of each assigned evaluated row (for the ARI).
    pair_t: Vec<u32>,
    /// The predicted cell of each assigned evaluated row (for the ARI).
    pair_p: Vec<u32>,
    /// Contingency table: (true cell, predicted cell) → assigned evaluated rows.
    nij: HashMap<(u32, u32), u64>,
    /// Evaluated rows per true cell.
    true_total: HashMap<u32, u64>,
}

/// Tallies the prediction's rows against the truth `t` (`true_of` from [`true_cells_of`]):
/// correct, wrong and unassigned evaluated rows, background, rows the truth does not have,
/// and the contingency table of the assigned evaluated rows.
fn tally(pred: &Assignments, t: &Truth, true_of: &[Option<Option<(u32, u32)>>]) -> Tally {
    // Map predicted cell names onto true cell indices where they coincide.
    let true_index: HashMap<&str, u32> = t
        .cell_names
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    let pred_as_true: Vec<Option<u32>> = pred
        .cell_names
        .iter()
        .map(|s| true_index.get(s.as_str()).copied())
        .collect();
    let mut s = Tally::default();
    for (k, tr) in true_of.iter().enumerate() {
        match tr {
            None => s.not_in_truth += 1,
            Some(None) => {
                s.background += 1;
                if pred.cell[k].is_some() {
                    s.bg_assigned += 1;
                }
            }
            Some(Some((tc, _))) => {
                *s.true_total.entry(*tc).or_default() += 1;
                match pred.cell[k] {
                    None => s.unassigned += 1,
                    Some(pc) => {
                        if pred_as_true[pc as usize] == Some(*tc) {
                            s.correct += 1;
                        } else {
                            s.wrong += 1;
                        }
                        s.pair_t.push(*tc);
                        s.pair_p.push(pc);
                        *s.nij.entry((*tc, pc)).or_default() += 1;
                    }
                }
            }
        }
    }
    s
}

/// Truth rows with a true cell whose id the prediction does not have.
fn missing_from_prediction(pred: &Assignments, t: &Truth) -> usize {
    let pred_ids: std::collections::HashSet<i64> = pred.ids.iter().copied().collect();
    t.by_id
        .iter()
        .filter(|(id, v)| v.is_some() && !pred_ids.contains(id))
        .count()
}

/// Maxima of the contingency table `nij`: per predicted cell, its largest count and its total;
/// per true cell, its largest count.
#[allow(clippy::type_complexity)]
fn contingency_maxima(
    nij: &HashMap<(u32, u32), u64>,
) -> (HashMap<u32, (u64, u64)>, HashMap<u32, u64>) {
    let mut pred_max: HashMap<u32, (u64, u64)> = HashMap::new();
    let mut true_max: HashMap<u32, u64> = HashMap::new();
    for (&(tc, pc), &v) in nij {
        let e = pred_max.entry(pc).or_default();
        e.0 = e.0.max(v);
        e.1 += v;
        let f = true_max.entry(tc).or_default();
        *f = (*f).max(v);
    }
    (pred_max, true_max)
}

/// Accuracy of `pred` against the truth `t` (`true_of` from [`true_cells_of`]).
fn truth_metrics(
    pred: &Assignments,
    t: &Truth,
    true_of: &[Option<Option<(u32, u32)>>],
) -> TruthMetrics {
    let s = tally(pred, t, true_of);
    let mut m = TruthMetrics {
        evaluated: 0,
        correct: 0.0,
        wrong: 0.0,
        unassigned: 0.0,
        correct_majority: 0.0,
        wrong_majority: 0.0,
        purity_median: f64::NAN,
        completeness_median: f64::NAN,
        ari: f64::NAN,
        background: s.background,
        background_assigned: 0.0,
        not_in_truth: s.not_in_truth,
        missing_from_prediction: 0,
    };
    let ev = s.correct + s.wrong + s.unassigned;
    m.evaluated = ev;
    if ev > 0 {
        m.correct = s.correct as f64 / ev as f64;
        m.wrong = s.wrong as f64 / ev as f64;
        m.unassigned = s.unassigned as f64 / ev as f64;
    }
    m.background_assigned = if m.background == 0 {
        0.0
    } else {
        s.bg_assigned as f64 / m.background as f64
    };
    m.missing_from_prediction = missing_from_prediction(pred, t);
    // Purity and completeness from the contingency table.
    let (pred_max, true_max) = contingency_maxima(&s.nij);
    // Majority matching: each predicted cell counts as its dominant true cell, so the
    // transcripts it gets right are its largest contingency count.
    if ev > 0 {
        let agree: u64 = pred_max.values().map(|&(mx, _)| mx).sum();
        m.correct_majority = agree as f64 / ev as f64;
        m.wrong_majority = (s.correct + s.wrong) as f64 / ev as f64 - m.correct_majority;
    }
    m.purity_median = median(
        pred_max
            .values()
            .map(|&(mx, tot)| mx as f64 / tot as f64)
            .collect(),
    );
    m.completeness_median = median(
        s.true_total
            .iter()
            .map(|(tc, &tot)| true_max.get(tc).copied().unwrap_or(0) as f64 / tot as f64)
            .collect(),
    );
    m.ari = if s.pair_t.is_empty() {
        f64::NAN
    } else {
        adjusted_rand_index(&s.pair_t, &s.pair_p)
    };
    m
}

/// What MECR needs of the true cells: their gene presence, the gene counts (`counts[cell][gene]`)
/// and type of each true cell with a transcript in the prediction, and the number of types.
type TruthCells = (Presence, Vec<Vec<u32>>, Vec<u32>, usize);

/// Gene presence of the predicted cells (`gene`: the gene index of each prediction row).
fn predicted_presence(pred: &Assignments, gene: &[u32]) -> Presence {
    let mut p = Presence::new(pred.gene_names.len(), pred.cell_names.len());
    for (k, c) in pred.cell.iter().enumerate() {
        if let Some(c) = c {
            p.set(gene[k] as usize, *c as usize);
        }
    }
    p
}

/// The true cells' presence and counts (over the prediction's rows, which carry the genes:
/// `gene` per row, `genes` in all; `true_of` from [`true_cells_of`]).
fn truth_cells(
    t: &Truth,
    true_of: &[Option<Option<(u32, u32)>>],
    gene: &[u32],
    genes: usize,
) -> TruthCells {
    let mut tp = Presence::new(genes, t.cell_names.len());
    let mut counts: Vec<Vec<u32>> = vec![Vec::new(); t.cell_names.len()];
    let mut kind = vec![0u32; t.cell_names.len()];
    for (k, tr) in true_of.iter().enumerate() {
        if let Some(Some((tc, tt))) = tr {
            let c = &mut counts[*tc as usize];
            if c.is_empty() {
                c.resize(genes, 0);
            }
            c[gene[k] as usize] += 1;
            kind[*tc as usize] = *tt;
            tp.set(gene[k] as usize, *tc as usize);
        }
    }
    let keep: Vec<usize> = (0..counts.len())
        .filter(|&c| !counts[c].is_empty())
        .collect();
    let counts: Vec<Vec<u32>> = keep.iter().map(|&c| counts[c].clone()).collect();
    let kind: Vec<u32> = keep.iter().map(|&c| kind[c]).collect();
    (tp, counts, kind, t.type_names.len())
}

/// The MECR gene pairs as indices into the prediction's genes, with their source: the given
/// `pairs` (those naming a gene the prediction lacks are dropped), else the exclusive pairs of
/// the true cells; `None` without either.
fn mecr_pairs(
    pred: &Assignments,
    pairs: Option<(&[(String, String)], &str)>,
    truth_cells: Option<&TruthCells>,
    genes: usize,
) -> Option<(Vec<(usize, usize)>, String)> {
    match (pairs, truth_cells) {
        (Some((list, name)), _) => {
            let index: HashMap<&str, usize> = pred
                .gene_names
                .iter()
                .enumerate()
                .map(|(i, s)| (s.as_str(), i))
                .collect();
            Some((
                list.iter()
                    .filter_map(|(a, b)| Some((*index.get(a.as_str())?, *index.get(b.as_str())?)))
                    .collect(),
                name.to_string(),
            ))
        }
        (None, Some((_, counts, kind, types))) => Some((
            exclusive_pairs(counts, kind, *types, genes),
            "truth".to_string(),
        )),
        (None, None) => None,
    }
}

/// MECR of `pred` (`gene`: its gene index per row) and, with a truth, of the true cells
/// (`true_of` from [`true_cells_of`]); `None` when there are no usable gene pairs.
fn mecr(
    pred: &Assignments,
    gene: &[u32],
    truth: Option<&Truth>,
    true_of: &[Option<Option<(u32, u32)>>],
    pairs: Option<(&[(String, String)], &str)>,
) -> Option<Mecr> {
    let genes = pred.gene_names.len();
    let p = predicted_presence(pred, gene);
    let truth_cells = truth.map(|t| truth_cells(t, true_of, gene, genes));
    let (pairs_idx, source) = mecr_pairs(pred, pairs, truth_cells.as_ref(), genes)?;
    if pairs_idx.is_empty() {
        return None;
    }
    Some(Mecr {
        value: mecr_of(&p, &pairs_idx),
        truth_value: truth_cells.map(|(tp, ..)| mecr_of(&tp, &pairs_idx)),
        pairs: pairs_idx.len(),
        pairs_source: source,
    })
}

/// Writes `evaluation.json` into `dir`.
pub fn write_json(e: &Evaluation, path: &Path) -> Result<(), SimError> {
    let text = serde_json::to_string_pretty(e).map_err(|e| SimError::Invalid(e.to_string()))?;
    std::fs::write(path, text).map_err(|source| SimError::Io {
        path: path.to_path_buf(),
        source,
    })
}
