// Video frames: preprocessing for a CNN, and a motion score, for a batch of frames of any
// sizes and pixel formats (`src/frames/`; the CPU path there computes the same values).
//
// Frames arrive packed: every frame's bytes, each starting on a 4-byte boundary, in one u32
// array; `frames` says where each one is. Pixels are read as bytes out of those words.
//
// - `preprocess`: bilinear resize (half-pixel centres, edges clamped: OpenCV's INTER_LINEAR,
//   PyTorch's align_corners=False) to the model's input size, to f32 in [0, 1], then
//   (v - mean[c]) / std[c], written NCHW. One invocation per output value.
// - `luma`: the same resize of the frame's luma (0.299 R + 0.587 G + 0.114 B, in 0..255) at
//   the model's size, for the motion score.
//
// Compiled after the prelude generated from src/backend/gpu/abi.rs (the Rust <-> WGSL contract),
// which declares RGB8, BGR8, GRAY8, Params, FrameInfo, MotionParams.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> frames: array<FrameInfo>;
@group(0) @binding(2) var<storage, read> pixels: array<u32>;
// preprocess: n x channels x out_h x out_w; luma: n x out_h x out_w.
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn byte_at(i: u32) -> f32 {
    return f32((pixels[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu);
}

// Channel `c` (0 R, 1 G, 2 B) of pixel (x, y), in 0..255.
fn channel(f: FrameInfo, x: u32, y: u32, c: u32) -> f32 {
    let p = y * f.width + x;
    switch f.format {
        case GRAY8: { return byte_at(f.offset + p); }
        case BGR8: { return byte_at(f.offset + p * 3u + 2u - c); }
        default: { return byte_at(f.offset + p * 3u + c); }
    }
}

fn luma_at(f: FrameInfo, x: u32, y: u32) -> f32 {
    if (f.format == GRAY8) {
        return channel(f, x, y, 0u);
    }
    return 0.299 * channel(f, x, y, 0u) + 0.587 * channel(f, x, y, 1u) + 0.114 * channel(f, x, y, 2u);
}

// Source coordinate of output coordinate `o` for a resize from `src` to `dst` samples, with
// the two neighbours and the weight of the second.
fn source(o: u32, src: u32, dst: u32) -> vec3<f32> {
    let s = clamp((f32(o) + 0.5) * (f32(src) / f32(dst)) - 0.5, 0.0, f32(src - 1u));
    let i0 = floor(s);
    let i1 = min(i0 + 1.0, f32(src - 1u));
    return vec3<f32>(i0, i1, s - i0);
}

// Channel `c` (or luma when `c` is 3) of frame `f` resampled at output pixel (x, y).
fn sample(f: FrameInfo, x: u32, y: u32, c: u32) -> f32 {
    let sx = source(x, f.width, params.out_w);
    let sy = source(y, f.height, params.out_h);
    let x0 = u32(sx.x);
    let x1 = u32(sx.y);
    let y0 = u32(sy.x);
    let y1 = u32(sy.y);
    var p00: f32;
    var p01: f32;
    var p10: f32;
    var p11: f32;
    if (c == 3u) {
        p00 = luma_at(f, x0, y0);
        p01 = luma_at(f, x1, y0);
        p10 = luma_at(f, x0, y1);
        p11 = luma_at(f, x1, y1);
    } else {
        p00 = channel(f, x0, y0, c);
        p01 = channel(f, x1, y0, c);
        p10 = channel(f, x0, y1, c);
        p11 = channel(f, x1, y1, c);
    }
    let top = p00 + (p01 - p00) * sx.z;
    let bottom = p10 + (p11 - p10) * sx.z;
    return top + (bottom - top) * sy.z;
}

@compute @workgroup_size(16, 16)
fn preprocess(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    let n = gid.z / params.channels;
    let c = gid.z % params.channels;
    if (x >= params.out_w || y >= params.out_h || n >= params.n_frames) {
        return;
    }
    let f = frames[n];
    // A one-channel model reads luma; a gray frame feeds all three channels.
    var v: f32;
    if (params.channels == 1u) {
        v = sample(f, x, y, 3u);
    } else if (f.format == GRAY8) {
        v = sample(f, x, y, 0u);
    } else {
        v = sample(f, x, y, c);
    }
    let at = ((n * params.channels + c) * params.out_h + y) * params.out_w + x;
    out[at] = (v / 255.0 - params.mean[c]) * params.inv_std[c];
}

@compute @workgroup_size(16, 16)
fn luma(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    let n = gid.z;
    if (x >= params.out_w || y >= params.out_h || n >= params.n_frames) {
        return;
    }
    out[(n * params.out_h + y) * params.out_w + x] = sample(frames[n], x, y, 3u);
}

// Motion: the mean absolute luma difference (0..1) between each frame and the previous frame
// of its camera, at the model's size. One workgroup per frame; 256 strided partial sums, then
// a fixed-order tree, so the CPU path can add in the same order.

@group(1) @binding(0) var<uniform> motion_params: MotionParams;
// This batch's luma maps (from `luma`).
@group(1) @binding(1) var<storage, read> lumas: array<f32>;
// One luma map per camera slot: each camera's latest frame before this batch.
@group(1) @binding(2) var<storage, read> history: array<f32>;
// Per frame: >= 0, an earlier frame of this batch; < 0, history slot -1 - prev.
@group(1) @binding(3) var<storage, read> previous: array<i32>;
@group(1) @binding(4) var<storage, read_write> motion: array<f32>;

var<workgroup> partial_sums: array<f32, 256>;

@compute @workgroup_size(256)
fn motion_score(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = wid.x;
    let m = motion_params.pixels;
    let prev = previous[n];
    var sum = 0.0;
    for (var i = li; i < m; i += 256u) {
        let cur = lumas[n * m + i];
        var before: f32;
        if (prev >= 0) {
            before = lumas[u32(prev) * m + i];
        } else {
            before = history[u32(-1 - prev) * m + i];
        }
        sum += abs(cur - before);
    }
    partial_sums[li] = sum;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            partial_sums[li] = partial_sums[li] + partial_sums[li + stride];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        motion[n] = partial_sums[0] / (f32(m) * 255.0);
    }
}
