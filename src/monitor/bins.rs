//! A value's bin on a reference's grid, in constant time (the monitor's hot loop): see
//! [`Finder`].

/// A grid padded to a fixed size (so a look past the last edge finds +inf).
const PADDED: usize = 64;
const _: () = assert!(2 * (crate::monitor::reference::GRID + 1) <= PADDED);

/// The most cells a [`Finder`] divides its range into.
const MAX_CELLS: usize = 4096;

/// Finds a value's bin (how many edges are at or below it) in constant time: the range of
/// the edges is cut into equal cells, each knowing how many edges lie in cells before it;
/// the few edges in the value's own cell (at most two, where 4,096 cells can make it so) are
/// compared without branches. Exact: the cell of a value is a monotone function of it, so an
/// edge in an earlier cell is below the value and one in a later cell above.
#[derive(Clone, Debug)]
pub(crate) struct Finder {
    /// The edges, then +inf.
    grid: [f64; PADDED],
    edges: usize,
    origin: f64,
    scale: f64,
    /// Per cell, the edges in earlier cells.
    before: Box<[u8]>,
    /// The most edges one cell holds: the compares a lookup makes.
    steps: usize,
}

impl Finder {
    pub(crate) fn new(edges: &[f64]) -> Self {
        let mut grid = [f64::INFINITY; PADDED];
        // A reference's grid is checked when read: at most GRID + 1 edges.
        let edges = &edges[..edges.len().min(PADDED / 2)];
        grid[..edges.len()].copy_from_slice(edges);
        let (origin, span) = match (edges.first(), edges.last()) {
            (Some(&a), Some(&b)) => (a, b - a),
            _ => (0.0, 0.0),
        };
        let mut best = None;
        let mut cells = 64;
        while cells <= MAX_CELLS {
            let scale = if span > 0.0 { cells as f64 / span } else { 0.0 };
            let scale = if scale.is_finite() { scale } else { 0.0 };
            let cell = |x: f64| (((x - origin) * scale) as i64).clamp(0, cells as i64 - 1) as usize;
            let mut per_cell = vec![0u8; cells];
            for &e in edges {
                per_cell[cell(e)] += 1;
            }
            let steps = usize::from(per_cell.iter().copied().max().unwrap_or(0));
            let mut before = vec![0u8; cells];
            let mut seen = 0u8;
            for (b, n) in before.iter_mut().zip(&per_cell) {
                *b = seen;
                seen += n;
            }
            let done = steps <= 2 || cells == MAX_CELLS;
            best = Some((scale, before.into_boxed_slice(), steps));
            if done {
                break;
            }
            cells *= 2;
        }
        let (scale, before, steps) = best.unwrap_or((0.0, vec![0].into_boxed_slice(), edges.len()));
        Self { grid, edges: edges.len(), origin, scale, before, steps }
    }

    #[inline]
    pub(crate) fn bin(&self, x: f64) -> usize {
        let last = self.before.len() as i64 - 1;
        let cell = (((x - self.origin) * self.scale) as i64).clamp(0, last) as usize;
        let mut at = usize::from(self.before[cell]);
        for _ in 0..self.steps {
            at += usize::from(self.grid[at % PADDED] <= x);
        }
        // +inf passes the padding too: it belongs to the last bin.
        at.min(self.edges)
    }
}

#[cfg(test)]
mod tests {
    use super::Finder;

    #[test]
    fn the_finder_counts_the_edges_at_or_below_any_value() {
        let mut state = 9u64;
        let mut next = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let grids: Vec<Vec<f64>> = vec![
            vec![],
            vec![3.0],
            vec![0.0, 1.0],
            (0..21).map(|i| (i as f64 / 20.0 - 0.5).powi(3) * 8.0).collect(),
            (0..21).map(|i| if i < 20 { i as f64 * 1e-9 } else { 1e6 }).collect(),
            vec![1e-300, 2e-300, 1e300],
        ];
        for edges in &grids {
            let f = Finder::new(edges);
            let mut xs: Vec<f64> =
                edges.iter().flat_map(|&e| [e, e.next_up(), e.next_down()]).collect();
            xs.extend((0..2000).map(|_| (next() - 0.5) * 4.0));
            xs.extend([f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, f64::MAX, f64::MIN]);
            for x in xs {
                assert_eq!(f.bin(x), edges.partition_point(|&e| e <= x), "{edges:?} {x}");
            }
        }
    }
}
