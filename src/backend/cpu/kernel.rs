//! Tree-walking kernels: the portable one here, the x86-64 SIMD ones in `x86_64.rs`, one
//! chosen at run time.
//!
//! Every kernel does one thing: given up to [`BLOCK`] lanes, each a (tree root, row) pair, walk
//! every lane to its leaf and write the leaf's node index. Lanes are independent, so a kernel
//! keeps many walks in flight and the memory latency of one hides behind the others. Summing
//! leaves, transforms and threads live in `fast.rs`, shared by all kernels.

use std::fmt;
use std::sync::OnceLock;

use crate::backend::cpu::layout::{FastForest, goes_right};
use crate::error::{Error, Result};

// Both sizes live with the layout, which the kernels here and in x86_64.rs all read, so the
// SIMD files need nothing from this one (no import cycle).
pub(crate) use crate::backend::cpu::layout::{BLOCK, LANES};

/// A tree-walking kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kernel {
    /// Portable Rust: 16 walks interleaved, branch-free steps. Runs everywhere.
    Scalar,
    /// x86-64 AVX2: 8 lanes per vector, gathers for nodes and values.
    Avx2,
    /// x86-64 AVX-512 (F and BW): 16 lanes per vector, gathers and mask registers.
    Avx512,
}

impl Kernel {
    /// Every kernel this build knows, fastest first.
    pub const ALL: [Kernel; 3] = [Kernel::Avx512, Kernel::Avx2, Kernel::Scalar];

    /// Short name, as [`FromStr`](std::str::FromStr) reads it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the kernel (checked at run time, not at build time).
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The kernels this CPU can run, fastest first.
    pub fn available() -> Vec<Kernel> {
        Kernel::ALL.into_iter().filter(|k| k.is_available()).collect()
    }

    /// The kernel used when none is forced: `STREAMSCORE_KERNEL` if set (an unknown or
    /// unavailable name falls back to detection, with a warning), else the fastest available.
    /// Decided once per process and logged once.
    pub fn detect() -> Kernel {
        static CHOSEN: OnceLock<Kernel> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let fastest = Kernel::available()[0];
            let chosen = match std::env::var("STREAMSCORE_KERNEL") {
                Ok(name) => match name.parse::<Kernel>() {
                    Ok(k) if k.is_available() => k,
                    _ => {
                        log::warn!(
                            "STREAMSCORE_KERNEL={name} is not available here; using {fastest}"
                        );
                        fastest
                    }
                },
                Err(_) => fastest,
            };
            log::info!("tree kernel: {chosen} (available: {:?})", Kernel::available());
            chosen
        })
    }

    /// The kernel for tree traversal when none is forced: [`Kernel::detect`]'s, except that on
    /// AMD CPUs AVX2 is preferred to AVX-512, whose 16-lane gathers are slower there than two
    /// 8-lane ones (lgb_500x255 on a Zen 5 EPYC: 74-88k rows/s with AVX2, 47-51k with
    /// AVX-512). The bitvector algorithm has no gathers and keeps [`Kernel::detect`]'s choice.
    pub fn detect_for_traversal() -> Kernel {
        let detected = Kernel::detect();
        if detected == Kernel::Avx512
            && std::env::var_os("STREAMSCORE_KERNEL").is_none()
            && is_amd()
        {
            Kernel::Avx2
        } else {
            detected
        }
    }

    /// `Ok(self)` when this CPU can run it, else a `Config` error naming what it can run.
    pub fn check(self) -> Result<Kernel> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(Error::Config(format!(
                "kernel {self} needs CPU features this machine lacks (available: {:?})",
                Kernel::available()
            )))
        }
    }

    /// Walks every lane to its leaf: lane `l` starts at node `roots[l]` and reads its row at
    /// `tile[bases[l]..]`; `leaves[l]` gets the leaf's node index.
    ///
    /// The caller guarantees what makes the kernels' unchecked loads sound: `roots` are node
    /// indices of `forest`, each `bases[l] + forest.stride() <= tile.len()`, the three slices
    /// have one length, a multiple of [`LANES`] at most [`BLOCK`], and `self.is_available()`.
    #[inline]
    pub(crate) fn walk(
        self,
        forest: &FastForest,
        tile: &[f32],
        roots: &[u32],
        bases: &[u32],
        leaves: &mut [u32],
    ) {
        debug_assert!(roots.len() == bases.len() && roots.len() == leaves.len());
        debug_assert!(roots.len().is_multiple_of(LANES) && roots.len() <= BLOCK);
        debug_assert!(bases.iter().all(|&b| b as usize + forest.stride() <= tile.len()));
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the caller checked availability and the index bounds above.
            Kernel::Avx512 => unsafe {
                super::x86_64::walk_avx512(forest, tile, roots, bases, leaves)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe { super::x86_64::walk_avx2(forest, tile, roots, bases, leaves) },
            _ => walk_scalar(forest, tile, roots, bases, leaves),
        }
    }
}

