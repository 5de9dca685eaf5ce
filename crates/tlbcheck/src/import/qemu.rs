//! QEMU's SMMUv3 trace events, as its `log` trace backend writes them.
//!
//! Each line is `TID@SECONDS.MICROSECONDS:EVENT ARGS` (or `EVENT ARGS` when
//! QEMU runs with `-msg timestamp=off`), where `ARGS` is the event's format
//! string from QEMU's `hw/arm/trace-events` filled in. Arguments are read
//! by name (`asid=5`, `vmid =1`, `sid=0x8`, `iova:0x1000`), so the spellings
//! of several QEMU releases load alike: `smmuv3_s1_range_inval` (QEMU 6.x)
//! and `smmuv3_range_inval` (later, with `stage=`), lookups with and
//! without `vmid=`, `asid=-1` for stage-2-only translations.
//!
//! Lines that are not trace events (guest console, QEMU warnings) are
//! counted and skipped, and so are events this module does not know. A
//! known event whose arguments do not parse is an error naming the line
//! and the argument expected.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// One SMMU trace event this importer understands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// `smmuv3_cmdq_consume`: the SMMU is about to read one command (QEMU
    /// emits it once per command of a doorbell's batch).
    Consume,
    /// `smmuv3_cmdq_consume_out`: the command queue is empty again, the
    /// end of one doorbell's batch.
    ConsumeOut,
    /// `smmuv3_cmdq_opcode`: a command's opcode, as `CMD_...`.
    Opcode {
        /// `CMD_TLBI_NH_VA`, `CMD_SYNC`, ... (QEMU's `SMMU_` prefix dropped).
        name: String,
    },
    /// `smmuv3_cmdq_consume_error`: a command failed (CONS.ERR).
    CommandError {
        /// The failing command.
        name: String,
        /// QEMU's error code (1 = CERROR_ILL, 2 = CERROR_ABT, 3 = CERROR_ATC_INV_SYNC).
        code: u64,
    },
    /// `smmuv3_s1_range_inval` / `smmuv3_range_inval` / `smmuv3_cmdq_tlbi_nh_va(a)`:
    /// a TLBI by address as the command asked for it.
    RangeInval {
        /// VMID, when the event names one.
        vmid: Option<u16>,
        /// ASID; `None` for the all-ASID forms (`CMD_TLBI_NH_VAA`, QEMU's `asid=-1`).
        asid: Option<u16>,
        /// First address.
        addr: u64,
        /// Translation granule field of the command: 0 = not a range, 1 = 4K, 2 = 16K, 3 = 64K.
        tg: u8,
        /// Pages covered (1 for a non-range command).
        num_pages: u64,
        /// TTL hint: 0 = any level, else the level of the entries to remove.
        ttl: u8,
        /// Leaf-only form.
        leaf: bool,
        /// Translation stage the command is for, when the event says (later
        /// QEMU: 1 = stage 1, 2 = stage 2, 3 = nested).
        stage: Option<u8>,
    },
    /// `smmuv3_cmdq_tlbi_nh_asid`: every non-global entry of one ASID.
    InvalAsid {
        /// The ASID.
        asid: u16,
    },
    /// `smmuv3_cmdq_tlbi_s12_vmid`: every entry of one VMID.
    InvalVmid {
        /// The VMID.
        vmid: u16,
    },
    /// `smmuv3_cmdq_tlbi_nh`: every stage-1 entry (CMD_TLBI_NH_ALL).
    InvalAll,
    /// `smmuv3_cmdq_cfgi_ste` / `smmuv3_cmdq_cfgi_cd`: one StreamID's configuration.
    Cfgi {
        /// The StreamID.
        sid: u32,
    },
    /// `smmuv3_cmdq_cfgi_ste_range`: a range of StreamIDs' configuration.
    CfgiRange {
        /// First StreamID.
        start: u32,
        /// Last StreamID.
        end: u32,
    },
    /// `smmu_iotlb_inv_*`: what the emulator removed from its IOTLB.
    EmulatorInval {
        /// The event's name.
        name: String,
    },
    /// `smmu_iotlb_lookup_hit` / `smmu_iotlb_lookup_miss`.
    Lookup {
        /// Hit (else miss).
        hit: bool,
        /// ASID; `None` for a stage-2-only translation (QEMU's `asid=-1`).
        asid: Option<u16>,
        /// VMID, when the event names one.
        vmid: Option<u16>,
        /// The input address looked up.
        addr: u64,
    },
    /// `smmu_iotlb_insert`: a walk's result cached.
    Insert {
        /// ASID; `None` for a stage-2-only translation (QEMU's `asid=-1`).
        asid: Option<u16>,
        /// VMID, when the event names one.
        vmid: Option<u16>,
        /// The entry's input address (aligned to its size).
        addr: u64,
        /// Granule code (1 = 4K, 2 = 16K, 3 = 64K).
        tg: u8,
        /// Lookup level of the entry (3 = page, lower = block).
        level: u8,
    },
    /// `smmuv3_translate_*`: one device access and how it ended.
    Translate {
        /// `success`, `abort`, `bypass` or `disable`.
        outcome: String,
        /// StreamID.
        sid: u32,
        /// Input address.
        iova: u64,
    },
    /// `smmuv3_config_cache_hit` / `_miss`.
    ConfigCache {
        /// Hit (else miss).
        hit: bool,
        /// StreamID.
        sid: u32,
    },
    /// `smmu_ptw_*`: one step of a page-table walk.
    Walk,
}

