//! Destination-sorted (CSR) views of an edge list.
//!
//! Message passing aggregates over each destination's incoming edges. Sorting the edges by
//! destination once, on the host, when a batch is built, lets kernels walk one contiguous
//! segment per destination with no atomics.

/// Stable counting sort of `len` items by key (`key(k)` in `0..num_keys`): the segment
/// boundaries (length `num_keys + 1`) and, segment by segment, the items `0..len` in their
/// original order. The grouping behind [`Csr::from_edges`] and the other by-key indexes.
pub fn group_by_key(
    len: usize,
    num_keys: usize,
    key: impl Fn(usize) -> usize,
) -> (Vec<usize>, Vec<u32>) {
    let mut row_ptr = vec![0usize; num_keys + 1];
    for k in 0..len {
        row_ptr[key(k) + 1] += 1;
    }
    for i in 0..num_keys {
        row_ptr[i + 1] += row_ptr[i];
    }
    let mut next = row_ptr.clone();
    let mut order = vec![0u32; len];
    for k in 0..len {
        let slot = &mut next[key(k)];
        order[*slot] = k as u32;
        *slot += 1;
    }
    (row_ptr, order)
}

/// Edges grouped by destination: the incoming edges of destination `i` are
/// `row_ptr[i]..row_ptr[i + 1]` in `src` and `edge_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    /// Segment boundaries, length `num_dst + 1`.
    pub row_ptr: Vec<usize>,
    /// Source node of each sorted edge.
    pub src: Vec<u32>,
    /// Position of each sorted edge in the original edge list.
    pub edge_id: Vec<u32>,
}

impl Csr {
    /// Builds the CSR view with a stable counting sort (edges of one destination keep their
    /// original order). Indices must already be validated to lie in range.
    pub fn from_edges(src: &[i64], dst: &[i64], num_dst: usize) -> Self {
        assert_eq!(src.len(), dst.len(), "edge rows differ in length");
        let (row_ptr, edge_id) = group_by_key(dst.len(), num_dst, |k| dst[k] as usize);
        let src = edge_id.iter().map(|&k| src[k as usize] as u32).collect();
        Self {
            row_ptr,
            src,
            edge_id,
        }
    }

    /// Number of destinations.
    pub fn num_dst(&self) -> usize {
        self.row_ptr.len() - 1
    }

    /// Number of edges.
    pub fn num_edges(&self) -> usize {
        self.src.len()
    }

    /// Destination of every sorted edge.
    pub fn dst_of_sorted(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.num_edges());
        for (i, w) in self.row_ptr.windows(2).enumerate() {
            out.extend(std::iter::repeat_n(i as u32, w[1] - w[0]));
        }
        out
    }
}