impl Kernel {
    /// Walks one tree (root `root`) by the tile's rows `0..n`: `leaves[r]` gets row `r`'s leaf.
    /// `bases[r]` is row `r`'s offset in the tile (`r * stride`), `roots` is scratch; both hold
    /// at least `n` rounded up to [`LANES`] entries, as does `leaves`. Same safety contract as
    /// [`Kernel::walk`].
    #[inline]
    pub(crate) fn walk_tree(
        self,
        forest: &FastForest,
        tile: &[f32],
        root: u32,
        n: usize,
        bases: &[u32],
        roots: &mut [u32],
        leaves: &mut [u32],
    ) {
        if forest.nodes[root as usize].offset() == 0 {
            // A single-leaf tree: every row ends at its root.
            leaves[..n].fill(root);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx512 {
            debug_assert!(n * forest.stride() <= tile.len() && leaves.len() >= n);
            // SAFETY: availability was checked when the kernel was chosen; the root is a
            // split; the tile holds n rows; leaves holds n entries.
            unsafe { super::x86_64::walk_rows_avx512(forest, tile, root, n, leaves) };
            return;
        }
        let lanes = n.next_multiple_of(LANES);
        for start in (0..lanes).step_by(BLOCK) {
            let l = start..(start + BLOCK).min(lanes);
            let k = l.len();
            roots[..k].fill(root);
            self.walk(forest, tile, &roots[..k], &bases[l.clone()], &mut leaves[l]);
        }
    }
}

/// Whether the CPU's vendor string is AMD's.
fn is_amd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID leaf 0 exists on every x86-64 CPU.
        let id = std::arch::x86_64::__cpuid(0);
        let vendor: Vec<u8> =
            [id.ebx, id.edx, id.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
        vendor == b"AuthenticAMD"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kernel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            Error::Config(format!("unknown kernel `{s}` (expected avx512, avx2 or scalar)"))
        })
    }
}

/// The portable kernel: [`LANES`] walks interleaved, each step branch-free, until every lane
/// of the group stands on a leaf.
fn walk_scalar(
    forest: &FastForest,
    tile: &[f32],
    roots: &[u32],
    bases: &[u32],
    leaves: &mut [u32],
) {
    if forest.has_special {
        walk_scalar_with::<true>(forest, tile, roots, bases, leaves)
    } else {
        walk_scalar_with::<false>(forest, tile, roots, bases, leaves)
    }
}

#[inline(always)]
fn walk_scalar_with<const FULL: bool>(
    forest: &FastForest,
    tile: &[f32],
    roots: &[u32],
    bases: &[u32],
    leaves: &mut [u32],
) {
    use crate::backend::cpu::layout::NAN_RIGHT;
    let nodes = &forest.nodes[..];
    for ((roots, bases), out) in
        roots.chunks_exact(LANES).zip(bases.chunks_exact(LANES)).zip(leaves.chunks_exact_mut(LANES))
    {
        let mut idx = [0u32; LANES];
        idx.copy_from_slice(roots);
        loop {
            let mut moving = 0;
            for k in 0..LANES {
                // SAFETY: node indices only ever step to children, which `FastForest::new`
                // placed inside `nodes` (checked by `FastForest::check`), and every feature,
                // the padding column included, is below the stride the caller bounded.
                let (node, x) = unsafe {
                    let node = *nodes.get_unchecked(idx[k] as usize);
                    (node, *tile.get_unchecked(bases[k] as usize + node.feature()))
                };
                let offset = node.offset();
                moving |= offset;
                let right = if FULL {
                    goes_right(node, x, &forest.cat, forest.rule)
                } else {
                    // NaN fails `>`; NAN_RIGHT sends it right.
                    (x > node.threshold) | (x.is_nan() & (node.meta & NAN_RIGHT != 0))
                };
                idx[k] += offset + right as u32;
            }
            if moving == 0 {
                break;
            }
        }
        out.copy_from_slice(&idx);
    }
}
