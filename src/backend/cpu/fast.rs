//! The fast CPU tree backend: the compact layout (`layout.rs`), a kernel chosen at run time
//! (`kernel.rs`), blocks of rows and threads.
//!
//! Traversal: a batch is cut into tiles of [`TILE`] rows copied row-major. For a tile of 16 rows
//! or more, each tree is walked by all of the tile's rows before the next tree (lanes are
//! rows); for fewer rows, each row walks [`BLOCK`] trees at once (lanes are trees), so a single
//! event still keeps the kernel's lanes busy. Bitvector: 16 rows at a time, feature-major
//! (`bitvector.rs`). Either way leaves are summed per row in tree order, in the training
//! library's precision, so raw margins equal the reference scorer's bit for bit.

use std::cell::RefCell;
use std::sync::Arc;

use crate::backend::cpu::aligned::Aligned;
use crate::backend::cpu::bitvector::{Bitvector, ROWS};
use crate::backend::cpu::io::{emit, feature_major};
use crate::backend::cpu::kernel::{BLOCK, Kernel, LANES};
use crate::backend::cpu::layout::FastForest;
use crate::backend::cpu::masked::{self, Mask};
use crate::backend::cpu::tune::{self, Plan, Tuning};
pub use crate::backend::cpu::tune::{Algorithm, TUNE_MIN_ROWS};
use crate::backend::{Backend, Output};
use crate::batch::{Batch, Columns};
use crate::error::{Error, Result};
use crate::model::Forest;
use crate::model::gbdt::Accumulation;

/// Rows per tile. Each tree is walked by all of a tile's rows before the next tree, so a tree's
/// nodes are fetched into L1 once per tile; larger tiles reuse them more but leave L1 themselves.
const TILE: usize = 256;

/// A thread takes at least this many (row, tree) walks: about 0.1-0.5 ms of work, well above
/// the tens of microseconds a hand-off to a pool thread costs, so a split never loses.
const MIN_WALKS_PER_THREAD: usize = 1 << 17;

/// A large batch is cut into chunks of at most this many (row, tree) walks (0.1-2 ms of work),
/// which the threads take as they become free...
const CHUNK_WALKS: usize = 1 << 19;

/// ...and into at least this many chunks per thread (whole blocks each), so that the tail, the
/// time one thread waits for the other's last chunk, stays a small share of the batch where
/// walks are cheap. On 2 threads and 100,000 rows (medians of four alternating runs): airline
/// +4%, NYC_taxi and lgb_100x31 unchanged; the 500-tree forests keep their chunk size.
const CHUNKS_PER_THREAD: usize = 32;

/// Above this share of categorical and zero-band splits (evaluated one by one there), the
/// bitvector algorithm loses to traversal (airline, 89% categorical, runs 2x faster traversed).
const MAX_SPECIAL_SHARE: f64 = 0.05;

/// Fast CPU scorer for tree ensembles: SIMD kernels chosen at run time, optional threads.
///
/// # Examples
///
/// ```
/// use streamscore::backend::cpu::{Cpu, Kernel};
/// use streamscore::{Backend, Batch, Output, Reference};
///
/// let forest = streamscore::load_forest("models/golden/lgb_binary/model.txt")?;
/// let fast = Cpu::new(forest.clone())?.with_kernel(Kernel::Scalar)?.with_threads(2)?;
/// let batch = Batch::from_rows(&[0.5, -1.0, 2.0, 0.0, f32::NAN, 1.0, 3.0, -2.0], 8)?;
/// let (mut a, mut b) = (vec![0.0; 1], vec![0.0; 1]);
/// fast.score_batch(&batch, Output::Raw, &mut a)?;
/// Reference::new(forest).score_batch(&batch, Output::Raw, &mut b)?;
/// assert_eq!(a, b);
/// # Ok::<(), streamscore::Error>(())
/// ```
pub struct Cpu {
    forest: Arc<Forest>,
    fast: FastForest,
    /// The QuickScorer form, when the algorithm applies to the forest.
    bitvector: Option<Bitvector>,
    /// The masked algorithm's leaf tables.
    leaves: masked::Leaves,
    /// The algorithm and kernel used until tuning picks (or when it is off).
    plan: Plan,
    /// The plan for batches under [`LANES`] rows: traversal, whose lanes-are-trees form is
    /// made for single rows, unless an algorithm is forced.
    small: Plan,
    /// Whether the last batch scored was under [`LANES`] rows (so took `small`); for the name.
    last_small: std::sync::atomic::AtomicBool,
    /// Candidates timed on the first large batch, and the pick; `None` once forced.
    tuning: Option<Tuning>,
    threads: usize,
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpu")
            .field("kernel", &self.kernel())
            .field("algorithm", &self.algorithm())
            .field("threads", &self.threads)
            .field("trees", &self.fast.n_trees)
            .finish()
    }
}

