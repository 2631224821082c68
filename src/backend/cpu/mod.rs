//! CPU backends: the scalar [`Reference`] (the truth) and the fast [`Cpu`] scorer, whose
//! SIMD kernel ([`Kernel`]) is chosen at run time.

mod bitvector;
mod fast;
mod kernel;
mod layout;
mod reference;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use fast::{Algorithm, Cpu};
pub use kernel::Kernel;
pub use reference::Reference;
