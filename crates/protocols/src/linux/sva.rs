//! The arm-smmu-v3 SVA binding as an mmu-notifier subscription
//! (`drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-sva.c`): the device's CD
//! shares the process's ASID and stage-1 table, so the SMMU's TLB and the
//! device's ATC cache the very entries the CPUs cache, and the notifier
//! turns a CPU-side invalidation into SMMU commands.
//!
//! Architecture: `CMD_TLBI_NH_VA` / `CMD_TLBI_NH_ASID` (SMMUv3 4.4.2.4,
//! 4.4.2.2) take effect at a later `CMD_SYNC` (4.7.3); an ATC is
//! invalidated only by `CMD_ATC_INV` (4.5.1), which must follow the
//! completed TLBI of the same range, and BTM never reaches an ATC (3.17).
//!
//! The kernel's page size (`PAGE_SIZE`, a [`Granule`]) is an argument:
//! the notifier passes it as the invalidation granule, and it is the leaf
//! size of the domain's page table (`arm_smmu_sva_supported` refuses an
//! SMMU without it, and io-pgtable picks it), so it is the range commands'
//! TG and the step of the per-page loop. ATC invalidations count 4 KiB
//! units whatever the granule (`arm_smmu_atc_inv_to_cmd`; SMMUv3 4.5.1).

use super::Version;
use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::smmu::cmd::{Command, PriResp, TlbiAddr};
use tlbcheck_hw::smmu::model::{Device, DeviceState};
use tlbcheck_hw::smmu::queue::CmdqError;

/// The SMMU features the driver tests.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SmmuFeatures {
    /// `ARM_SMMU_FEAT_BTM`: CPU broadcast TLBIs reach the SMMU TLB, so the
    /// notifier skips its TLBI (v6.5 to v6.9).
    pub btm: bool,
    /// `ARM_SMMU_FEAT_RANGE_INV` (IDR3.RIL): range TLBI commands.
    pub ril: bool,
    /// `ARM_SMMU_FEAT_ATS`: ATS-enabled masters need `CMD_ATC_INV`.
    pub ats: bool,
}

/// One device bound to a process's address space.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SvaBond {
    /// The shared ASID (the CD's, which is the process's).
    pub asid: u16,
    /// The device's StreamID.
    pub sid: u32,
    /// Its SubstreamID (the PASID), if its transactions carry one.
    pub ssid: Option<u32>,
    /// ATS is enabled for the device (it has an ATC).
    pub ats: bool,
    /// Where the device's CD for this address space lives and its word 0
    /// as bound, if the scenario declares it: `release` rewrites it.
    pub cd: Option<(u64, u64)>,
}

/// One thing the driver does on the command queue.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SmmuOp {
    /// A command written into the queue.
    Cmd(Command),
    /// A batch submitted with a `CMD_SYNC`, waited for.
    Sync,
    /// The driver's range loop does not end, or runs for more than
    /// [`MAX_RANGE_COMMANDS`] commands: its CPU is stuck there (a soft
    /// lockup, as d5afb4b47e13 reports one), and nothing after it runs.
    Lockup,
}

/// Most commands the model expands one range invalidation into; a loop
/// that issues more is a [`SmmuOp::Lockup`]. (The kernel's own limit for
/// an SVA range without RIL came after v6.6-rc2: d5afb4b47e13 caps it at
/// 512 pages and issues a TLBI by ASID instead.)
pub const MAX_RANGE_COMMANDS: u64 = 4096;