/// An event and where it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    /// 1-based line number in the log.
    pub line: usize,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// A parsed log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QemuTrace {
    /// The events understood, in order.
    pub records: Vec<Record>,
    /// Lines in the log.
    pub lines: usize,
    /// Trace events not understood, by name, with their counts.
    pub unknown: BTreeMap<String, usize>,
    /// Lines that are not trace events (blank, console output, warnings).
    pub other_lines: usize,
}

/// A line that looks like a trace event but does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was expected and what was found.
    pub message: String,
}

/// Reads a whole log.
pub fn parse(text: &str) -> Result<QemuTrace, ParseError> {
    let mut t = QemuTrace::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        t.lines = line;
        let err = |message: String| ParseError { line, message };
        let Some(body) = strip_prefix(raw.trim_end()).map_err(err)? else {
            t.other_lines += 1;
            continue;
        };
        let (name, args) = body.split_once(' ').unwrap_or((body, ""));
        if !is_event_name(name) {
            t.other_lines += 1;
            continue;
        }
        match event(name, args).map_err(|m| err(format!("{name}: {m}")))? {
            Some(event) => t.records.push(Record { line, event }),
            None => *t.unknown.entry(name.to_string()).or_default() += 1,
        }
    }
    Ok(t)
}

/// Removes the `TID@SECONDS.MICROSECONDS:` prefix. `Ok(None)`: the line is
/// not a trace event at all; an error: it starts like a prefix but is not one.
fn strip_prefix(line: &str) -> Result<Option<&str>, String> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || line.as_bytes().get(digits) != Some(&b'@') {
        return Ok((!line.is_empty()).then_some(line));
    }
    let expected = "expected `TID@SECONDS.MICROSECONDS:EVENT` (QEMU's log-backend prefix)";
    let after = &line[digits + 1..];
    let (stamp, body) = after
        .split_once(':')
        .ok_or_else(|| format!("{expected}, found no `:` after the timestamp"))?;
    let (secs, usecs) = stamp
        .split_once('.')
        .ok_or_else(|| format!("{expected}, found timestamp `{stamp}`"))?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(secs) || !all_digits(usecs) {
        return Err(format!("{expected}, found timestamp `{stamp}`"));
    }
    Ok(Some(body))
}

