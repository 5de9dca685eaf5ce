//! The host service that replays a guest's SMMUv3 invalidation commands on
//! the physical SMMU (seed 002), as named versions.
//!
//! A guest sees a stage-1-only virtual SMMU: its devices appear under
//! virtual StreamIDs (vSIDs), it owns its CD tables and stage-1 tables in
//! its IPA space, and the physical STEs are nested (the guest's CD table
//! pointer, the host's stage 2 and VMID). When the guest's driver writes
//! commands into its virtual Command queue and issues CMD_SYNC, the VMM
//! hands the batch to the host kernel, which must turn each command into
//! physical commands that remove everything the guest believes removed and
//! nothing that belongs to another VMID or StreamID.
//!
//! [`translate`] is that service as a pure function of the batch (raw
//! 2 x 64-bit command words), the guest's vSID -> pSID table and VMID, and
//! the host SMMU's features: it returns the physical commands in issue
//! order, with their CMD_SYNCs, and the outcome the guest is told.
//! [`expected`] is the guest's side: what a correct SMMU would have done
//! for one guest command, in physical terms, which the checker compares
//! with what the translated commands did.

pub mod program;
mod translate;

pub use program::{GuestStep, GuestThread};
pub use translate::{expected, translate, Issued, Refusal, Translation};

use std::fmt;
use std::str::FromStr;
use tlbcheck_hw::addr::Granule;

/// `CMDQ_BATCH_ENTRIES` (arm-smmu-v3.h): the driver's command batch size;
/// iommufd-vsmmu issues 63 guest commands plus a CMD_SYNC at a time.
pub const CMDQ_BATCH_ENTRIES: usize = 64;

/// A host service version a scenario names with `host VERSION`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `arm_smmu_cache_invalidate_user` of Nicolin Chen's "[PATCH v1 14/14]
    /// iommu/arm-smmu-v3: Add arm_smmu_cache_invalidate_user" (9 Mar 2023,
    /// on v6.3-rc; reviewed by Robin Murphy, never merged). One command per
    /// call, no error reporting: CFGI_CD and CFGI_CD_ALL become
    /// `arm_smmu_sync_cd(domain, ssid, leaf = true)` over every StreamID
    /// of the domain; TLBI_NH_VA/VAA with a granule that is 0 or not in
    /// the SMMU's `pgsize_bitmap` are dropped, the others go through
    /// `__arm_smmu_tlb_inv_range` with the granule as `granule`, so TTL is
    /// derived from it (the v6.3 formula, for leaf and non-leaf alike);
    /// TLBI_NH_ASID/NH_ALL get the domain's VMID and a CMD_SYNC; after
    /// every TLBI and for ATC_INV, `arm_smmu_atc_inv_domain` sends one
    /// ATC_INV to every ATS-enabled StreamID of the domain (the guest's
    /// range, or everything after NH_ASID/NH_ALL); every other opcode,
    /// NSNH_ALL included, returns without effect. NH_VAA is built like
    /// NH_VA without an ASID (inferred: v6.3's
    /// `arm_smmu_cmdq_build_cmd` has no NH_VAA case, so the patch series
    /// must have added one). The VMM side is QEMU's of the time: it passes
    /// the granule TG names (0 for TG = 0), the range `(NUM + 1) << SCALE`
    /// granules, the SSID (0 for CFGI_CD_ALL, and for ATC_INV with SSV = 0).
    Nested2023V1,
    /// `arm_vsmmu_convert_user_cmd` and `arm_vsmmu_cache_invalidate`
    /// (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c) as merged in
    /// d68beb276ba2 "iommu/arm-smmu-v3: Support IOMMU_HWPT_INVALIDATE
    /// using a VIOMMU object", first released in v6.13: NSNH_ALL becomes
    /// NH_ALL with the vIOMMU's VMID; NH_VA, NH_VAA, NH_ALL and NH_ASID get
    /// their VMID field overwritten; ATC_INV, CFGI_CD and CFGI_CD_ALL get
    /// their vSID replaced through the vdevice table (`-EIO` when unknown);
    /// every other opcode is `-EIO`. Converted commands are issued 63 at a
    /// time with a CMD_SYNC (`arm_smmu_cmdq_issue_cmdlist(..., true)`); on
    /// a conversion error the commands converted since the last issue are
    /// dropped and `entry_num` is set to the failing index. Nothing else is
    /// checked: a command the SMMU finds illegal raises CERROR_ILL, which
    /// the host's `arm_smmu_cmdq_skip_err` replaces with a CMD_SYNC.
    IommufdVsmmu,
    /// What the review asked for and nobody built: iommufd-vsmmu's
    /// conversion, plus, before anything is issued, every converted command
    /// checked as the SMMU would check it (opcode, RES0 bits and fields,
    /// TG/TTL/NUM/SCALE, Size, TG with RIL absent, an UNPREDICTABLE range
    /// base). The first failing entry is refused with its index and field;
    /// exactly the entries before it are issued, so `entry_num` is what was
    /// handled.
    Strict,
}

impl Version {
    /// Every version, in age order.
    pub const ALL: [Version; 3] = [
        Version::Nested2023V1,
        Version::IommufdVsmmu,
        Version::Strict,
    ];

    /// The name scenarios use.
    pub const fn name(self) -> &'static str {
        match self {
            Version::Nested2023V1 => "nested-2023-v1",
            Version::IommufdVsmmu => "iommufd-vsmmu",
            Version::Strict => "strict",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl crate::version::Named for Version {
    const WHAT: &'static str = "host";
    const ALL: &'static [Version] = &Version::ALL;
    fn name(self) -> &'static str {
        Version::name(self)
    }
}

impl FromStr for Version {
    type Err = crate::version::UnknownName;
    fn from_str(s: &str) -> Result<Version, Self::Err> {
        crate::version::parse(s)
    }
}

/// One of a guest's devices: the vSID the guest uses and the physical
/// StreamID behind it (an iommufd vDEVICE, `IOMMU_VDEVICE_ALLOC`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct VDevice {
    /// The virtual StreamID (`virt_id`).
    pub vsid: u32,
    /// The physical StreamID (`master->streams[0].id`).
    pub psid: u32,
    /// ATS is enabled for it.
    pub ats: bool,
}

/// A guest with a virtual SMMU: its VMID (the stage-2 parent's
/// `s2_cfg.vmid`) and its devices. In the v1 design every device of the
/// guest is attached to the one nested domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Guest {
    /// The VMID of the guest's stage 2.
    pub vmid: u16,
    /// Its devices, vSID -> pSID.
    pub devices: Vec<VDevice>,
}

impl Guest {
    /// The device behind `vsid`, if the guest has one.
    pub fn device(&self, vsid: u32) -> Option<&VDevice> {
        self.devices.iter().find(|d| d.vsid == vsid)
    }
}

/// The physical SMMU facts the host driver reads.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostSmmu {
    /// `ARM_SMMU_FEAT_RANGE_INV` (SMMU_IDR3.RIL), also advertised to the guest.
    pub ril: bool,
    /// `ARM_SMMU_FEAT_ATS`.
    pub ats: bool,
    /// The host's page size: the smallest size in the nested domain's
    /// `pgsize_bitmap`, the TG of the range commands it builds.
    pub granule: Granule,
}
