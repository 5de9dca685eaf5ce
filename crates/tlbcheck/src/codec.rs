//! Operands by field: building a TLBI `Xt` or an SMMU command from
//! `key=value` pairs, and listing the fields of a decoded one. Shared by the
//! scenario language (`tlbi VAE1IS asid=1 va=0x1000`, `smmu cmd ...`) and
//! the `encode` / `decode` commands, so both accept exactly the same words.
//!
//! Building never trusts itself: the fields are packed into the raw bits and
//! then decoded by the hardware model's strict decoder, so whatever the
//! architecture reserves is refused here exactly as it would be in a raw
//! operand.

use crate::scenario::lex::number;
use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::cpu::tlbi::{OperandKind, Tlbi, TlbiDecodeError, TlbiOperand};
use tlbcheck_hw::smmu::cmd::{CmdError, Command, Opcode, PriResp, SyncCs, TlbiAddr};

/// A field that cannot be used: which one (index into the fields given,
/// `None` when the problem is the whole operand) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Index of the offending field in the input, if one is to blame.
    pub field: Option<usize>,
    /// The message, naming the field and its value.
    pub message: String,
}

impl FieldError {
    fn at(field: usize, message: impl Into<String>) -> FieldError {
        FieldError {
            field: Some(field),
            message: message.into(),
        }
    }
    fn whole(message: impl Into<String>) -> FieldError {
        FieldError {
            field: None,
            message: message.into(),
        }
    }
}

/// The granule a name (`4k`, `16k`, `64k`, any case) stands for.
pub fn granule_named(name: &str) -> Option<Granule> {
    Granule::ALL
        .into_iter()
        .find(|g| g.name().eq_ignore_ascii_case(name))
}

/// Looks fields up by key, refusing unknown and repeated keys.
struct Fields<'a> {
    fields: &'a [(String, String)],
    used: Vec<bool>,
}

impl<'a> Fields<'a> {
    fn new(
        fields: &'a [(String, String)],
        allowed: &[&str],
        what: &str,
    ) -> Result<Self, FieldError> {
        for (i, (k, _)) in fields.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                let list = if allowed.is_empty() {
                    "it takes no fields".to_string()
                } else {
                    format!("expected one of: {}", allowed.join(", "))
                };
                return Err(FieldError::at(
                    i,
                    format!("{what} has no field `{k}` ({list})"),
                ));
            }
            if fields[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(FieldError::at(i, format!("field `{k}` given twice")));
            }
        }
        Ok(Fields {
            fields,
            used: vec![false; fields.len()],
        })
    }

    fn find(&mut self, key: &str) -> Option<(usize, &'a str)> {
        let i = self.fields.iter().position(|(k, _)| k == key)?;
        self.used[i] = true;
        Some((i, self.fields[i].1.as_str()))
    }

    /// A number no wider than `max`.
    fn num(&mut self, key: &str, max: u64) -> Result<Option<u64>, FieldError> {
        let Some((i, v)) = self.find(key) else {
            return Ok(None);
        };
        let n = match v {
            "true" | "yes" => Some(1),
            "false" | "no" => Some(0),
            v => number(v),
        }
        .ok_or_else(|| FieldError::at(i, format!("field `{key}`: `{v}` is not a number")))?;
        if n > max {
            return Err(FieldError::at(
                i,
                format!("field `{key}` = {n:#x} does not fit: at most {max:#x}"),
            ));
        }
        Ok(Some(n))
    }

    fn num_or(&mut self, key: &str, max: u64, default: u64) -> Result<u64, FieldError> {
        Ok(self.num(key, max)?.unwrap_or(default))
    }

    fn flag(&mut self, key: &str) -> Result<bool, FieldError> {
        Ok(self.num(key, 1)? == Some(1))
    }

    /// A TG: a granule name (`4k`, `16k`, `64k`) or the 2-bit encoding.
    fn tg(&mut self, default: u8) -> Result<u8, FieldError> {
        let Some((i, v)) = self.find("tg") else {
            return Ok(default);
        };
        if let Some(g) = granule_named(v) {
            return Ok(g.tg());
        }
        match number(v) {
            Some(n) if n <= 3 => Ok(n as u8),
            _ => Err(FieldError::at(
                i,
                format!("field `tg` = `{v}`: expected 4k, 16k, 64k or a 2-bit value"),
            )),
        }
    }
}