/// Trace event names are lower-case identifiers with an underscore
/// (`smmuv3_cmdq_opcode`); anything else on a line is not an event.
fn is_event_name(s: &str) -> bool {
    s.contains('_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Arguments of one event, read by name.
struct Args<'a>(&'a str);

impl<'a> Args<'a> {
    /// The text of argument `key`: after `key=`, `key =`, `key:` or `key `
    /// (QEMU's formats use each), up to the next space, comma or parenthesis.
    fn raw(&self, key: &str) -> Option<&'a str> {
        let s = self.0;
        for (at, _) in s.match_indices(key) {
            let before = s[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                continue;
            }
            let rest = &s[at + key.len()..];
            let trimmed = rest.trim_start_matches(' ');
            let spaced = trimmed.len() < rest.len();
            let value = if let Some(v) = trimmed.strip_prefix(['=', ':']) {
                v.trim_start_matches(' ')
            } else if spaced && trimmed.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                trimmed
            } else {
                continue;
            };
            let end = value.find([' ', ',', ')', '(']).unwrap_or(value.len());
            return Some(&value[..end]);
        }
        None
    }

    /// A numeric argument that may be absent.
    fn opt(&self, key: &str) -> Result<Option<i128>, String> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let (neg, digits) = match v.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, v),
        };
        let n = match digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            Some(h) => i128::from_str_radix(h, 16),
            None => digits.parse::<i128>(),
        }
        .map_err(|_| format!("expected a number after `{key}=`, found `{v}`"))?;
        Ok(Some(if neg { -n } else { n }))
    }

    /// A numeric argument that must be present.
    fn num(&self, key: &str) -> Result<i128, String> {
        self.opt(key)?.ok_or_else(|| {
            format!(
                "expected `{key}=NUMBER`, found `{}`",
                self.0.trim().chars().take(80).collect::<String>()
            )
        })
    }

    /// A required argument that must fit `T` (`what` names the kind of
    /// value, for the error).
    fn fit<T: TryFrom<i128>>(&self, key: &str, what: &str) -> Result<T, String> {
        let n = self.num(key)?;
        T::try_from(n).map_err(|_| format!("`{key}={n}` is out of range for {what}"))
    }

    /// An optional argument that must fit `T`.
    fn opt_fit<T: TryFrom<i128>>(&self, key: &str, what: &str) -> Result<Option<T>, String> {
        match self.opt(key)? {
            None => Ok(None),
            Some(n) => T::try_from(n)
                .map(Some)
                .map_err(|_| format!("`{key}={n}` is out of range for {what}")),
        }
    }

    /// An ASID where QEMU writes -1 for "every ASID" (commands) or "no
    /// ASID" (stage-2-only lookups and inserts).
    fn asid_or_any(&self) -> Result<Option<u16>, String> {
        match self.num("asid")? {
            -1 => Ok(None),
            n => u16::try_from(n)
                .map(Some)
                .map_err(|_| format!("`asid={n}` is out of range for a 16-bit ASID")),
        }
    }

    /// A VMID where QEMU writes -1 for "not used".
    fn vmid(&self) -> Result<Option<u16>, String> {
        match self.opt("vmid")? {
            None | Some(-1) => Ok(None),
            Some(n) => u16::try_from(n)
                .map(Some)
                .map_err(|_| format!("`vmid={n}` is out of range for a 16-bit VMID")),
        }
    }
}

const ASID: &str = "a 16-bit ASID";
const SID: &str = "a 32-bit StreamID";
const ADDR: &str = "a 64-bit address";

