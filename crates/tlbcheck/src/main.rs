//! The `tlbcheck` command line: check scenarios, explain and replay
//! counterexamples, encode and decode TLBI operands and SMMU commands.
//!
//! Exit codes everywhere: 0 = as expected, 1 = an expectation does not hold
//! (or a replay does not reproduce), 2 = bad input, 3 = inconclusive (a
//! bound or random sampling stopped a search before it decided anything,
//! and nothing failed).

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tlbcheck::check::{
    check_with, replay, Options, ReplayFailure, Report, Status, TraceFile, TRACE_FORMAT,
};
use tlbcheck::codec::{smmu_fields, smmu_from_fields, tlbi_fields, tlbi_from_fields};
use tlbcheck::scenario::{load, Loaded, EXTENSION};
use tlbcheck_checker::explore::Progress;
use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::cpu::tlbi::Tlbi;
use tlbcheck_hw::smmu::cmd::Command;

/// Checks TLB-invalidation protocols against the worst caching the Arm
/// architecture allows.
///
/// Exit codes: 0 every expectation holds; 1 some expectation does not hold
/// (or a replay does not reproduce, or an audit finds a forbidden IOTLB
/// hit); 2 bad input; 3 inconclusive: a depth, state, memory or time bound,
/// or random mode, stopped a search before it proved the scenario clean or
/// found a violation (`ok` is printed only for complete explorations), or
/// an audited trace has no lookups to audit.
/// 141 when standard output was closed by its reader (as `| head` does).
#[derive(Parser, Debug)]
#[command(name = "tlbcheck", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check scenario files (or directories, searched recursively for
    /// *.tlb files) against their `expect` lines.
    Check {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// One JSON object per scenario instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Show the counterexample of one scenario (or the statement of what
    /// was proved).
    Explain {
        /// The scenario file.
        file: PathBuf,
        /// Print the replayable trace as JSON (scenario source included).
        #[arg(long)]
        json: bool,
        /// Write the counterexample to FILE as one self-contained HTML page
        /// (a lane per agent, a column per step) instead of printing it.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run one interleaving and print the instruction stream it issued:
    /// TLBIs and their operands, DSBs, SMMU commands and their words,
    /// stores and frees, under the kernel operation that emitted them.
    ///
    /// By default each thread runs to completion in declaration order (a
    /// thread that cannot run is skipped until it can; ready RCU callbacks
    /// run at once). The run stops at the first violation, which is
    /// printed after the stream; the exit code is 0 all the same.
    Trace {
        /// The scenario file.
        file: PathBuf,
        /// Thread names, comma separated, one step each; the default
        /// order finishes the run.
        #[arg(long, value_delimiter = ',', value_name = "T0,T1,...")]
        schedule: Vec<String>,
        /// A JSON array, one object per op.
        #[arg(long)]
        json: bool,
    },
    /// What each variant costs: every step of one run counted by kind
    /// (TLBIs, DSBs, SMMU commands, CMD_SYNCs, submissions, PTEs written,
    /// frames freed), an estimated time from a cost table, and the
    /// variant's verdict, one column per scenario file.
    ///
    /// The run is the one `trace` prints (each thread to completion in
    /// declaration order). Times are estimates, labelled with the table
    /// that produced them; counts are exact.
    Cost {
        /// Scenario files, one variant each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A JSON cost table overriding any of the defaults' fields
        /// (`tlbi_va`, `dsb_ish` as `{"points": [[8, 300], [128, 900]]}`, ...).
        #[arg(long, value_name = "FILE")]
        table: Option<PathBuf>,
        /// Skip checking each variant (counts and estimate only).
        #[arg(long)]
        no_verdict: bool,
        /// One JSON array of variants instead of a table.
        #[arg(long)]
        json: bool,
        /// Sweep a variable: each file is a template in which every `$VAR`
        /// is replaced by each value in turn (e.g. `PAGES=1,16,256,4096`);
        /// prints the estimate per value and variant.
        #[arg(long, value_name = "VAR=V1,V2,...")]
        sweep: Option<String>,
        /// With --sweep: also draw estimated time against the variable
        /// as an SVG, one line per variant.
        #[arg(long, value_name = "FILE.svg", requires = "sweep")]
        plot: Option<PathBuf>,
    },
    /// Re-run a trace saved by `explain --json` and check that the whole
    /// run happens again: every step's actor, op and cache changes, and
    /// the same violation. Says what differs when it does not.
    Replay {
        /// The trace file.
        trace: PathBuf,
        /// One JSON object: reproduced, differences, the re-run trace.
        #[arg(long)]
        json: bool,
    },
    /// Encode an operand from fields.
    Encode {
        #[command(subcommand)]
        what: EncodeWhat,
    },
    /// Decode an operand into fields.
    Decode {
        #[command(subcommand)]
        what: DecodeWhat,
    },
    /// Read a trace recorded elsewhere and summarise it.
    Import {
        #[command(subcommand)]
        what: cli::qemu::ImportWhat,
    },
    /// Check a recorded trace against the architecture's invalidation rules.
    Audit {
        #[command(subcommand)]
        what: cli::qemu::AuditWhat,
    },
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Seed for random mode.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Override the scenario's depth bound (default: none).
    #[arg(long)]
    max_depth: Option<u32>,
    /// Override the scenario's state bound.
    #[arg(long)]
    max_states: Option<u64>,
    /// Stop (inconclusive) when the process uses this much memory: bytes,
    /// or with a K/M/G suffix (default: half the machine's memory).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Stop (inconclusive) after this many seconds per scenario.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Explore every transition (no sleep-set reduction): the same states
    /// and verdict, more steps; for cross-checking the reduction.
    #[arg(long)]
    no_reduction: bool,
    /// Random mode: N seeded random walks, then shrink the first failure.
    /// A clean random run is inconclusive (a sample, not a proof).
    #[arg(long, value_name = "N")]
    random: Option<u32>,
}

/// `4G`, `512M`, `64k` or plain bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&t[..i], 10),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&t[..i], 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (bytes, or a number with K, M or G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

impl RunArgs {
    fn options(&self) -> Options {
        Options {
            seed: self.seed,
            random: self.random,
            max_depth: self.max_depth,
            max_states: self.max_states,
            max_memory: self.max_memory,
            timeout_ms: self.timeout.map(|t| (t.max(0.0) * 1e3) as u64),
            no_reduction: self.no_reduction,
        }
    }
}

#[derive(Subcommand, Debug)]
enum EncodeWhat {
    /// A TLBI `Xt`: `encode tlbi RVAE1IS asid=5 va=0x40000000 scale=1 num=7`.
    Tlbi {
        /// Mnemonic, with or without the IS or OS suffix.
        op: String,
        /// Fields: asid= va= ipa= ttl= tg= scale= num= base= ns=.
        fields: Vec<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// An SMMU command: `encode smmu CMD_TLBI_NH_VA vmid=3 asid=0x42 addr=0x7f1234567000 leaf=1`.
    Smmu {
        /// Command name (CMD_ prefix optional).
        opcode: String,
        /// Fields by lower-case specification name.
        fields: Vec<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum DecodeWhat {
    /// A TLBI `Xt`: `decode tlbi RVAE1IS 0x0005538000040000`.
    Tlbi {
        /// Mnemonic, with or without the IS or OS suffix.
        op: String,
        /// The 64-bit operand.
        operand: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// An SMMU command: `decode smmu 0xDW0 0xDW1`.
    Smmu {
        /// Bits [63:0].
        dw0: String,
        /// Bits [127:64].
        dw1: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// Exit code when standard output is closed under us (a reader such as
/// `head` stopped reading): the shell's code for death by SIGPIPE, which is
/// how a Unix filter ends there.
const EXIT_CLOSED_PIPE: i32 = 141;

/// Writes to standard output; if the reader has gone, ends the process
/// quietly instead of panicking.
fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if std::io::stdout().write_fmt(args).is_err() {
        std::process::exit(EXIT_CLOSED_PIPE);
    }
}

/// `print!` that survives a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { write_out(format_args!($($arg)*)) };
}

/// `println!` that survives a closed pipe.
macro_rules! outln {
    () => { write_out(format_args!("\n")) };
    ($($arg:tt)*) => {{ write_out(format_args!($($arg)*)); write_out(format_args!("\n")) }};
}

mod cli;

const EXIT_MISMATCH: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_INCONCLUSIVE: u8 = 3;

/// The exit code of one outcome.
fn exit_code(status: Status) -> u8 {
    match status {
        Status::Met => 0,
        Status::Failed => EXIT_MISMATCH,
        Status::Inconclusive => EXIT_INCONCLUSIVE,
    }
}

/// What a running search has done so far, for a status line.
fn progress_message(p: &Progress) -> String {
    let secs = p.elapsed.as_secs_f64().max(1e-9);
    format!(
        "{} states, {:.0} states/s, depth {}, {} MiB, {:.1} s",
        p.states,
        p.states as f64 / secs,
        p.depth,
        p.rss_bytes >> 20,
        secs
    )
}

/// A status line for one search, drawn on a terminal only.
fn search_line() -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template("  {msg}") {
        pb.set_style(style);
    }
    if std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::stderr());
    }
    pb
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_error_renderer();
    let code = match cli.cmd {
        Cmd::Check { paths, json, run } => cmd_check(&paths, json, &run.options()),
        Cmd::Explain {
            file,
            json: _,
            html: Some(html),
            run,
        } => cli::html::explain_html(&file, &html, &run.options()),
        Cmd::Explain {
            file, json, run, ..
        } => cmd_explain(&file, json, &run.options()),
        Cmd::Trace {
            file,
            schedule,
            json,
        } => cmd_trace(&file, &schedule, json),
        Cmd::Cost {
            files,
            table,
            no_verdict,
            json,
            sweep,
            plot,
        } => match sweep {
            Some(spec) => cmd_sweep(&files, table.as_deref(), &spec, plot.as_deref(), json),
            None => cmd_cost(&files, table.as_deref(), !no_verdict, json),
        },
        Cmd::Replay { trace, json } => cmd_replay(&trace, json),
        Cmd::Encode { what } => match what {
            EncodeWhat::Tlbi { op, fields, json } => encode_tlbi(&op, &fields, json),
            EncodeWhat::Smmu {
                opcode,
                fields,
                json,
            } => encode_smmu(&opcode, &fields, json),
        },
        Cmd::Decode { what } => match what {
            DecodeWhat::Tlbi { op, operand, json } => decode_tlbi(&op, &operand, json),
            DecodeWhat::Smmu { dw0, dw1, json } => decode_smmu(&dw0, &dw1, json),
        },
        Cmd::Import { what } => cli::qemu::import(&what),
        Cmd::Audit { what } => cli::qemu::audit_cmd(&what),
    };
    ExitCode::from(code)
}

/// Draws errors with colours and wrapping on a terminal; elsewhere (pipes,
/// CI logs, tests) plain and unwrapped, so a message stays on one line and
/// can be searched.
fn install_error_renderer() {
    #[cfg(feature = "fancy")]
    {
        let terminal = std::io::stderr().is_terminal();
        let _ = miette::set_hook(Box::new(move |_| {
            let opts = miette::MietteHandlerOpts::new().wrap_lines(terminal);
            let opts = if terminal {
                opts
            } else {
                opts.color(false).unicode(false)
            };
            Box::new(opts.build())
        }));
    }
}

/// Prints a scenario error with its source snippet.
fn report_error(e: tlbcheck::ScenarioError) {
    eprintln!("{:?}", miette::Report::new(e));
}

fn bad_input(msg: impl std::fmt::Display) -> u8 {
    eprintln!("error: {msg}");
    EXIT_BAD_INPUT
}

fn load_file(path: &Path) -> Result<Loaded, u8> {
    let source =
        std::fs::read_to_string(path).map_err(|e| bad_input(cli::unix::io_message(path, &e)))?;
    let loaded = load(&path.display().to_string(), &source).map_err(|e| {
        report_error(e);
        EXIT_BAD_INPUT
    })?;
    for w in &loaded.warnings {
        report_warning(w);
    }
    Ok(loaded)
}

/// Prints a warning about what a scenario writes: `warning:
/// file:line:col: message`, then its hint.
fn report_warning(w: &tlbcheck::ScenarioError) {
    eprintln!("warning: {w}");
    if let Some(h) = &w.error.help {
        eprintln!("  help: {h}");
    }
}

/// A progress bar that stays hidden unless stderr is a terminal and the run
/// has lasted a second, so short runs and pipes see no flicker.
fn progress(total: usize) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}") {
        pb.set_style(style);
    }
    if std::io::stderr().is_terminal() {
        let delayed = pb.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            if !delayed.is_finished() {
                delayed.set_draw_target(ProgressDrawTarget::stderr());
                delayed.enable_steady_tick(Duration::from_millis(100));
            }
        });
    }
    pb
}

