//! CPU backends.

mod reference;

pub use reference::Reference;