/// How many commands `__arm_smmu_tlb_inv_range` issues for the range
/// `[iova, iova + size)` with granule `PAGE_SIZE` = `page` (`size` > 0), or `None`
/// when its loop never ends. The loop runs while `iova < end`, `end = iova + size`
/// computed in 64 bits. Without RIL each command advances `iova` by one
/// page, so a range reaching past the last page makes `iova` wrap and
/// start again: (0, ULONG_MAX) loops forever. With RIL each command
/// clears one 5-bit chunk of the page count; once the count is 0 while
/// `iova < end` (a size that is not a page multiple, such as ULONG_MAX),
/// the command covers nothing and `iova` stops moving; a SCALE beyond the
/// command's 5-bit field builds no meaningful command either.
pub fn range_commands(
    feat: SmmuFeatures,
    page: Granule,
    iova: u64,
    size: u64,
    leaf: bool,
    bump: bool,
) -> Option<u64> {
    let page_size = page.size();
    let end = iova.wrapping_add(size);
    if end <= iova {
        return Some(0);
    }
    if !feat.ril {
        let n = (end - iova).div_ceil(page_size);
        return iova.checked_add(n.checked_mul(page_size)?).map(|_| n);
    }
    let mut num_pages = size >> page.shift();
    if bump && !leaf && num_pages & 31 == 1 {
        num_pages += 1;
    }
    let covered = iova.checked_add(num_pages.checked_mul(page_size)?);
    if covered.is_none_or(|c| c < end) {
        return None;
    }
    let mut n = 0;
    while num_pages > 0 {
        let scale = num_pages.trailing_zeros();
        if scale > 31 {
            return None;
        }
        num_pages -= ((num_pages >> scale) & 31) << scale;
        n += 1;
    }
    Some(n)
}

/// CMD_SYNC as the driver issues it without MSI polling
/// (`arm_smmu_cmdq_build_sync_cmd`): completion by SEV, MSH Inner
/// Shareable, MSIAttr Inner+Outer Write-Back.
pub fn cmd_sync() -> Command {
    Command::SYNC_SEV
}

/// The driver's recovery from a command error (`arm_smmu_cmdq_skip_err`,
/// called from `arm_smmu_gerror_handler` when SMMU_GERROR.CMDQ_ERR is
/// active, present since the driver's first version, 48ec83bcbcf5): for
/// CERROR_ILL it writes a CMD_SYNC, built as [`cmd_sync`], over the
/// command at CONS; for CERROR_ABT (the fetch is retried) and
/// CERROR_ATC_INV_SYNC (CONS still names the CMD_SYNC, which is repeated) it
/// leaves the queue alone. The handler then acknowledges through
/// SMMU_GERRORN and the SMMU resumes at CONS (SMMUv3 7.1). The skipped
/// command never takes effect: an illegal invalidation is lost.
pub fn cmdq_skip_err(err: CmdqError, _offending: [u64; 2]) -> Option<[u64; 2]> {
    match err {
        CmdqError::Ill => Some(cmd_sync().encode()),
        CmdqError::Abt | CmdqError::AtcInvSync => None,
    }
}

/// How the driver answers a device's fault once the kernel handled it
/// (`arm_smmu_page_response`): a stalled transaction gets CMD_RESUME with
/// its STAG and Retry; a page request gets CMD_PRI_RESP Success for its
/// group.
pub fn page_response(d: &Device) -> Option<Command> {
    match d.state {
        DeviceState::Stalled { stag, .. } => Some(Command::Resume {
            sid: d.sid,
            stag,
            retry: true,
            abort: false,
        }),
        DeviceState::AwaitingPri { grpid, .. } => Some(Command::PriResp {
            sid: d.sid,
            ssv: d.ssid.is_some(),
            ssid: d.ssid.unwrap_or(0),
            grpid,
            resp: PriResp::Success,
        }),
        _ => None,
    }
}