/// The event `name` with arguments `args`; `Ok(None)` if it is not one
/// this importer reads.
fn event(name: &str, args: &str) -> Result<Option<Event>, String> {
    let a = Args(args);
    let ev = match name {
        "smmuv3_cmdq_consume" => Event::Consume,
        "smmuv3_cmdq_consume_out" => Event::ConsumeOut,
        "smmuv3_cmdq_opcode" => Event::Opcode {
            name: opcode(
                args.trim()
                    .strip_prefix("<---")
                    .map(str::trim)
                    .ok_or_else(|| format!("expected `<--- OPCODE`, found `{}`", args.trim()))?,
            )?,
        },
        "smmuv3_cmdq_consume_error" => {
            // "Error on %s command execution: %d"
            let rest = args.trim().strip_prefix("Error on ").ok_or_else(|| {
                format!("expected `Error on OPCODE command execution: CODE`, found `{args}`")
            })?;
            let (cmd, code) = rest.split_once(" command execution:").ok_or_else(|| {
                format!("expected `Error on OPCODE command execution: CODE`, found `{args}`")
            })?;
            Event::CommandError {
                name: opcode(cmd)?,
                code: code
                    .trim()
                    .parse()
                    .map_err(|_| format!("expected an error code, found `{}`", code.trim()))?,
            }
        }
        "smmuv3_s1_range_inval" | "smmuv3_range_inval" => Event::RangeInval {
            vmid: a.vmid()?,
            asid: a.asid_or_any()?,
            addr: a.fit("addr", ADDR)?,
            tg: a.opt_fit("tg", "a 2-bit TG field")?.unwrap_or(0),
            num_pages: a.opt_fit("num_pages", "a page count")?.unwrap_or(1),
            ttl: a.opt_fit("ttl", "a 2-bit TTL field")?.unwrap_or(0),
            leaf: a.opt("leaf")?.unwrap_or(0) != 0,
            stage: a.opt_fit("stage", "a stage number")?,
        },
        // QEMU before range invalidation (5.x) traced the command itself.
        "smmuv3_cmdq_tlbi_nh_va" => Event::RangeInval {
            vmid: a.vmid()?,
            asid: a.asid_or_any()?,
            addr: a.fit("addr", ADDR)?,
            tg: 0,
            num_pages: 1,
            ttl: 0,
            leaf: a.opt("leaf")?.unwrap_or(0) != 0,
            stage: None,
        },
        "smmuv3_cmdq_tlbi_nh_vaa" => Event::RangeInval {
            vmid: a.vmid()?,
            asid: None,
            addr: a.fit("addr", ADDR)?,
            tg: 0,
            num_pages: 1,
            ttl: 0,
            leaf: false,
            stage: None,
        },
        "smmuv3_cmdq_tlbi_nh_asid" => Event::InvalAsid {
            asid: a.fit("asid", ASID)?,
        },
        "smmuv3_cmdq_tlbi_s12_vmid" => Event::InvalVmid {
            vmid: a.fit("vmid", "a 16-bit VMID")?,
        },
        "smmuv3_cmdq_tlbi_nh" => Event::InvalAll,
        "smmuv3_cmdq_cfgi_ste" | "smmuv3_cmdq_cfgi_cd" => Event::Cfgi {
            sid: match a.opt_fit("sid", SID)? {
                Some(s) => s,
                None => a.fit("streamid", SID)?,
            },
        },
        "smmuv3_cmdq_cfgi_ste_range" => Event::CfgiRange {
            start: a.fit("start", SID)?,
            end: a.fit("end", SID)?,
        },
        n if n.starts_with("smmu_iotlb_inv_") => Event::EmulatorInval {
            name: n.to_string(),
        },
        "smmu_iotlb_lookup_hit" | "smmu_iotlb_lookup_miss" => Event::Lookup {
            hit: name.ends_with("hit"),
            asid: a.asid_or_any()?,
            vmid: a.vmid()?,
            addr: a.fit("addr", ADDR)?,
        },
        "smmu_iotlb_insert" => Event::Insert {
            asid: a.asid_or_any()?,
            vmid: a.vmid()?,
            addr: a.fit("addr", ADDR)?,
            tg: a.fit("tg", "a 2-bit granule code")?,
            level: a.fit("level", "a lookup level")?,
        },
        "smmuv3_translate_success"
        | "smmuv3_translate_abort"
        | "smmuv3_translate_bypass"
        | "smmuv3_translate_disable" => Event::Translate {
            outcome: name["smmuv3_translate_".len()..].to_string(),
            sid: a.fit("sid", SID)?,
            iova: a.fit("iova", ADDR)?,
        },
        "smmuv3_config_cache_hit" | "smmuv3_config_cache_miss" => Event::ConfigCache {
            hit: name.ends_with("hit"),
            sid: a.fit("sid", SID)?,
        },
        n if n.starts_with("smmu_ptw_") => Event::Walk,
        _ => return Ok(None),
    };
    Ok(Some(ev))
}

/// `SMMU_CMD_TLBI_NH_VA` or `CMD_TLBI_NH_VA` as `CMD_TLBI_NH_VA`.
fn opcode(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(format!(
            "expected an opcode name such as `SMMU_CMD_SYNC`, found `{s}`"
        ));
    }
    let bare = s.strip_prefix("SMMU_").unwrap_or(s);
    Ok(if bare.starts_with("CMD_") {
        bare.to_string()
    } else {
        // QEMU's "UNKNOWN" and "INVALID".
        s.to_string()
    })
}

/// How one ASID was used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AsidUse {
    /// TLBI commands naming it (by address or whole ASID).
    pub invalidations: usize,
    /// Pages those by-address commands covered.
    pub pages_invalidated: u64,
    /// IOTLB lookups that hit.
    pub hits: usize,
    /// IOTLB lookups that missed.
    pub misses: usize,
    /// IOTLB inserts.
    pub inserts: usize,
}