fn cmd_check(paths: &[PathBuf], json: bool, opts: &Options) -> u8 {
    let files = match cli::unix::scenario_files(paths) {
        Ok(found) => {
            for note in &found.skipped {
                eprintln!("note: {note}");
            }
            found.files
        }
        Err(e) => return bad_input(e),
    };
    if files.is_empty() {
        let searched: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return bad_input(format!(
            "no .{EXTENSION} scenario files found in {} (directories are searched recursively)",
            searched.join(", ")
        ));
    }
    let pb = progress(files.len());
    let (mut held, mut failed, mut open, mut bad) = (0, 0, 0, 0);
    for path in &files {
        pb.set_message(path.display().to_string());
        let started = Instant::now();
        let loaded = match pb.suspend(|| load_file(path)) {
            Ok(l) => l,
            Err(_) => {
                bad += 1;
                if json {
                    pb.suspend(|| outln!("{}", cli::unix::load_error_record(path)));
                }
                pb.inc(1);
                continue;
            }
        };
        let outcome = check_with(&loaded, opts, &mut |p| {
            pb.set_message(format!("{}: {}", path.display(), progress_message(p)));
        });
        let report = Report::new(&loaded, &outcome);
        match outcome.status {
            Status::Met => held += 1,
            Status::Failed => failed += 1,
            Status::Inconclusive => open += 1,
        }
        pb.suspend(|| {
            if json {
                outln!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                outln!(
                    "{:<12}  {:<52} expected {:<18} found {:<18} {:>6} states {:>7.2} ms",
                    match report.status {
                        Status::Met => "ok",
                        Status::Failed => "FAIL",
                        Status::Inconclusive => "INCONCLUSIVE",
                    },
                    report.name,
                    report.expected,
                    report.found,
                    report.states,
                    started.elapsed().as_secs_f64() * 1e3,
                );
            }
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    if !json {
        outln!(
            "{} scenario(s): {held} as expected, {failed} not, {open} inconclusive, {bad} with errors",
            files.len()
        );
    }
    if bad > 0 {
        EXIT_BAD_INPUT
    } else if failed > 0 {
        EXIT_MISMATCH
    } else if open > 0 {
        EXIT_INCONCLUSIVE
    } else {
        0
    }
}

fn cmd_explain(file: &Path, json: bool, opts: &Options) -> u8 {
    let loaded = match load_file(file) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let line = search_line();
    let outcome = check_with(&loaded, opts, &mut |p| {
        line.set_message(progress_message(p))
    });
    line.finish_and_clear();
    let code = exit_code(outcome.status);
    if json {
        let tf = TraceFile {
            format: TRACE_FORMAT.to_string(),
            file: loaded.file.clone(),
            source: loaded.source.clone(),
            options: opts.clone(),
            coverage: outcome.verdict.coverage_statement(),
            trace: outcome.verdict.trace.clone(),
        };
        match serde_json::to_string_pretty(&tf) {
            Ok(s) => outln!("{s}"),
            Err(e) => return bad_input(e),
        }
        return code;
    }
    outln!("scenario  {} ({})", loaded.model.name, loaded.file);
    outln!(
        "expected  {}    found  {}    {}",
        loaded.expect().name(),
        outcome.found,
        match outcome.status {
            Status::Met => "(as expected)",
            Status::Failed => "(NOT as expected)",
            Status::Inconclusive => "(INCONCLUSIVE: nothing was decided)",
        }
    );
    outln!("coverage  {}", outcome.verdict.coverage_statement());
    match &outcome.verdict.trace {
        Some(t) => {
            outln!("\ncounterexample ({} steps):\n", t.steps.len());
            out!("{}", t.render_text());
        }
        None => outln!("\nno violation: {}", outcome.verdict.coverage_statement()),
    }
    code
}

fn cmd_trace(file: &Path, schedule: &[String], json: bool) -> u8 {
    let loaded = match load_file(file) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let choices = match tlbcheck::stream::choices(&loaded.model, schedule) {
        Ok(c) => c,
        Err(e) => return bad_input(format!("{}: {e}", file.display())),
    };
    let stream = match tlbcheck::stream::run(&loaded.model, &choices) {
        Ok(s) => s,
        Err(e) => return bad_input(e),
    };
    if json {
        match serde_json::to_string_pretty(&stream.lines) {
            Ok(s) => outln!("{s}"),
            Err(e) => return bad_input(e),
        }
    } else {
        outln!("scenario  {} ({})", loaded.model.name, loaded.file);
        outln!();
        out!("{}", stream.render_text());
    }
    0
}

fn cost_table(table: Option<&Path>) -> Result<tlbcheck_checker::cost::CostTable, String> {
    match table {
        Some(p) => tlbcheck::cost::load_table(&p.display().to_string()),
        None => Ok(tlbcheck_checker::cost::CostTable::default()),
    }
}

fn cmd_sweep(
    files: &[PathBuf],
    table: Option<&Path>,
    spec: &str,
    plot: Option<&Path>,
    json: bool,
) -> u8 {
    let table = match cost_table(table) {
        Ok(t) => t,
        Err(e) => return bad_input(e),
    };
    let Some((var, list)) = spec.split_once('=') else {
        return bad_input(format!("--sweep `{spec}`: expected VAR=V1,V2,..."));
    };
    let mut values = Vec::new();
    for v in list.split(',') {
        match tlbcheck::scenario::lex::number(v.trim()) {
            Some(n) => values.push(n),
            None => return bad_input(format!("--sweep `{spec}`: `{v}` is not a number")),
        }
    }
    let mut sources = Vec::new();
    for f in files {
        match std::fs::read_to_string(f) {
            Ok(t) => sources.push((f.display().to_string(), t)),
            Err(e) => return bad_input(format!("{}: {e}", f.display())),
        }
    }
    let s = match tlbcheck::cost::sweep(&sources, var.trim(), &values, &table) {
        Ok(s) => s,
        Err(e) => return bad_input(e),
    };
    if json {
        match serde_json::to_string_pretty(&s) {
            Ok(j) => outln!("{j}"),
            Err(e) => return bad_input(e),
        }
    } else {
        out!("{}", tlbcheck::cost::render_sweep(&s));
    }
    if let Some(p) = plot {
        if let Err(e) = tlbcheck::cost::plot_svg(&s, p) {
            return bad_input(e);
        }
    }
    0
}

fn cmd_cost(files: &[PathBuf], table: Option<&Path>, verdict: bool, json: bool) -> u8 {
    let table = match cost_table(table) {
        Ok(t) => t,
        Err(e) => return bad_input(e),
    };
    let opts = Options::default();
    let mut variants = Vec::new();
    for f in files {
        let loaded = match load_file(f) {
            Ok(l) => l,
            Err(code) => return code,
        };
        match tlbcheck::cost::variant(&loaded, &table, verdict.then_some(&opts)) {
            Ok(v) => variants.push(v),
            Err(e) => return bad_input(format!("{}: {e}", f.display())),
        }
    }
    if json {
        match serde_json::to_string_pretty(&variants) {
            Ok(s) => outln!("{s}"),
            Err(e) => return bad_input(e),
        }
    } else {
        out!("{}", tlbcheck::cost::render(&variants));
    }
    0
}

fn cmd_replay(path: &Path, json: bool) -> u8 {
    let text = match std::fs::read_to_string(path) {
        Ok(j) => j,
        Err(e) => return bad_input(cli::unix::io_message(path, &e)),
    };
    match replay(&text) {
        Ok(r) if json => {
            let v = serde_json::json!({
                "scenario": r.loaded.model.name,
                "file": r.loaded.file,
                "reproduced": r.reproduced,
                "differences": r.differences,
                "trace": r.trace,
            });
            outln!("{v}");
            if r.reproduced {
                0
            } else {
                EXIT_MISMATCH
            }
        }
        Ok(r) => {
            outln!("scenario  {} ({})", r.loaded.model.name, r.loaded.file);
            outln!("replayed {} steps:\n", r.trace.steps.len());
            out!("{}", r.trace.render_text());
            if r.reproduced {
                outln!("\nreproduced: the same steps, cache changes and violation");
                0
            } else {
                outln!("\nNOT reproduced: the run differs from the recorded trace:");
                for d in &r.differences {
                    outln!("  {d}");
                }
                EXIT_MISMATCH
            }
        }
        Err(ReplayFailure::Diverged(e)) => {
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"reproduced": false, "differences": [e.to_string()]})
                );
            } else {
                outln!("NOT reproduced: {e}");
            }
            EXIT_MISMATCH
        }
        Err(ReplayFailure::Scenario(e)) => {
            report_error(e);
            EXIT_BAD_INPUT
        }
        Err(e) => bad_input(e),
    }
}

