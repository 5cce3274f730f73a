//! Destination-sorted (CSR) views of an edge list.
//!
//! Message passing aggregates over each destination's incoming edges. Sorting the edges by
//! destination once, on the host, when a batch is built, lets kernels walk one contiguous
//! segment per destination with no atomics.

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
        let mut row_ptr = vec![0usize; num_dst + 1];
        for &d in dst {
            row_ptr[d as usize + 1] += 1;
        }
        for i in 0..num_dst {
            row_ptr[i + 1] += row_ptr[i];
        }
        let mut next = row_ptr.clone();
        let mut s = vec![0u32; src.len()];
        let mut e = vec![0u32; src.len()];
        for (k, (&a, &d)) in src.iter().zip(dst).enumerate() {
            let slot = &mut next[d as usize];
            s[*slot] = a as u32;
            e[*slot] = k as u32;
            *slot += 1;
        }
        Self {
            row_ptr,
            src: s,
            edge_id: e,
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