impl Cpu {
    /// Lays `forest` out for the fast kernels, with one thread. The algorithm and kernel are
    /// picked by measurement: the first batch of at least [`TUNE_MIN_ROWS`] rows is scored by
    /// each candidate (traversal, masked, and bitvector where it applies and categorical splits
    /// are rare) on up to 2,048 of its rows, and the fastest is kept (every candidate gives the
    /// same bits, so only speed differs: it depends on the data's paths). Until then: bitvector
    /// where it applies, else traversal. Batches of fewer than 16 rows always take traversal
    /// (trees in lanes) unless an algorithm is forced. Fails with `Unsupported` for the rare
    /// forest the compact layout cannot hold.
    pub fn new(forest: impl Into<Arc<Forest>>) -> Result<Cpu> {
        let forest = forest.into();
        let fast = FastForest::new(&forest)?;
        let bitvector = Bitvector::new(&forest, &fast)
            .filter(|bv| bv.special_share() <= MAX_SPECIAL_SHARE && fast.n_trees > 0);
        let traverse = Plan(Algorithm::Traverse, Kernel::detect_for_traversal());
        let plan = if bitvector.is_some() {
            Plan(Algorithm::Bitvector, Kernel::detect())
        } else {
            traverse
        };
        let mut candidates = vec![traverse, Plan(Algorithm::Masked, Kernel::detect())];
        if bitvector.is_some() {
            candidates.push(Plan(Algorithm::Bitvector, Kernel::detect()));
        }
        let tuning = Some(Tuning::new(candidates));
        let leaves = masked::Leaves::new(&fast);
        Ok(Cpu {
            forest,
            fast,
            bitvector,
            leaves,
            plan,
            small: traverse,
            last_small: Default::default(),
            tuning,
            threads: 1,
            pool: None,
        })
    }

    /// Forces `algorithm` for every batch (no tuning), on the kernel tuning would have run it
    /// on, or the one forced. `Bitvector` errors for a forest with a tree of more than 64
    /// leaves.
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Result<Cpu> {
        if algorithm == Algorithm::Bitvector && self.bitvector.is_none() {
            self.bitvector = Some(Bitvector::new(&self.forest, &self.fast).ok_or_else(|| {
                Error::Config("the bitvector algorithm needs trees of at most 64 leaves".into())
            })?);
        }
        let candidate = self.tuning.as_ref().and_then(|t| t.first(|p| p.0 == algorithm));
        self.plan = candidate.unwrap_or(Plan(algorithm, self.plan.1));
        self.small = self.plan;
        self.tuning = None;
        Ok(self)
    }

    /// The algorithm in use (tuning's pick once made).
    pub fn algorithm(&self) -> Algorithm {
        self.current().0
    }

    /// Forces `kernel` for every algorithm; errors when this CPU cannot run it.
    pub fn with_kernel(mut self, kernel: Kernel) -> Result<Cpu> {
        self.plan.1 = kernel.check()?;
        self.small.1 = kernel;
        if let Some(t) = &mut self.tuning {
            t.force_kernel(kernel);
        }
        Ok(self)
    }