/// `key=value` command-line words.
fn split_fields(words: &[String]) -> Result<Vec<(String, String)>, String> {
    words
        .iter()
        .map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .ok_or_else(|| format!("`{w}` is not key=value"))
        })
        .collect()
}

fn parse_u64(s: &str, what: &str) -> Result<u64, String> {
    tlbcheck::scenario::lex::number(s).ok_or_else(|| format!("{what} `{s}` is not a number"))
}

fn encode_tlbi(op: &str, fields: &[String], json: bool) -> u8 {
    let tlbi: Tlbi = match op.parse() {
        Ok(t) => t,
        Err(e) => return bad_input(e),
    };
    let kv = match split_fields(fields) {
        Ok(kv) => kv,
        Err(e) => return bad_input(e),
    };
    match tlbi_from_fields(tlbi, &kv, Granule::K4) {
        Ok(b) if json => {
            outln!(
                "{}",
                serde_json::json!({"op": tlbi.to_string(), "operand": format!("{:#018x}", b.raw)})
            );
            0
        }
        Ok(b) => {
            outln!("{:#018x}", b.raw);
            0
        }
        Err(e) => bad_input(e.message),
    }
}

fn decode_tlbi(op: &str, operand: &str, json: bool) -> u8 {
    let tlbi: Tlbi = match op.parse() {
        Ok(t) => t,
        Err(e) => return bad_input(e),
    };
    let xt = match parse_u64(operand, "operand") {
        Ok(x) => x,
        Err(e) => return bad_input(e),
    };
    let decoded = match tlbi.decode(xt) {
        Ok(d) => d,
        Err(e) => return bad_input(e),
    };
    let f = tlbi_fields(tlbi, &decoded);
    if json {
        outln!("{}", serde_json::to_string(&f).unwrap_or_default());
        return 0;
    }
    outln!("TLBI {tlbi} {xt:#018x}");
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v:#x}"));
    if let Some(a) = f.asid {
        outln!("  asid      {a:#x}");
    }
    match (f.ttl, f.tg) {
        (Some(l), Some(tg)) => outln!(
            "  ttl       level {l} ({} granule)",
            Granule::from_tg(tg).map_or("?", |g| g.name())
        ),
        (None, _) if tlbi.op.takes_address() => outln!("  ttl       none (any level)"),
        _ => {}
    }
    if tlbi.is_range() {
        let tg = f.tg.unwrap_or(0);
        outln!(
            "  tg        {tg} ({})",
            Granule::from_tg(tg).map_or("reserved", |g| g.name())
        );
        outln!("  scale     {}", f.scale.unwrap_or(0));
        outln!("  num       {}", f.num.unwrap_or(0));
        outln!("  base_addr {}", opt(f.base_addr));
    }
    match (f.va_start, f.va_end) {
        (Some(a), Some(b)) => outln!(
            "  covers    [{a:#x}, {b:#x}] ({} bytes)",
            u128::from(b) - u128::from(a) + 1
        ),
        _ => outln!("  covers    every address"),
    }
    0
}

