//! The scenario parser: a hand-written recursive descent over the tokens of
//! [`super::lex`]. Statements are lines; a thread's steps sit between `{`
//! and `}`. Every error names what was expected and what was found, at the
//! token where the parse went wrong. See docs/scenario-format.md.

use super::ast::*;
use super::lex::{lex, number, Tok, Token};
use crate::codec::{granule_named, smmu_unchecked_from_fields, strict_smmu};
use crate::error::{Located, Span};
use tlbcheck_checker::violation::ViolationKind;
use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::cpu::tlbi::Tlbi;
use tlbcheck_hw::machine::Dsb;
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_hw::smmu::ste::{S1Dss, S1Fmt};
use tlbcheck_hw::vmsa::desc::bits;

/// Words reserved for the high-level OS and hypervisor operations of a later
/// version: using one is an error that says so, rather than "unknown".
pub const RESERVED_STEPS: &[&str] = &["cow", "madvise", "unbind-sva", "guest-invalidate"];

/// Top-level words reserved for later set-up statements (protocol variants,
/// processes and VMs, cost tables).
pub const RESERVED_STATEMENTS: &[&str] = &["protocol", "cost", "workload"];

const STATEMENTS: &str =
    "scenario, machine, smmu, stream, queue, ste, cd, device, pool, frame, context, kernel, process, vma, page, bind-sva, kvm, vm, s2-map, host, guest, vdevice, dma-domain, dma-map, map, FRAME[index] = ..., thread, vcpu, bounds or expect";

/// One `key` or `key=value[,value...]` item of a statement.
#[derive(Clone, Debug)]
struct Arg {
    key: Spanned<String>,
    values: Vec<Spanned<String>>,
    span: Span,
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    /// Inside a guest thread: raw command words are the guest's to write.
    in_guest: bool,
}

type R<T> = Result<T, Located>;

/// Parses a whole scenario.
pub fn parse(src: &str) -> R<Scenario> {
    let toks = lex(src)?;
    Parser {
        toks,
        pos: 0,
        in_guest: false,
    }
    .scenario()
}

fn expected(what: &str, found: &Token) -> Located {
    Located::new(
        found.span,
        format!("expected {what}, found {}", found.tok.describe()),
    )
}

fn num_of(v: &Spanned<String>, what: &str) -> R<u64> {
    number(&v.value).ok_or_else(|| {
        Located::new(
            v.span,
            format!("expected a number for {what}, found `{}`", v.value),
        )
    })
}

fn narrow<T: TryFrom<u64>>(v: &Spanned<String>, what: &str, max: u64) -> R<T> {
    let n = num_of(v, what)?;
    if n > max {
        return Err(Located::new(
            v.span,
            format!("{what} = {n} is out of range (at most {max})"),
        ));
    }
    T::try_from(n).map_err(|_| Located::new(v.span, format!("{what} = {n} is out of range")))
}

/// A granule name: 4k, 16k or 64k.
fn granule_of(v: &Spanned<String>) -> R<Granule> {
    granule_named(&v.value).ok_or_else(|| {
        Located::new(
            v.span,
            format!("expected granule 4k, 16k or 64k, found `{}`", v.value),
        )
    })
}

/// A `key=value` value naming an address: a number, or a name (a frame, or
/// for some keys a context) resolved at lowering.
fn ref_of(v: &Spanned<String>) -> Spanned<AddrRef> {
    Spanned {
        value: match number(&v.value) {
            Some(n) => AddrRef::Lit(n),
            None => AddrRef::Frame {
                name: v.value.clone(),
                offset: 0,
            },
        },
        span: v.span,
    }
}

/// A word from a fixed list: each entry is the spellings accepted and the
/// value they name; anything else is "expected {what}, found `...`".
fn keyword<T: Copy>(w: &Spanned<String>, what: &str, table: &[(&[&str], T)]) -> R<T> {
    table
        .iter()
        .find(|(words, _)| words.contains(&w.value.as_str()))
        .map(|&(_, v)| v)
        .ok_or_else(|| Located::new(w.span, format!("expected {what}, found `{}`", w.value)))
}

/// Exactly one value after `key=`.
fn one<'a>(a: &'a Arg, what: &str) -> R<&'a Spanned<String>> {
    match a.values.as_slice() {
        [v] => Ok(v),
        _ => Err(Located::new(
            a.span,
            format!("expected `{}=VALUE` ({what})", a.key.value),
        )),
    }
}