/// How a TLBI operand was built: the raw value and the field each named
/// architectural field came from (for error locations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltOperand {
    /// The 64-bit `Xt`.
    pub raw: u64,
    /// The decoded operand.
    pub operand: TlbiOperand,
}

/// Which input field an architectural field name of a decode error comes from.
fn field_for(arch_field: &str) -> &'static [&'static str] {
    match arch_field {
        "TG" => &["tg"],
        "TTL" => &["ttl", "tg"],
        "BaseADDR" => &["base", "va", "ipa", "addr"],
        f if f.starts_with("IPA") => &["ipa", "addr"],
        f if f.contains("[63:48]") => &["asid"],
        _ => &[],
    }
}

const ASID_MAX: u64 = 0xffff;

/// Builds the `Xt` of `tlbi` from fields: `asid`, `va` (or `ipa`/`addr`),
/// `ttl` (the leaf level, or `none`), `tg`, `scale`, `num`, `base`, `ns`.
/// `granule` is the TG used when `tg` is not given. The result has been
/// decoded by [`TlbiOperand::decode`], so it is a valid operand.
pub fn tlbi_from_fields(
    tlbi: Tlbi,
    fields: &[(String, String)],
    granule: Granule,
) -> Result<BuiltOperand, FieldError> {
    let raw = tlbi_raw_from_fields(tlbi, fields, granule)?;
    let operand = TlbiOperand::decode(tlbi, raw).map_err(|e| FieldError {
        field: tlbi_error_field(fields, &e),
        message: e.to_string(),
    })?;
    Ok(BuiltOperand { raw, operand })
}

/// The index of the field a decode finding is about, when it was given.
pub fn tlbi_error_field(fields: &[(String, String)], e: &TlbiDecodeError) -> Option<usize> {
    let keys = field_for(e.field);
    fields.iter().position(|(k, _)| keys.contains(&k.as_str()))
}

/// Packs the fields into `Xt` as [`tlbi_from_fields`] does, without judging
/// the result: software can execute a TLBI with a malformed operand.
pub fn tlbi_raw_from_fields(
    tlbi: Tlbi,
    fields: &[(String, String)],
    granule: Granule,
) -> Result<u64, FieldError> {
    let kind = tlbi.op.operand_kind();
    let asid_key: &[&str] = if tlbi.uses_asid() { &["asid"] } else { &[] };
    let allowed: Vec<&str> = match kind {
        OperandKind::None => vec![],
        OperandKind::Asid => vec!["asid"],
        OperandKind::Va => [asid_key, &["va", "addr", "ttl", "tg"]].concat(),
        OperandKind::Ipa => vec!["ipa", "addr", "ttl", "tg", "ns"],
        OperandKind::VaRange => [
            asid_key,
            &["va", "addr", "base", "tg", "scale", "num", "ttl"],
        ]
        .concat(),
        OperandKind::IpaRange => vec!["ipa", "addr", "base", "tg", "scale", "num", "ttl", "ns"],
    };
    let mut f = Fields::new(fields, &allowed, &format!("TLBI {tlbi}"))?;
    let asid = if tlbi.uses_asid() {
        f.num_or("asid", ASID_MAX, 0)?
    } else {
        0
    };
    let ns = if tlbi.is_stage2() {
        f.num_or("ns", 1, 0)?
    } else {
        0
    };
    let addr_keys: &[&str] = match kind {
        OperandKind::Ipa | OperandKind::IpaRange => &["ipa", "addr"],
        _ => &["va", "addr"],
    };
    let mut address = None;
    for k in addr_keys {
        if let Some(a) = f.num(k, u64::MAX)? {
            if address.is_some() {
                return Err(FieldError::whole(format!(
                    "give the address once (as {})",
                    addr_keys.join(" or ")
                )));
            }
            address = Some(a);
        }
    }
    let tg = f.tg(granule.tg())?;
    // A TTL field written `none` means "no hint".
    let ttl = match f.find("ttl") {
        Some((_, "none")) | None => None,
        Some((i, v)) => match number(v) {
            Some(n) if n <= 3 => Some(n),
            _ => {
                return Err(FieldError::at(
                    i,
                    format!("field `ttl` = `{v}`: expected a level 0..3 or `none`"),
                ))
            }
        },
    };
    let raw = match kind {
        OperandKind::None => 0,
        OperandKind::Asid => asid << 48,
        OperandKind::Va | OperandKind::Ipa => {
            let a = address.ok_or_else(|| {
                FieldError::whole(format!("TLBI {tlbi} needs an address: {}=", addr_keys[0]))
            })?;
            let ttl4 = ttl.map_or(0, |level| (u64::from(tg) << 2) | level);
            let page = if kind == OperandKind::Va {
                (a >> 12) & ((1 << 44) - 1)
            } else {
                // Bits [39:36] are IPA[51:48]: an IPA beyond 48 bits shows
                // up there and the decoder names it.
                (a >> 12) & ((1 << 40) - 1)
            };
            (asid << 48) | (ns << 63) | (ttl4 << 44) | page
        }
        OperandKind::VaRange | OperandKind::IpaRange => {
            let scale = f.num_or("scale", 3, 0)?;
            let num = f.num_or("num", 31, 0)?;
            let base_field = f.num("base", (1 << 37) - 1)?;
            let shift = Granule::from_tg(tg).unwrap_or(Granule::K4).shift();
            let base = match (base_field, address) {
                (Some(_), Some(_)) => {
                    return Err(FieldError::whole(
                        "give either base= (the BaseADDR field) or an address, not both",
                    ))
                }
                (Some(b), None) => b,
                (None, Some(a)) => {
                    if a & ((1 << shift) - 1) != 0 {
                        let i = addr_keys.iter().find_map(|k| f.find(k)).map(|(i, _)| i);
                        return Err(FieldError {
                            field: i,
                            message: format!(
                                "address {a:#x} is not aligned to the range's {} granule",
                                Granule::from_tg(tg).unwrap_or(Granule::K4)
                            ),
                        });
                    }
                    (a >> shift) & ((1 << 37) - 1)
                }
                (None, None) => {
                    return Err(FieldError::whole(format!(
                        "TLBI {tlbi} needs a start: {}= or base=",
                        addr_keys[0]
                    )))
                }
            };
            (asid << 48)
                | (ns << 63)
                | (u64::from(tg) << 46)
                | (scale << 44)
                | (num << 39)
                | (ttl.unwrap_or(0) << 37)
                | base
        }
    };
    Ok(raw)
}

