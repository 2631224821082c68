//! The data contract between Rust and the WGSL shaders, defined once: node flags, transform,
//! activation and pixel-format codes, and the `#[repr(C)]` parameter structs. Each shader is
//! compiled with a prelude generated from these definitions ([`prelude`]), so the two sides
//! cannot drift; the naga test in `shaders.rs` checks every struct's size and member offsets
//! as naga lays them out against Rust's, and every prelude constant against the Rust value.

use bytemuck::{Pod, Zeroable};

/// A shader file from `shaders/` (its source and compilation live in `shaders.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    /// Tree ensembles: entry points `rows` and `tiles`.
    Gbdt,
    /// Dense nets: entry points `layer` and `softmax`.
    Dense,
    /// Video frames: entry points `preprocess`, `luma` and `motion_score`.
    Frames,
}

impl Shader {
    /// Every shader, for the validation tests.
    #[cfg(test)]
    pub const ALL: [Shader; 3] = [Shader::Gbdt, Shader::Dense, Shader::Frames];
}

/// A constant of the contract, as it is written in WGSL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    U32(u32),
    F32(f32),
}

/// Declares a `#[repr(C)]` struct and its WGSL twin (`wgsl` names it in the shader).
macro_rules! shared_struct {
    ($(#[$meta:meta])* $name:ident as $wgsl:literal { $($(#[$fmeta:meta])* $field:ident: $ty:tt),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
        pub(crate) struct $name {
            $($(#[$fmeta])* pub $field: shared_struct!(@rust $ty),)*
        }

        impl $name {
            /// The WGSL declaration.
            pub(crate) const WGSL: &'static str = concat!(
                "struct ", $wgsl, " {\n",
                $("    ", stringify!($field), ": ", shared_struct!(@wgsl $ty), ",\n",)*
                "}\n"
            );
            /// The WGSL name.
            #[cfg(test)]
            pub(crate) const NAME: &'static str = $wgsl;
            /// Each member's name and Rust offset, in order.
            #[cfg(test)]
            pub(crate) fn offsets() -> Vec<(&'static str, usize)> {
                vec![$((stringify!($field), std::mem::offset_of!($name, $field)),)*]
            }
        }
    };
    (@rust u32) => { u32 };
    (@rust f32) => { f32 };
    (@rust vec4f) => { [f32; 4] };
    (@wgsl u32) => { "u32" };
    (@wgsl f32) => { "f32" };
    (@wgsl vec4f) => { "vec4<f32>" };
}

/// Tree node flags (`flags << 24` in a node's second word).
pub(crate) mod node {
    /// The node is a leaf.
    pub const LEAF: u32 = 1;
    /// NaN goes right.
    pub const NAN_RIGHT: u32 = 2;
    /// A categorical split (the fourth word indexes a category set).
    pub const CATEGORICAL: u32 = 4;
    /// LightGBM's zero rule applies (values in the zero band count as zero).
    pub const ZERO: u32 = 8;
    /// Zero goes right.
    pub const ZERO_RIGHT: u32 = 16;
    /// A category set's header bit: categories in the set go left.
    pub const IN_SET_LEFT: u32 = 1 << 31;
}

/// Workgroup sizes the Rust side dispatches for.
pub(crate) mod sizes {
    /// Floats of workgroup memory the tree shader's `tiles` stages rows in.
    pub const TILE_FLOATS: u32 = 4096;
    /// Invocations per `tiles` workgroup.
    pub const TILE_THREADS: u32 = 256;
    /// Outputs x rows per dense `layer` workgroup.
    pub const DENSE_TILE: u32 = 64;
}

/// Output transform codes (`Params::transform` of the tree shader).
pub(crate) mod transform {
    pub const IDENTITY: u32 = 0;
    pub const SIGMOID: u32 = 1;
    pub const EXP: u32 = 2;
    pub const LOG1P_EXP: u32 = 3;
    pub const SIGNED_SQUARE: u32 = 4;
    pub const STEP: u32 = 5;
    pub const SOFTMAX: u32 = 6;
    pub const ARGMAX: u32 = 7;
}

/// Activation codes (`Params::activation` of the dense shader).
pub(crate) mod activation {
    pub const IDENTITY: u32 = 0;
    pub const RELU: u32 = 1;
    pub const LEAKY_RELU: u32 = 2;
    pub const SIGMOID: u32 = 3;
    pub const TANH: u32 = 4;
    pub const GELU: u32 = 5;
    pub const GELU_TANH: u32 = 6;
}

shared_struct! {
    /// The tree shader's parameters.
    GbdtParams as "Params" {
        n_rows: u32,
        n_features: u32,
        n_groups: u32,
        /// One of the `transform` codes (identity for raw margins).
        transform: u32,
        /// 1: sum in f32 in tree order (XGBoost); 0: sum in hi + lo pairs (LightGBM's f64).
        exact_f32: u32,
        /// 0: LightGBM's category rule; 1: XGBoost's.
        cat_rule: u32,
        /// Rows per tile and lanes per row (`tiles` only; tile * lanes = 256).
        tile: u32,
        lanes: u32,
        sigmoid_scale: f32,
        /// Always 1.0: multiplying by a value the compiler cannot see keeps it from rewriting
        /// the two-sum's `(a + b) - a` as `b`, which would silently drop the low part.
        one: f32,
        /// Random forests average their trees before the transform (1.0 otherwise).
        divisor: f32,
        pad: u32,
    }
}

shared_struct! {
    /// The dense shader's parameters (one per dispatch, at a dynamic offset).
    DenseParams as "Params" {
        n_rows: u32,
        n_in: u32,
        n_out: u32,
        activation: u32,
        /// Offsets into `model` of the weights and biases (layer) or the first op's constants.
        weights: u32,
        bias: u32,
        /// prep: number of ops, and their codes 4 bits each (0 add, 1 sub, 2 mul, 3 div).
        n_ops: u32,
        ops: u32,
        alpha: f32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
    }
}

shared_struct! {
    /// The frames shader's preprocessing parameters.
    FramesParams as "Params" {
        n_frames: u32,
        out_w: u32,
        out_h: u32,
        channels: u32,
        mean: vec4f,
        inv_std: vec4f,
    }
}

shared_struct! {
    /// Where one frame's bytes are in the packed pixel buffer.
    FrameInfo as "FrameInfo" {
        /// Byte offset of the frame in `pixels` (a multiple of 4).
        offset: u32,
        width: u32,
        height: u32,
        format: u32,
    }
}

shared_struct! {
    /// The motion score's parameters.
    MotionParams as "MotionParams" {
        n_frames: u32,
        pixels: u32,
        pad0: u32,
        pad1: u32,
    }
}

/// The constants `shader` is compiled with, by their WGSL names.
pub(crate) fn constants(shader: Shader) -> Vec<(&'static str, Value)> {
    use Value::{F32, U32};
    match shader {
        Shader::Gbdt => vec![
            ("LEAF", U32(node::LEAF)),
            ("NAN_RIGHT", U32(node::NAN_RIGHT)),
            ("CATEGORICAL", U32(node::CATEGORICAL)),
            ("ZERO", U32(node::ZERO)),
            ("ZERO_RIGHT", U32(node::ZERO_RIGHT)),
            ("IN_SET_LEFT", U32(node::IN_SET_LEFT)),
            ("ZERO_BAND", F32(crate::model::gbdt::ZERO_BAND)),
            ("T_IDENTITY", U32(transform::IDENTITY)),
            ("T_SIGMOID", U32(transform::SIGMOID)),
            ("T_EXP", U32(transform::EXP)),
            ("T_LOG1P_EXP", U32(transform::LOG1P_EXP)),
            ("T_SIGNED_SQUARE", U32(transform::SIGNED_SQUARE)),
            ("T_STEP", U32(transform::STEP)),
            ("T_SOFTMAX", U32(transform::SOFTMAX)),
            ("T_ARGMAX", U32(transform::ARGMAX)),
            ("TILE_FLOATS", U32(sizes::TILE_FLOATS)),
            ("TILE_THREADS", U32(sizes::TILE_THREADS)),
        ],
        Shader::Dense => vec![
            ("A_IDENTITY", U32(activation::IDENTITY)),
            ("A_RELU", U32(activation::RELU)),
            ("A_LEAKY_RELU", U32(activation::LEAKY_RELU)),
            ("A_SIGMOID", U32(activation::SIGMOID)),
            ("A_TANH", U32(activation::TANH)),
            ("A_GELU", U32(activation::GELU)),
            ("A_GELU_TANH", U32(activation::GELU_TANH)),
            ("TS", U32(sizes::DENSE_TILE)),
        ],
        Shader::Frames => {
            use crate::frames::PixelFormat;
            vec![
                ("RGB8", U32(PixelFormat::Rgb8.code())),
                ("BGR8", U32(PixelFormat::Bgr8.code())),
                ("GRAY8", U32(PixelFormat::Gray8.code())),
            ]
        }
    }
}

/// The struct declarations `shader` is compiled with.
pub(crate) fn structs(shader: Shader) -> Vec<&'static str> {
    match shader {
        Shader::Gbdt => vec![GbdtParams::WGSL],
        Shader::Dense => vec![DenseParams::WGSL],
        Shader::Frames => vec![FramesParams::WGSL, FrameInfo::WGSL, MotionParams::WGSL],
    }
}

/// The WGSL prelude of `shader`: its constants and structs, from the definitions above.
pub(crate) fn prelude(shader: Shader) -> String {
    let mut s =
        String::from("// Generated from src/backend/gpu/abi.rs: the Rust <-> WGSL contract.\n");
    for (name, value) in constants(shader) {
        s += &match value {
            Value::U32(v) => format!("const {name}: u32 = {v}u;\n"),
            // `{:e}` prints the shortest digits that read back as the same f32.
            Value::F32(v) => format!("const {name}: f32 = {v:e};\n"),
        };
    }
    for declaration in structs(shader) {
        s += declaration;
    }
    s + "\n"
}

#[cfg(test)]
pub(crate) mod layout {
    //! Rust's layout of every shared struct, for the naga comparison in `shaders.rs`.
    use super::*;

    /// Member names and their byte offsets, in declaration order.
    pub(crate) type Offsets = Vec<(&'static str, usize)>;

    /// (shader, WGSL name, Rust size, member offsets).
    pub(crate) fn all() -> Vec<(Shader, &'static str, usize, Offsets)> {
        vec![
            (Shader::Gbdt, GbdtParams::NAME, size_of::<GbdtParams>(), GbdtParams::offsets()),
            (Shader::Dense, DenseParams::NAME, size_of::<DenseParams>(), DenseParams::offsets()),
            (
                Shader::Frames,
                FramesParams::NAME,
                size_of::<FramesParams>(),
                FramesParams::offsets(),
            ),
            (Shader::Frames, FrameInfo::NAME, size_of::<FrameInfo>(), FrameInfo::offsets()),
            (
                Shader::Frames,
                MotionParams::NAME,
                size_of::<MotionParams>(),
                MotionParams::offsets(),
            ),
        ]
    }
}