/// How one StreamID was used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StreamUse {
    /// Device accesses translated.
    pub translated: usize,
    /// Device accesses aborted.
    pub aborted: usize,
    /// Device accesses that bypassed translation.
    pub bypassed: usize,
    /// Configuration-cache hits and misses.
    pub config_hits: usize,
    /// Configuration-cache misses.
    pub config_misses: usize,
    /// CFGI commands naming it.
    pub cfgi: usize,
}

/// What a trace shows, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Lines in the log.
    pub lines: usize,
    /// Events understood.
    pub events: usize,
    /// Events not understood, by name.
    pub unknown_events: BTreeMap<String, usize>,
    /// Lines that are not trace events.
    pub other_lines: usize,
    /// Commands consumed, by opcode.
    pub commands: BTreeMap<String, usize>,
    /// Commands that failed.
    pub command_errors: usize,
    /// Histogram: commands issued since the previous CMD_SYNC -> number of CMD_SYNCs.
    pub commands_per_sync: BTreeMap<usize, usize>,
    /// Histogram: commands consumed in one doorbell's batch -> number of batches.
    pub commands_per_doorbell: BTreeMap<usize, usize>,
    /// Histogram: pages covered by one TLBI by address -> number of TLBIs.
    pub tlbi_pages: BTreeMap<u64, usize>,
    /// Histogram: TTL hint of one TLBI by address -> number of TLBIs.
    pub tlbi_ttl: BTreeMap<u8, usize>,
    /// TLBIs by address for every ASID (CMD_TLBI_NH_VAA).
    pub tlbi_all_asids: usize,
    /// Use by ASID.
    pub asids: BTreeMap<u16, AsidUse>,
    /// Use by StreamID.
    pub streams: BTreeMap<u32, StreamUse>,
    /// IOTLB lookups and inserts of stage-2-only translations (no ASID).
    pub stage2_only_iotlb_events: usize,
    /// Emulator-side IOTLB invalidations (`smmu_iotlb_inv_*`).
    pub emulator_invalidations: usize,
    /// Page-table walk steps (`smmu_ptw_*`).
    pub walk_steps: usize,
}

impl Summary {
    /// Counts everything in `t`.
    pub fn new(t: &QemuTrace) -> Summary {
        let mut s = Summary {
            lines: t.lines,
            events: t.records.len(),
            unknown_events: t.unknown.clone(),
            other_lines: t.other_lines,
            ..Summary::default()
        };
        let (mut since_sync, mut in_batch) = (0usize, 0usize);
        for r in &t.records {
            match &r.event {
                Event::Consume => {}
                Event::Walk => s.walk_steps += 1,
                Event::ConsumeOut => {
                    if in_batch > 0 {
                        *s.commands_per_doorbell.entry(in_batch).or_default() += 1;
                    }
                    in_batch = 0;
                }
                Event::Opcode { name } => {
                    *s.commands.entry(name.clone()).or_default() += 1;
                    in_batch += 1;
                    if name == "CMD_SYNC" {
                        *s.commands_per_sync.entry(since_sync).or_default() += 1;
                        since_sync = 0;
                    } else {
                        since_sync += 1;
                    }
                }
                Event::CommandError { .. } => s.command_errors += 1,
                Event::RangeInval {
                    asid,
                    num_pages,
                    ttl,
                    ..
                } => {
                    *s.tlbi_pages.entry(*num_pages).or_default() += 1;
                    *s.tlbi_ttl.entry(*ttl).or_default() += 1;
                    match asid {
                        Some(a) => {
                            let u = s.asids.entry(*a).or_default();
                            u.invalidations += 1;
                            u.pages_invalidated = u.pages_invalidated.saturating_add(*num_pages);
                        }
                        None => s.tlbi_all_asids += 1,
                    }
                }
                Event::InvalAsid { asid } => s.asids.entry(*asid).or_default().invalidations += 1,
                Event::InvalVmid { .. } | Event::InvalAll => {}
                Event::Cfgi { sid } => s.streams.entry(*sid).or_default().cfgi += 1,
                Event::CfgiRange { .. } => {}
                Event::EmulatorInval { .. } => s.emulator_invalidations += 1,
                Event::Lookup { asid: None, .. } | Event::Insert { asid: None, .. } => {
                    s.stage2_only_iotlb_events += 1
                }
                Event::Lookup {
                    hit,
                    asid: Some(asid),
                    ..
                } => {
                    let u = s.asids.entry(*asid).or_default();
                    if *hit {
                        u.hits += 1;
                    } else {
                        u.misses += 1;
                    }
                }
                Event::Insert {
                    asid: Some(asid), ..
                } => s.asids.entry(*asid).or_default().inserts += 1,
                Event::Translate { outcome, sid, .. } => {
                    let u = s.streams.entry(*sid).or_default();
                    match outcome.as_str() {
                        "success" => u.translated += 1,
                        "abort" => u.aborted += 1,
                        _ => u.bypassed += 1,
                    }
                }
                Event::ConfigCache { hit, sid } => {
                    let u = s.streams.entry(*sid).or_default();
                    if *hit {
                        u.config_hits += 1;
                    } else {
                        u.config_misses += 1;
                    }
                }
            }
        }
        // A log cut off inside a batch still shows the batch.
        if in_batch > 0 {
            *s.commands_per_doorbell.entry(in_batch).or_default() += 1;
        }
        s
    }