/// The fields of a decoded TLBI operand, as `decode tlbi` prints them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TlbiFields {
    /// ASID, for operations that take one.
    pub asid: Option<u16>,
    /// Level hint: the TTL level, `None` for no hint.
    pub ttl: Option<u8>,
    /// TG encoding (of the range, or of the TTL hint).
    pub tg: Option<u8>,
    /// SCALE (range forms).
    pub scale: Option<u8>,
    /// NUM (range forms).
    pub num: Option<u8>,
    /// The BaseADDR field (range forms).
    pub base_addr: Option<u64>,
    /// First input address covered (`None`: all).
    pub va_start: Option<u64>,
    /// Last input address covered, inclusive.
    pub va_end: Option<u64>,
}

/// Lists the fields of `operand` as decoded for `tlbi`.
pub fn tlbi_fields(tlbi: Tlbi, operand: &TlbiOperand) -> TlbiFields {
    let range = operand.input_range().map(|r| r.addrs());
    let mut f = TlbiFields {
        va_start: range.map(|r| r.first),
        va_end: range.map(|r| r.last),
        ..TlbiFields::default()
    };
    match *operand {
        TlbiOperand::None => {}
        TlbiOperand::Asid { asid } => f.asid = Some(asid),
        TlbiOperand::Va { asid, ttl, .. } => {
            f.asid = tlbi.uses_asid().then_some(asid);
            f.ttl = ttl.map(|t| t.level);
            f.tg = ttl.map(|t| t.granule.tg());
        }
        TlbiOperand::Ipa { ttl, .. } => {
            f.ttl = ttl.map(|t| t.level);
            f.tg = ttl.map(|t| t.granule.tg());
        }
        TlbiOperand::VaRange { range, .. } | TlbiOperand::IpaRange { range, .. } => {
            if let TlbiOperand::VaRange { asid, .. } = *operand {
                f.asid = tlbi.uses_asid().then_some(asid);
            }
            f.ttl = range.ttl;
            f.tg = Some(range.granule.tg());
            f.scale = Some(range.scale);
            f.num = Some(range.num);
            f.base_addr = Some(range.base);
        }
    }
    f
}

