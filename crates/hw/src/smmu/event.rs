//! SMMUv3 event records (filled in by the command codec work).
