//! What prediction keeps between the tiles and the outputs: one compact record per
//! transcript, the table of cells, and the transcript links for connected components.

use std::collections::{HashMap, HashSet};

/// `TxRecord::cell` of an unassigned transcript.
pub const NO_CELL: u32 = u32::MAX;
/// `TxRecord::gene` when the gene is unknown (gene-embedding datasets).
pub const NO_GENE: u32 = u32::MAX;

/// One transcript's result: 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TxRecord {
    /// Transcript id from the raw data (`tx.id`).
    pub id: i64,
    /// x (µm).
    pub x: f32,
    /// y (µm).
    pub y: f32,
    /// z (µm); NaN for 2-D data.
    pub z: f32,
    /// Gene index into the output gene list, or [`NO_GENE`].
    pub gene: u32,
    /// Cell index into the cell table, or [`NO_CELL`].
    pub cell: u32,
    /// Best score `sigmoid(z_tx · z_bd)` over the candidate boundaries; NaN without any.
    pub score: f32,
}

/// How a cell came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// An input boundary (its own id).
    Boundary,
    /// A connected component of unassigned transcripts (`--use_cc`).
    Component,
}

/// The cells, in order of first assignment, with their ids.
#[derive(Debug, Default)]
pub struct CellTable {
    /// Cell ids.
    pub ids: Vec<String>,
    /// Kind of each cell.
    pub kinds: Vec<CellKind>,
    index: HashMap<String, u32>,
}

impl CellTable {
    /// The index of boundary `id`, added on first use.
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.kinds.push(CellKind::Boundary);
        self.index.insert(id.to_string(), i);
        i
    }

    /// Appends a component cell (its id must be new).
    pub fn push_component(&mut self, id: String) -> u32 {
        let i = self.ids.len() as u32;
        self.index.insert(id.clone(), i);
        self.ids.push(id);
        self.kinds.push(CellKind::Component);
        i
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no cells.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Everything collected over the tiles.
#[derive(Debug, Default)]
pub struct Collected {
    /// One record per transcript decided by a tile (before de-duplication).
    pub records: Vec<TxRecord>,
    /// The cell table.
    pub cells: CellTable,
    /// Links `(transcript id, transcript id)` between an unassigned transcript and a
    /// neighbour it is similar to (`--use_cc`).
    pub links: Vec<(i64, i64)>,
    /// Ids of transcripts within the inner reach of their chosen boundary (cell-type stage
    /// only; empty otherwise).
    pub near: Vec<i64>,
    /// `(transcript id, cell)`: transcripts whose chosen boundary (within reach) scored below
    /// the cut, with that boundary (cell-type stage only; empty otherwise).
    pub below: Vec<(i64, u32)>,
    /// `(transcript id, cell)`: where an unassigned transcript goes if it joins no new cell
    /// ([`crate::PredictConfig::return_reach`]).
    pub fallback: Vec<(i64, u32)>,
    /// Every boundary id seen in any tile (new component ids must avoid them).
    pub boundary_ids: HashSet<String>,
    /// Tiles processed.
    pub tiles: usize,
    /// Transcript nodes seen, margins included.
    pub nodes_seen: usize,
    /// Seconds waiting for tiles, in the model, and scoring.
    pub stage_seconds: [f64; 3],
}

/// Union-find over `n` elements, with path halving and union by size.
#[derive(Debug)]
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    /// `n` singletons.
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    /// The representative of `a`.
    pub fn find(&mut self, mut a: u32) -> u32 {
        while self.parent[a as usize] != a {
            let p = self.parent[a as usize];
            self.parent[a as usize] = self.parent[p as usize];
            a = self.parent[a as usize];
        }
        a
    }

    /// Joins the sets of `a` and `b`.
    pub fn union(&mut self, a: u32, b: u32) {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        if self.size[ra as usize] < self.size[rb as usize] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb as usize] = ra;
        self.size[ra as usize] += self.size[rb as usize];
    }

    /// Size of the set of `a`.
    pub fn set_size(&mut self, a: u32) -> u32 {
        let r = self.find(a);
        self.size[r as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_32_bytes() {
        assert_eq!(std::mem::size_of::<TxRecord>(), 32);
    }

    #[test]
    fn union_find_joins_components() {
        let mut uf = UnionFind::new(6);
        uf.union(0, 1);
        uf.union(2, 1);
        uf.union(4, 5);
        assert_eq!(uf.find(0), uf.find(2));
        assert_ne!(uf.find(0), uf.find(4));
        assert_eq!(uf.set_size(1), 3);
        assert_eq!(uf.set_size(3), 1);
    }
}