/// A bare flag: `key` with no value.
fn flag(a: &Arg) -> R<bool> {
    if a.values.is_empty() {
        Ok(true)
    } else {
        Err(Located::new(
            a.span,
            format!("`{}` is a flag and takes no value", a.key.value),
        ))
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos]
    }

    fn peek2(&self) -> &Token {
        &self.toks[(self.pos + 1).min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn skip_newlines(&mut self) {
        while self.peek().tok == Tok::Newline {
            self.bump();
        }
    }

    fn at_line_end(&self) -> bool {
        matches!(self.peek().tok, Tok::Newline | Tok::Eof)
    }

    fn end_of_line(&mut self) -> R<()> {
        if self.at_line_end() {
            self.bump();
            Ok(())
        } else {
            Err(expected("end of line", self.peek()))
        }
    }

    fn word(&mut self, what: &str) -> R<Spanned<String>> {
        match &self.peek().tok {
            Tok::Word(w) => {
                let value = w.clone();
                let span = self.bump().span;
                Ok(Spanned { value, span })
            }
            _ => Err(expected(what, self.peek())),
        }
    }

    /// A word or a quoted string (names may be either).
    fn name(&mut self, what: &str) -> R<Spanned<String>> {
        match &self.peek().tok {
            Tok::Str(s) => {
                let value = s.clone();
                let span = self.bump().span;
                Ok(Spanned { value, span })
            }
            _ => self.word(what),
        }
    }

    fn number(&mut self, what: &str) -> R<Spanned<u64>> {
        let w = self.word(what)?;
        let value = num_of(&w, what)?;
        Ok(Spanned {
            value,
            span: w.span,
        })
    }

    fn punct(&mut self, c: char, what: &str) -> R<Span> {
        if self.peek().tok == Tok::Punct(c) {
            Ok(self.bump().span)
        } else {
            Err(expected(what, self.peek()))
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek().tok == Tok::Punct(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// `key` / `key=value[,value]` items up to the end of the line (or `{`).
    fn args(&mut self) -> R<Vec<Arg>> {
        let mut out = Vec::new();
        while !self.at_line_end() && self.peek().tok != Tok::Punct('{') {
            let key = self.word("`key` or `key=value`")?;
            let mut values = Vec::new();
            let mut span = key.span;
            if self.eat('=') {
                loop {
                    let v = self.name("a value after `=`")?;
                    span = span.to(v.span);
                    values.push(v);
                    if !self.eat(',') {
                        break;
                    }
                }
            }
            out.push(Arg { key, values, span });
        }
        Ok(out)
    }

    fn scenario(mut self) -> R<Scenario> {
        let mut name: Option<Spanned<String>> = None;
        let mut machine: Option<MachineDecl> = None;
        let mut smmu: Option<SmmuDecl> = None;
        let mut stream: Option<StreamDecl> = None;
        let mut queues = Vec::new();
        let mut stes = Vec::new();
        let mut cds = Vec::new();
        let mut devices = Vec::new();
        let mut pool: Option<PoolDecl> = None;
        let mut frames = Vec::new();
        let mut contexts = Vec::new();
        let mut writes = Vec::new();
        let mut threads = Vec::new();
        let mut bounds: Option<BoundsDecl> = None;
        let mut expect: Option<Spanned<Expect>> = None;
        let mut kernel = None;
        let mut processes = Vec::new();
        let mut vmas = Vec::new();
        let mut pages = Vec::new();
        let mut binds = Vec::new();
        let mut host = None;
        let mut guests: Vec<GuestDecl> = Vec::new();
        let mut kvm = None;
        let mut vms = Vec::new();
        let mut s2_maps = Vec::new();
        let mut dma_domains = Vec::new();
        let mut dma_maps = Vec::new();
        let mut maps = Vec::new();
        loop {
            self.skip_newlines();
            let t = self.peek().clone();
            let kw = match &t.tok {
                Tok::Eof => break,
                Tok::Punct('[') => {
                    writes.push(self.write_decl()?);
                    continue;
                }
                Tok::Word(w) => w.clone(),
                _ => return Err(expected(&format!("a statement ({STATEMENTS})"), &t)),
            };
            let once = |seen: bool| -> R<()> {
                if seen {
                    Err(Located::new(t.span, format!("`{kw}` given twice"))
                        .with_help("a scenario has one of each"))
                } else {
                    Ok(())
                }
            };
            match kw.as_str() {
                "scenario" => {
                    once(name.is_some())?;
                    self.bump();
                    name = Some(self.name("the scenario's name")?);
                    self.end_of_line()?;
                }
                "machine" => {
                    once(machine.is_some())?;
                    machine = Some(self.machine()?);
                }
                "smmu" => {
                    once(smmu.is_some())?;
                    smmu = Some(self.smmu()?);
                }
                "pool" => {
                    once(pool.is_some())?;
                    pool = Some(self.pool()?);
                }
                "frame" => frames.push(self.frame()?),
                // The SMMU set-up words may also name frames (`cd[0] = ...`).
                "stream" if self.peek2().tok != Tok::Punct('[') => {
                    once(stream.is_some())?;
                    stream = Some(self.stream()?);
                }
                "queue" if self.peek2().tok != Tok::Punct('[') => queues.push(self.queue()?),
                "ste" if self.peek2().tok != Tok::Punct('[') => stes.push(self.ste()?),
                "cd" if self.peek2().tok != Tok::Punct('[') => cds.push(self.cd()?),
                "device" if self.peek2().tok != Tok::Punct('[') => devices.push(self.device()?),
                "context" => contexts.push(self.context()?),
                "thread" => threads.push(self.thread()?),
                "vcpu" if self.peek2().tok != Tok::Punct('[') => threads.push(self.thread()?),
                "kvm" if self.peek2().tok != Tok::Punct('[') => {
                    once(kvm.is_some())?;
                    self.bump();
                    let v = self.word("a KVM version")?;
                    let version = v
                        .value
                        .parse::<tlbcheck_protocols::kvm::Version>()
                        .map_err(|e| Located::new(v.span, e.to_string()))?;
                    kvm = Some(Spanned {
                        value: version,
                        span: v.span,
                    });
                    self.end_of_line()?;
                }
                "vm" if self.peek2().tok != Tok::Punct('[') => vms.push(self.vm()?),
                "s2-map" if self.peek2().tok != Tok::Punct('[') => s2_maps.push(self.s2_map()?),
                "map" if self.peek2().tok != Tok::Punct('[') => maps.push(self.map()?),
                "kernel" if self.peek2().tok != Tok::Punct('[') => {
                    once(kernel.is_some())?;
                    self.bump();
                    let v = self.word("a kernel version")?;
                    let version = v
                        .value
                        .parse::<tlbcheck_protocols::linux::Version>()
                        .map_err(|e| Located::new(v.span, e.to_string()))?;
                    kernel = Some(Spanned {
                        value: version,
                        span: v.span,
                    });
                    self.end_of_line()?;
                }
                "process" if self.peek2().tok != Tok::Punct('[') => processes.push(self.process()?),
                "mirror" if self.peek2().tok != Tok::Punct('[') => processes.push(self.mirror()?),
                "vma" if self.peek2().tok != Tok::Punct('[') => {
                    let span = self.bump().span;
                    let process = self.word("a process name")?;
                    let start = self.number("the VMA's start")?;
                    let len = self.number("the VMA's length")?;
                    let writable = self.rw()?;
                    vmas.push(VmaDecl {
                        process,
                        start,
                        len,
                        writable,
                        span,
                    });
                    self.end_of_line()?;
                }
                "page" if self.peek2().tok != Tok::Punct('[') => {
                    let span = self.bump().span;
                    let process = self.word("a process name")?;
                    let va = self.number("the page's address")?;
                    let w = self.word("`rw`, `ro` or `clean`")?;
                    let (writable, clean) = keyword(
                        &w,
                        "`rw`, `ro` or `clean`",
                        &[
                            (&["rw"], (true, false)),
                            (&["ro"], (false, false)),
                            (&["clean"], (false, true)),
                        ],
                    )?;
                    pages.push(PageDecl {
                        process,
                        va,
                        writable,
                        clean,
                        span,
                    });
                    self.end_of_line()?;
                }
                "bind-sva" if self.peek2().tok != Tok::Punct('[') => {
                    let span = self.bump().span;
                    let device = self.word("a device name")?;
                    let process = self.word("a process name")?;
                    binds.push(BindDecl {
                        device,
                        process,
                        span,
                    });
                    self.end_of_line()?;
                }
                "host" if self.peek2().tok != Tok::Punct('[') => {
                    once(host.is_some())?;
                    host = Some(self.host()?);
                }
                "guest" if self.peek2().tok != Tok::Punct('[') => guests.push(self.guest()?),
                "vdevice" if self.peek2().tok != Tok::Punct('[') => self.vdevice(&mut guests)?,
                "dma-domain" if self.peek2().tok != Tok::Punct('[') => {
                    dma_domains.push(self.dma_domain()?)
                }
                "dma-map" if self.peek2().tok != Tok::Punct('[') => {
                    let span = self.bump().span;
                    let context = self.word("a DMA domain's context")?;
                    let iova = self.number("the first IOVA")?;
                    let len = self.number("a length in bytes")?;
                    let frame = self.word("a data frame")?;
                    dma_maps.push(DmaMapDecl {
                        context,
                        iova,
                        len,
                        frame,
                        span,
                    });
                    self.end_of_line()?;
                }
                "bounds" => {
                    once(bounds.is_some())?;
                    bounds = Some(self.bounds()?);
                }
                "expect" => {
                    once(expect.is_some())?;
                    expect = Some(self.expect()?);
                }
                _ if self.peek2().tok == Tok::Punct('[') => writes.push(self.write_decl()?),
                w if RESERVED_STATEMENTS.contains(&w) => {
                    return Err(Located::new(
                        t.span,
                        format!("`{w}` is reserved for a later version of the scenario language"),
                    )
                    .with_help("see \"Reserved words\" in docs/scenario-format.md"))
                }
                _ => return Err(expected(&format!("a statement ({STATEMENTS})"), &t)),
            }
        }
        let eof = self.peek().span;
        let name = name.ok_or_else(|| {
            Located::new(eof, "missing `scenario NAME`")
                .with_help("every scenario names itself, e.g. `scenario s2-unmap-eager`")
        })?;
        let expect = expect.ok_or_else(|| {
            Located::new(eof, "missing `expect ok` or `expect violation NAME`")
                .with_help("the expectation makes the scenario a regression test")
        })?;
        Ok(Scenario {
            name,
            machine: machine.unwrap_or(MachineDecl::DEFAULT),
            smmu,
            stream,
            queues,
            stes,
            cds,
            devices,
            pool: pool.unwrap_or(PoolDecl::DEFAULT),
            frames,
            contexts,
            writes,
            threads,
            kernel,
            processes,
            vmas,
            pages,
            binds,
            host,
            guests,
            kvm,
            vms,
            s2_maps,
            dma_domains,
            dma_maps,
            maps,
            bounds: bounds.unwrap_or_default(),
            expect,
        })
    }

    /// `rw` or `ro`.
    fn rw(&mut self) -> R<bool> {
        let w = self.word("`rw` or `ro`")?;
        keyword(&w, "`rw` or `ro`", &[(&["rw"], true), (&["ro"], false)])
    }

    /// `process NAME asid=N`.
    fn process(&mut self) -> R<ProcessDecl> {
        let kw = self.bump().span;
        let name = self.name("the process's name")?;
        let mut asid = None;
        let mut span = kw.to(name.span);
        for a in self.args()? {
            span = span.to(a.span);
            match a.key.value.as_str() {
                "asid" => asid = Some(narrow(one(&a, "an ASID")?, "asid", 0xffff)?),
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown process setting `{}`", a.key.value),
                    )
                    .with_help("expected asid=N"))
                }
            }
        }
        let asid = asid.ok_or_else(|| {
            Located::new(span, "a process needs asid=N").with_help("e.g. `process p1 asid=1`")
        })?;
        self.end_of_line()?;
        Ok(ProcessDecl {
            name,
            asid,
            mirror_of: None,
            retry: true,
            span,
        })
    }

    /// `mirror NAME PROCESS asid=N [no-retry]`.
    fn mirror(&mut self) -> R<ProcessDecl> {
        let kw = self.bump().span;
        let name = self.name("the mirror's name")?;
        let of = self.word("the process it mirrors")?;
        let mut asid = None;
        let mut retry = true;
        let mut span = kw.to(of.span);
        for a in self.args()? {
            span = span.to(a.span);
            match a.key.value.as_str() {
                "asid" => asid = Some(narrow(one(&a, "an ASID")?, "asid", 0xffff)?),
                "no-retry" if a.values.is_empty() => retry = false,
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown mirror setting `{}`", a.key.value),
                    )
                    .with_help("expected asid=N or no-retry"))
                }
            }
        }
        let asid = asid.ok_or_else(|| {
            Located::new(span, "a mirror needs asid=N").with_help("e.g. `mirror m1 p1 asid=5`")
        })?;
        self.end_of_line()?;
        Ok(ProcessDecl {
            name,
            asid,
            mirror_of: Some(of),
            retry,
            span,
        })
    }

    fn machine(&mut self) -> R<MachineDecl> {
        let kw = self.bump().span;
        let args = self.args()?;
        let mut m = MachineDecl {
            span: kw,
            ..MachineDecl::DEFAULT
        };
        for a in &args {
            m.span = m.span.to(a.span);
            match (a.key.value.as_str(), a.values.as_slice()) {
                ("granule", [v]) => {
                    m.granule = granule_of(v)?;
                }
                ("cpus", [v]) => {
                    m.cpus = narrow(v, "cpus", 8)?;
                    if m.cpus == 0 {
                        return Err(Located::new(v.span, "a machine needs at least one CPU"));
                    }
                }
                ("ttl" | "feat_ttl", []) => m.ttl = true,
                ("tlbirange" | "feat_tlbirange", []) => m.tlbirange = true,
                ("fwb" | "feat_s2fwb", []) => m.fwb = true,
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown machine setting `{}`", a.key.value),
                    )
                    .with_help("expected granule=4k|16k|64k, cpus=N, ttl, tlbirange or fwb"))
                }
            }
        }
        self.end_of_line()?;
        Ok(m)
    }

    fn smmu(&mut self) -> R<SmmuDecl> {
        let kw = self.bump().span;
        let args = self.args()?;
        let mut s = SmmuDecl {
            span: kw,
            ..SmmuDecl::default()
        };
        for a in &args {
            s.span = s.span.to(a.span);
            let flag = match a.key.value.as_str() {
                "btm" => &mut s.btm,
                "ats" => &mut s.ats,
                "ril" => &mut s.ril,
                "stall" => &mut s.stall,
                "pri" => &mut s.pri,
                "e2h" => &mut s.e2h,
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown SMMU feature `{}`", a.key.value),
                    )
                    .with_help("expected btm, ats, ril, stall, pri or e2h"))
                }
            };
            if !a.values.is_empty() {
                return Err(Located::new(a.span, "SMMU features take no value"));
            }
            *flag = true;
        }
        self.end_of_line()?;
        Ok(s)
    }

    fn pool(&mut self) -> R<PoolDecl> {
        let kw = self.bump().span;
        let args = self.args()?;
        let mut p = PoolDecl {
            span: kw,
            ..PoolDecl::DEFAULT
        };
        for a in &args {
            p.span = p.span.to(a.span);
            match (a.key.value.as_str(), a.values.as_slice()) {
                ("base" | "at", [v]) => {
                    p.base = num_of(v, "the pool base")?;
                    if p.base & 0xfff != 0 {
                        return Err(Located::new(v.span, "the pool base must be 4 KiB aligned"));
                    }
                }
                ("frames", [v]) => p.frames = narrow(v, "frames", 1 << 16)?,
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown pool setting `{}`", a.key.value),
                    )
                    .with_help("expected base=PA and frames=N"))
                }
            }
        }
        self.end_of_line()?;
        Ok(p)
    }

    /// `s1-table process=N level=L` and friends; consumes the owner's args
    /// and returns the rest.
    fn owner(&mut self, args: Vec<Arg>, kind: &Spanned<String>) -> R<(OwnerSpec, Vec<Arg>)> {
        let mut rest = Vec::new();
        let mut process = None;
        let mut vm = None;
        let mut level = None;
        for a in args {
            match (a.key.value.as_str(), a.values.as_slice()) {
                ("process", [v]) => process = Some(narrow::<u16>(v, "process", 0xffff)?),
                ("vm" | "vmid", [v]) => vm = Some(narrow::<u16>(v, "vm", 0xffff)?),
                ("level", [v]) => level = Some(narrow::<u8>(v, "level", 3)?),
                _ => rest.push(a),
            }
        }
        fn need<T>(x: Option<T>, kind: &Spanned<String>, what: &str) -> R<T> {
            x.ok_or_else(|| Located::new(kind.span, format!("`{}` needs {what}=", kind.value)))
        }
        let owner = match kind.value.as_str() {
            "s1-table" => OwnerSpec::S1Table {
                process: need(process, kind, "process")?,
                level: need(level, kind, "level")?,
            },
            "s2-table" => OwnerSpec::S2Table {
                vm: need(vm, kind, "vm")?,
                level: need(level, kind, "level")?,
            },
            "data" => OwnerSpec::Data {
                process: need(process, kind, "process")?,
            },
            "smmu" => OwnerSpec::Smmu,
            other => {
                return Err(Located::new(
                    kind.span,
                    format!(
                        "expected an owner (s1-table, s2-table, data or smmu), found `{other}`"
                    ),
                ))
            }
        };
        Ok((owner, rest))
    }

    fn frame(&mut self) -> R<FrameDecl> {
        let kw = self.bump().span;
        let name = self.word("the frame's name")?;
        let kind = self.word("the frame's owner (s1-table, s2-table, data or smmu)")?;
        let args = self.args()?;
        let span = args.last().map_or(kind.span, |a| a.span);
        let (owner, rest) = self.owner(args, &kind)?;
        let mut at = None;
        let mut count = None;
        for a in rest {
            match (a.key.value.as_str(), a.values.as_slice()) {
                ("at", [v]) => {
                    let pa = num_of(v, "the frame address")?;
                    if pa & 0xfff != 0 {
                        return Err(Located::new(
                            v.span,
                            "a frame address must be 4 KiB aligned",
                        ));
                    }
                    at = Some(Spanned {
                        value: pa,
                        span: v.span,
                    });
                }
                ("frames", [v]) => {
                    let n: u32 = narrow(v, "frames", 1 << 16)?;
                    if n == 0 {
                        return Err(Located::new(v.span, "frames must be at least 1"));
                    }
                    count = Some(Spanned {
                        value: n,
                        span: v.span,
                    });
                }
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown frame setting `{}`", a.key.value),
                    )
                    .with_help("expected process=, vm=, level=, at=PA or frames=N"))
                }
            }
        }
        self.end_of_line()?;
        Ok(FrameDecl {
            name,
            owner,
            at,
            frames: count,
            span: kw.to(span),
        })
    }

    fn addr_ref(&mut self, what: &str) -> R<Spanned<AddrRef>> {
        let w = self.word(what)?;
        let mut span = w.span;
        let value = match number(&w.value) {
            Some(n) => AddrRef::Lit(n),
            None if w.value.starts_with(|c: char| c.is_ascii_digit()) => {
                return Err(Located::new(
                    w.span,
                    format!("`{}` is not a number", w.value),
                ))
            }
            None => {
                let mut offset = 0;
                if self.eat('+') {
                    let o = self.number("an offset after `+`")?;
                    offset = o.value;
                    span = span.to(o.span);
                }
                AddrRef::Frame {
                    name: w.value,
                    offset,
                }
            }
        };
        Ok(Spanned { value, span })
    }

    fn context(&mut self) -> R<ContextDecl> {
        let kw = self.bump().span;
        let name = self.word("the context's name")?;
        let kind = self.word("the context's kind (stage1, stage2 or nested)")?;
        let args = self.args()?;
        let mut asid = None;
        let mut vmid = None;
        let mut root = None;
        let mut s2root = None;
        let mut span = kind.span;
        for a in &args {
            span = span.to(a.span);
            match (a.key.value.as_str(), a.values.as_slice()) {
                ("asid", [v]) => asid = Some(narrow::<u16>(v, "asid", 0xffff)?),
                ("vmid", [v]) => vmid = Some(narrow::<u16>(v, "vmid", 0xffff)?),
                ("root", [v]) => root = Some(ref_of(v)),
                ("s2root", [v]) => s2root = Some(ref_of(v)),
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown context setting `{}`", a.key.value),
                    )
                    .with_help("expected asid=, vmid=, root= and (nested) s2root="))
                }
            }
        }
        let has_s2root = s2root.is_some();
        let need = |x: Option<Spanned<AddrRef>>, what: &str| {
            x.ok_or_else(|| Located::new(kind.span, format!("`{}` needs {what}=", kind.value)))
        };
        let kind_v = match kind.value.as_str() {
            "stage1" => ContextKind::Stage1 {
                asid: asid.unwrap_or(0),
                vmid: vmid.unwrap_or(0),
                root: need(root, "root")?,
            },
            "stage2" => {
                if asid.is_some() {
                    return Err(Located::new(span, "a stage-2 context has no ASID"));
                }
                ContextKind::Stage2 {
                    vmid: vmid.unwrap_or(0),
                    root: need(root, "root")?,
                }
            }
            "nested" => ContextKind::Nested {
                asid: asid.unwrap_or(0),
                vmid: vmid.unwrap_or(0),
                root: need(root, "root")?,
                s2root: need(s2root, "s2root")?,
            },
            other => {
                return Err(Located::new(
                    kind.span,
                    format!("expected stage1, stage2 or nested, found `{other}`"),
                ))
            }
        };
        if has_s2root && !matches!(kind_v, ContextKind::Nested { .. }) {
            return Err(Located::new(span, "only a nested context has s2root="));
        }
        self.end_of_line()?;
        Ok(ContextDecl {
            name,
            kind: kind_v,
            span: kw.to(span),
        })
    }

    fn location(&mut self) -> R<Location> {
        if self.eat('[') {
            let pa = self.number("a physical address")?;
            self.punct(']', "`]`")?;
            return Ok(Location::Pa(pa));
        }
        let frame = self.word("a frame name or `[PA]`")?;
        self.punct('[', "`[` after the frame name")?;
        let index = self.number("a descriptor index")?;
        self.punct(']', "`]`")?;
        Ok(Location::Index { frame, index })
    }

    fn desc(&mut self) -> R<Spanned<DescExpr>> {
        let head =
            self.word("a descriptor (table, page, block, s2page, s2block, invalid or 0x...)")?;
        let mut span = head.span;
        let value = match head.value.as_str() {
            "invalid" => DescExpr::Raw(0),
            "l1cd" => {
                let t = self.addr_ref("the level-2 CD table (a frame name or address)")?;
                span = span.to(t.span);
                DescExpr::L1Cd(t)
            }
            "table" => {
                let t = self.addr_ref("the next-level table (a frame name or address)")?;
                span = span.to(t.span);
                DescExpr::Table(t)
            }
            kind @ ("page" | "block" | "s2page" | "s2block") => {
                let target = self.addr_ref("the output address (a frame name or address)")?;
                span = span.to(target.span);
                let s2 = kind.starts_with("s2");
                let block = kind.ends_with("block");
                let (mut writable, mut user, mut ng, mut read) = (false, false, false, true);
                let (mut extra, mut noaf) = (0u64, false);
                while !self.at_line_end() {
                    let f = self.word("a descriptor attribute")?;
                    span = span.to(f.span);
                    match (s2, f.value.as_str()) {
                        (false, "rw") => writable = true,
                        (false, "ro") => writable = false,
                        (false, "user") => user = true,
                        (false, "ng") => ng = true,
                        (false, "global") => ng = false,
                        (false, "uxn") => extra |= bits::UXN,
                        (false, "pxn") => extra |= bits::PXN,
                        (false, "xn") => extra |= bits::UXN | bits::PXN,
                        (true, "rw") => (read, writable) = (true, true),
                        (true, "ro" | "r") => (read, writable) = (true, false),
                        (true, "w") => (read, writable) = (false, true),
                        (true, "none") => (read, writable) = (false, false),
                        (true, "xn") => extra |= bits::UXN,
                        (_, "noaf") => noaf = true,
                        (_, "dbm") => extra |= bits::DBM,
                        (_, "contig") => extra |= bits::CONTIGUOUS,
                        (_, other) => {
                            let list = if s2 {
                                "r, w, rw, ro, none, xn, noaf, dbm, contig"
                            } else {
                                "rw, ro, user, ng, global, uxn, pxn, xn, noaf, dbm, contig"
                            };
                            return Err(Located::new(
                                f.span,
                                format!("unknown {kind} attribute `{other}`"),
                            )
                            .with_help(format!("expected one of: {list}")));
                        }
                    }
                }
                if s2 {
                    DescExpr::S2 {
                        block,
                        target,
                        read,
                        write: writable,
                        extra,
                        noaf,
                    }
                } else {
                    DescExpr::S1 {
                        block,
                        target,
                        writable,
                        user,
                        ng,
                        extra,
                        noaf,
                    }
                }
            }
            w => match number(w) {
                Some(n) => DescExpr::Raw(n),
                None => {
                    return Err(Located::new(
                        head.span,
                        format!("expected a descriptor (table, page, block, s2page, s2block, l1cd, invalid or a number), found `{w}`"),
                    ))
                }
            },
        };
        Ok(Spanned { value, span })
    }

    fn write_decl(&mut self) -> R<WriteDecl> {
        let start = self.peek().span;
        let at = self.location()?;
        self.punct('=', "`=` after the descriptor location")?;
        let value = self.desc()?;
        let span = start.to(value.span);
        self.end_of_line()?;
        Ok(WriteDecl { at, value, span })
    }

    /// `host VERSION`.
    fn host(&mut self) -> R<Spanned<tlbcheck_protocols::nested::Version>> {
        self.bump();
        let v = self.word("a host service version")?;
        let version = v
            .value
            .parse::<tlbcheck_protocols::nested::Version>()
            .map_err(|e| Located::new(v.span, e.to_string()))?;
        self.end_of_line()?;
        Ok(Spanned {
            value: version,
            span: v.span,
        })
    }

    /// `guest NAME vmid=N`.
    fn guest(&mut self) -> R<GuestDecl> {
        let kw = self.bump().span;
        let name = self.name("the guest's name")?;
        let args = self.args()?;
        let mut vmid = None;
        let mut span = kw.to(name.span);
        for a in &args {
            span = span.to(a.span);
            match (a.key.value.as_str(), a.values.as_slice()) {
                ("vmid", [v]) => vmid = Some(narrow::<u16>(v, "vmid", 0xffff)?),
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown guest setting `{}`", a.key.value),
                    )
                    .with_help("expected vmid=N"))
                }
            }
        }
        let vmid = vmid.ok_or_else(|| {
            Located::new(span, "a guest needs vmid=N").with_help("e.g. `guest g1 vmid=1`")
        })?;
        self.end_of_line()?;
        Ok(GuestDecl {
            name,
            vmid,
            vdevices: Vec::new(),
            span,
        })
    }

    /// `vdevice GUEST DEVICE vsid=N`.
    fn vdevice(&mut self, guests: &mut [GuestDecl]) -> R<()> {
        self.bump();
        let g = self.name("a guest's name")?;
        let device = self.name("a device's name")?;
        let args = self.args()?;
        let mut vsid = None;
        for a in &args {
            match (a.key.value.as_str(), a.values.as_slice()) {
                ("vsid", [v]) => vsid = Some(narrow::<u32>(v, "vsid", u64::from(u32::MAX))?),
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown vdevice setting `{}`", a.key.value),
                    )
                    .with_help("expected vsid=N"))
                }
            }
        }
        let vsid = vsid.ok_or_else(|| {
            Located::new(device.span, "a vdevice needs vsid=N")
                .with_help("e.g. `vdevice g1 dev0 vsid=1`")
        })?;
        let guest = guests
            .iter_mut()
            .find(|x| x.name.value == g.value)
            .ok_or_else(|| {
                Located::new(g.span, format!("no guest `{}` declared before", g.value))
            })?;
        if guest.vdevices.iter().any(|(v, _)| *v == vsid) {
            return Err(Located::new(
                device.span,
                format!("guest `{}` already has vSID {vsid:#x}", g.value),
            ));
        }
        guest.vdevices.push((vsid, device));
        self.end_of_line()
    }

    /// `thread NAME cpu=N ... {` or `vcpu NAME cpu=N vm=VM ... {`, then
    /// the steps.
    fn thread(&mut self) -> R<ThreadDecl> {
        let vcpu = matches!(&self.peek().tok, Tok::Word(w) if w == "vcpu");
        let kw = self.bump().span;
        let name = self.name("the thread's name")?;
        let args = self.args()?;
        let mut cpu = None;
        let mut vmid = 0;
        let mut owns = None;
        let mut guest = None;
        let mut vm = None;
        let mut span = kw.to(name.span);
        for a in &args {
            span = span.to(a.span);
            match (a.key.value.as_str(), a.values.as_slice()) {
                ("cpu", [v]) => {
                    cpu = Some(Spanned {
                        value: narrow::<u8>(v, "cpu", 7)?,
                        span: v.span,
                    })
                }
                ("vmid", [v]) if !vcpu => vmid = narrow(v, "vmid", 0xffff)?,
                ("vm", [v]) if vcpu => vm = Some(v.clone()),
                ("owns", vs) if !vs.is_empty() => {
                    owns = Some(
                        vs.iter()
                            .map(|v| narrow(v, "owned VMID", 0xffff))
                            .collect::<R<Vec<u16>>>()?,
                    )
                }
                ("guest", [g]) if !vcpu => guest = Some(g.clone()),
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown thread setting `{}`", a.key.value),
                    )
                    .with_help(if vcpu {
                        "a vcpu takes cpu=N, vm=VM and owns=V[,V...]"
                    } else {
                        "expected cpu=N, vmid=V, owns=V[,V...] and guest=NAME"
                    }))
                }
            }
        }
        let cpu = cpu.ok_or_else(|| {
            Located::new(span, "a thread needs cpu=N").with_help("e.g. `thread t0 cpu=0 {`")
        })?;
        if vcpu && vm.is_none() {
            return Err(
                Located::new(span, "a vcpu needs vm=VM").with_help("e.g. `vcpu v0 cpu=1 vm=g {`")
            );
        }
        self.punct('{', "`{` to open the thread's steps")?;
        self.end_of_line()?;
        self.in_guest = guest.is_some();
        let mut steps = Vec::new();
        loop {
            self.skip_newlines();
            match &self.peek().tok {
                Tok::Punct('}') => {
                    self.bump();
                    break;
                }
                Tok::Eof => {
                    return Err(Located::new(
                        self.peek().span,
                        format!("thread `{}` is not closed: expected `}}`", name.value),
                    ))
                }
                Tok::Word(w)
                    if matches!(
                        w.as_str(),
                        "thread"
                            | "vcpu"
                            | "expect"
                            | "bounds"
                            | "scenario"
                            | "machine"
                            | "frame"
                            | "context"
                    ) =>
                {
                    return Err(Located::new(
                        self.peek().span,
                        format!(
                            "thread `{}` is not closed: expected `}}` before `{w}`",
                            name.value
                        ),
                    ))
                }
                _ => steps.push(self.step()?),
            }
        }
        self.end_of_line()?;
        self.in_guest = false;
        Ok(ThreadDecl {
            name,
            cpu,
            vmid,
            owns,
            guest,
            vm,
            steps,
            span,
        })
    }

    fn step(&mut self) -> R<Spanned<Step>> {
        let first = self.peek().clone();
        let start = first.span;
        let step = match &first.tok {
            Tok::Punct('[') => self.store()?,
            Tok::Word(w) if self.peek2().tok == Tok::Punct('[') && w != "store" => self.store()?,
            Tok::Word(w) => {
                let w = w.clone();
                match w.as_str() {
                    "store" => {
                        self.bump();
                        self.store()?
                    }
                    "tlbi" => {
                        self.bump();
                        self.tlbi()?
                    }
                    "isb" => {
                        self.bump();
                        Step::Barrier("isb".to_string())
                    }
                    "dmb" => {
                        self.bump();
                        const WHAT: &str =
                            "a DMB kind (ish, ishst, ishld, nsh, nshst, nshld, osh, oshst, oshld, sy, st, ld)";
                        let mut k = self.word(WHAT)?;
                        k.value.make_ascii_lowercase();
                        const KINDS: &[&str] = &[
                            "ish", "ishst", "ishld", "nsh", "nshst", "nshld", "osh", "oshst", "oshld",
                            "sy", "st", "ld",
                        ];
                        if !KINDS.contains(&k.value.as_str()) {
                            return Err(Located::new(
                                k.span,
                                format!("expected {WHAT}, found `{}`", k.value),
                            ));
                        }
                        Step::Barrier(format!("dmb {}", k.value))
                    }
                    "dsb" => {
                        self.bump();
                        const WHAT: &str =
                            "a DSB kind (ish, ishst, nsh, nshst, osh, oshst, sy, st)";
                        let mut k = self.word(WHAT)?;
                        k.value.make_ascii_lowercase();
                        Step::Dsb(keyword(
                            &k,
                            WHAT,
                            &[
                                (&["ish"], Dsb::Ish),
                                (&["ishst"], Dsb::Ishst),
                                (&["nsh"], Dsb::Nsh),
                                (&["nshst"], Dsb::Nshst),
                                (&["osh"], Dsb::Osh),
                                (&["oshst"], Dsb::Oshst),
                                (&["sy"], Dsb::Sy),
                                (&["st"], Dsb::St),
                            ],
                        )?)
                    }
                    "free" => {
                        self.bump();
                        Step::Free(self.addr_ref("the frame to free")?)
                    }
                    "alloc" => {
                        self.bump();
                        let kind = self.word("an owner (s1-table, s2-table, data or smmu)")?;
                        let args = self.args()?;
                        let (owner, rest) = self.owner(args, &kind)?;
                        if let Some(a) = rest.first() {
                            return Err(Located::new(
                                a.span,
                                format!("unknown alloc setting `{}`", a.key.value),
                            ));
                        }
                        Step::Alloc(owner)
                    }
                    "rcu_read_lock" => {
                        self.bump();
                        Step::RcuLock
                    }
                    "rcu_read_unlock" => {
                        self.bump();
                        Step::RcuUnlock
                    }
                    "synchronize_rcu" => {
                        self.bump();
                        Step::SynchronizeRcu
                    }
                    "call_rcu" => {
                        self.bump();
                        if matches!(&self.peek().tok, Tok::Word(w) if w == "free") {
                            self.bump();
                        }
                        Step::CallRcuFree(self.addr_ref("the frame to free after a grace period")?)
                    }
                    "rely-read-only" | "rely_read_only" => {
                        self.bump();
                        let ctx = self.word("a context name")?;
                        let va = self.number("an address")?.value;
                        Step::RelyReadOnly { ctx, va }
                    }
                    "retry" => {
                        self.bump();
                        let write = self.read_or_write()?;
                        let ctx = self.word("a context name")?;
                        let va = self.number("an address")?.value;
                        Step::Retry { write, ctx, va }
                    }
                    "access" => {
                        self.bump();
                        let write = self.read_or_write()?;
                        let ctx = self.word("a context name")?;
                        let va = self.number("an address")?.value;
                        Step::Access { write, ctx, va }
                    }
                    "smmu" => {
                        self.bump();
                        self.smmu_step()?
                    }
                    "cmd_sync" => {
                        self.bump();
                        Step::CmdSync
                    }
                    "device" => {
                        self.bump();
                        self.device_step()?
                    }
                    "resume" => {
                        self.bump();
                        Step::Resume(self.word("a device name")?)
                    }
                    "await-fault" | "await_fault" => {
                        self.bump();
                        Step::AwaitFault(self.word("a device name")?)
                    }
                    "rely-config" | "rely_config" => {
                        self.bump();
                        Step::RelyConfig(self.word("a device name")?)
                    }
                    "munmap" | "madvise-dontneed" | "write-fault" => {
                        self.bump();
                        let kind = match w.as_str() {
                            "munmap" => KernelStepKind::Munmap,
                            "madvise-dontneed" => KernelStepKind::MadviseDontneed,
                            _ => KernelStepKind::WriteFault,
                        };
                        let process = self.word("a process name")?;
                        let addr = self.number("an address")?;
                        let len = if kind == KernelStepKind::WriteFault {
                            None
                        } else {
                            Some(self.number("a length in bytes")?)
                        };
                        Step::Kernel(KernelStep {
                            len,
                            ..KernelStep::new(kind, process, addr)
                        })
                    }
                    "mremap" => {
                        self.bump();
                        let process = self.word("a process name")?;
                        let addr = self.number("the old address")?;
                        let len = self.number("a length in bytes")?;
                        let to = self.number("the new address")?;
                        Step::Kernel(KernelStep {
                            len: Some(len),
                            to: Some(to),
                            ..KernelStep::new(KernelStepKind::Mremap, process, addr)
                        })
                    }
                    "exit" => {
                        self.bump();
                        let process = self.word("a process name")?;
                        let at = Spanned {
                            value: 0,
                            span: process.span,
                        };
                        Step::Kernel(KernelStep::new(KernelStepKind::Exit, process, at))
                    }
                    "mprotect" => {
                        self.bump();
                        let process = self.word("a process name")?;
                        let addr = self.number("an address")?;
                        let len = self.number("a length in bytes")?;
                        let prot = self.word("`ro` or `rw`")?;
                        let writable = match prot.value.as_str() {
                            "ro" => false,
                            "rw" => true,
                            _ => {
                                return Err(Located::new(
                                    prot.span,
                                    format!("expected `ro` or `rw`, found `{}`", prot.value),
                                ))
                            }
                        };
                        Step::Kernel(KernelStep {
                            len: Some(len),
                            writable: Some(writable),
                            ..KernelStep::new(KernelStepKind::Mprotect, process, addr)
                        })
                    }
                    "mmap" => {
                        self.bump();
                        let process = self.word("a process name")?;
                        let addr = self.number("an address")?;
                        let len = self.number("a length in bytes")?;
                        let writable = self.rw()?;
                        Step::Kernel(KernelStep {
                            len: Some(len),
                            writable: Some(writable),
                            ..KernelStep::new(KernelStepKind::Mmap, process, addr)
                        })
                    }
                    "touch" => {
                        self.bump();
                        let process = self.word("a process name")?;
                        let addr = self.number("an address")?;
                        let w = self.word("`read` or `write`")?;
                        let write =
                            keyword(&w, "`read` or `write`", &[(&["read"], false), (&["write"], true)])?;
                        Step::Kernel(KernelStep {
                            writable: Some(write),
                            ..KernelStep::new(KernelStepKind::Touch, process, addr)
                        })
                    }
                    "migrate" => {
                        self.bump();
                        let process = self.word("a process name")?;
                        let addr = self.number("the page's address")?;
                        let w = self.word("`sync` or `async`")?;
                        let batch = keyword(
                            &w,
                            "`sync` or `async`",
                            &[(&["sync"], false), (&["async"], true)],
                        )?;
                        Step::Kernel(KernelStep {
                            writable: Some(batch),
                            ..KernelStep::new(KernelStepKind::Migrate, process, addr)
                        })
                    }
                    "reclaim" => {
                        self.bump();
                        let process = self.word("a process name")?;
                        let addr = self.number("the page's address")?;
                        Step::Kernel(KernelStep::new(KernelStepKind::Reclaim, process, addr))
                    }
                    "mirror-fault" => {
                        self.bump();
                        let process = self.word("a mirror's name")?;
                        let addr = self.number("an address")?;
                        Step::Kernel(KernelStep::new(KernelStepKind::MirrorFault, process, addr))
                    }
                    "fork" => {
                        self.bump();
                        let process = self.word("a process name")?;
                        let child = self.word("the child process's name")?;
                        let at = Spanned {
                            value: 0,
                            span: process.span,
                        };
                        Step::Kernel(KernelStep {
                            child: Some(child),
                            ..KernelStep::new(KernelStepKind::Fork, process, at)
                        })
                    }
                    "s2" => {
                        self.bump();
                        self.s2_step()?
                    }
                    "dma" => {
                        self.bump();
                        self.dma_step()?
                    }
                    r if RESERVED_STEPS.contains(&r) => {
                        return Err(Located::new(
                            first.span,
                            format!("`{r}` is a high-level operation reserved for a later version; low-level scenarios spell out its steps"),
                        )
                        .with_help("see \"Reserved words\" in docs/scenario-format.md"))
                    }
                    _ => return Err(expected(
                        "a step (FRAME[i] = ..., store, tlbi, dsb, free, alloc, rcu_read_lock, rcu_read_unlock, call_rcu, synchronize_rcu, rely-read-only, retry, access, smmu, cmd_sync, device, await-fault, resume, rely-config, munmap, madvise-dontneed, write-fault, fork, mirror-fault, mremap, mprotect, reclaim, exit, mmap, touch, migrate, s2, dma)",
                        &first,
                    )),
                }
            }
            _ => return Err(expected("a step or `}`", &first)),
        };
        let end = self.toks[self.pos.saturating_sub(1)].span;
        let span = start.to(end);
        self.end_of_line()?;
        Ok(Spanned { value: step, span })
    }

    /// `vm NAME vmid=N [root=FRAME]`.
    fn vm(&mut self) -> R<VmDecl> {
        let kw = self.bump().span;
        let name = self.name("the VM's name")?;
        let mut span = kw.to(name.span);
        let mut vmid = None;
        let mut root = None;
        let (mut backs, mut ipa, mut hva, mut len) = (None, None, None, None);
        for a in self.args()? {
            span = span.to(a.span);
            match (a.key.value.as_str(), a.values.as_slice()) {
                ("vmid", [v]) => {
                    vmid = Some(Spanned {
                        value: narrow::<u16>(v, "vmid", 0xffff)?,
                        span: v.span,
                    })
                }
                ("root", [v]) => root = Some(v.clone()),
                ("backs", [v]) => backs = Some(v.clone()),
                (k @ ("ipa" | "hva" | "len"), [v]) => {
                    let n = Spanned {
                        value: num_of(v, k)?,
                        span: v.span,
                    };
                    match k {
                        "ipa" => ipa = Some(n),
                        "hva" => hva = Some(n),
                        _ => len = Some(n),
                    }
                }
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown vm setting `{}`", a.key.value),
                    )
                    .with_help("expected vmid=N, root=FRAME, backs=PROCESS, ipa=, hva= and len="))
                }
            }
        }
        let vmid = vmid.ok_or_else(|| {
            Located::new(span, "a vm needs vmid=N").with_help("e.g. `vm g vmid=1`")
        })?;
        let slot = match (backs, ipa, hva, len) {
            (None, None, None, None) => None,
            (Some(process), Some(ipa), Some(hva), Some(len)) => Some(SlotDecl {
                process,
                ipa,
                hva,
                len,
            }),
            _ => {
                return Err(Located::new(
                    span,
                    "a memslot needs backs=PROCESS, ipa=, hva= and len= together",
                )
                .with_help("e.g. `vm g vmid=1 backs=p ipa=0x0 hva=0x10000 len=0x1000`"))
            }
        };
        self.end_of_line()?;
        Ok(VmDecl {
            name,
            vmid,
            root,
            slot,
            span,
        })
    }

    /// `s2-map VM IPA LEN PA rw|ro`.
    /// `map CTX VA TARGET rw|ro [user] [ng] [level=N]`.
    fn map(&mut self) -> R<MapDecl> {
        let kw = self.bump().span;
        let ctx = self.word("a context name")?;
        let va = self.number("the input address")?;
        let target = self.addr_ref("the output frame or address")?;
        let writable = self.rw()?;
        let (mut user, mut ng, mut level) = (false, false, None);
        for a in self.args()? {
            match (a.key.value.as_str(), a.values.as_slice()) {
                ("user", []) => user = true,
                ("ng", []) => ng = true,
                ("level", [v]) => match number(&v.value) {
                    Some(n @ 0..=3) => {
                        level = Some(Spanned {
                            value: n as u8,
                            span: v.span,
                        })
                    }
                    _ => return Err(Located::new(v.span, "expected a level 0..3")),
                },
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown `map` attribute `{}`", a.key.value),
                    )
                    .with_help("`map` takes `user`, `ng` and `level=N`"))
                }
            }
        }
        let span = kw.to(self.toks[self.pos.saturating_sub(1)].span);
        self.end_of_line()?;
        Ok(MapDecl {
            ctx,
            va,
            target,
            writable,
            user,
            ng,
            level,
            span,
        })
    }

    fn s2_map(&mut self) -> R<S2MapDecl> {
        let kw = self.bump().span;
        let vm = self.word("a VM name")?;
        let ipa = self.number("the IPA")?;
        let len = self.number("a length in bytes")?;
        let pa = self.number("the output address")?;
        let write = self.rw()?;
        let span = kw.to(self.toks[self.pos.saturating_sub(1)].span);
        self.end_of_line()?;
        Ok(S2MapDecl {
            vm,
            ipa,
            len,
            pa,
            write,
            span,
        })
    }

    /// `s2 map|unmap|wrprotect|relax|age VM IPA ...` (after `s2`).
    fn s2_step(&mut self) -> R<Step> {
        const WHAT: &str = "a stage-2 operation (map, unmap, wrprotect, relax, age)";
        let w = self.word(WHAT)?;
        let kind = keyword(
            &w,
            WHAT,
            &[
                (&["map"], S2StepKind::Map),
                (&["unmap"], S2StepKind::Unmap),
                (&["wrprotect"], S2StepKind::Wrprotect),
                (&["relax"], S2StepKind::Relax),
                (&["age"], S2StepKind::Age),
            ],
        )?;
        let vm = self.word("a VM name")?;
        let ipa = self.number("the IPA")?;
        let len = match kind {
            S2StepKind::Map | S2StepKind::Unmap | S2StepKind::Wrprotect => {
                Some(self.number("a length in bytes")?)
            }
            S2StepKind::Relax | S2StepKind::Age => None,
        };
        let (pa, write) = if kind == S2StepKind::Map {
            (Some(self.number("the output address")?), self.rw()?)
        } else {
            (None, false)
        };
        Ok(Step::S2(S2Step {
            kind,
            vm,
            ipa,
            len,
            pa,
            write,
        }))
    }

    fn store(&mut self) -> R<Step> {
        let at = self.location()?;
        self.punct('=', "`=` after the descriptor location")?;
        let value = self.desc()?;
        Ok(Step::Store { at, value })
    }

    fn fields(&mut self) -> R<Vec<Field>> {
        let mut out = Vec::new();
        for a in self.args()? {
            match a.values.as_slice() {
                [v] => out.push(Field {
                    key: Spanned {
                        value: a.key.value.to_ascii_lowercase(),
                        span: a.key.span,
                    },
                    value: v.clone(),
                }),
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("expected `{}=VALUE`", a.key.value),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn tlbi(&mut self) -> R<Step> {
        let m = self.word("a TLBI mnemonic (e.g. VAE1IS)")?;
        let tlbi: Tlbi = m
            .value
            .parse()
            .map_err(|e: tlbcheck_hw::cpu::tlbi::ParseTlbiError| {
                Located::new(m.span, e.to_string())
            })?;
        let start = self.peek().span;
        let operand = match &self.peek().tok {
            Tok::Newline | Tok::Eof => TlbiOperandExpr::None,
            Tok::Word(w) if number(w).is_some() && self.peek2().tok != Tok::Punct('=') => {
                let n = self.number("an operand")?.value;
                TlbiOperandExpr::Raw(n)
            }
            _ => TlbiOperandExpr::Fields(self.fields()?),
        };
        let end = self.toks[self.pos.saturating_sub(1)].span;
        let span = if operand == TlbiOperandExpr::None {
            m.span
        } else {
            start.to(end)
        };
        Ok(Step::Tlbi {
            tlbi: Spanned {
                value: tlbi,
                span: m.span,
            },
            operand: Spanned {
                value: operand,
                span,
            },
        })
    }

    fn smmu_step(&mut self) -> R<Step> {
        let w = self.word("`cmd`, `cmd_sync` or `skip_err`")?;
        match w.value.as_str() {
            "cmd_sync" => Ok(Step::CmdSync),
            "skip_err" => Ok(Step::CmdqSkipErr),
            "cmd" => {
                let head =
                    self.word("an SMMU command name (e.g. CMD_TLBI_NH_VA) or 0xDW0 0xDW1")?;
                if let Some(dw0) = number(&head.value) {
                    let dw1 = self.number("the second command word (dw1)")?;
                    if self.in_guest {
                        return Ok(Step::GuestCmd([dw0, dw1.value]));
                    }
                    // Software can write any 16 bytes: words the decoder
                    // refuses reach the queue, which stops on them.
                    return Ok(match Command::decode([dw0, dw1.value]) {
                        Ok(c) => Step::SmmuCmd(c),
                        Err(_) => Step::SmmuIllegal {
                            words: [dw0, dw1.value],
                            blame: head.span.to(dw1.span),
                        },
                    });
                }
                if head.value.eq_ignore_ascii_case("CMD_SYNC")
                    || head.value.eq_ignore_ascii_case("SYNC")
                {
                    // A CMD_SYNC on its own is the completion step.
                    let f = self.fields()?;
                    if let Some(x) = f.first() {
                        return Err(Located::new(
                            x.key.span,
                            "use `cmd_sync` (CMD_SYNC fields are not modelled)",
                        ));
                    }
                    return Ok(Step::CmdSync);
                }
                let fields = self.fields()?;
                let pairs = Field::pairs(&fields);
                let cmd = smmu_unchecked_from_fields(&head.value, &pairs)
                    .map_err(|e| Field::locate(&fields, e, head.span))?;
                Ok(match strict_smmu(cmd, &pairs) {
                    Ok(c) => Step::SmmuCmd(c),
                    Err((field, _)) => Step::SmmuIllegal {
                        words: cmd.encode(),
                        blame: field
                            .map_or(head.span, |i| fields[i].key.span.to(fields[i].value.span)),
                    },
                })
            }
            other => Err(Located::new(
                w.span,
                format!("expected `cmd`, `cmd_sync` or `skip_err` after `smmu`, found `{other}`"),
            )),
        }
    }

    /// `read` or `write`: whether an access writes.
    fn read_or_write(&mut self) -> R<bool> {
        const WHAT: &str = "`read` or `write`";
        let rw = self.word(WHAT)?;
        keyword(&rw, WHAT, &[(&["read"], false), (&["write"], true)])
    }

    fn device_step(&mut self) -> R<Step> {
        let device = self.word("a device name")?;
        let kw = self.word("`access`")?;
        if kw.value != "access" {
            return Err(Located::new(
                kw.span,
                format!("expected `access`, found `{}`", kw.value),
            ));
        }
        let write = self.read_or_write()?;
        let addr = self.number("an address")?.value;
        let mut ssid = None;
        for f in self.fields()? {
            if f.key.value == "ssid" {
                ssid = Some(narrow(&f.value, "ssid", (1 << 20) - 1)?);
            } else {
                return Err(Located::new(
                    f.key.span,
                    format!(
                        "unknown device access setting `{}` (expected ssid=)",
                        f.key.value
                    ),
                ));
            }
        }
        Ok(Step::DeviceAccess(DeviceAccess {
            device,
            write,
            addr,
            ssid,
        }))
    }

    /// `log2size=N` with the range the structure allows.
    fn log2size(v: &Spanned<String>, max: u64) -> R<Spanned<u8>> {
        Ok(Spanned {
            value: narrow(v, "log2size", max)?,
            span: v.span,
        })
    }

    /// `stream linear|2-level [split=S] [log2size=N] [at=FRAME]`.
    fn stream(&mut self) -> R<StreamDecl> {
        let kw = self.bump().span;
        let fmt = self.word("the Stream table format (`linear` or `2-level`)")?;
        let two_level = keyword(
            &fmt,
            "`linear` or `2-level`",
            &[
                (&["linear"], false),
                (&["2-level", "2level", "two-level"], true),
            ],
        )?;
        let mut d = StreamDecl {
            split: None,
            log2size: None,
            at: None,
            span: kw.to(fmt.span),
        };
        let mut split = None;
        for a in self.args()? {
            d.span = d.span.to(a.span);
            match a.key.value.as_str() {
                // SMMU_IDR1.SIDSIZE is at most 32; the model keeps it small.
                "log2size" => d.log2size = Some(Self::log2size(one(&a, "a number")?, 16)?),
                "at" => d.at = Some(one(&a, "a frame name")?.clone()),
                "split" if two_level => {
                    let v = one(&a, "6, 8 or 10")?;
                    let n: u8 = narrow(v, "split", 10)?;
                    if !matches!(n, 6 | 8 | 10) {
                        return Err(Located::new(
                            v.span,
                            format!(
                                "SPLIT = {n} is not supported: expected 6, 8 or 10 (SMMUv3 6.3.24)"
                            ),
                        ));
                    }
                    split = Some(n);
                }
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown stream setting `{}`", a.key.value),
                    )
                    .with_help(if two_level {
                        "expected split=6|8|10, log2size=N and at=FRAME"
                    } else {
                        "expected log2size=N and at=FRAME (split= is for a 2-level table)"
                    }))
                }
            }
        }
        if two_level {
            d.split = Some(split.ok_or_else(|| {
                Located::new(fmt.span, "a 2-level Stream table needs split=6, 8 or 10")
            })?);
        }
        self.end_of_line()?;
        Ok(d)
    }

    /// `queue cmdq|eventq [at=FRAME] [log2size=N]`.
    fn queue(&mut self) -> R<QueueDecl> {
        let kw = self.bump().span;
        const WHAT: &str = "`cmdq` or `eventq`";
        let which = self.word(WHAT)?;
        let kind = keyword(
            &which,
            WHAT,
            &[
                (&["cmdq", "cmd"], QueueKind::Cmd),
                (&["eventq", "evtq", "event"], QueueKind::Event),
            ],
        )?;
        let mut d = QueueDecl {
            kind,
            at: None,
            log2size: None,
            span: kw.to(which.span),
        };
        for a in self.args()? {
            d.span = d.span.to(a.span);
            match a.key.value.as_str() {
                // SMMU_IDR1.CMDQS / EVENTQS are at most 19; small rings keep
                // states small, and 1 entry is a legal (if useless) ring.
                "log2size" => d.log2size = Some(Self::log2size(one(&a, "a number")?, 19)?),
                "at" => d.at = Some(one(&a, "a frame name")?.clone()),
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown queue setting `{}`", a.key.value),
                    )
                    .with_help("expected at=FRAME and log2size=N"))
                }
            }
        }
        self.end_of_line()?;
        Ok(d)
    }

    /// `ste SID CONFIG [cd=REF] [s1fmt=..] [s1cdmax=N] [s1dss=..] [s1stalld]
    /// [vmid=V] [s2root=REF] [eats=N] [s2stall]`.
    fn ste(&mut self) -> R<SteDecl> {
        let kw = self.bump().span;
        let sid_w = self.word("a StreamID")?;
        let sid = Spanned {
            value: narrow(&sid_w, "the StreamID", u64::from(u32::MAX))?,
            span: sid_w.span,
        };
        const WHAT: &str = "an STE config (invalid, abort, bypass, s1, s2 or nested)";
        let cfg = self.word(WHAT)?;
        let config = keyword(
            &cfg,
            WHAT,
            &[
                (&["invalid"], SteConfig::Invalid),
                (&["abort"], SteConfig::Abort),
                (&["bypass"], SteConfig::Bypass),
                (&["s1", "stage1"], SteConfig::S1),
                (&["s2", "stage2"], SteConfig::S2),
                (&["nested"], SteConfig::Nested),
            ],
        )?;
        let mut d = SteDecl {
            sid,
            config,
            cd: None,
            s1fmt: S1Fmt::Linear,
            s1cdmax: 0,
            s1dss: S1Dss::Terminate,
            s1stalld: false,
            vmid: 0,
            s2root: None,
            eats: 0,
            s2stall: false,
            span: kw.to(cfg.span),
        };
        let s1 = matches!(config, SteConfig::S1 | SteConfig::Nested);
        let s2 = matches!(config, SteConfig::S2 | SteConfig::Nested);
        let stage_only = |a: &Arg, ok: bool, stage: &str| -> R<()> {
            if ok {
                Ok(())
            } else {
                Err(Located::new(
                    a.span,
                    format!(
                        "`{}` is a {stage} setting, but this STE is `{}`",
                        a.key.value, cfg.value
                    ),
                ))
            }
        };
        for a in self.args()? {
            d.span = d.span.to(a.span);
            match a.key.value.as_str() {
                "cd" | "s1contextptr" => {
                    stage_only(&a, s1, "stage-1")?;
                    d.cd = Some(ref_of(one(&a, "a CD table frame")?));
                }
                "s1fmt" => {
                    stage_only(&a, s1, "stage-1")?;
                    let v = one(&a, "linear, 2l-4k or 2l-64k")?;
                    d.s1fmt = keyword(
                        v,
                        "s1fmt linear, 2l-4k or 2l-64k",
                        &[
                            (&["linear", "0"], S1Fmt::Linear),
                            (&["2l-4k", "1"], S1Fmt::TwoLevel4K),
                            (&["2l-64k", "2"], S1Fmt::TwoLevel64K),
                        ],
                    )?;
                }
                "s1cdmax" => {
                    stage_only(&a, s1, "stage-1")?;
                    d.s1cdmax = narrow(one(&a, "a number")?, "s1cdmax", 20)?;
                }
                "s1dss" => {
                    stage_only(&a, s1, "stage-1")?;
                    let v = one(&a, "terminate, bypass or ssid0")?;
                    d.s1dss = keyword(
                        v,
                        "s1dss terminate, bypass or ssid0",
                        &[
                            (&["terminate", "0"], S1Dss::Terminate),
                            (&["bypass", "1"], S1Dss::Bypass),
                            (&["ssid0", "2"], S1Dss::Ssid0),
                        ],
                    )?;
                }
                "s1stalld" => {
                    stage_only(&a, s1, "stage-1")?;
                    d.s1stalld = flag(&a)?;
                }
                "vmid" | "s2vmid" => {
                    // Bypass and stage-1-only streams may still carry a VMID
                    // to tag their TLB entries, so allow it for every config.
                    d.vmid = narrow(one(&a, "a VMID")?, "vmid", 0xffff)?;
                }
                "s2root" | "s2ttb" => {
                    stage_only(&a, s2, "stage-2")?;
                    d.s2root = Some(ref_of(one(&a, "a stage-2 table frame or context")?));
                }
                "s2stall" | "s2s" => {
                    stage_only(&a, s2, "stage-2")?;
                    d.s2stall = flag(&a)?;
                }
                "eats" => {
                    let v = one(&a, "0..3")?;
                    d.eats = narrow(v, "eats", 3)?;
                }
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown STE setting `{}`", a.key.value),
                    )
                    .with_help("expected cd=, s1fmt=, s1cdmax=, s1dss=, s1stalld, vmid=, s2root=, s2stall or eats="))
                }
            }
        }
        if s1 && d.cd.is_none() {
            return Err(Located::new(
                cfg.span,
                format!("a `{}` STE needs cd=FRAME (its S1ContextPtr)", cfg.value),
            ));
        }
        if s2 && d.s2root.is_none() {
            return Err(Located::new(
                cfg.span,
                format!(
                    "a `{}` STE needs s2root= (a stage-2 table frame or context)",
                    cfg.value
                ),
            ));
        }
        self.end_of_line()?;
        Ok(d)
    }

    /// `cd FRAME[SLOT] [ctx=C] [asid=A] [ttb0=REF] [granule=G] [stall]
    /// [aset] [invalid]`.
    fn cd(&mut self) -> R<CdDecl> {
        let kw = self.bump().span;
        let frame = self.word("a CD table frame name")?;
        self.punct('[', "`[` after the CD table frame (`cd FRAME[SSID] ...`)")?;
        let slot = self.number("the CD's slot (its SubstreamID)")?;
        let close = self.punct(']', "`]`")?;
        let mut d = CdDecl {
            frame,
            slot,
            ctx: None,
            asid: None,
            ttb0: None,
            granule: None,
            stall: false,
            aset: false,
            invalid: false,
            span: kw.to(close),
        };
        for a in self.args()? {
            d.span = d.span.to(a.span);
            match a.key.value.as_str() {
                "ctx" | "context" => d.ctx = Some(one(&a, "a context name")?.clone()),
                "asid" => {
                    let v = one(&a, "an ASID")?;
                    d.asid = Some(Spanned {
                        value: narrow(v, "asid", 0xffff)?,
                        span: v.span,
                    });
                }
                "ttb0" => d.ttb0 = Some(ref_of(one(&a, "a table frame or context")?)),
                "granule" | "tg0" => {
                    let v = one(&a, "4k, 16k or 64k")?;
                    d.granule = Some(granule_of(v)?);
                }
                "stall" | "s" => d.stall = flag(&a)?,
                "aset" => d.aset = flag(&a)?,
                "invalid" => d.invalid = flag(&a)?,
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown CD setting `{}`", a.key.value),
                    )
                    .with_help("expected ctx=, asid=, ttb0=, granule=, stall, aset or invalid"))
                }
            }
        }
        if !d.invalid && d.ctx.is_none() && (d.asid.is_none() || d.ttb0.is_none()) {
            return Err(Located::new(
                d.span,
                "a valid CD needs ctx=CONTEXT, or both asid= and ttb0=",
            )
            .with_help("e.g. `cd CDT[0] ctx=p1` shares process p1's page table (SVA)"));
        }
        self.end_of_line()?;
        Ok(d)
    }

    /// `device NAME sid=S [ssid=N] [ats] [pri]`.
    fn device(&mut self) -> R<DeviceDecl> {
        let kw = self.bump().span;
        let name = self.name("the device's name")?;
        let mut sid = None;
        let mut d = DeviceDecl {
            name,
            sid: Spanned { value: 0, span: kw },
            ssid: None,
            ats: false,
            pri: false,
            span: kw,
        };
        d.span = kw.to(d.name.span);
        for a in self.args()? {
            d.span = d.span.to(a.span);
            match a.key.value.as_str() {
                "sid" => {
                    let v = one(&a, "a StreamID")?;
                    sid = Some(Spanned {
                        value: narrow(v, "sid", u64::from(u32::MAX))?,
                        span: v.span,
                    });
                }
                "ssid" => {
                    let v = one(&a, "a SubstreamID")?;
                    d.ssid = Some(Spanned {
                        value: narrow(v, "ssid", (1 << 20) - 1)?,
                        span: v.span,
                    });
                }
                "ats" => d.ats = flag(&a)?,
                "pri" => d.pri = flag(&a)?,
                _ => {
                    return Err(Located::new(
                        a.span,
                        format!("unknown device setting `{}`", a.key.value),
                    )
                    .with_help("expected sid=S, ssid=N, ats and pri"))
                }
            }
        }
        d.sid = sid.ok_or_else(|| {
            Located::new(d.span, "a device needs sid=S (its StreamID)")
                .with_help("e.g. `device dev0 sid=3`")
        })?;
        self.end_of_line()?;
        Ok(d)
    }

    fn bounds(&mut self) -> R<BoundsDecl> {
        self.bump();
        let mut b = BoundsDecl::default();
        for a in self.args()? {
            match (a.key.value.as_str(), a.values.as_slice()) {
                ("depth", [v]) => b.depth = Some(narrow(v, "depth", u64::from(u32::MAX))?),
                ("states", [v]) => b.states = Some(num_of(v, "states")?),
                _ => {
                    return Err(
                        Located::new(a.span, format!("unknown bound `{}`", a.key.value))
                            .with_help("expected depth=N and states=N"),
                    )
                }
            }
        }
        self.end_of_line()?;
        Ok(b)
    }

    fn expect(&mut self) -> R<Spanned<Expect>> {
        let kw = self.bump().span;
        let w = self.word("`ok` or `violation NAME`")?;
        let (value, span) = match w.value.as_str() {
            "ok" => (Expect::Ok, kw.to(w.span)),
            "violation" => {
                let n = self.word("a violation name (e.g. walk-cache-uaf)")?;
                let k: ViolationKind = n.value.parse().map_err(
                    |e: tlbcheck_checker::violation::UnknownViolation| {
                        Located::new(n.span, e.to_string())
                    },
                )?;
                (Expect::Violation(k), kw.to(n.span))
            }
            other => {
                return Err(Located::new(
                    w.span,
                    format!("expected `ok` or `violation NAME`, found `{other}`"),
                ))
            }
        };
        self.end_of_line()?;
        Ok(Spanned { value, span })
    }
}

