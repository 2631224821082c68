//! Tree ensembles on the GPU: the node layout (built and bounds-checked once at load) and the
//! program that runs `shaders/gbdt.wgsl` over it.

use std::sync::Arc;

use super::context::Context;
use super::run::{self, Program, Slot, f32_bytes};
use super::shaders::Shader;
use crate::backend::Output;
use crate::backend::options::Strategy;
use crate::error::{Error, Result};
use crate::model::Forest;
use crate::model::gbdt::{Accumulation, CategoryRule, Node as TreeNode, Test};
use crate::model::transform::Transform;

use super::abi::node::{CATEGORICAL, IN_SET_LEFT, LEAF, NAN_RIGHT, ZERO, ZERO_RIGHT};
use super::abi::{GbdtParams as Params, sizes, transform as code};
/// Features a node can name (24 bits).
const MAX_FEATURES: usize = 1 << 24;
/// Floats of workgroup memory the `tiles` kernel stages rows in (`tile_x` in the shader).
const TILE_FLOATS: usize = sizes::TILE_FLOATS as usize;
/// Invocations per `tiles` workgroup.
const TILE_THREADS: usize = sizes::TILE_THREADS as usize;

/// A forest in the GPU layout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GpuForest {
    /// `[threshold bits | value hi, feature | flags << 24, left child | value lo, category set]`.
    pub nodes: Vec<[u32; 4]>,
    /// Tree roots ordered by group (stable: trees of one group keep their file order).
    pub roots: Vec<u32>,
    /// Group g owns `roots[group_start[g]..group_start[g + 1]]`.
    pub group_start: Vec<u32>,
    /// Starting sums per group, as hi + lo.
    pub base: Vec<[f32; 2]>,
    /// Category sets: a header word (`IN_SET_LEFT` | words), then the words; never empty.
    pub cats: Vec<u32>,
    pub rule: CategoryRule,
    pub max_depth: usize,
}

/// Splits `v` into an f32 pair whose sum is `v` to about 48 bits.
fn pair(v: f64) -> [f32; 2] {
    let hi = v as f32;
    [hi, (v - f64::from(hi)) as f32]
}

fn unsupported(forest: &Forest, what: String) -> Error {
    Error::Unsupported { format: forest.format, what: format!("GPU layout: {what}") }
}

impl GpuForest {
    /// Lays `forest` out breadth first (siblings adjacent, so a step is `left + go_right`).
    pub fn new(forest: &Forest) -> Result<Self> {
        if forest.n_features >= MAX_FEATURES {
            return Err(unsupported(
                forest,
                format!("{} features (at most 2^24 - 1)", forest.n_features),
            ));
        }
        let exact_f32 = forest.accumulation == Accumulation::F32;
        let leaf_pair = |v: f64| if exact_f32 { [v as f32, 0.0] } else { pair(v) };
        let mut out = GpuForest {
            nodes: Vec::new(),
            roots: Vec::new(),
            group_start: vec![0; forest.n_groups + 1],
            base: forest.base_margin.iter().map(|&b| leaf_pair(b)).collect(),
            cats: Vec::new(),
            rule: CategoryRule::LightGbm,
            max_depth: forest.max_depth(),
        };
        let mut rule = None;
        let mut order: Vec<usize> = (0..forest.trees.len()).collect();
        order.sort_by_key(|&t| forest.trees[t].group);
        for &t in &order {
            out.group_start[forest.trees[t].group as usize + 1] += 1;
        }
        for g in 0..forest.n_groups {
            out.group_start[g + 1] += out.group_start[g];
        }
        let mut queue = std::collections::VecDeque::new();
        for &t in &order {
            let tree = &forest.trees[t];
            out.roots.push(out.nodes.len() as u32);
            out.nodes.push([0; 4]);
            queue.push_back((0usize, out.nodes.len() - 1));
            while let Some((orig, at)) = queue.pop_front() {
                out.nodes[at] = match tree.nodes[orig] {
                    TreeNode::Leaf(v) => {
                        let [hi, lo] = leaf_pair(v);
                        [hi.to_bits(), LEAF << 24, lo.to_bits(), 0]
                    }
                    TreeNode::Split { feature, test, left, right } => {
                        let children = out.nodes.len();
                        out.nodes.extend([[0; 4]; 2]);
                        queue.push_back((left as usize, children));
                        queue.push_back((right as usize, children + 1));
                        let (threshold, flags, set) = match test {
                            Test::Numeric { threshold, nan_left, zero_left } => {
                                let mut flags = if nan_left { 0 } else { NAN_RIGHT };
                                if let Some(zero_left) = zero_left {
                                    flags |= ZERO | if zero_left { 0 } else { ZERO_RIGHT };
                                }
                                (threshold.to_bits(), flags, 0)
                            }
                            Test::Categorical { offset, words, in_set_left, nan_left, rule: r } => {
                                if *rule.get_or_insert(r) != r {
                                    return Err(unsupported(
                                        forest,
                                        "category rules are mixed".into(),
                                    ));
                                }
                                let at = out.cats.len() as u32;
                                out.cats.push(words | if in_set_left { IN_SET_LEFT } else { 0 });
                                let range = offset as usize..(offset + words) as usize;
                                let Some(set) = forest.cat_words.get(range) else {
                                    return Err(unsupported(
                                        forest,
                                        "a category set past the end".into(),
                                    ));
                                };
                                out.cats.extend_from_slice(set);
                                (0, CATEGORICAL | if nan_left { 0 } else { NAN_RIGHT }, at)
                            }
                        };
                        [threshold, feature | flags << 24, children as u32, set]
                    }
                };
            }
        }
        out.rule = rule.unwrap_or(CategoryRule::LightGbm);
        if out.cats.is_empty() {
            out.cats.push(0);
        }
        out.check(forest)?;
        Ok(out)
    }

