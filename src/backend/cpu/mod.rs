//! CPU backends: the scalar [`Reference`] (the truth) and the fast [`Cpu`] scorer for trees, whose
//! SIMD kernel ([`Kernel`]) is chosen at run time; [`DenseReference`] and [`DenseCpu`] for
//! dense nets.

mod aligned;
mod bitvector;
mod dense;
mod fast;
mod io;
mod kernel;
mod layout;
mod mask;
mod masked;
mod reference;
mod tune;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use dense::{DenseCpu, DenseReference};
pub use fast::{Algorithm, Cpu, TUNE_MIN_ROWS};
pub use kernel::Kernel;
pub use reference::Reference;
