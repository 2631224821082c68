// Tree-ensemble scoring. Two strategies share the node format and the split rule:
//
// - `rows`: one invocation per row walks every tree (coalesced reads of the feature-major batch
//   while the rows of a subgroup test the same feature; no barriers).
// - `tiles`: a workgroup stages a tile of rows in workgroup memory and splits the trees between
//   `lanes` invocations per row, which walk consecutive trees in rounds; one lane per row adds
//   each round's leaves in tree order (more parallelism for small batches, and deep trees read
//   features from workgroup memory).
//
// Node (vec4<u32>), built and bounds-checked at load by `backend/gpu/gbdt.rs`:
//   split: x = threshold bits, y = feature | flags << 24, z = left child (right = z + 1),
//          w = category set offset (categorical splits);
//   leaf:  x = value (f32 high part), y = LEAF << 24, z = value (f32 low part).
//
// Sums: LightGBM sums leaves in f64. WGSL has no portable f64, so sums are kept as unevaluated
// pairs hi + lo of f32 (Knuth's two-sum, about 48 bits), and rounded once at the end. XGBoost
// sums in f32 in tree order; both strategies reproduce that order exactly when `exact_f32` is
// set.
//
// Compiled after the prelude generated from src/backend/gpu/abi.rs (the Rust <-> WGSL contract),
// which declares LEAF, NAN_RIGHT, CATEGORICAL, ZERO, ZERO_RIGHT, IN_SET_LEFT, ZERO_BAND,
// T_IDENTITY, T_SIGMOID, T_EXP, T_LOG1P_EXP, T_SIGNED_SQUARE, T_STEP, T_SOFTMAX, T_ARGMAX,
// TILE_FLOATS, TILE_THREADS, Params.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> nodes: array<vec4<u32>>;
// Tree roots ordered by output group; group g owns roots[group_start[g]..group_start[g + 1]].
@group(0) @binding(2) var<storage, read> roots: array<u32>;
@group(0) @binding(3) var<storage, read> group_start: array<u32>;
// Per-group starting value of the sum, as hi + lo.
@group(0) @binding(4) var<storage, read> base: array<vec2<f32>>;
// Category sets: a header (IN_SET_LEFT | words), then the words.
@group(0) @binding(5) var<storage, read> cats: array<u32>;
// The batch chunk, feature-major: feature f of row r is x[f * n_rows + r].
@group(0) @binding(6) var<storage, read> x: array<f32>;
// n_groups values per row (raw margins, transformed in place; argmax writes slot 0).
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

fn is_nan(v: f32) -> bool {
    // A bit test: compilers may assume `v != v` is false.
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// The category a value selects, or 0xffffffff for none (the CPU's `CategoryRule::category`).
fn category(v: f32) -> u32 {
    if (params.cat_rule == 0u) {
        if (v > -1.0 && v < 2147483648.0) {
            return u32(max(v, 0.0));
        }
    } else if (v >= 0.0 && v < 16777216.0) {
        return u32(v);
    }
    return 0xffffffffu;
}

// The split rule of `layout::goes_right` on the CPU: true to go right.
fn goes_right(node: vec4<u32>, v: f32) -> bool {
    let flags = node.y >> 24u;
    if (is_nan(v)) {
        return (flags & NAN_RIGHT) != 0u;
    }
    if ((flags & CATEGORICAL) != 0u) {
        let at = node.w;
        let header = cats[at];
        let words = header & ~IN_SET_LEFT;
        let c = category(v);
        var in_set = false;
        if (c != 0xffffffffu && c / 32u < words) {
            in_set = ((cats[at + 1u + c / 32u] >> (c % 32u)) & 1u) == 1u;
        }
        return in_set != ((header & IN_SET_LEFT) != 0u);
    }
    if ((flags & ZERO) != 0u && abs(v) <= ZERO_BAND) {
        return (flags & ZERO_RIGHT) != 0u;
    }
    return v > bitcast<f32>(node.x);
}

// (hi, lo) + (b.x, b.y) as a normalised pair.
fn add_pair(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let s = (a.x + b.x) * params.one;
    let bb = (s - a.x) * params.one;
    let err = (a.x - (s - bb)) + (b.x - bb);
    let t = err + a.y + b.y;
    let hi = (s + t) * params.one;
    return vec2<f32>(hi, t - (hi - s));
}

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-params.sigmoid_scale * v));
}