    /// Checks every index the shader follows without a bounds check: children come after
    /// their parent and inside `nodes` (so every walk ends inside the array), features are
    /// inside the row, category sets inside `cats`, roots inside `nodes`.
    fn check(&self, forest: &Forest) -> Result<()> {
        let bad = |what: String| Err(unsupported(forest, what));
        if self.nodes.len() >= u32::MAX as usize / 2 {
            return bad(format!("{} nodes do not fit 32-bit indices", self.nodes.len()));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if (n[1] >> 24) & LEAF != 0 {
                continue;
            }
            if (n[1] & 0xff_ffff) as usize >= forest.n_features {
                return bad(format!("node {i} reads feature {}", n[1] & 0xff_ffff));
            }
            if n[2] as usize <= i || n[2] as usize + 1 >= self.nodes.len() {
                return bad(format!("node {i} has children out of order or past the end"));
            }
            if (n[1] >> 24) & CATEGORICAL != 0 {
                let words = self.cats.get(n[3] as usize).map(|h| (h & !IN_SET_LEFT) as usize);
                if words.is_none_or(|w| n[3] as usize + 1 + w > self.cats.len()) {
                    return bad(format!("node {i} has a category set past the end"));
                }
            }
        }
        if self.roots.iter().any(|&r| r as usize >= self.nodes.len())
            || self.group_start.last().is_some_and(|&e| e as usize != self.roots.len())
        {
            return bad("roots past the end".into());
        }
        Ok(())
    }
}

/// A forest's buffers and pipelines on one device.
pub(crate) struct GbdtProgram {
    ctx: Arc<Context>,
    forest: Arc<Forest>,
    layout: wgpu::BindGroupLayout,
    rows: wgpu::ComputePipeline,
    tiles: wgpu::ComputePipeline,
    model: [wgpu::Buffer; 5],
    strategy: Strategy,
    rule: CategoryRule,
    /// Rows per tile in `tiles` (0 when the rows are too wide to stage).
    tile: usize,
    chunk_rows: usize,
}

