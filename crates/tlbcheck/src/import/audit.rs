//! Replaying a QEMU SMMUv3 trace's invalidations against the architecture.
//!
//! SMMUv3 4.7.3: a CMD_SYNC completes once every invalidation consumed
//! before it has been performed, and after that no entry those commands
//! covered (4.4: by ASID, VMID, address range) is used again; a new walk
//! may cache the translation again. So in a trace, an IOTLB hit for an
//! (ASID, address) whose entry a completed TLBI + CMD_SYNC covered, with no
//! new insert for it since the command, is a hit the architecture forbids:
//! the emulator kept an entry the guest was promised gone.
//!
//! The coverage is the command's, as the guest asked for it (the
//! `smmuv3_*range_inval`, `smmuv3_cmdq_tlbi_*` and opcode events), never
//! what the emulator's own `smmu_iotlb_inv_*` events say it removed.
//! Where the architecture lets an invalidation miss an entry, the audit
//! does not flag a hit: a TTL hint naming another level than the entry's,
//! a range whose TG names another granule than the entry's (4.4.1.1), a
//! VMID that differs. QEMU's insert event does not say whether an entry is
//! global, which CMD_TLBI_NH_ASID leaves (4.4.2.2); the audit takes every
//! entry as non-global, as Linux makes every stage-1 IOMMU leaf
//! (`arm_lpae_prot_to_pte` sets nG for the stage-1 formats). Stage-2-only
//! translations (QEMU's `asid=-1` lookups) and stage-2 commands (`stage=2`)
//! are counted and left alone: the audit follows stage-1 entries.

use super::qemu::{Event, QemuTrace};
use serde::Serialize;
use std::collections::HashMap;

/// What one invalidation command covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inval {
    /// Line of the event giving the command's scope.
    pub line: usize,
    /// The opcode it came from (`CMD_TLBI_NH_VA`, ...).
    pub opcode: String,
    /// ASID, or every ASID.
    pub asid: Option<u16>,
    /// VMID, when the trace names one.
    pub vmid: Option<u16>,
    /// Inclusive address range, or every address.
    pub range: Option<(u64, u64)>,
    /// Granule code of a range command (0 = not a range).
    pub tg: u8,
    /// TTL hint (0 = any level).
    pub ttl: u8,
    /// Line of the CMD_SYNC that completed it.
    pub sync_line: Option<usize>,
}

/// An IOTLB entry as a walk inserted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Inserted {
    /// Line of the `smmu_iotlb_insert` event.
    pub line: usize,
    /// First input address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// Granule code.
    pub tg: u8,
    /// Lookup level.
    pub level: u8,
}

/// An IOTLB hit the architecture forbids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForbiddenHit {
    /// Line of the `smmu_iotlb_lookup_hit` event.
    pub hit_line: usize,
    /// ASID looked up.
    pub asid: u16,
    /// Address looked up.
    pub addr: u64,
    /// The entry that hit, if the trace shows its insert.
    pub entry: Option<Inserted>,
    /// The completed invalidation that covered it.
    pub covered_by: Inval,
}

/// The audit's findings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// IOTLB lookups in the trace.
    pub lookups: usize,
    /// Of which hits.
    pub hits: usize,
    /// IOTLB inserts.
    pub inserts: usize,
    /// Invalidation scopes read from commands.
    pub invalidations: usize,
    /// CMD_SYNCs.
    pub syncs: usize,
    /// Invalidations still waiting for a CMD_SYNC at the end of the trace.
    pub uncompleted: usize,
    /// Lookups of stage-2-only translations (no ASID), which the audit
    /// does not judge: it follows stage-1 entries only.
    pub unaudited: usize,
    /// Every forbidden hit, in trace order.
    pub forbidden: Vec<ForbiddenHit>,
}

impl Audit {
    /// Whether the trace has the full-level events an audit needs
    /// (`smmu_iotlb_lookup_*`); without them nothing was decided.
    pub fn decided(&self) -> bool {
        self.lookups > self.unaudited
    }