    /// The summary as aligned text sections.
    pub fn render_text(&self) -> String {
        use fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} lines: {} SMMU events read, {} other events skipped, {} non-event lines",
            self.lines,
            self.events,
            self.unknown_events.values().sum::<usize>(),
            self.other_lines
        );
        section(&mut o, "commands by opcode", &self.commands);
        if self.command_errors > 0 {
            let _ = writeln!(o, "  ({} failed)", self.command_errors);
        }
        section(
            &mut o,
            "commands per CMD_SYNC (commands -> syncs)",
            &self.commands_per_sync,
        );
        section(
            &mut o,
            "commands per doorbell batch (commands -> batches)",
            &self.commands_per_doorbell,
        );
        section(
            &mut o,
            "TLBI by address: pages covered (pages -> commands)",
            &self.tlbi_pages,
        );
        section(
            &mut o,
            "TLBI by address: TTL hint (0 = any level)",
            &self.tlbi_ttl,
        );
        if self.tlbi_all_asids > 0 {
            let _ = writeln!(
                o,
                "  {} of them for every ASID (CMD_TLBI_NH_VAA)",
                self.tlbi_all_asids
            );
        }
        if !self.asids.is_empty() {
            let _ = writeln!(o, "\nper ASID");
            let _ = writeln!(
                o,
                "  {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "asid", "tlbis", "pages", "hits", "misses", "inserts"
            );
            for (a, u) in &self.asids {
                let _ = writeln!(
                    o,
                    "  {a:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
                    u.invalidations, u.pages_invalidated, u.hits, u.misses, u.inserts
                );
            }
        }
        if !self.streams.is_empty() {
            let _ = writeln!(o, "\nper StreamID");
            let _ = writeln!(
                o,
                "  {:>8} {:>10} {:>8} {:>8} {:>10} {:>10} {:>6}",
                "sid", "translated", "aborted", "bypassed", "cfg hits", "cfg misses", "cfgi"
            );
            for (sid, u) in &self.streams {
                let _ = writeln!(
                    o,
                    "  {sid:>#8x} {:>10} {:>8} {:>8} {:>10} {:>10} {:>6}",
                    u.translated, u.aborted, u.bypassed, u.config_hits, u.config_misses, u.cfgi
                );
            }
        }
        let _ = writeln!(
            o,
            "\nemulator IOTLB invalidations {}, page-table walk steps {}",
            self.emulator_invalidations, self.walk_steps
        );
        if !self.unknown_events.is_empty() {
            section(&mut o, "other events (skipped)", &self.unknown_events);
        }
        o
    }
}