// ---------------------------------------------------------------------------
// SMMU commands
// ---------------------------------------------------------------------------

/// The fields each opcode takes, by their lower-case specification names.
fn smmu_allowed(op: Opcode) -> &'static [&'static str] {
    const TLBI_ADDR: [&str; 6] = ["addr", "leaf", "tg", "ttl", "num", "scale"];
    match op {
        Opcode::PrefetchConfig => &["sid", "ssv", "ssid"],
        Opcode::PrefetchAddr => &["sid", "ssv", "ssid", "addr", "size"],
        Opcode::CfgiSte => &["sid", "leaf"],
        Opcode::CfgiSteRange => &["sid", "range"],
        Opcode::CfgiCd => &["sid", "ssid", "leaf"],
        Opcode::CfgiCdAll => &["sid"],
        Opcode::TlbiNhAll | Opcode::TlbiS12Vmall => &["vmid"],
        Opcode::TlbiNhAsid => &["vmid", "asid"],
        Opcode::TlbiNhVa => &["vmid", "asid", "addr", "leaf", "tg", "ttl", "num", "scale"],
        Opcode::TlbiNhVaa | Opcode::TlbiS2Ipa => {
            &["vmid", "addr", "leaf", "tg", "ttl", "num", "scale"]
        }
        Opcode::TlbiEl2All | Opcode::TlbiNsnhAll => &[],
        Opcode::TlbiEl2Asid => &["asid"],
        Opcode::TlbiEl2Va => &["asid", "addr", "leaf", "tg", "ttl", "num", "scale"],
        Opcode::TlbiEl2Vaa => &TLBI_ADDR,
        Opcode::AtcInv => &["sid", "ssv", "ssid", "global", "addr", "size"],
        Opcode::PriResp => &["sid", "ssv", "ssid", "prgindex", "resp"],
        Opcode::Resume => &["sid", "stag", "ac", "ab"],
        Opcode::StallTerm => &["sid"],
        Opcode::Sync => &["cs", "msh", "msiattr", "msidata", "msiaddr"],
    }
}

/// Builds an SMMU command from the opcode name (`CMD_TLBI_NH_VA`,
/// `tlbi_nh_va`, `CFGI_ALL`) and its fields; the result has been through
/// the strict decoder, so the command is one the SMMU accepts.
pub fn smmu_from_fields(name: &str, fields: &[(String, String)]) -> Result<Command, FieldError> {
    let cmd = smmu_unchecked_from_fields(name, fields)?;
    strict_smmu(cmd, fields).map_err(|(field, e)| FieldError {
        field,
        message: e.to_string(),
    })
}

/// The strict decoder's verdict on `cmd` as encoded: the command, or the
/// finding with the index of the field it is about (when one was given).
pub fn strict_smmu(
    cmd: Command,
    fields: &[(String, String)],
) -> Result<Command, (Option<usize>, CmdError)> {
    // The strict decoder is the authority on what is reserved (e.g. TG != 0
    // with NUM = SCALE = TTL = 0).
    Command::decode(cmd.encode()).map_err(|e| {
        let field = e.field().and_then(|name| {
            let lower = name.to_ascii_lowercase();
            fields
                .iter()
                .position(|(k, _)| lower.split('/').any(|n| n == k))
        });
        (field, e)
    })
}