    /// The findings as text.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} IOTLB lookups ({} hits), {} inserts, {} invalidations, {} CMD_SYNCs{}",
            self.lookups,
            self.hits,
            self.inserts,
            self.invalidations,
            self.syncs,
            if self.uncompleted > 0 {
                format!(", {} invalidation(s) never completed", self.uncompleted)
            } else {
                String::new()
            }
        );
        if self.unaudited > 0 {
            let _ = writeln!(
                o,
                "{} lookup(s) of stage-2-only translations not audited (stage-1 entries only)",
                self.unaudited
            );
        }
        if !self.decided() {
            let _ = writeln!(
                o,
                "nothing to audit: the trace has no stage-1 smmu_iotlb_lookup_hit/miss events \
                 (run QEMU with -trace 'smmu*' -trace 'smmuv3*')"
            );
            return o;
        }
        if self.forbidden.is_empty() {
            let _ = writeln!(
                o,
                "ok: no IOTLB hit after a completed invalidation covering it"
            );
        }
        for f in &self.forbidden {
            let _ = writeln!(
                o,
                "\nline {}: FORBIDDEN IOTLB hit, asid {} addr {:#x}",
                f.hit_line, f.asid, f.addr
            );
            if let Some(e) = f.entry {
                let _ = writeln!(
                    o,
                    "  entry [{:#x}, {:#x}] level {} inserted at line {}",
                    e.base,
                    e.base.wrapping_add(e.size - 1),
                    e.level,
                    e.line
                );
            }
            let c = &f.covered_by;
            let asid = c
                .asid
                .map_or("every asid".to_string(), |a| format!("asid {a}"));
            let range = c.range.map_or("every address".to_string(), |(a, b)| {
                format!("[{a:#x}, {b:#x}]")
            });
            let _ = writeln!(
                o,
                "  covered by line {} ({} {asid} {range}{}), completed by CMD_SYNC at line {}",
                c.line,
                c.opcode,
                if c.ttl != 0 {
                    format!(" ttl {}", c.ttl)
                } else {
                    String::new()
                },
                c.sync_line.unwrap_or(0)
            );
            let _ = writeln!(
                o,
                "  no walk inserted it again in between: the emulator kept an entry the guest was told was gone"
            );
        }
        o
    }
}

/// Bytes mapped by one entry of granule code `tg` at `level`; `None` for
/// a combination no table has (VMSAv8-64: each level resolves
/// granule-bits − 3 bits).
fn entry_size(tg: u8, level: u8) -> Option<u64> {
    let bits = granule_bits(tg)?;
    if level > 3 {
        return None;
    }
    let shift = bits + u32::from(3 - level) * (bits - 3);
    (shift < 64).then(|| 1u64 << shift)
}

/// log2 of the granule: TG 1 = 4K, 2 = 16K, 3 = 64K (the SMMU command's
/// TG encoding, which QEMU's insert event shares).
fn granule_bits(tg: u8) -> Option<u32> {
    match tg {
        1 => Some(12),
        2 => Some(14),
        3 => Some(16),
        _ => None,
    }
}

/// Whether `inv` removes `entry` (or, with no entry known, the translation
/// of `addr`) for `asid`/`vmid` under the architecture's rules.
fn covers(inv: &Inval, asid: u16, vmid: Option<u16>, addr: u64, entry: Option<&Inserted>) -> bool {
    if inv.asid.is_some_and(|a| a != asid) {
        return false;
    }
    if let (Some(a), Some(b)) = (inv.vmid, vmid) {
        if a != b {
            return false;
        }
    }
    let Some((lo, hi)) = inv.range else {
        return true;
    };
    let (elo, ehi) = match entry {
        Some(e) => (e.base, e.base.saturating_add(e.size - 1)),
        None => (addr, addr),
    };
    if hi < elo || lo > ehi {
        return false;
    }
    if let Some(e) = entry {
        if inv.ttl != 0 && inv.ttl != e.level {
            return false;
        }
        if inv.tg != 0 && inv.tg != e.tg {
            return false;
        }
    }
    true
}