/// A titled list of `key  count` lines.
fn section<K: fmt::Display>(o: &mut String, title: &str, rows: &BTreeMap<K, usize>) {
    use fmt::Write as _;
    let _ = writeln!(o, "\n{title}");
    if rows.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for (k, n) in rows {
        let _ = writeln!(o, "  {:<28} {n:>8}", k.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prefixed_and_bare_lines() {
        let t = parse(
            "1234@1700000000.000001:smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_VA\n\
             smmuv3_s1_range_inval vmid =0 asid =5 addr=0x10000 tg=1 num_pages=0x4 ttl=3 leaf=1\n\
             \n\
             qemu-system-aarch64: warning: something\n\
             smmuv3_write_mmio addr: 0x98 val:0x3 size: 0x4(0)\n",
        )
        .unwrap();
        assert_eq!(t.lines, 5);
        assert_eq!(t.other_lines, 2);
        assert_eq!(t.unknown.get("smmuv3_write_mmio"), Some(&1));
        assert_eq!(
            t.records[0].event,
            Event::Opcode {
                name: "CMD_TLBI_NH_VA".into()
            }
        );
        assert_eq!(
            t.records[1].event,
            Event::RangeInval {
                vmid: Some(0),
                asid: Some(5),
                addr: 0x10000,
                tg: 1,
                num_pages: 4,
                ttl: 3,
                leaf: true,
                stage: None
            }
        );
        assert_eq!(t.records[1].line, 2);
    }

    #[test]
    fn qemu_writes_asid_minus_one_for_every_asid() {
        let t = parse(
            "smmuv3_s1_range_inval vmid =0 asid =-1 addr=0x2000 tg=0 num_pages=0x1 ttl=0 leaf=0\n",
        )
        .unwrap();
        assert!(matches!(
            t.records[0].event,
            Event::RangeInval { asid: None, .. }
        ));
    }

    #[test]
    fn stream_ids_in_every_spelling() {
        let t = parse(
            "smmuv3_cmdq_cfgi_ste streamid =8\n\
             smmuv3_cmdq_cfgi_cd sid=0x10\n\
             smmuv3_config_cache_miss Config cache MISS for sid 8 (hits=0, misses=1, hit rate=0)\n\
             smmuv3_translate_abort smmuv3-iommu-memory-region-0-0 sid=8 abort on iova:0x3000 is_write=1\n",
        )
        .unwrap();
        let sids: Vec<u32> = t
            .records
            .iter()
            .map(|r| match &r.event {
                Event::Cfgi { sid } | Event::ConfigCache { sid, .. } => *sid,
                Event::Translate { sid, iova, .. } => {
                    assert_eq!(*iova, 0x3000);
                    *sid
                }
                e => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(sids, [8, 16, 8, 8]);
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        let e = parse("smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC\nsmmu_iotlb_insert asid=1 addr=0xzz tg=1 level=3\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("smmu_iotlb_insert"), "{e}");
        assert!(e.message.contains("`addr=`"), "{e}");
        let e = parse("12@17x:smmuv3_cmdq_consume_out\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("TID@SECONDS.MICROSECONDS"), "{e}");
        let e = parse(
            "smmu_iotlb_lookup_hit IOTLB cache HIT asid=70000 addr=0x0 hit=1 miss=0 hit rate=100\n",
        )
        .unwrap_err();
        assert!(e.message.contains("out of range"), "{e}");
        let e = parse("smmu_iotlb_lookup_miss IOTLB cache MISS addr=0x0\n").unwrap_err();
        assert!(e.message.contains("expected `asid=NUMBER`"), "{e}");
    }

    #[test]
    fn batches_and_syncs_are_counted() {
        let log = "smmuv3_cmdq_consume prod=2 cons=0 prod.wrap=0 cons.wrap=0\n\
                   smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_ASID\n\
                   smmuv3_cmdq_tlbi_nh_asid asid=3\n\
                   smmuv3_cmdq_consume prod=2 cons=1 prod.wrap=0 cons.wrap=0\n\
                   smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC\n\
                   smmuv3_cmdq_consume_out prod:2, cons:2, prod_wrap:0, cons_wrap:0 \n\
                   smmuv3_cmdq_consume prod=3 cons=2 prod.wrap=0 cons.wrap=0\n\
                   smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC\n\
                   smmuv3_cmdq_consume_out prod:3, cons:3, prod_wrap:0, cons_wrap:0 \n";
        let s = Summary::new(&parse(log).unwrap());
        assert_eq!(s.commands.get("CMD_SYNC"), Some(&2));
        assert_eq!(s.commands_per_doorbell, BTreeMap::from([(1, 1), (2, 1)]));
        assert_eq!(s.commands_per_sync, BTreeMap::from([(0, 1), (1, 1)]));
        assert_eq!(s.asids[&3].invalidations, 1);
    }
}
