//! The protocols layer: software that keeps translation caches coherent,
//! written as programs the checker runs (docs/design.md §1 and §6).
//!
//! [`linux`] holds Linux's arm64 TLB flushes, an OS memory manager whose
//! operations are programs, and the mmu-notifier secondaries that share
//! or mirror a process's page table, each in the named kernel versions a
//! scenario can choose ([`linux::Version`]). [`kvm`] holds KVM/arm64's
//! stage-2 manager the same way ([`kvm::Version`]).

pub mod kvm;
pub mod linux;
