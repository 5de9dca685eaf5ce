//! `tlbcheck import qemu-trace LOG` and `tlbcheck audit qemu-trace LOG`.

use crate::{bad_input, write_out, EXIT_INCONCLUSIVE, EXIT_MISMATCH};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use tlbcheck::import::audit::audit;
use tlbcheck::import::qemu::{parse, QemuTrace, Summary};

/// Trace formats `import` reads.
#[derive(Subcommand, Debug)]
pub enum ImportWhat {
    /// A QEMU log-backend trace of the SMMUv3 events (`-trace 'smmu*'
    /// -trace 'smmuv3*'`, written to standard error or `-D FILE`): commands
    /// by opcode, commands per CMD_SYNC and per doorbell batch, TLBI page
    /// counts and TTL hints, use per ASID and per StreamID.
    QemuTrace {
        /// The log file.
        log: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Trace formats `audit` checks.
#[derive(Subcommand, Debug)]
pub enum AuditWhat {
    /// A QEMU log-backend trace with the IOTLB events
    /// (`smmu_iotlb_lookup_hit/miss`, `smmu_iotlb_insert`): flags every
    /// IOTLB hit for an (ASID, address) that a completed TLBI + CMD_SYNC
    /// covered with no walk inserting it again. Exit 0 clean, 1 forbidden
    /// hits found, 2 bad input, 3 nothing to audit (no lookup events).
    QemuTrace {
        /// The log file.
        log: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Reads and parses a log, or says why not (exit code on error).
fn load(path: &Path) -> Result<QemuTrace, u8> {
    let bytes = std::fs::read(path).map_err(|e| bad_input(super::unix::io_message(path, &e)))?;
    let text = String::from_utf8_lossy(&bytes);
    parse(&text).map_err(|e| bad_input(format!("{}:{}: {}", path.display(), e.line, e.message)))
}

/// Runs `import qemu-trace`.
pub fn import(what: &ImportWhat) -> u8 {
    let ImportWhat::QemuTrace { log, json } = what;
    let trace = match load(log) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let summary = Summary::new(&trace);
    if *json {
        match serde_json::to_string_pretty(&summary) {
            Ok(s) => outln!("{s}"),
            Err(e) => return bad_input(e),
        }
    } else {
        outln!("trace  {}", log.display());
        out!("{}", summary.render_text());
    }
    0
}

/// Runs `audit qemu-trace`.
pub fn audit_cmd(what: &AuditWhat) -> u8 {
    let AuditWhat::QemuTrace { log, json } = what;
    let trace = match load(log) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let a = audit(&trace);
    let code = if !a.decided() {
        EXIT_INCONCLUSIVE
    } else if a.forbidden.is_empty() {
        0
    } else {
        EXIT_MISMATCH
    };
    if *json {
        let status = match code {
            0 => "ok",
            EXIT_MISMATCH => "forbidden-hits",
            _ => "inconclusive",
        };
        let mut v = match serde_json::to_value(&a) {
            Ok(v) => v,
            Err(e) => return bad_input(e),
        };
        if let Some(m) = v.as_object_mut() {
            m.insert("status".into(), status.into());
            m.insert("trace".into(), log.display().to_string().into());
        }
        outln!("{v}");
    } else {
        outln!("trace  {}", log.display());
        out!("{}", a.render_text());
    }
    code
}
