//! The translation itself: a guest batch in, physical commands out.

use super::{Guest, HostSmmu, Version, CMDQ_BATCH_ENTRIES};
use std::fmt;
use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::smmu::cmd::{CmdError, Command, TlbiAddr};

/// `CMDQ_0_OP`, dw0\[7:0\] (SMMUv3 4.1.1).
const OP: u64 = 0xff;
/// `CMDQ_TLBI_0_VMID`, dw0\[47:32\] (SMMUv3 4.4.2).
const VMID: u64 = 0xffff << 32;
/// `CMDQ_CFGI_0_SID` (also the ATC_INV StreamID), dw0\[63:32\] (SMMUv3 4.3, 4.5.1).
const SID: u64 = 0xffff_ffff << 32;
/// The Linux errno the iommufd versions return for a refused entry.
const EIO: i32 = -5;

/// One physical command the host wrote into the Command queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// Its 16 bytes, (dw0, dw1).
    pub words: [u64; 2],
    /// The guest entry it came from; `None` for a CMD_SYNC the host added.
    pub entry: Option<usize>,
    /// Why the SMMU refuses it (CERROR_ILL, SMMUv3 7.1), if it does; the
    /// host's `arm_smmu_cmdq_skip_err` then overwrites it with a CMD_SYNC.
    pub hw_error: Option<CmdError>,
}

impl Issued {
    fn new(words: [u64; 2], entry: Option<usize>) -> Issued {
        Issued {
            words,
            entry,
            hw_error: Command::decode(words).err(),
        }
    }

    /// Whether this is a CMD_SYNC the host added to close a batch.
    pub fn is_sync(&self) -> bool {
        self.entry.is_none()
    }
}

/// A refused guest entry: what the ioctl returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Index of the failing entry in the batch (the returned `entry_num`).
    pub index: usize,
    /// The errno (`-EIO`).
    pub errno: i32,
    /// The field at fault: `opcode`, `StreamID`, `TG`, `Size`, ...
    pub field: &'static str,
    /// Why, in words.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entry {} refused ({}, field {}): {}",
            self.index, self.errno, self.field, self.reason
        )
    }
}

/// What the host did with one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Translation {
    /// Physical commands in issue order, CMD_SYNCs included.
    pub issued: Vec<Issued>,
    /// What the guest is told was handled: `entry_num` on return
    /// (nested-2023-v1 reports nothing, so the guest assumes all).
    pub entry_num: usize,
    /// The refused entry, if any.
    pub error: Option<Refusal>,
}

impl Translation {
    /// The physical commands that guest entry `i` became.
    pub fn commands_of(&self, i: usize) -> impl Iterator<Item = &Issued> + '_ {
        self.issued.iter().filter(move |c| c.entry == Some(i))
    }
}

/// Translates one guest batch (raw command words in the guest's
/// little-endian layout, already as u64) for `guest` on `host`.
///
/// Without RIL, nested-2023-v1 issues one command per granule of a
/// guest's range TLBI, as the driver's loop does: callers bound the ranges
/// they give it.
pub fn translate(v: Version, host: &HostSmmu, guest: &Guest, batch: &[[u64; 2]]) -> Translation {
    match v {
        Version::Nested2023V1 => {
            let mut issued = Vec::new();
            for (i, w) in batch.iter().enumerate() {
                v1_entry(host, guest, i, *w, &mut issued);
            }
            Translation {
                issued,
                entry_num: batch.len(),
                error: None,
            }
        }
        Version::IommufdVsmmu => iommufd(guest, batch),
        Version::Strict => strict(host, guest, batch),
    }
}

fn sync() -> [u64; 2] {
    Command::SYNC_SEV.encode()
}