fn encode_smmu(opcode: &str, fields: &[String], json: bool) -> u8 {
    let kv = match split_fields(fields) {
        Ok(kv) => kv,
        Err(e) => return bad_input(e),
    };
    match smmu_from_fields(opcode, &kv) {
        Ok(c) => {
            let [dw0, dw1] = c.encode();
            if json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "opcode": c.name(),
                        "dw0": format!("{dw0:#018x}"),
                        "dw1": format!("{dw1:#018x}"),
                    })
                );
            } else {
                outln!("{dw0:#018x} {dw1:#018x}");
            }
            0
        }
        Err(e) => bad_input(e.message),
    }
}

fn decode_smmu(dw0: &str, dw1: &str, json: bool) -> u8 {
    let words = match (parse_u64(dw0, "dw0"), parse_u64(dw1, "dw1")) {
        (Ok(a), Ok(b)) => [a, b],
        (Err(e), _) | (_, Err(e)) => return bad_input(e),
    };
    let cmd = match Command::decode(words) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    let fields = smmu_fields(&cmd);
    if json {
        let mut m = serde_json::Map::new();
        m.insert("opcode".into(), cmd.name().into());
        for (k, v) in &fields {
            m.insert((*k).into(), (*v).into());
        }
        outln!("{}", serde_json::Value::Object(m));
        return 0;
    }
    outln!("{}", cmd.name());
    for (k, v) in &fields {
        outln!("  {k:<9} {v:#x}");
    }
    if let Some(r) = cmd.invalidated_range() {
        outln!("  covers    [{:#x}, {:#x}]", r.first, r.last);
    }
    0
}