    /// Scores large batches on `threads` threads: the caller's and `threads - 1` of a pool
    /// owned by this scorer. Batches too small to pay for a hand-off stay on the caller's
    /// thread.
    pub fn with_threads(mut self, threads: usize) -> Result<Cpu> {
        if threads == 0 || threads > 1024 {
            return Err(Error::Config(format!("threads must be 1..=1024, got {threads}")));
        }
        self.pool = if threads > 1 {
            // The calling thread scores too (`score_batch`), beside these.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads - 1)
                .thread_name(|i| format!("streamscore-cpu-{i}"))
                .build()
                .map_err(|e| Error::Config(format!("cannot start {threads} threads: {e}")))?;
            Some(pool)
        } else {
            None
        };
        self.threads = threads;
        Ok(self)
    }

    /// The kernel in use (tuning's pick once made).
    pub fn kernel(&self) -> Kernel {
        self.current().1
    }

    /// Tuning's pick once made, else the default (or forced) plan.
    fn current(&self) -> Plan {
        self.tuning.as_ref().and_then(Tuning::chosen).unwrap_or(self.plan)
    }

    /// Times each candidate plan on the first rows of `batch` and keeps the fastest.
    fn tune(&self, tuning: &Tuning, batch: Columns<'_>) {
        let rows = tune::rows(self.fast.n_trees, masked::ROWS).min(batch.n_rows());
        let mut out = vec![0.0f32; rows * self.output_width(Output::Raw)];
        tuning.pick(rows, |plan| self.score_rows(plan, batch, 0, Output::Raw, &mut out));
    }

    /// Threads used for large batches.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Scores rows `first..first + out.len() / width` of `batch` into `out` by `plan`.
    fn score_rows(
        &self,
        plan: Plan,
        batch: Columns<'_>,
        first: usize,
        output: Output,
        out: &mut [f32],
    ) {
        let Plan(algorithm, kernel) = plan;
        match (algorithm, &self.bitvector, self.fast.accumulation) {
            (Algorithm::Bitvector, Some(bv), Accumulation::F64) => {
                self.score_bitvector::<f64>(kernel, bv, batch, first, output, out)
            }
            (Algorithm::Bitvector, Some(bv), Accumulation::F32) => {
                self.score_bitvector::<f32>(kernel, bv, batch, first, output, out)
            }
            (Algorithm::Masked, _, Accumulation::F64) => {
                self.score_masked::<f64>(kernel, batch, first, output, out)
            }
            (Algorithm::Masked, _, Accumulation::F32) => {
                self.score_masked::<f32>(kernel, batch, first, output, out)
            }
            (_, _, Accumulation::F64) => {
                self.score_rows_as::<f64>(kernel, batch, first, output, out)
            }
            (_, _, Accumulation::F32) => {
                self.score_rows_as::<f32>(kernel, batch, first, output, out)
            }
        }
    }

    fn score_rows_as<S: Sum>(
        &self,
        kernel: Kernel,
        batch: Columns<'_>,
        first: usize,
        output: Output,
        out: &mut [f32],
    ) {
        let fast = &self.fast;
        let (groups, width) = (self.forest.n_groups, self.output_width(output));
        let stride = fast.stride();
        SCRATCH.with_borrow_mut(|s| {
            s.prepare(stride, groups, width);
            let Scratch { tile, acc, raw, transformed, roots, bases, leaves, .. } = s;
            // Plain slices from here: one deref, not one per element.
            let tile: &mut [f32] = tile;
            for (b, out) in out.chunks_mut(TILE * width).enumerate() {
                let r0 = first + b * TILE;
                let n = out.len() / width;
                for f in 0..fast.n_features {
                    for (i, &v) in batch.column(f)[r0..r0 + n].iter().enumerate() {
                        tile[i * stride + f] = v;
                    }
                }
                for a in acc.chunks_exact_mut(groups).take(n) {
                    for (a, &m) in a.iter_mut().zip(&fast.base_margin) {
                        *a = S::from_f64(m).to_f64();
                    }
                }
                if n >= LANES {
                    // Lanes are rows: every row of the tile walks tree t, BLOCK rows at a time.
                    let lanes = n.next_multiple_of(LANES);
                    for (i, b) in bases[..lanes].iter_mut().enumerate() {
                        *b = (i * stride) as u32;
                    }
                    for t in 0..fast.n_trees {
                        let g = fast.groups[t] as usize;
                        let root = fast.roots[t];
                        kernel.walk_tree(fast, tile, root, n, bases, roots, leaves);
                        for (i, &leaf) in leaves[..n].iter().enumerate() {
                            let a = &mut acc[i * groups + g];
                            *a = S::from_f64(*a).add(fast.values[leaf as usize]).to_f64();
                        }
                    }
                } else {
                    // Lanes are trees: each row walks BLOCK trees at once.
                    for i in 0..n {
                        bases[..BLOCK].fill((i * stride) as u32);
                        for (c, chunk) in fast.roots.chunks_exact(BLOCK).enumerate() {
                            kernel.walk(fast, tile, chunk, &bases[..BLOCK], &mut leaves[..BLOCK]);
                            let trees = c * BLOCK..((c + 1) * BLOCK).min(fast.n_trees);
                            for (t, &leaf) in trees.zip(leaves.iter()) {
                                let a = &mut acc[i * groups + fast.groups[t] as usize];
                                *a = S::from_f64(*a).add(fast.values[leaf as usize]).to_f64();
                            }
                        }
                    }
                }
                emit(&self.forest, output, groups, acc, raw, transformed, out);
            }
        });
    }
}