impl GbdtProgram {
    /// Lays `forest` out, uploads it and builds the pipelines (once per model).
    pub fn new(
        ctx: Arc<Context>,
        forest: Arc<Forest>,
        strategy: Strategy,
        max_chunk: usize,
    ) -> Result<Self> {
        let layout_ = GpuForest::new(&forest)?;
        let nf = forest.n_features;
        // The largest power of two of rows whose features fit the shader's tile, at most 64.
        let tile = if nf <= TILE_FLOATS { 1 << (TILE_FLOATS / nf).min(64).ilog2() } else { 0 };
        if strategy == Strategy::Tiles && tile == 0 {
            return Err(unsupported(
                &forest,
                format!("rows of {nf} features are too wide for tiles"),
            ));
        }
        let device = &ctx.device;
        let per_row_bytes = f32_bytes(nf.max(forest.n_groups)).max(4);
        let binding = ctx.max_binding();
        for (what, bytes) in [
            ("nodes", f32_bytes(4 * layout_.nodes.len())),
            ("category sets", f32_bytes(layout_.cats.len())),
        ] {
            if bytes > binding {
                return Err(Error::Unavailable {
                    backend: "gpu",
                    reason: format!(
                        "the model's {what} ({bytes} bytes) exceed the device's binding limit ({binding})"
                    ),
                });
            }
        }
        let chunk_rows = ((binding / per_row_bytes) as usize).min(max_chunk).max(1);
        let layout = ctx.layout("storage7_1", |d| run::layout(d, 7, 1));
        let q = &ctx.queue;
        let model = [
            run::storage_init(device, q, "nodes", &layout_.nodes),
            run::storage_init(device, q, "roots", &layout_.roots),
            run::storage_init(device, q, "group_start", &layout_.group_start),
            run::storage_init(device, q, "base", &layout_.base),
            run::storage_init(device, q, "cats", &layout_.cats),
        ];
        let rows = run::pipeline(&ctx, Shader::Gbdt, ("storage7_1", &layout), "rows");
        let tiles = run::pipeline(&ctx, Shader::Gbdt, ("storage7_1", &layout), "tiles");
        ctx.check()?;
        let rule = layout_.rule;
        Ok(GbdtProgram {
            forest,
            layout,
            rows,
            tiles,
            model,
            strategy,
            rule,
            tile,
            chunk_rows,
            ctx,
        })
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// The strategy a chunk of `rows` runs with.
    pub fn strategy_for(&self, rows: usize) -> Strategy {
        match self.strategy {
            Strategy::Auto if self.tile > 0 && (rows < 65_536 || self.forest.max_depth() > 8) => {
                Strategy::Tiles
            }
            Strategy::Auto => Strategy::Rows,
            s => s,
        }
    }

    fn transform(&self, output: Output) -> (u32, f32) {
        if output == Output::Raw {
            return (code::IDENTITY, 1.0);
        }
        match self.forest.transform {
            Transform::Identity => (code::IDENTITY, 1.0),
            Transform::Sigmoid { scale } | Transform::SigmoidEach { scale } => {
                (code::SIGMOID, scale as f32)
            }
            Transform::Exp => (code::EXP, 1.0),
            Transform::Log1pExp => (code::LOG1P_EXP, 1.0),
            Transform::SignedSquare => (code::SIGNED_SQUARE, 1.0),
            Transform::Step => (code::STEP, 1.0),
            Transform::Softmax => (code::SOFTMAX, 1.0),
            Transform::ArgMax => (code::ARGMAX, 1.0),
        }
    }
}

impl Program for GbdtProgram {
    fn ctx(&self) -> &Context {
        &self.ctx
    }

    fn n_features(&self) -> usize {
        self.forest.n_features
    }

    fn out_per_row(&self) -> usize {
        self.forest.n_groups
    }

    fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    fn new_slot(&self, capacity: usize) -> Slot {
        let device = &self.ctx.device;
        let params = run::uniform(device, std::mem::size_of::<Params>() as u64);
        let x = run::storage(
            device,
            "x",
            f32_bytes(capacity * self.forest.n_features),
            wgpu::BufferUsages::COPY_DST,
        );
        let out_bytes = f32_bytes(capacity * self.forest.n_groups);
        let out = run::storage(device, "out", out_bytes, wgpu::BufferUsages::COPY_SRC);
        let readback = run::readback(device, out_bytes);
        let [a, b, c, d, e] = &self.model;
        let bind = run::bind(device, &self.layout, &[&params, a, b, c, d, e, &x, &out]);
        Slot { capacity, params, x, out, readback, binds: vec![bind] }
    }

    fn encode(&self, slot: &Slot, rows: usize, output: Output, encoder: &mut wgpu::CommandEncoder) {
        let strategy = self.strategy_for(rows);
        let (transform, sigmoid_scale) = self.transform(output);
        let tile = self.tile.max(1);
        let params = Params {
            n_rows: rows as u32,
            n_features: self.forest.n_features as u32,
            n_groups: self.forest.n_groups as u32,
            transform,
            exact_f32: u32::from(self.forest.accumulation == Accumulation::F32),
            cat_rule: u32::from(self.rule == CategoryRule::Xgboost),
            tile: tile as u32,
            lanes: (TILE_THREADS / tile) as u32,
            sigmoid_scale,
            one: 1.0,
            divisor: if output == Output::Transformed && self.forest.average_trees {
                (self.forest.trees.len() / self.forest.n_groups.max(1)).max(1) as f32
            } else {
                1.0
            },
            pad: 0,
        };
        self.ctx.queue.write_buffer(&slot.params, 0, bytemuck::bytes_of(&params));
        let (pipeline, groups) = match strategy {
            Strategy::Tiles => (&self.tiles, rows.div_ceil(tile)),
            _ => (&self.rows, rows.div_ceil(64)),
        };
        let (x, y) = run::grid(groups, self.ctx.limits().max_compute_workgroups_per_dimension);
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &slot.binds[0], &[]);
        pass.dispatch_workgroups(x, y, 1);
    }