/// The DMA API statements and steps.
impl Parser {
    /// `dma-domain CONTEXT strict|lazy [linux-6.1|linux-6.12]`.
    fn dma_domain(&mut self) -> R<DmaDomainDecl> {
        let span = self.bump().span;
        let context = self.word("a stage-1 context name")?;
        let mode = self.word("`strict` or `lazy`")?;
        let lazy = match mode.value.as_str() {
            "strict" => false,
            "lazy" => true,
            _ => {
                return Err(Located::new(
                    mode.span,
                    format!("expected `strict` or `lazy`, found `{}`", mode.value),
                ))
            }
        };
        let mut kernel = tlbcheck_protocols::linux::dma::DmaKernel::Linux6_12;
        if let Tok::Word(_) = self.peek().tok {
            let k = self.word("a kernel version")?;
            kernel = k
                .value
                .parse()
                .map_err(|e: tlbcheck_protocols::version::UnknownName| {
                    Located::new(k.span, e.to_string())
                })?;
        }
        self.end_of_line()?;
        Ok(DmaDomainDecl {
            context,
            lazy,
            kernel,
            span,
        })
    }

    /// `dma unmap CONTEXT IOVA LEN` or `dma flush CONTEXT`.
    fn dma_step(&mut self) -> R<Step> {
        let what = self.word("`unmap` or `flush`")?;
        let unmap = match what.value.as_str() {
            "unmap" => true,
            "flush" => false,
            _ => {
                return Err(Located::new(
                    what.span,
                    format!("expected `unmap` or `flush`, found `{}`", what.value),
                ))
            }
        };
        let context = self.word("a DMA domain's context")?;
        let mut each = None;
        let unmap = if unmap {
            let iova = self.number("the first IOVA")?;
            let len = self.number("a length in bytes")?;
            for a in self.args()? {
                match (a.key.value.as_str(), a.values.as_slice()) {
                    ("each", [v]) => {
                        let n = number(&v.value).ok_or_else(|| {
                            Located::new(v.span, format!("`{}` is not a number", v.value))
                        })?;
                        each = Some(Spanned {
                            value: n,
                            span: v.span,
                        });
                    }
                    _ => {
                        return Err(Located::new(
                            a.span,
                            format!(
                                "unknown dma unmap setting `{}` (expected each=N)",
                                a.key.value
                            ),
                        ))
                    }
                }
            }
            Some((iova, len))
        } else {
            None
        };
        Ok(Step::Dma(DmaStep {
            context,
            unmap,
            each,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(src: &str) -> String {
        parse(src).unwrap_err().message
    }

    /// Words from a fixed list: the message names the list and the word.
    #[test]
    fn unknown_keywords_name_what_was_expected() {
        let head = "scenario s\nsmmu\n";
        for (line, want) in [
            (
                "ste 1 s1 cd=C s1fmt=x",
                "expected s1fmt linear, 2l-4k or 2l-64k, found `x`",
            ),
            (
                "ste 1 s1 cd=C s1dss=x",
                "expected s1dss terminate, bypass or ssid0, found `x`",
            ),
            ("stream x", "expected `linear` or `2-level`, found `x`"),
            ("queue x", "expected `cmdq` or `eventq`, found `x`"),
            (
                "thread t cpu=0 {\n dsb LD\n}",
                "expected a DSB kind (ish, ishst, nsh, nshst, osh, oshst, sy, st), found `ld`",
            ),
            (
                "thread t cpu=0 {\n retry x c 0\n}",
                "expected `read` or `write`, found `x`",
            ),
            (
                "thread t cpu=0 {\n access load c 0\n}",
                "expected `read` or `write`, found `load`",
            ),
        ] {
            assert_eq!(error_of(&format!("{head}{line}\nexpect ok\n")), want);
        }
        let s = parse("scenario s\nthread t cpu=0 {\n dsb ISHST\n}\nexpect ok\n").unwrap();
        assert_eq!(s.threads[0].steps[0].value, Step::Dsb(Dsb::Ishst));
        let s =
            parse("scenario s\nthread t cpu=0 {\n access write c 0x2000\n}\nexpect ok\n").unwrap();
        assert!(matches!(
            &s.threads[0].steps[0].value,
            Step::Access { write: true, ctx, va: 0x2000 } if ctx.value == "c"
        ));
    }
}
