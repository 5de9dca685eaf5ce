//! The CPU side: TLB maintenance instructions and their completion.

pub mod tlbi;