/// The command the fields name, packed as given, before the strict
/// decoder has judged its encoding: what software could write, illegal
/// combinations included (a scenario's queue stops on them).
pub fn smmu_unchecked_from_fields(
    name: &str,
    fields: &[(String, String)],
) -> Result<Command, FieldError> {
    let op: Opcode = name
        .parse()
        .map_err(|e: tlbcheck_hw::smmu::cmd::UnknownCommandName| {
            let names: Vec<&str> = Opcode::ALL.iter().map(|o| o.name()).collect();
            FieldError::whole(format!(
                "{e} (expected one of {}, or CMD_CFGI_ALL; the CMD_ prefix is optional)",
                names.join(", ")
            ))
        })?;
    // Opcode::from_str trims the name; so must this, or ` CFGI_ALL` would
    // parse as CFGI_STE_RANGE with RANGE 0 (one STE, not all).
    let is_cfgi_all = name
        .trim()
        .to_ascii_uppercase()
        .trim_start_matches("CMD_")
        .eq("CFGI_ALL");
    let mut f = Fields::new(fields, smmu_allowed(op), op.name())?;
    let sid = f.num_or("sid", u64::from(u32::MAX), 0)? as u32;
    let ssid = f.num_or("ssid", (1 << 20) - 1, 0)? as u32;
    let ssv = f.flag("ssv")?;
    let vmid = f.num_or("vmid", 0xffff, 0)? as u16;
    let asid = f.num_or("asid", 0xffff, 0)? as u16;
    let leaf = f.flag("leaf")?;
    let addr_max = if op == Opcode::TlbiS2Ipa {
        (1 << 56) - 1
    } else {
        u64::MAX
    };
    let addr = f.num_or("addr", addr_max, 0)?;
    if addr & 0xfff != 0 && op != Opcode::Sync {
        return Err(blame(
            fields,
            "addr",
            format!("field `addr` = {addr:#x}: bits [11:0] are not encoded; use a 4 KiB aligned address"),
        ));
    }
    let tlbi_addr = |f: &mut Fields| -> Result<TlbiAddr, FieldError> {
        Ok(TlbiAddr {
            addr,
            leaf,
            tg: f.num_or("tg", 3, 0)? as u8,
            ttl: f.num_or("ttl", 3, 0)? as u8,
            num: f.num_or("num", 31, 0)? as u8,
            scale: f.num_or("scale", 31, 0)? as u8,
        })
    };
    let cmd = match op {
        Opcode::PrefetchConfig => Command::PrefetchConfig { sid, ssv, ssid },
        Opcode::PrefetchAddr => Command::PrefetchAddr {
            sid,
            ssv,
            ssid,
            addr,
            size: f.num_or("size", 31, 0)? as u8,
        },
        Opcode::CfgiSte => Command::CfgiSte { sid, leaf },
        Opcode::CfgiSteRange => Command::CfgiSteRange {
            sid,
            range: f.num_or("range", 31, if is_cfgi_all { 31 } else { 0 })? as u8,
        },
        Opcode::CfgiCd => Command::CfgiCd { sid, ssid, leaf },
        Opcode::CfgiCdAll => Command::CfgiCdAll { sid },
        Opcode::TlbiNhAll => Command::TlbiNhAll { vmid },
        Opcode::TlbiS12Vmall => Command::TlbiS12Vmall { vmid },
        Opcode::TlbiNhAsid => Command::TlbiNhAsid { vmid, asid },
        Opcode::TlbiNhVa => Command::TlbiNhVa {
            vmid,
            asid,
            va: tlbi_addr(&mut f)?,
        },
        Opcode::TlbiNhVaa => Command::TlbiNhVaa {
            vmid,
            va: tlbi_addr(&mut f)?,
        },
        Opcode::TlbiEl2All => Command::TlbiEl2All,
        Opcode::TlbiNsnhAll => Command::TlbiNsnhAll,
        Opcode::TlbiEl2Asid => Command::TlbiEl2Asid { asid },
        Opcode::TlbiEl2Va => Command::TlbiEl2Va {
            asid,
            va: tlbi_addr(&mut f)?,
        },
        Opcode::TlbiEl2Vaa => Command::TlbiEl2Vaa {
            va: tlbi_addr(&mut f)?,
        },
        Opcode::TlbiS2Ipa => Command::TlbiS2Ipa {
            vmid,
            ipa: tlbi_addr(&mut f)?,
        },
        Opcode::AtcInv => Command::AtcInv {
            sid,
            ssv,
            ssid,
            global: f.flag("global")?,
            addr,
            size: f.num_or("size", 63, 0)? as u8,
        },
        Opcode::PriResp => Command::PriResp {
            sid,
            ssv,
            ssid,
            grpid: f.num_or("prgindex", 0x1ff, 0)? as u16,
            resp: match f.num_or("resp", 3, 2)? {
                0 => PriResp::Failure,
                1 => PriResp::InvalidRequest,
                2 => PriResp::Success,
                v => {
                    return Err(reserved(
                        fields,
                        "resp",
                        v,
                        "0b11 is Reserved (SMMUv3 4.5.2)",
                    ))
                }
            },
        },
        Opcode::Resume => Command::Resume {
            sid,
            stag: f.num_or("stag", 0xffff, 0)? as u16,
            retry: f.flag("ac")?,
            abort: f.flag("ab")?,
        },
        Opcode::StallTerm => Command::StallTerm { sid },
        Opcode::Sync => Command::Sync {
            cs: match f.num_or("cs", 3, 0)? {
                0 => SyncCs::None,
                1 => SyncCs::Irq,
                2 => SyncCs::Sev,
                v => return Err(reserved(fields, "cs", v, "0b11 is Reserved (SMMUv3 4.7.3)")),
            },
            msh: f.num_or("msh", 3, 0)? as u8,
            msiattr: f.num_or("msiattr", 15, 0)? as u8,
            msidata: f.num_or("msidata", u64::from(u32::MAX), 0)? as u32,
            msiaddr: {
                let a = f.num_or("msiaddr", (1 << 56) - 1, 0)?;
                if a & 3 != 0 {
                    return Err(blame(
                        fields,
                        "msiaddr",
                        format!("field `msiaddr` = {a:#x}: bits [1:0] are not encoded"),
                    ));
                }
                a
            },
        },
    };
    Ok(cmd)
}

