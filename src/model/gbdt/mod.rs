//! Gradient-boosted tree ensembles: one validated [`Forest`] whatever the source format.

mod forest;
pub mod lightgbm;
pub mod xgboost;

pub use forest::{
    Accumulation, CategoryRule, Forest, MAX_DEPTH, Node, Test, Tree, ZERO_BAND, f32_floor,
};
