// Dense nets, feature-major throughout: activation `i` of row `r` is at `i * n_rows + r`, so a
// layer is Y = act(W^T X + b) with W stored `n_in x n_out` row-major, as `model/dense.rs` has it.
//
// Entry points, one dispatch each: `prep` (the input's add/sub/mul/div constants), `layer`
// (tiled multiply with bias and activation fused), `softmax` (a whole row, last layer only).
//
// Compiled after the prelude generated from src/backend/gpu/abi.rs (the Rust <-> WGSL contract),
// which declares A_IDENTITY, A_RELU, A_LEAKY_RELU, A_SIGMOID, A_TANH, A_GELU, A_GELU_TANH, TS,
// Params.

@group(0) @binding(0) var<uniform> params: Params;
// Every layer's weights and biases and the input ops' constants (one value per input).
@group(0) @binding(1) var<storage, read> model: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

// erfc to about 1.2e-7 relative (Numerical Recipes' Chebyshev fit), so gelu keeps its relative
// accuracy where 1 + erf(x) is small.
fn erfc(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(p);
    return select(2.0 - r, r, x >= 0.0);
}

fn tanh_(x: f32) -> f32 {
    // Clamped: some drivers evaluate tanh as a ratio of exponentials that overflows to NaN.
    return tanh(clamp(x, -15.0, 15.0));
}

fn activate(v: f32) -> f32 {
    switch params.activation {
        case A_RELU: { return max(v, 0.0); }
        case A_LEAKY_RELU: { return select(params.alpha * v, v, v >= 0.0); }
        case A_SIGMOID: { return 1.0 / (1.0 + exp(-v)); }
        case A_TANH: { return tanh_(v); }
        case A_GELU: { return 0.5 * v * erfc(-v * 0.70710678118654752); }
        case A_GELU_TANH: {
            return 0.5 * v * (1.0 + tanh_(0.7978846 * (v + 0.044715 * v * v * v)));
        }
        default: { return v; }
    }
}

@compute @workgroup_size(256)
fn prep(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 256u;
    if (e >= params.n_rows * params.n_in) {
        return;
    }
    let feature = e / params.n_rows;
    var v = src[e];
    for (var k = 0u; k < params.n_ops; k++) {
        let c = model[params.weights + k * params.n_in + feature];
        switch (params.ops >> (4u * k)) & 15u {
            case 0u: { v = v + c; }
            case 1u: { v = v - c; }
            case 2u: { v = v * c; }
            default: { v = v / c; }
        }
    }
    dst[e] = v;
}

// Each workgroup computes a 64 (outputs) x 64 (rows) tile, each invocation 4 x 4 of it, over
// k-steps of 16 staged in workgroup memory.
const KS: u32 = 16u;
var<workgroup> w_tile: array<f32, 1024>; // [KS][TS] weights: k, output
var<workgroup> x_tile: array<f32, 1024>; // [KS][TS] inputs: k, row

@compute @workgroup_size(16, 16)
fn layer(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n_rows = params.n_rows;
    let n_in = params.n_in;
    let n_out = params.n_out;
    let o_tiles = (n_out + TS - 1u) / TS;
    let tile_id = wid.x + wid.y * nwg.x;
    let o0 = (tile_id % o_tiles) * TS;
    let r0 = (tile_id / o_tiles) * TS;
    let li = lid.y * 16u + lid.x;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < n_in; k0 += KS) {
        // 1024 values per tile, 4 per invocation; out-of-range reads are zeros.
        for (var j = 0u; j < 4u; j++) {
            let e = li + j * 256u;
            let kk = e / TS;
            let c = e % TS;
            let k = k0 + kk;
            var w = 0.0;
            if (k < n_in && o0 + c < n_out) {
                w = model[params.weights + k * n_out + o0 + c];
            }
            w_tile[e] = w;
            var v = 0.0;
            if (k < n_in && r0 + c < n_rows) {
                v = src[k * n_rows + r0 + c];
            }
            x_tile[e] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KS; kk++) {
            for (var a = 0u; a < 4u; a++) {
                let w = w_tile[kk * TS + lid.y * 4u + a];
                for (var b = 0u; b < 4u; b++) {
                    acc[a * 4u + b] += w * x_tile[kk * TS + lid.x * 4u + b];
                }
            }
        }
        workgroupBarrier();
    }
    for (var a = 0u; a < 4u; a++) {
        let o = o0 + lid.y * 4u + a;
        if (o >= n_out) {
            continue;
        }
        let bias = model[params.bias + o];
        for (var b = 0u; b < 4u; b++) {
            let r = r0 + lid.x * 4u + b;
            if (r < n_rows) {
                dst[o * n_rows + r] = activate(acc[a * 4u + b] + bias);
            }
        }
    }
}

@compute @workgroup_size(64)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * 64u;
    let n = params.n_rows;
    if (r >= n) {
        return;
    }
    var m = dst[r];
    for (var o = 1u; o < params.n_out; o++) {
        m = max(m, dst[o * n + r]);
    }
    var sum = 0.0;
    for (var o = 0u; o < params.n_out; o++) {
        let e = exp(dst[o * n + r] - m);
        dst[o * n + r] = e;
        sum += e;
    }
    for (var o = 0u; o < params.n_out; o++) {
        dst[o * n + r] = dst[o * n + r] / sum;
    }
}
