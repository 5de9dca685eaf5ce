//! SMMUv3: commands, event records and in-memory configuration structures.
//!
//! The codecs here are bit-exact against the SMMUv3 specification (IHI 0070):
//! commands (chapter 4), Stream Table Entries and Context Descriptors
//! (chapter 5) and event records (section 7.3). They model a Non-secure
//! programming interface with a 48-bit physical address space
//! ([`crate::addr::OUTPUT_ADDRESS_BITS`]) and no FEAT_LPA2 (`SMMU_IDR5.DS == 0`).

pub mod cd;
pub mod cmd;
pub mod config;
pub mod costs;
pub mod event;
pub mod model;
pub mod queue;
pub mod ste;

/// Bit-field helpers shared by the codecs (inclusive `[hi:lo]` ranges, as the
/// specification writes them).
pub(crate) mod bits {
    /// A mask with bits `[hi:lo]` set.
    #[inline]
    pub(crate) const fn mask(hi: u32, lo: u32) -> u64 {
        let width = hi - lo + 1;
        if width >= 64 {
            u64::MAX
        } else {
            ((1u64 << width) - 1) << lo
        }
    }

    /// Bits `[hi:lo]` of `w`, shifted down to bit 0.
    #[inline]
    pub(crate) const fn get(w: u64, hi: u32, lo: u32) -> u64 {
        (w & mask(hi, lo)) >> lo
    }

    /// `v` placed at bits `[hi:lo]`; bits of `v` that do not fit are dropped.
    #[inline]
    pub(crate) const fn put(v: u64, hi: u32, lo: u32) -> u64 {
        (v << lo) & mask(hi, lo)
    }

    /// Bit `n` of `w`.
    #[inline]
    pub(crate) const fn bit(w: u64, n: u32) -> bool {
        (w >> n) & 1 == 1
    }

    /// `b` placed at bit `n`.
    #[inline]
    pub(crate) const fn flag(b: bool, n: u32) -> u64 {
        (b as u64) << n
    }
}