// Applies the transform to row r's raw margins in `out`.
fn transform_row(r: u32) {
    let g = params.n_groups;
    let at = r * g;
    if (params.divisor != 1.0) {
        for (var k = 0u; k < g; k++) {
            out[at + k] = out[at + k] / params.divisor;
        }
    }
    switch params.transform {
        case T_IDENTITY: {}
        case T_SOFTMAX: {
            var m = out[at];
            for (var k = 1u; k < g; k++) {
                m = max(m, out[at + k]);
            }
            var sum = 0.0;
            for (var k = 0u; k < g; k++) {
                let e = exp(out[at + k] - m);
                out[at + k] = e;
                sum += e;
            }
            for (var k = 0u; k < g; k++) {
                out[at + k] = out[at + k] / sum;
            }
        }
        case T_ARGMAX: {
            var best = 0u;
            for (var k = 1u; k < g; k++) {
                if (out[at + k] > out[at + best]) {
                    best = k;
                }
            }
            out[at] = f32(best);
        }
        default: {
            for (var k = 0u; k < g; k++) {
                let v = out[at + k];
                var y = v;
                switch params.transform {
                    case T_SIGMOID: { y = sigmoid(v); }
                    case T_EXP: { y = exp(v); }
                    case T_LOG1P_EXP: {
                        // log(1 + e^v) without overflow: v + log(1 + e^-v) for large v.
                        y = select(log(1.0 + exp(v)), v + log(1.0 + exp(-v)), v > 15.0);
                    }
                    case T_SIGNED_SQUARE: { y = v * abs(v); }
                    case T_STEP: { y = select(0.0, 1.0, v > 0.0); }
                    default: {}
                }
                out[at + k] = y;
            }
        }
    }
}

// Walks one tree for row r reading features through `feature(f)`; returns the leaf node.
fn leaf_rows(root: u32, r: u32) -> vec4<u32> {
    var i = root;
    var node = nodes[i];
    // Children are always later in the array (checked at load), so the walk ends.
    loop {
        if (((node.y >> 24u) & LEAF) != 0u) {
            break;
        }
        let v = x[(node.y & 0xffffffu) * params.n_rows + r];
        i = node.z + u32(goes_right(node, v));
        node = nodes[i];
    }
    return node;
}

@compute @workgroup_size(64)
fn rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * 64u;
    if (r >= params.n_rows) {
        return;
    }
    for (var g = 0u; g < params.n_groups; g++) {
        var acc = base[g];
        var acc32 = base[g].x;
        for (var t = group_start[g]; t < group_start[g + 1u]; t++) {
            let leaf = leaf_rows(roots[t], r);
            let v = vec2<f32>(bitcast<f32>(leaf.x), bitcast<f32>(leaf.z));
            if (params.exact_f32 != 0u) {
                acc32 = acc32 + v.x;
            } else {
                acc = add_pair(acc, v);
            }
        }
        out[r * params.n_groups + g] = select(acc.x + acc.y, acc32, params.exact_f32 != 0u);
    }
    transform_row(r);
}

// Workgroup memory for `tiles`: a tile of rows (row-major, TILE * n_features <= TILE_FLOATS) and the
// leaves of the current round.
var<workgroup> tile_x: array<f32, TILE_FLOATS>;
var<workgroup> partial: array<vec2<f32>, TILE_THREADS>;

fn leaf_tile(root: u32, local: u32) -> vec4<u32> {
    var i = root;
    var node = nodes[i];
    loop {
        if (((node.y >> 24u) & LEAF) != 0u) {
            break;
        }
        let v = tile_x[local * params.n_features + (node.y & 0xffffffu)];
        i = node.z + u32(goes_right(node, v));
        node = nodes[i];
    }
    return node;
}

@compute @workgroup_size(TILE_THREADS)
fn tiles(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let tile = params.tile;
    let lanes = params.lanes;
    let first = (wid.x + wid.y * nwg.x) * tile;
    let nf = params.n_features;
    // Stage the tile: element e is row e / nf, feature e % nf.
    for (var e = li; e < tile * nf; e += TILE_THREADS) {
        let row = first + e / nf;
        var v = 0.0;
        if (row < params.n_rows) {
            v = x[(e % nf) * params.n_rows + row];
        }
        tile_x[e] = v;
    }
    workgroupBarrier();
    let local = li % tile;
    let lane = li / tile;
    let r = first + local;
    let live = r < params.n_rows;
    for (var g = 0u; g < params.n_groups; g++) {
        // Rounds of `lanes` consecutive trees: each lane walks one, then lane 0 adds the
        // round's leaves in tree order, so the sum is formed in the same order as `rows` (and
        // as XGBoost's f32 sum, bit for bit).
        var acc = base[g];
        var acc32 = base[g].x;
        let end = group_start[g + 1u];
        for (var t0 = group_start[g]; t0 < end; t0 += lanes) {
            let t = t0 + lane;
            var leaf = vec2<f32>(0.0, 0.0);
            if (live && t < end) {
                let node = leaf_tile(roots[t], local);
                leaf = vec2<f32>(bitcast<f32>(node.x), bitcast<f32>(node.z));
            }
            partial[li] = leaf;
            workgroupBarrier();
            if (lane == 0u && live) {
                for (var k = 0u; k < min(lanes, end - t0); k++) {
                    let v = partial[k * tile + local];
                    if (params.exact_f32 != 0u) {
                        acc32 = acc32 + v.x;
                    } else {
                        acc = add_pair(acc, v);
                    }
                }
            }
            workgroupBarrier();
        }
        if (lane == 0u && live) {
            out[r * params.n_groups + g] = select(acc.x + acc.y, acc32, params.exact_f32 != 0u);
        }
    }
    if (lane == 0u && r < params.n_rows) {
        transform_row(r);
    }
}