impl Cpu {
    /// The bitvector algorithm over rows `first..`, 16 rows at a time.
    fn score_bitvector<S: Sum>(
        &self,
        kernel: Kernel,
        bv: &Bitvector,
        batch: Columns<'_>,
        first: usize,
        output: Output,
        out: &mut [f32],
    ) {
        let fast = &self.fast;
        let (groups, width, nf) =
            (self.forest.n_groups, self.output_width(output), fast.n_features);
        SCRATCH.with_borrow_mut(|s| {
            s.prepare(fast.stride(), groups, width);
            s.block.resize(nf * ROWS, f32::NAN);
            s.state.resize(bv.n_trees * ROWS, 0);
            let Scratch { acc, raw, transformed, block, state, .. } = s;
            let (block, state): (&mut [f32], &mut [u64]) = (block, state);
            for (b, out) in out.chunks_mut(ROWS * width).enumerate() {
                let r0 = first + b * ROWS;
                let n = out.len() / width;
                feature_major(batch, r0, n, ROWS, &mut block[..nf * ROWS]);
                bv.leaves(kernel, block, state);
                let mut sums = [S::from_f64(0.0); ROWS];
                for g in 0..groups {
                    sums[..n].fill(S::from_f64(fast.base_margin[g]));
                    for t in bv.group_trees[g].iter().map(|&t| t as usize) {
                        let lanes = &state[t * ROWS..t * ROWS + n];
                        let values = &bv.leaf_values[t * 64..t * 64 + 64];
                        for (sum, &bits) in sums.iter_mut().zip(lanes) {
                            // A row always keeps its exit leaf, so `bits` is never 0.
                            *sum = sum.add(values[(bits.trailing_zeros() & 63) as usize]);
                        }
                    }
                    for (i, sum) in sums[..n].iter().enumerate() {
                        acc[i * groups + g] = sum.to_f64();
                    }
                }
                emit(&self.forest, output, groups, acc, raw, transformed, out);
            }
        });
    }
}

