//! VMSAv8-64 translation tables: descriptor formats and walks.

pub mod desc;
pub mod walk;

pub use desc::{Descriptor, LeafAttrs, TableStage};
pub use walk::{translate, translate_ipa, Context, Fault, FaultKind, StageConfig, Translation};
