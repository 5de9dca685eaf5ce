//! TLBI operations and their 64-bit operands (filled in by the TLBI codec work).
