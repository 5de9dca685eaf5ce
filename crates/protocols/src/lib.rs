//! The protocols layer: software that keeps translation caches coherent,
//! written as programs the checker runs (docs/design.md §1 and §6).
//!
//! [`linux`] holds Linux's arm64 TLB flushes, an OS memory manager whose
//! operations are programs, and the mmu-notifier secondaries that share
//! or mirror a process's page table, each in the named kernel versions a
//! scenario can choose ([`linux::Version`]). [`kvm`] holds KVM/arm64's
//! stage-2 manager the same way ([`kvm::Version`]). [`nested`] holds the
//! host service that replays a guest's SMMUv3 invalidation commands on the
//! physical SMMU, in the versions a scenario names with `host`
//! ([`nested::Version`]). [`version`] is what every kind of version shares:
//! its name in scenarios and the error that lists the names.

pub mod kvm;
pub mod linux;
pub mod nested;
pub mod version;