/// `__arm_smmu_tlb_inv_range` for a stage-1 ASID with granule `PAGE_SIZE`
/// = `page` and Leaf as given: nothing for size 0; without RIL one
/// `CMD_TLBI_NH_VA` per page (TG = 0, the address advancing by the page
/// size); with RIL, TG = `(page_shift - 10) / 2` and chunks of
/// `(num << scale)` pages taken from the lowest set bit of the remaining
/// count; then a `CMD_SYNC`.
///
/// With `bump`, a non-leaf count of the form 32k+1 is rounded up by one
/// page so that no NUM = SCALE = TTL = 0 chunk is built (eb6c97647be2,
/// merged for v6.6-rc). Without it, as in v6.5, a one-page non-leaf
/// invalidation is that Reserved combination: the SMMU stops its queue on
/// it with CERROR_ILL (SMMUv3 4.4.1.1).
pub fn tlb_inv_range_asid(
    feat: SmmuFeatures,
    page: Granule,
    asid: u16,
    iova: u64,
    size: u64,
    leaf: bool,
    bump: bool,
) -> Vec<SmmuOp> {
    let shift = page.shift();
    if size == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let end = iova.wrapping_add(size);
    if feat.ril {
        // TTL for a leaf invalidation with the leaf page size as granule:
        // 4 - ((ilog2(granule) - 3) / (tg - 3)) = 3 (6833b8f2e199).
        let ttl = if leaf { 3 } else { 0 };
        let mut num_pages = size >> shift;
        if bump && !leaf && num_pages & 31 == 1 {
            num_pages += 1;
        }
        let mut addr = iova;
        while num_pages > 0 {
            let scale = num_pages.trailing_zeros();
            let num = (num_pages >> scale) & 31;
            out.push(SmmuOp::Cmd(Command::TlbiNhVa {
                vmid: 0,
                asid,
                va: TlbiAddr::range(addr, leaf, page, ttl, (num - 1) as u8, scale as u8),
            }));
            addr += num << (scale + shift);
            num_pages -= num << scale;
        }
    } else {
        let mut addr = iova;
        while addr < end {
            out.push(SmmuOp::Cmd(Command::TlbiNhVa {
                vmid: 0,
                asid,
                va: TlbiAddr::single(addr, leaf),
            }));
            addr += page.size();
        }
    }
    out.push(SmmuOp::Sync);
    out
}

/// `arm_smmu_tlb_inv_asid`: `CMD_TLBI_NH_ASID` and a `CMD_SYNC`.
pub fn tlb_inv_asid(asid: u16) -> Vec<SmmuOp> {
    vec![
        SmmuOp::Cmd(Command::TlbiNhAsid { vmid: 0, asid }),
        SmmuOp::Sync,
    ]
}

/// `arm_smmu_atc_inv_to_cmd`: size 0 is everything (Size = 52); otherwise
/// the smallest naturally aligned power-of-two span of pages covering the
/// range (SMMUv3 4.5.1).
pub fn atc_inv_cmd(bond: &SvaBond, iova: u64, size: u64) -> Command {
    let (addr, log2) = if size == 0 {
        (0, 52)
    } else {
        let first = iova >> 12;
        let last = (iova + size - 1) >> 12;
        let span = 64 - (first ^ last).leading_zeros();
        let first = first & !((1u64 << span) - 1);
        (first << 12, span as u8)
    };
    Command::AtcInv {
        sid: bond.sid,
        ssv: bond.ssid.is_some(),
        ssid: bond.ssid.unwrap_or(0),
        global: false,
        addr,
        size: log2,
    }
}

/// CD word 0 bit 14, EPD0: walks through TTB0 are disabled (SMMUv3
/// 5.4, `CTXDESC_CD_0_TCR_EPD0`).
pub const CD_EPD0: u64 = 1 << 14;

/// One step of `release`: a store the CPU makes, or SMMU work.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReleaseOp {
    /// `WRITE_ONCE(cdptr[0], val)`: the CD word at this address.
    CdStore {
        /// Physical address of CD word 0.
        pa: u64,
        /// The new word.
        value: u64,
    },
    /// Commands, as [`invalidate`] gives them.
    Smmu(SmmuOp),
}