impl Cpu {
    /// The masked algorithm over rows `first..`, `masked::ROWS` rows at a time, feature-major.
    fn score_masked<S: Sum + masked::Lane>(
        &self,
        kernel: Kernel,
        batch: Columns<'_>,
        first: usize,
        output: Output,
        out: &mut [f32],
    ) {
        let (fast, leaves) = (&self.fast, &self.leaves);
        let (groups, width, nf) =
            (self.forest.n_groups, self.output_width(output), fast.n_features);
        let rows = masked::ROWS;
        SCRATCH.with_borrow_mut(|s| {
            s.prepare(fast.stride(), groups, width);
            // The padding column (index `nf`) stays NaN.
            s.columns.resize((nf + 1) * rows, f32::NAN);
            s.columns[nf * rows..].fill(f32::NAN);
            let mut sums = std::mem::take(S::lanes(s));
            sums.resize((groups + 1) * rows, S::default());
            let (values, sums_of) = sums.split_at_mut(rows);
            s.stack.resize(leaves.stack, (0, Mask::EMPTY));
            s.nans.resize(nf + 1, Mask::EMPTY);
            let Scratch { acc, raw, transformed, columns: block, stack, nans, .. } = s;
            let block = &mut block[..(nf + 1) * rows];
            for (b, out) in out.chunks_mut(rows * width).enumerate() {
                let r0 = first + b * rows;
                let n = out.len() / width;
                feature_major(batch, r0, n, rows, &mut block[..nf * rows]);
                masked::nan_rows(kernel, block, nans);
                for (g, sums) in sums_of.chunks_exact_mut(rows).enumerate() {
                    sums.fill(S::from_f64(fast.base_margin[g]));
                }
                let live = Mask::first(n);
                for t in 0..fast.n_trees {
                    let g = fast.groups[t] as usize;
                    let sums = &mut sums_of[g * rows..(g + 1) * rows];
                    masked::add_tree(
                        kernel, fast, leaves, block, nans, t, live, stack, values, sums,
                    );
                }
                for (g, sums) in sums_of.chunks_exact(rows).enumerate() {
                    for (i, sum) in sums[..n].iter().enumerate() {
                        acc[i * groups + g] = sum.to_f64();
                    }
                }
                emit(&self.forest, output, groups, acc, raw, transformed, out);
            }
            *S::lanes(s) = sums;
        });
    }
}

