//! SMMUv3 command queue entries (filled in by the command codec work).