/// `arm_smmu_mm_release` (v6.5, v6.6): the address space is going away
/// while DMA may still run, so the CD stays valid (no C_BAD_CD) but its
/// translation is disabled: `arm_smmu_write_ctx_desc(..., &quiet_cd)` sets
/// EPD0 in word 0 and `arm_smmu_sync_cd` issues `CMD_CFGI_CD` (Leaf) and a
/// `CMD_SYNC` (SMMUv3 4.3.2: the CD cache drops the old CD only then);
/// `arm_smmu_tlb_inv_asid` issues `CMD_TLBI_NH_ASID` and a `CMD_SYNC`
/// whatever BTM says; `arm_smmu_atc_inv_domain(..., 0, 0)` invalidates
/// the device's whole ATC. The notifier is then cleared: core mm's
/// `mn_hlist_release` unhooks every subscription, so nothing later in
/// `exit_mmap` reaches the SMMU.
pub fn release(bond: &SvaBond) -> Vec<ReleaseOp> {
    let mut out = Vec::new();
    if let Some((pa, word0)) = bond.cd {
        out.push(ReleaseOp::CdStore {
            pa,
            value: word0 | CD_EPD0,
        });
        out.push(ReleaseOp::Smmu(SmmuOp::Cmd(Command::CfgiCd {
            sid: bond.sid,
            ssid: bond.ssid.unwrap_or(0),
            leaf: true,
        })));
        out.push(ReleaseOp::Smmu(SmmuOp::Sync));
    }
    out.extend(tlb_inv_asid(bond.asid).into_iter().map(ReleaseOp::Smmu));
    if bond.ats {
        out.push(ReleaseOp::Smmu(SmmuOp::Cmd(atc_inv_cmd(bond, 0, 0))));
        out.push(ReleaseOp::Smmu(SmmuOp::Sync));
    }
    out
}

/// The notifier op for `(start, end)` as `version`'s driver has it:
/// `arm_smmu_mm_invalidate_range` (v6.5, seed 004's patch) or
/// `arm_smmu_mm_arch_invalidate_secondary_tlbs` (v6.6).
///
/// `size = end - start`, invalidated with granule `page` (the kernel's
/// `PAGE_SIZE`). v6.6 maps a ULONG_MAX size to 0 and a size of 0
/// to a TLBI by ASID (38b14e2e3de9); v6.5 hands any size to the range
/// invalidation, which does nothing for 0 (so (-1, -1) invalidates no
/// TLB entry) and never ends for (0, ULONG_MAX) ([`range_commands`]:
/// the result ends in [`SmmuOp::Lockup`]). Without BTM the TLBI is issued
/// and synced; then, with ATS, one `CMD_ATC_INV` for the device's
/// StreamID (size 0: all) and a `CMD_SYNC` (`arm_smmu_atc_inv_domain`).
/// With BTM the TLBI is skipped and the ATC still invalidated.
pub fn invalidate(
    version: Version,
    feat: SmmuFeatures,
    page: Granule,
    bond: &SvaBond,
    start: u64,
    end: u64,
) -> Vec<SmmuOp> {
    let mut size = end.wrapping_sub(start);
    let mut out = Vec::new();
    match version {
        Version::Linux6_6 => {
            if size == u64::MAX {
                size = 0;
            }
            if !feat.btm {
                if size == 0 {
                    out.extend(tlb_inv_asid(bond.asid));
                } else {
                    out.extend(tlb_inv_range_asid(
                        feat, page, bond.asid, start, size, false, true,
                    ));
                }
            }
        }
        Version::Linux6_5 | Version::Popple2023_05 => {
            if !feat.btm && size != 0 {
                match range_commands(feat, page, start, size, false, false) {
                    Some(n) if n <= MAX_RANGE_COMMANDS => out.extend(tlb_inv_range_asid(
                        feat, page, bond.asid, start, size, false, false,
                    )),
                    _ => {
                        out.push(SmmuOp::Lockup);
                        return out;
                    }
                }
            }
        }
    }
    if feat.ats && bond.ats {
        out.push(SmmuOp::Cmd(atc_inv_cmd(bond, start, size)));
        out.push(SmmuOp::Sync);
    }
    out
}