/// How one accumulation step is formed: f64 for LightGBM, f32 for XGBoost (the accumulator is
/// kept in f64 between steps; an f32 accumulator only ever holds f32 values, so that is exact).
trait Sum: bytemuck::Pod {
    /// The accumulator holding `v` (a base margin, or a sum kept in f64 between steps).
    fn from_f64(v: f64) -> Self;
    /// The masked algorithm's per-group sums of a block's rows, kept in the scratch.
    fn lanes(s: &mut Scratch) -> &mut Aligned<Self>;
    fn add(self, leaf: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Sum for f64 {
    #[inline(always)]
    fn from_f64(v: f64) -> f64 {
        v
    }
    fn lanes(s: &mut Scratch) -> &mut Aligned<f64> {
        &mut s.sums_f64
    }
    #[inline(always)]
    fn add(self, leaf: f64) -> f64 {
        self + leaf
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

impl Sum for f32 {
    #[inline(always)]
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    fn lanes(s: &mut Scratch) -> &mut Aligned<f32> {
        &mut s.sums_f32
    }
    #[inline(always)]
    fn add(self, leaf: f64) -> f32 {
        self + leaf as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

/// Per-thread buffers, grown once and reused, so that scoring allocates nothing per batch.
/// Those the kernels load whole vectors from start on a 64-byte line ([`Aligned`]).
#[derive(Default)]
struct Scratch {
    stride: usize,
    tile: Aligned<f32>,
    acc: Vec<f64>,
    raw: Vec<f64>,
    transformed: Vec<f64>,
    roots: Vec<u32>,
    bases: Vec<u32>,
    leaves: Vec<u32>,
    /// Bitvector algorithm: 16 rows feature-major, and the per-(tree, row) leaf masks.
    block: Aligned<f32>,
    state: Aligned<u64>,
    /// Masked algorithm: a block's rows feature-major (the padding column last), the walk's
    /// stack, each column's NaN rows, then the rows' leaf values in the current tree followed
    /// by their sums per group, a block's rows each.
    columns: Aligned<f32>,
    stack: Vec<(u32, Mask)>,
    nans: Vec<Mask>,
    sums_f64: Aligned<f64>,
    sums_f32: Aligned<f32>,
}

impl Scratch {
    fn prepare(&mut self, stride: usize, groups: usize, width: usize) {
        if self.stride != stride {
            // Every cell starts as NaN: the padding column must hold NaN (leaves read it and
            // must stay put), and rows past a short block's end are walked but never summed.
            self.tile.clear();
            self.tile.resize(TILE * stride, f32::NAN);
            self.stride = stride;
        }
        self.acc.resize(TILE * groups, 0.0);
        self.raw.resize(groups, 0.0);
        self.transformed.resize(width, 0.0);
        for v in [&mut self.bases, &mut self.roots, &mut self.leaves] {
            v.resize(TILE, 0);
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        // The plan of the last batch: tuning's pick (or the default before it) for batches
        // of 16 rows or more, the small-batch plan below.
        let small = self.last_small.load(std::sync::atomic::Ordering::Relaxed);
        let Plan(algorithm, kernel) = if small { self.small } else { self.current() };
        match (kernel, algorithm) {
            (Kernel::Avx512, Algorithm::Traverse) => "cpu-avx512-traverse",
            (Kernel::Avx512, Algorithm::Bitvector) => "cpu-avx512-bitvector",
            (Kernel::Avx512, Algorithm::Masked) => "cpu-avx512-masked",
            (Kernel::Avx2, Algorithm::Traverse) => "cpu-avx2-traverse",
            (Kernel::Avx2, Algorithm::Bitvector) => "cpu-avx2-bitvector",
            (Kernel::Avx2, Algorithm::Masked) => "cpu-avx2-masked",
            (Kernel::Scalar, Algorithm::Traverse) => "cpu-scalar-traverse",
            (Kernel::Scalar, Algorithm::Bitvector) => "cpu-scalar-bitvector",
            (Kernel::Scalar, Algorithm::Masked) => "cpu-scalar-masked",
        }
    }

    fn n_features(&self) -> usize {
        self.forest.n_features
    }

    fn output_width(&self, output: Output) -> usize {
        self.forest.output_width(output == Output::Raw)
    }

    fn score_batch(&self, batch: &Batch, output: Output, out: &mut [f32]) -> Result<()> {
        self.score_columns(batch.columns(), output, out)
    }

    fn score_columns(&self, batch: Columns<'_>, output: Output, out: &mut [f32]) -> Result<()> {
        if batch.n_features() != self.forest.n_features {
            return Err(Error::WidthMismatch {
                expected: self.forest.n_features,
                got: batch.n_features(),
            });
        }
        let width = self.output_width(output);
        let rows = batch.n_rows();
        if out.len() != rows * width {
            return Err(Error::OutputLength { expected: rows * width, got: out.len() });
        }
        if let Some(tuning) = &self.tuning
            && tuning.chosen().is_none()
            && rows >= TUNE_MIN_ROWS
        {
            self.tune(tuning, batch);
        }
        // Tuning times large batches; tiny ones take traversal's lanes-are-trees form.
        let plan = if rows >= LANES { self.current() } else { self.small };
        self.last_small.store(rows < LANES, std::sync::atomic::Ordering::Relaxed);
        let walks = rows * self.fast.n_trees.max(1);
        let parts = (walks / MIN_WALKS_PER_THREAD).clamp(1, self.threads);
        match &self.pool {
            Some(pool) if parts > 1 && width > 0 => {
                // Short chunks, so that a thread the machine delays leaves its later chunks
                // to the others and the last chunk leaves little tail; whole blocks each, so
                // that only the last block of the batch is short.
                let rows_per = (CHUNK_WALKS / self.fast.n_trees.max(1)).max(TILE);
                let rows_per =
                    rows_per.min(rows.div_ceil(parts * CHUNKS_PER_THREAD)).next_multiple_of(TILE);
                // The caller takes chunks too, beside `parts - 1` pool threads: one hand-off
                // fewer on the way in, and no thread left idle waiting for the others.
                let chunks = std::sync::Mutex::new(out.chunks_mut(rows_per * width).enumerate());
                let work = || {
                    loop {
                        let next = chunks.lock().unwrap_or_else(|e| e.into_inner()).next();
                        let Some((p, out)) = next else { break };
                        self.score_rows(plan, batch, p * rows_per, output, out);
                    }
                };
                pool.in_place_scope(|scope| {
                    for _ in 1..parts {
                        scope.spawn(|_| work());
                    }
                    work();
                });
            }
            _ => self.score_rows(plan, batch, 0, output, out),
        }
        Ok(())
    }
}