    fn emit(&self, chunk: &[f32], rows: usize, output: Output, out: &mut [f32]) {
        let groups = self.forest.n_groups;
        let width = self.forest.output_width(output == Output::Raw);
        for r in 0..rows {
            out[r * width..(r + 1) * width].copy_from_slice(&chunk[r * groups..r * groups + width]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::load_forest;

    /// The shader's `goes_right`, in Rust.
    fn goes_right(n: [u32; 4], v: f32, cats: &[u32], rule: CategoryRule) -> bool {
        let flags = n[1] >> 24;
        if v.is_nan() {
            return flags & NAN_RIGHT != 0;
        }
        if flags & CATEGORICAL != 0 {
            let (header, at) = (cats[n[3] as usize], n[3] as usize);
            let words = header & !IN_SET_LEFT;
            let in_set = rule.category(v).is_some_and(|c| {
                c / 32 < words && (cats[at + 1 + (c / 32) as usize] >> (c % 32)) & 1 == 1
            });
            return in_set != (header & IN_SET_LEFT != 0);
        }
        if flags & ZERO != 0 && v.abs() <= crate::model::gbdt::ZERO_BAND {
            return flags & ZERO_RIGHT != 0;
        }
        v > f32::from_bits(n[0])
    }

    fn forest(name: &str) -> Forest {
        let dir = format!("{}/models/golden/{name}", env!("CARGO_MANIFEST_DIR"));
        let path = ["model.txt", "model.json"]
            .iter()
            .map(|m| std::path::Path::new(&dir).join(m))
            .find(|p| p.exists())
            .unwrap();
        load_forest(&path).unwrap()
    }

    /// Walks the GPU layout on the CPU with the shader's rule and sums in f64: every tree gives
    /// the forest's own leaf, and each group's trees keep their file order.
    #[test]
    fn layout_reaches_the_forests_leaves() {
        for name in ["lgb_multiclass_categorical", "xgb_categorical", "lgb_regression_zero_missing"]
        {
            let f = forest(name);
            let g = GpuForest::new(&f).unwrap();
            let by_group: Vec<usize> = {
                let mut t: Vec<usize> = (0..f.trees.len()).collect();
                t.sort_by_key(|&t| f.trees[t].group);
                t
            };
            let row: Vec<f32> = (0..f.n_features).map(|i| (i % 5) as f32 - 1.0).collect();
            for (k, &t) in by_group.iter().enumerate() {
                let mut i = g.roots[k] as usize;
                while (g.nodes[i][1] >> 24) & LEAF == 0 {
                    let n = g.nodes[i];
                    let v = row[(n[1] & 0xff_ffff) as usize];
                    i = n[2] as usize + usize::from(goes_right(n, v, &g.cats, g.rule));
                }
                let leaf = f64::from(f32::from_bits(g.nodes[i][0]))
                    + f64::from(f32::from_bits(g.nodes[i][2]));
                let want = f.trees[t].leaf_value(&f.cat_words, |x| row[x]);
                let tol = if f.accumulation == Accumulation::F32 { 1e-7 } else { 1e-13 };
                assert!(
                    (leaf - want).abs() <= tol * want.abs().max(1.0),
                    "{name} tree {t}: {leaf} vs {want}"
                );
            }
        }
    }

    /// The load-time check refuses every index the shader would follow out of bounds.
    #[test]
    fn check_refuses_out_of_range_indices() {
        let f = forest("lgb_categorical");
        let good = GpuForest::new(&f).unwrap();
        let split = good.nodes.iter().position(|n| (n[1] >> 24) & LEAF == 0).unwrap();
        let cat = good.nodes.iter().position(|n| (n[1] >> 24) & CATEGORICAL != 0).unwrap();
        let corruptions: [&dyn Fn(&mut GpuForest); 5] = [
            &|g| g.nodes[split][2] = g.nodes.len() as u32,
            &|g| g.nodes[split][2] = split as u32,
            &|g| g.nodes[split][1] = (g.nodes[split][1] & 0xff00_0000) | f.n_features as u32,
            &|g| g.nodes[cat][3] = g.cats.len() as u32,
            &|g| g.roots[0] = g.nodes.len() as u32,
        ];
        for (k, corrupt) in corruptions.iter().enumerate() {
            let mut bad = good.clone();
            corrupt(&mut bad);
            assert!(bad.check(&f).is_err(), "corruption {k} passed the check");
        }
    }
}
