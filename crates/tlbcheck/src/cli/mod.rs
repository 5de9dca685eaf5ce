//! Subcommands that live outside main.rs: each in its own module.

pub mod html;
pub mod qemu;
pub mod unix;