fn refusal(index: usize, (field, reason): (&'static str, String)) -> Refusal {
    Refusal {
        index,
        errno: EIO,
        field,
        reason,
    }
}

/// `arm_vsmmu_convert_user_cmd`: the VMID or SID enforced, opcodes checked.
fn convert(guest: &Guest, [dw0, dw1]: [u64; 2]) -> Result<[u64; 2], (&'static str, String)> {
    let vmid = u64::from(guest.vmid) << 32;
    match dw0 & OP {
        // TLBI_NSNH_ALL becomes TLBI_NH_ALL of the vIOMMU's VMID, dw1 cleared.
        0x30 => Ok([0x10 | vmid, 0]),
        // TLBI_NH_VA, NH_VAA, NH_ALL, NH_ASID: the VMID field overwritten.
        0x10..=0x13 => Ok([(dw0 & !VMID) | vmid, dw1]),
        // ATC_INV, CFGI_CD, CFGI_CD_ALL: vSID -> pSID via the vdevice table.
        0x40 | 0x05 | 0x06 => {
            let vsid = (dw0 >> 32) as u32;
            match guest.device(vsid) {
                Some(d) => Ok([(dw0 & !SID) | (u64::from(d.psid) << 32), dw1]),
                None => Err(("StreamID", format!("vSID {vsid:#x} has no vDEVICE"))),
            }
        }
        op => Err((
            "opcode",
            format!("opcode {op:#04x} is not one of the eight the vIOMMU accepts"),
        )),
    }
}

/// `arm_vsmmu_cache_invalidate`: convert, issue every 63 with a CMD_SYNC;
/// on an error, what was converted since the last issue is dropped.
fn iommufd(guest: &Guest, batch: &[[u64; 2]]) -> Translation {
    let mut t = Translation::default();
    let mut pending: Vec<Issued> = Vec::new();
    for (i, w) in batch.iter().enumerate() {
        match convert(guest, *w) {
            Ok(words) => pending.push(Issued::new(words, Some(i))),
            Err(r) => {
                t.entry_num = i;
                t.error = Some(refusal(i, r));
                return t;
            }
        }
        if i + 1 == batch.len() || pending.len() == CMDQ_BATCH_ENTRIES - 1 {
            t.issued.append(&mut pending);
            t.issued.push(Issued::new(sync(), None));
        }
    }
    t.entry_num = batch.len();
    t
}

/// The strict service: convert and check everything first, then issue
/// exactly the entries before the first refusal.
fn strict(host: &HostSmmu, guest: &Guest, batch: &[[u64; 2]]) -> Translation {
    let mut t = Translation::default();
    let mut ok = Vec::new();
    for (i, w) in batch.iter().enumerate() {
        match convert(guest, *w).and_then(|c| hw_check(host, c).map(|()| c)) {
            Ok(c) => ok.push(Issued::new(c, Some(i))),
            Err(r) => {
                t.error = Some(refusal(i, r));
                break;
            }
        }
    }
    t.entry_num = ok.len();
    for chunk in ok.chunks(CMDQ_BATCH_ENTRIES - 1) {
        t.issued.extend_from_slice(chunk);
        t.issued.push(Issued::new(sync(), None));
    }
    t
}

/// Every check the SMMU makes on a command, as a field and a reason: the
/// strict decoder (opcode, RES0 bits and fields, Reserved values, the
/// TG/NUM/SCALE/TTL combination, ATC_INV Size; SMMUv3 4.1.5, 4.4.1.1,
/// 4.5.1), TG with `SMMU_IDR3.RIL == 0` (TG, TTL, NUM, SCALE are then RES0,
/// 4.4.1.1), and a range base the level hint makes UNPREDICTABLE (4.4.1.1:
/// Address must be aligned to the block size of level TTL).
fn hw_check(host: &HostSmmu, words: [u64; 2]) -> Result<(), (&'static str, String)> {
    let cmd = Command::decode(words).map_err(|e| {
        let field = match e {
            CmdError::Res0Bits { word: 0, .. } => "RES0 bits of dw0",
            CmdError::Res0Bits { .. } => "RES0 bits of dw1",
            ref other => other.field().unwrap_or("command"),
        };
        (field, e.to_string())
    })?;
    let Some(a) = cmd.tlbi_addr() else {
        return Ok(());
    };
    let Some(g) = a.granule() else {
        return Ok(());
    };
    if !host.ril {
        return Err((
            "TG",
            format!(
                "{}: TG = {:#b} but SMMU_IDR3.RIL == 0, so TG, TTL, NUM and SCALE are RES0",
                cmd.name(),
                a.tg
            ),
        ));
    }
    let shift = match a.level_hint() {
        Some(level) if level < 3 => g.level_shift(level),
        _ => g.shift(),
    };
    if a.addr & ((1u64 << shift) - 1) != 0 {
        return Err((
            "Address",
            format!(
                "{}: Address {:#x} is not aligned to the {} KiB that TG = {:#b}, TTL = {:#b} name: the range is UNPREDICTABLE",
                cmd.name(),
                a.addr,
                (1u64 << shift) >> 10,
                a.tg,
                a.ttl
            ),
        ));
    }
    Ok(())
}

/// One call of v1's `arm_smmu_cache_invalidate_user` for guest entry `i`:
/// the `switch` on the opcode, then, for every case that breaks out of it
/// (the TLBIs and ATC_INV), `arm_smmu_atc_inv_domain(domain, ssid, iova,
/// size)` with what the case left in those variables (0, 0, 0 after
/// NH_ASID and NH_ALL: the whole ATC).
fn v1_entry(host: &HostSmmu, guest: &Guest, i: usize, [dw0, dw1]: [u64; 2], out: &mut Vec<Issued>) {
    let vmid = guest.vmid;
    // (ssid, iova, size) for arm_smmu_atc_inv_domain.
    let mut atc = (0u32, 0u64, 0u64);
    let cmds: Vec<Command> = match dw0 & OP {
        // arm_smmu_sync_cd(domain, ssid, leaf = true): every StreamID of
        // the domain, whatever the guest's Leaf and StreamID; `return`s.
        0x05 | 0x06 => {
            let ssid = ((dw0 >> 12) & 0xf_ffff) as u32;
            let cds = guest.devices.iter().map(|d| Command::CfgiCd {
                sid: d.psid,
                ssid,
                leaf: true,
            });
            out.extend(cds.map(|c| Issued::new(c.encode(), Some(i))));
            out.push(Issued::new(sync(), None));
            return;
        }
        op @ (0x12 | 0x13) => {
            // The VMM derives granule_size from TG (0 when TG = 0); the
            // driver returns on a size that is 0, not a power of two or
            // not in the SMMU's pgsize_bitmap, which holds every granule's
            // page size here (the model's SMMU_IDR5 has all three): only
            // TG = 0 is dropped.
            let Some(g) = Granule::from_tg(((dw1 >> 10) & 3) as u8) else {
                return;
            };
            let num = (dw0 >> 12) & 31;
            let scale = (dw0 >> 20) & 31;
            let pages = (u128::from(num) + 1) << scale;
            let size = u64::try_from(pages << g.shift()).unwrap_or(u64::MAX);
            let asid = (op == 0x12).then_some((dw0 >> 48) as u16);
            let leaf = dw1 & 1 != 0;
            let iova = dw1 & !0xfff;
            atc = (0, iova, size);
            tlb_inv_range_v63(host, vmid, asid, iova, size, g, leaf)
        }
        // arm_smmu_cmdq_issue_cmd_with_sync.
        0x11 => vec![Command::TlbiNhAsid {
            vmid,
            asid: (dw0 >> 48) as u16,
        }],
        0x10 => vec![Command::TlbiNhAll { vmid }],
        // The SSID the VMM passes (0 without SSV) and the guest's span.
        0x40 => {
            let ssid = if dw0 & (1 << 11) != 0 {
                ((dw0 >> 12) & 0xf_ffff) as u32
            } else {
                0
            };
            let size = (dw1 & 0x3f) as u32;
            atc = if size >= 52 {
                (ssid, 0, 0)
            } else {
                let span = 1u64 << (12 + size);
                (ssid, dw1 & !0xfff & !(span - 1), span)
            };
            Vec::new()
        }
        // NSNH_ALL and every other opcode: `default: return`.
        _ => return,
    };
    if !cmds.is_empty() {
        out.extend(cmds.iter().map(|c| Issued::new(c.encode(), Some(i))));
        out.push(Issued::new(sync(), None));
    }
    // arm_smmu_atc_inv_domain: nothing without ATS or ATS masters;
    // otherwise one ATC_INV per ATS-enabled StreamID of the domain,
    // whatever StreamID the guest named, and a CMD_SYNC.
    let ats: Vec<u32> = guest
        .devices
        .iter()
        .filter(|d| d.ats)
        .map(|d| d.psid)
        .collect();
    if !host.ats || ats.is_empty() {
        return;
    }
    let (ssid, iova, size) = atc;
    let (addr, span) = atc_inv_to_cmd(iova, size);
    out.extend(ats.into_iter().map(|sid| {
        let c = Command::AtcInv {
            sid,
            ssv: ssid != 0,
            ssid,
            global: false,
            addr,
            size: span,
        };
        Issued::new(c.encode(), Some(i))
    }));
    out.push(Issued::new(sync(), None));
}

/// v6.3's `arm_smmu_atc_inv_to_cmd` for `size` bytes at `iova`, as
/// (Address, Size): size 0 is everything (Size 52); otherwise the smallest
/// naturally aligned power-of-two span of pages covering the range
/// (SMMUv3 4.5.1).
fn atc_inv_to_cmd(iova: u64, size: u64) -> (u64, u8) {
    if size == 0 {
        return (0, 52);
    }
    let page_start = iova >> 12;
    let page_end = iova.saturating_add(size - 1) >> 12;
    let log2_span = 64 - (page_start ^ page_end).leading_zeros();
    let page_start = page_start & !((1u64 << log2_span) - 1);
    (page_start << 12, log2_span as u8)
}

/// v6.3's `__arm_smmu_tlb_inv_range` for a stage-1 command (NH_VA with an
/// ASID, NH_VAA without), VMID set: with RIL, TG is the host page size,
/// TTL = 4 - ((log2(granule) - 3) / (tg - 3)) for leaf and non-leaf alike
/// (the guest's TTL is lost; Robin Murphy's "we assume TTL in cases where
/// it isn't actually known"), and chunks of `num << scale` pages from the
/// lowest set bit of the remaining count; without RIL one TG = 0 command
/// per granule.
fn tlb_inv_range_v63(
    host: &HostSmmu,
    vmid: u16,
    asid: Option<u16>,
    iova: u64,
    size: u64,
    granule: Granule,
    leaf: bool,
) -> Vec<Command> {
    let build = |va: TlbiAddr| match asid {
        Some(asid) => Command::TlbiNhVa { vmid, asid, va },
        None => Command::TlbiNhVaa { vmid, va },
    };
    let end = iova.saturating_add(size);
    let mut out = Vec::new();
    let mut addr = iova;
    if host.ril {
        let tg = host.granule.shift();
        let ttl = (4 - (granule.shift() - 3) / (tg - 3)) as u8;
        let mut num_pages = size >> tg;
        while addr < end && num_pages != 0 {
            let scale = num_pages.trailing_zeros();
            let num = (num_pages >> scale) & 31;
            out.push(build(TlbiAddr::range(
                addr,
                leaf,
                host.granule,
                ttl,
                (num - 1) as u8,
                scale as u8,
            )));
            addr = addr.saturating_add(num << (scale + tg));
            num_pages -= num << scale;
        }
    } else {
        while addr < end {
            out.push(build(TlbiAddr::single(addr, leaf)));
            addr = addr.saturating_add(granule.size());
        }
    }
    out
}

/// The guest's expectation for one of its commands: the physical commands
/// a correct SMMU emulation performs for it, its VMID and StreamIDs put in
/// physical terms. The guest sees a stage-1-only SMMU with the host's RIL:
/// a command that SMMU refuses (CERROR_ILL) or that touches no cache the
/// guest can see (stage 2, EL2, prefetch, fault responses, CMD_SYNC)
/// removes nothing; a StreamID with no device removes nothing; and a
/// TLBI_NH_* whose VMID field is not zero promises nothing, because on a
/// stage-1-only SMMU the field is RES0 and such a command may invalidate
/// for an UNKNOWN VMID or not at all (SMMUv3 4.4.2).
pub fn expected(host: &HostSmmu, guest: &Guest, words: [u64; 2]) -> Vec<Command> {
    let Ok(cmd) = Command::decode(words) else {
        return Vec::new();
    };
    if cmd.tlbi_addr().is_some_and(|a| a.tg != 0) && !host.ril {
        return Vec::new();
    }
    let vmid = guest.vmid;
    let dev = |vsid: u32| guest.device(vsid).map(|d| d.psid);
    match cmd {
        Command::TlbiNhAll { vmid: v }
        | Command::TlbiNhAsid { vmid: v, .. }
        | Command::TlbiNhVa { vmid: v, .. }
        | Command::TlbiNhVaa { vmid: v, .. }
            if v != 0 =>
        {
            Vec::new()
        }
        // The guest's NSNH_ALL (SMMUv3 4.4.4.1) reaches all it can see:
        // the stage-1 and combined entries of its VMID.
        Command::TlbiNhAll { .. } | Command::TlbiNsnhAll => vec![Command::TlbiNhAll { vmid }],
        Command::TlbiNhAsid { asid, .. } => vec![Command::TlbiNhAsid { vmid, asid }],
        Command::TlbiNhVa { asid, va, .. } => vec![Command::TlbiNhVa { vmid, asid, va }],
        Command::TlbiNhVaa { va, .. } => vec![Command::TlbiNhVaa { vmid, va }],
        Command::CfgiCd { sid, ssid, leaf } => dev(sid)
            .map(|sid| Command::CfgiCd { sid, ssid, leaf })
            .into_iter()
            .collect(),
        Command::CfgiCdAll { sid } => dev(sid)
            .map(|sid| Command::CfgiCdAll { sid })
            .into_iter()
            .collect(),
        Command::CfgiSte { sid, leaf } => dev(sid)
            .map(|sid| Command::CfgiSte { sid, leaf })
            .into_iter()
            .collect(),
        // 2^(Range+1) vSIDs, aligned (SMMUv3 4.3.2): each of the guest's
        // devices in it, STE and everything below it.
        Command::CfgiSteRange { sid, range } => {
            let bits = u32::from(range) + 1;
            let base = if bits >= 32 { 0 } else { sid >> bits };
            guest
                .devices
                .iter()
                .filter(|d| bits >= 32 || d.vsid >> bits == base)
                .map(|d| Command::CfgiSte {
                    sid: d.psid,
                    leaf: false,
                })
                .collect()
        }
        Command::AtcInv {
            sid,
            ssv,
            ssid,
            global,
            addr,
            size,
        } => dev(sid)
            .map(|sid| Command::AtcInv {
                sid,
                ssv,
                ssid,
                global,
                addr,
                size,
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