/// An error blamed on the field `key` (if it was given).
fn blame(fields: &[(String, String)], key: &str, message: String) -> FieldError {
    FieldError {
        field: fields.iter().position(|(k, _)| k == key),
        message,
    }
}

fn reserved(fields: &[(String, String)], key: &str, v: u64, why: &str) -> FieldError {
    blame(fields, key, format!("field `{key}` = {v:#x}: {why}"))
}

/// The fields of a command, by lower-case specification name, in encoding
/// order; `decode smmu` prints these.
pub fn smmu_fields(cmd: &Command) -> Vec<(&'static str, u64)> {
    let tlbi = |v: &TlbiAddr| {
        vec![
            ("addr", v.addr),
            ("leaf", u64::from(v.leaf)),
            ("tg", u64::from(v.tg)),
            ("ttl", u64::from(v.ttl)),
            ("num", u64::from(v.num)),
            ("scale", u64::from(v.scale)),
        ]
    };
    let b = |x: bool| u64::from(x);
    match *cmd {
        Command::PrefetchConfig { sid, ssv, ssid } => {
            vec![("sid", sid.into()), ("ssv", b(ssv)), ("ssid", ssid.into())]
        }
        Command::PrefetchAddr {
            sid,
            ssv,
            ssid,
            addr,
            size,
        } => vec![
            ("sid", sid.into()),
            ("ssv", b(ssv)),
            ("ssid", ssid.into()),
            ("addr", addr),
            ("size", size.into()),
        ],
        Command::CfgiSte { sid, leaf } => vec![("sid", sid.into()), ("leaf", b(leaf))],
        Command::CfgiSteRange { sid, range } => vec![("sid", sid.into()), ("range", range.into())],
        Command::CfgiCd { sid, ssid, leaf } => vec![
            ("sid", sid.into()),
            ("ssid", ssid.into()),
            ("leaf", b(leaf)),
        ],
        Command::CfgiCdAll { sid } => vec![("sid", sid.into())],
        Command::TlbiNhAll { vmid } | Command::TlbiS12Vmall { vmid } => vec![("vmid", vmid.into())],
        Command::TlbiNhAsid { vmid, asid } => vec![("vmid", vmid.into()), ("asid", asid.into())],
        Command::TlbiNhVa { vmid, asid, ref va } => {
            let mut v = vec![("vmid", vmid.into()), ("asid", asid.into())];
            v.extend(tlbi(va));
            v
        }
        Command::TlbiNhVaa { vmid, ref va } | Command::TlbiS2Ipa { vmid, ipa: ref va } => {
            let mut v = vec![("vmid", vmid.into())];
            v.extend(tlbi(va));
            v
        }
        Command::TlbiEl2All | Command::TlbiNsnhAll => vec![],
        Command::TlbiEl2Asid { asid } => vec![("asid", asid.into())],
        Command::TlbiEl2Va { asid, ref va } => {
            let mut v = vec![("asid", asid.into())];
            v.extend(tlbi(va));
            v
        }
        Command::TlbiEl2Vaa { ref va } => tlbi(va),
        Command::AtcInv {
            sid,
            ssv,
            ssid,
            global,
            addr,
            size,
        } => vec![
            ("sid", sid.into()),
            ("ssv", b(ssv)),
            ("ssid", ssid.into()),
            ("global", b(global)),
            ("addr", addr),
            ("size", size.into()),
        ],
        Command::PriResp {
            sid,
            ssv,
            ssid,
            grpid,
            resp,
        } => vec![
            ("sid", sid.into()),
            ("ssv", b(ssv)),
            ("ssid", ssid.into()),
            ("prgindex", grpid.into()),
            ("resp", resp as u64),
        ],
        Command::Resume {
            sid,
            stag,
            retry,
            abort,
        } => vec![
            ("sid", sid.into()),
            ("stag", stag.into()),
            ("ac", b(retry)),
            ("ab", b(abort)),
        ],
        Command::StallTerm { sid } => vec![("sid", sid.into())],
        Command::Sync {
            cs,
            msh,
            msiattr,
            msidata,
            msiaddr,
        } => vec![
            ("cs", cs as u64),
            ("msh", msh.into()),
            ("msiattr", msiattr.into()),
            ("msidata", msidata.into()),
            ("msiaddr", msiaddr),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `tlbi_from_fields` for mnemonic `op`, 4K granule.
    fn build(op: &str, fields: &[(&str, &str)]) -> Result<BuiltOperand, FieldError> {
        tlbi_from_fields(op.parse().unwrap(), &kv(fields), Granule::K4)
    }

    /// linux-reference.md §B.6, rows 2 and 4.
    #[test]
    fn worked_arm64_vectors() {
        let b = build(
            "VALE1IS",
            &[("asid", "0x42"), ("va", "0xffff8a3b5000"), ("ttl", "3")],
        )
        .unwrap();
        assert_eq!(b.raw, 0x0042_700f_fff8_a3b5);
        let b = build(
            "RVAE1IS",
            &[
                ("asid", "5"),
                ("va", "0x40000000"),
                ("scale", "1"),
                ("num", "7"),
            ],
        )
        .unwrap();
        assert_eq!(b.raw, 0x0005_5380_0004_0000);
    }

    #[test]
    fn reserved_tg_is_blamed_on_the_tg_field() {
        let e = build("RVAE1IS", &[("asid", "1"), ("base", "1"), ("tg", "0")]).unwrap_err();
        assert_eq!(e.field, Some(2));
        assert!(e.message.contains("TG"), "{}", e.message);
    }

    #[test]
    fn unknown_and_repeated_fields_are_refused() {
        let e = build("VMALLE1IS", &[("asid", "1")]).unwrap_err();
        assert!(e.message.contains("takes no fields"), "{}", e.message);
        let e = build("VAE1IS", &[("va", "0"), ("va", "0")]).unwrap_err();
        assert_eq!(e.field, Some(1));
    }

    /// linux-reference.md §C.8, rows 1 and 2.
    #[test]
    fn worked_smmu_vectors() {
        let c = smmu_from_fields(
            "CMD_TLBI_NH_VA",
            &kv(&[
                ("vmid", "3"),
                ("asid", "0x42"),
                ("addr", "0x7f1234567000"),
                ("leaf", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.encode(), [0x0042_0003_0000_0012, 0x0000_7f12_3456_7001]);
        let c = smmu_from_fields(
            "tlbi_nh_va",
            &kv(&[
                ("asid", "1"),
                ("addr", "0x10000000"),
                ("leaf", "1"),
                ("tg", "1"),
                ("ttl", "3"),
                ("scale", "9"),
            ]),
        )
        .unwrap();
        assert_eq!(c.encode(), [0x0001_0000_0090_0012, 0x0000_0000_1000_0701]);
        assert_eq!(
            smmu_from_fields("CFGI_ALL", &[]).unwrap().encode(),
            [0x4, 0x1f]
        );
    }

    #[test]
    fn cfgi_all_is_all_whatever_the_spacing() {
        assert_eq!(
            smmu_from_fields(" CMD_CFGI_ALL ", &[]).unwrap().encode(),
            [0x4, 0x1f]
        );
    }

    #[test]
    fn granules_are_named_in_any_case() {
        assert_eq!(granule_named("16K"), Some(Granule::K16));
        assert_eq!(granule_named("64k"), Some(Granule::K64));
        assert_eq!(granule_named("8k"), None);
    }

    #[test]
    fn smmu_reserved_range_is_an_error() {
        let e = smmu_from_fields("CMD_TLBI_NH_VA", &kv(&[("tg", "1")])).unwrap_err();
        assert!(e.message.contains("Reserved"), "{}", e.message);
    }
}
