//! Traces recorded elsewhere, read into tlbcheck's terms.
//!
//! - [`qemu`]: QEMU's SMMUv3 trace events (log backend) and a summary of
//!   the commands, invalidations and translations they record;
//! - [`audit`]: a replay of such a trace's invalidations against the
//!   SMMUv3 completion rules, flagging IOTLB hits the architecture forbids.

pub mod audit;
pub mod qemu;