/// Audits `trace`.
pub fn audit(trace: &QemuTrace) -> Audit {
    let mut a = Audit::default();
    let mut pending: Vec<Inval> = Vec::new();
    // Completed invalidations, in line order (commands complete in order).
    let mut completed: Vec<Inval> = Vec::new();
    // Latest insert per (ASID, base, size).
    let mut inserted: HashMap<(u16, u64, u64), Inserted> = HashMap::new();
    let mut opcode = String::new();
    for r in &trace.records {
        if let Event::Opcode { name } = &r.event {
            opcode = name.clone();
        }
        let mut push = |inv: Inval, a: &mut Audit| {
            a.invalidations += 1;
            pending.push(inv);
        };
        let scope = |asid, vmid, range, tg, ttl| Inval {
            line: r.line,
            opcode: opcode.clone(),
            asid,
            vmid,
            range,
            tg,
            ttl,
            sync_line: None,
        };
        match &r.event {
            Event::Opcode { name } => {
                match name.as_str() {
                    "CMD_SYNC" => {
                        a.syncs += 1;
                        for mut p in pending.drain(..) {
                            p.sync_line = Some(r.line);
                            completed.push(p);
                        }
                    }
                    // Every stage-1 entry (SMMUv3 4.4.2.1); the scope is in
                    // the opcode, QEMU traces no arguments.
                    "CMD_TLBI_NH_ALL" | "CMD_TLBI_NSNH_ALL" | "CMD_TLBI_EL2_ALL" => {
                        push(scope(None, None, None, 0, 0), &mut a)
                    }
                    _ => {}
                }
            }
            // A stage-2 TLBI (CMD_TLBI_S2_IPA) names IPAs, not the input
            // addresses of the stage-1 entries audited here.
            Event::RangeInval { stage: Some(2), .. } => {}
            Event::RangeInval {
                vmid,
                asid,
                addr,
                tg,
                num_pages,
                ttl,
                ..
            } => {
                let range = match granule_bits(*tg) {
                    Some(bits) => {
                        let bytes = u128::from(*num_pages) << bits;
                        let last = u128::from(*addr) + bytes.max(1) - 1;
                        (*addr, u64::try_from(last).unwrap_or(u64::MAX))
                    }
                    // Not a range: every entry that translates the address.
                    None => (*addr, *addr),
                };
                push(scope(*asid, *vmid, Some(range), *tg, *ttl), &mut a);
            }
            Event::InvalAsid { asid } => push(scope(Some(*asid), None, None, 0, 0), &mut a),
            Event::InvalVmid { vmid } => push(scope(None, Some(*vmid), None, 0, 0), &mut a),
            Event::Insert { asid: None, .. } => a.inserts += 1,
            Event::Insert {
                asid: Some(asid),
                addr,
                tg,
                level,
                ..
            } => {
                a.inserts += 1;
                if let Some(size) = entry_size(*tg, *level) {
                    let base = addr & !(size - 1);
                    inserted.insert(
                        (*asid, base, size),
                        Inserted {
                            line: r.line,
                            base,
                            size,
                            tg: *tg,
                            level: *level,
                        },
                    );
                }
            }
            Event::Lookup {
                hit,
                asid,
                vmid,
                addr,
            } => {
                a.lookups += 1;
                let Some(asid) = *asid else {
                    a.unaudited += 1;
                    continue;
                };
                if !hit {
                    continue;
                }
                a.hits += 1;
                // The entry that hit: the latest insert for this ASID whose
                // span contains the address.
                let entry = (1..=3u8)
                    .flat_map(|tg| (0..=3u8).filter_map(move |l| entry_size(tg, l)))
                    .filter_map(|size| inserted.get(&(asid, addr & !(size - 1), size)))
                    .max_by_key(|e| e.line)
                    .copied();
                let since = entry.map_or(0, |e| e.line);
                let found = completed
                    .iter()
                    .rev()
                    .take_while(|c| c.line > since)
                    .find(|c| covers(c, asid, *vmid, *addr, entry.as_ref()));
                if let Some(c) = found {
                    a.forbidden.push(ForbiddenHit {
                        hit_line: r.line,
                        asid,
                        addr: *addr,
                        entry,
                        covered_by: c.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    a.uncompleted = pending.len();
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::qemu::parse;

    const SETUP: &str = "\
smmu_iotlb_lookup_miss IOTLB cache MISS asid=1 addr=0x11000 hit=0 miss=1 hit rate=0
smmu_iotlb_insert IOTLB ++ asid=1 addr=0x11000 tg=1 level=3
";

    fn hit_after(cmds: &str) -> Audit {
        let log = format!(
            "{SETUP}{cmds}smmu_iotlb_lookup_hit IOTLB cache HIT asid=1 addr=0x11080 hit=1 miss=1 hit rate=50\n"
        );
        audit(&parse(&log).unwrap())
    }

    const SYNC: &str = "smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC\n";

    #[test]
    fn a_completed_range_tlbi_forbids_a_hit_in_its_second_page() {
        let a = hit_after(&format!(
            "smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_VA\n\
             smmuv3_s1_range_inval vmid =0 asid =1 addr=0x10000 tg=1 num_pages=0x4 ttl=3 leaf=1\n{SYNC}"
        ));
        assert_eq!(a.forbidden.len(), 1, "{}", a.render_text());
        let f = &a.forbidden[0];
        assert_eq!(
            (f.hit_line, f.covered_by.line, f.covered_by.sync_line),
            (6, 4, Some(5))
        );
        assert_eq!(
            f.entry.map(|e| (e.line, e.base, e.size)),
            Some((2, 0x11000, 0x1000))
        );
        assert_eq!(f.covered_by.range, Some((0x10000, 0x13fff)));
    }

    #[test]
    fn without_the_sync_the_hit_is_allowed() {
        let a = hit_after(
            "smmuv3_s1_range_inval vmid =0 asid =1 addr=0x10000 tg=1 num_pages=0x4 ttl=3 leaf=1\n",
        );
        assert!(a.forbidden.is_empty());
        assert_eq!(a.uncompleted, 1);
    }

    #[test]
    fn another_asid_a_missed_range_or_a_wrong_ttl_does_not_cover() {
        for inv in [
            "smmuv3_s1_range_inval vmid =0 asid =2 addr=0x10000 tg=1 num_pages=0x4 ttl=3 leaf=1\n",
            "smmuv3_s1_range_inval vmid =0 asid =1 addr=0x12000 tg=1 num_pages=0x2 ttl=3 leaf=1\n",
            "smmuv3_s1_range_inval vmid =0 asid =1 addr=0x10000 tg=1 num_pages=0x4 ttl=2 leaf=1\n",
            "smmuv3_cmdq_tlbi_nh_asid asid=7\n",
        ] {
            let a = hit_after(&format!("{inv}{SYNC}"));
            assert!(a.forbidden.is_empty(), "{inv}: {}", a.render_text());
        }
    }

    #[test]
    fn asid_and_all_forms_cover_and_a_new_insert_clears() {
        for inv in [
            "smmuv3_cmdq_tlbi_nh_asid asid=1\n",
            "smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_ALL\n",
            "smmuv3_s1_range_inval vmid =0 asid =-1 addr=0x11000 tg=0 num_pages=0x1 ttl=0 leaf=0\n",
        ] {
            let a = hit_after(&format!("{inv}{SYNC}"));
            assert_eq!(a.forbidden.len(), 1, "{inv}");
            let a = hit_after(&format!(
                "{inv}{SYNC}smmu_iotlb_insert IOTLB ++ asid=1 addr=0x11000 tg=1 level=3\n"
            ));
            assert!(a.forbidden.is_empty(), "{inv}");
        }
    }

    #[test]
    fn stage_2_commands_and_lookups_are_left_alone() {
        let a = hit_after(&format!(
            "smmuv3_range_inval vmid=1 asid=-1 addr=0x10000 tg=1 num_pages=0x4 ttl=3 leaf=1 stage=2\n{SYNC}"
        ));
        assert!(a.forbidden.is_empty(), "{}", a.render_text());
        let a = hit_after(&format!(
            "smmuv3_range_inval vmid=1 asid=1 addr=0x10000 tg=1 num_pages=0x4 ttl=3 leaf=1 stage=1\n{SYNC}"
        ));
        assert_eq!(a.forbidden.len(), 1);
        let a = audit(
            &parse(&format!(
                "smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NSNH_ALL\n{SYNC}\
                 smmu_iotlb_lookup_hit IOTLB cache HIT asid=-1 vmid=1 addr=0x1000 hit=1 miss=0 hit rate=100\n"
            ))
            .unwrap(),
        );
        assert!(a.forbidden.is_empty());
        assert_eq!(a.unaudited, 1);
    }

    #[test]
    fn a_trace_without_lookups_decides_nothing() {
        let a = audit(&parse(SYNC).unwrap());
        assert!(!a.decided());
        assert!(a.render_text().contains("nothing to audit"));
    }

    #[test]
    fn block_entries_are_covered_by_any_page_inside() {
        let log = "smmu_iotlb_insert IOTLB ++ asid=1 addr=0x200000 tg=1 level=2\n\
                   smmuv3_s1_range_inval vmid =0 asid =1 addr=0x3ff000 tg=0 num_pages=0x1 ttl=0 leaf=1\n\
                   smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC\n\
                   smmu_iotlb_lookup_hit IOTLB cache HIT asid=1 addr=0x200040 hit=1 miss=0 hit rate=100\n";
        let a = audit(&parse(log).unwrap());
        assert_eq!(a.forbidden.len(), 1);
        assert_eq!(a.forbidden[0].entry.unwrap().size, 0x20_0000);
    }
}
