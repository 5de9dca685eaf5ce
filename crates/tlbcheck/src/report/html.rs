//! One self-contained HTML page per counterexample (inline CSS and JS, no
//! network): the template is `timeline.html` beside this file, rendered by
//! minijinja with HTML auto-escaping.

use crate::check::{Outcome, Status};
use crate::scenario::Loaded;
use serde::Serialize;
use tlbcheck_checker::model::Choice;
use tlbcheck_checker::trace::Trace;
use tlbcheck_checker::violation::Agent;
use tlbcheck_hw::tlb::Holder;

/// The page template (HTML with inline CSS and JS).
const TEMPLATE: &str = include_str!("timeline.html");

/// What one cell of the timeline shows: one agent at one step.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cell {
    /// The step's operation, when this lane's agent acted.
    pub op: Option<String>,
    /// Thread that acted, with the operation.
    pub actor: Option<String>,
    /// Entries that became holdable.
    pub added: Vec<Change>,
    /// Entries that left.
    pub removed: Vec<Change>,
    /// Other changes (a TLBI pending, a store becoming visible, a device's state).
    pub notes: Vec<String>,
    /// The stale entry may be held here, from the step that made it
    /// holdable to the violation.
    pub life: bool,
    /// The violation happens here.
    pub violation: bool,
    /// The invalidation that should have removed the stale entry was issued here.
    pub blamed: bool,
}

/// One entry joining or leaving a cache.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// The entry (and where it came from).
    pub text: String,
    /// It is the violation's stale entry.
    pub stale: bool,
}

/// One agent's row.
#[derive(Clone, Debug, Serialize)]
pub struct Lane {
    /// `CPU 0`, `SMMU IOTLB`, `SMMU config cache`, `ATC of device 0`, `RCU`.
    pub name: String,
    /// `cpu`, `iotlb`, `config`, `atc` or `rcu` (a CSS class).
    pub kind: &'static str,
    /// The violation's agent.
    pub violating: bool,
    /// One cell per column (column 0 is the set-up).
    pub cells: Vec<Cell>,
}

/// One column's heading.
#[derive(Clone, Debug, Serialize)]
pub struct Column {
    /// Step number (0 = set-up).
    pub step: u32,
    /// The high-level operation the step came from, if any.
    pub origin: Option<String>,
}

/// A run of columns sharing one high-level operation.
#[derive(Clone, Debug, Serialize)]
pub struct OriginSpan {
    /// The operation, or empty.
    pub text: String,
    /// Columns covered.
    pub span: usize,
}

/// The violation, for the summary box.
#[derive(Clone, Debug, Serialize)]
pub struct ViolationView {
    /// Rule name.
    pub kind: String,
    /// Step.
    pub step: u32,
    /// One sentence.
    pub detail: String,
    /// The agent.
    pub agent: String,
    /// The stale entry.
    pub entry: Option<String>,
    /// Step that made it holdable (0 = set-up).
    pub since: Option<u32>,
    /// Which invalidation should have removed it, and why it did not.
    pub should_have_removed: Option<String>,
    /// That invalidation's step.
    pub blamed_step: Option<u32>,
    /// Why it did not remove the entry (the blame line's reason).
    pub blamed_why: Option<String>,
}

/// Everything the template shows.
#[derive(Clone, Debug, Serialize)]
pub struct Page {
    /// Scenario name.
    pub scenario: String,
    /// Scenario file.
    pub file: String,
    /// Expected outcome.
    pub expected: String,
    /// Found outcome.
    pub found: String,
    /// Whether that is as expected.
    pub verdict: String,
    /// What the search covered.
    pub coverage: String,
    /// Column headings.
    pub columns: Vec<Column>,
    /// High-level operations over the columns.
    pub origins: Vec<OriginSpan>,
    /// One lane per agent.
    pub lanes: Vec<Lane>,
    /// The violation, if the run ends in one.
    pub violation: Option<ViolationView>,
}

/// Lane indices by agent.
struct Lanes {
    cpus: usize,
    smmu: bool,
    devices: usize,
}

impl Lanes {
    fn cpu(&self, n: usize) -> Option<usize> {
        (n < self.cpus).then_some(n)
    }
    fn iotlb(&self) -> Option<usize> {
        self.smmu.then_some(self.cpus)
    }
    fn config(&self) -> Option<usize> {
        self.smmu.then_some(self.cpus + 1)
    }
    fn atc(&self, n: usize) -> Option<usize> {
        (self.smmu && n < self.devices).then_some(self.cpus + 2 + n)
    }
    fn rcu(&self) -> usize {
        self.cpus + if self.smmu { 2 + self.devices } else { 0 }
    }
    fn holder(&self, h: Holder) -> Option<usize> {
        match h {
            Holder::Cpu(n) => self.cpu(n as usize),
            Holder::SmmuIotlb => self.iotlb(),
            Holder::Atc(n) => self.atc(n as usize),
        }
    }
    /// The lane a change line (`"CPU 1: + ..."`) belongs to, and the rest
    /// of the line.
    fn of_change<'a>(&self, line: &'a str) -> Option<(usize, &'a str)> {
        let (who, what) = line.split_once(": ")?;
        let index = |prefix: &str| who.strip_prefix(prefix)?.parse::<usize>().ok();
        let lane = if let Some(n) = index("CPU ") {
            self.cpu(n)
        } else if let Some(n) = index("ATC of device ").or_else(|| index("device ")) {
            self.atc(n)
        } else {
            match who {
                "SMMU IOTLB" | "SMMU" => self.iotlb(),
                "SMMU config cache" => self.config(),
                _ => None,
            }
        }?;
        Some((lane, what))
    }
}

/// The step named at the start of a blame line ("step 7 (...) did not
/// remove it: ...").
fn blamed_step(text: &str) -> Option<u32> {
    let rest = text.strip_prefix("step ")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// Lays out `trace` (a run of `loaded`'s model).
fn layout(loaded: &Loaded, trace: Option<&Trace>) -> (Vec<Column>, Vec<Lane>) {
    let machine = &loaded.model.machine;
    let lanes_ix = Lanes {
        cpus: machine.cpus.len(),
        smmu: machine.smmu.is_some(),
        devices: machine.smmu.as_ref().map_or(0, |s| s.devices.len()),
    };
    let steps = trace.map_or(0, |t| t.steps.len());
    let mut lanes: Vec<Lane> = Vec::new();
    let mut lane = |name: String, kind| {
        lanes.push(Lane {
            name,
            kind,
            violating: false,
            cells: vec![Cell::default(); steps + 1],
        })
    };
    for n in 0..lanes_ix.cpus {
        lane(format!("CPU {n}"), "cpu");
    }
    if lanes_ix.smmu {
        lane("SMMU IOTLB".into(), "iotlb");
        lane("SMMU config cache".into(), "config");
        for n in 0..lanes_ix.devices {
            lane(format!("ATC of device {n}"), "atc");
        }
    }
    lane("RCU".into(), "rcu");

    let mut columns = vec![Column {
        step: 0,
        origin: None,
    }];
    let Some(t) = trace else {
        return (columns, lanes);
    };
    let v = t.violation.as_ref();
    let vlane = v.and_then(|v| match v.agent {
        Agent::Cache { holder } => lanes_ix.holder(holder),
        Agent::SmmuConfig => lanes_ix.config(),
        Agent::Thread { index } => loaded
            .model
            .threads
            .get(index as usize)
            .and_then(|th| lanes_ix.cpu(th.cpu as usize)),
        Agent::RcuCallback => Some(lanes_ix.rcu()),
    });
    // The stale entry is marked in its own lane only: the same entry in
    // another cache is another copy, not the one that broke the rule.
    let stale = v.and_then(|v| v.entry).map(|e| e.to_string());
    let is_stale = |lane: usize, s: &str| {
        Some(lane) == vlane && stale.as_deref().is_some_and(|e| s.starts_with(e))
    };
    for (i, s) in t.steps.iter().enumerate() {
        let col = i + 1;
        columns.push(Column {
            step: s.step,
            origin: s.origin.clone(),
        });
        let actor_lane = match t.choices.get(i) {
            Some(Choice::Thread(th)) => loaded
                .model
                .threads
                .get(*th as usize)
                .and_then(|th| lanes_ix.cpu(th.cpu as usize)),
            Some(Choice::RcuCallback(_)) => Some(lanes_ix.rcu()),
            None => None,
        }
        .unwrap_or(lanes_ix.rcu());
        let cell = &mut lanes[actor_lane].cells[col];
        cell.op = Some(s.op.clone());
        cell.actor = Some(s.actor.clone());
        for c in &s.changes {
            match lanes_ix.of_change(c) {
                Some((l, what)) => {
                    let cell = &mut lanes[l].cells[col];
                    if let Some(e) = what.strip_prefix("+ ") {
                        cell.added.push(Change {
                            text: e.to_string(),
                            stale: is_stale(l, e),
                        });
                    } else if let Some(e) = what.strip_prefix("- ") {
                        cell.removed.push(Change {
                            text: e.to_string(),
                            stale: is_stale(l, e),
                        });
                    } else {
                        cell.notes.push(what.to_string());
                    }
                }
                // Memory visibility and the like: the acting CPU's business.
                None => lanes[actor_lane].cells[col].notes.push(c.clone()),
            }
        }
    }
    if let (Some(v), Some(l)) = (v, vlane) {
        lanes[l].violating = true;
        let last = (v.step as usize).min(steps);
        let first = v.provenance.map_or(last, |p| (p.step as usize).min(last));
        for cell in &mut lanes[l].cells[first..=last] {
            cell.life = true;
        }
        lanes[l].cells[last].violation = true;
        if let Some(b) = t.should_have_removed.as_deref().and_then(blamed_step) {
            if let Some(cell) = lanes[l].cells.get_mut(b as usize) {
                cell.blamed = true;
            }
        }
    }
    (columns, lanes)
}

/// Runs of equal origins over the columns.
fn origin_spans(columns: &[Column]) -> Vec<OriginSpan> {
    let mut spans: Vec<OriginSpan> = Vec::new();
    let mut prev: Option<&Option<String>> = None;
    for c in columns {
        match (prev, spans.last_mut()) {
            (Some(p), Some(last)) if *p == c.origin => last.span += 1,
            _ => spans.push(OriginSpan {
                text: c.origin.clone().unwrap_or_default(),
                span: 1,
            }),
        }
        prev = Some(&c.origin);
    }
    spans
}

/// The page for `loaded` and its `outcome`.
pub fn page(loaded: &Loaded, outcome: &Outcome) -> Page {
    let trace = outcome.verdict.trace.as_ref();
    let (columns, lanes) = layout(loaded, trace);
    let violation = trace.and_then(|t| {
        let v = t.violation.as_ref()?;
        Some(ViolationView {
            kind: v.kind.to_string(),
            step: v.step,
            detail: v.detail.clone(),
            agent: v.agent.to_string(),
            entry: v.entry.map(|e| e.to_string()),
            since: v.provenance.map(|p| p.step),
            should_have_removed: t.should_have_removed.clone(),
            blamed_step: t.should_have_removed.as_deref().and_then(blamed_step),
            blamed_why: t
                .should_have_removed
                .as_deref()
                .and_then(|b| b.split_once("did not remove it: "))
                .map(|(_, why)| why.to_string()),
        })
    });
    Page {
        scenario: loaded.model.name.clone(),
        file: loaded.file.clone(),
        expected: loaded.expect().name().to_string(),
        found: outcome.found.to_string(),
        verdict: match outcome.status {
            Status::Met => "as expected",
            Status::Failed => "NOT as expected",
            Status::Inconclusive => "inconclusive: nothing was decided",
        }
        .to_string(),
        coverage: outcome.verdict.coverage_statement(),
        origins: origin_spans(&columns),
        columns,
        lanes,
        violation,
    }
}

/// Renders `page` through the template.
pub fn render(page: &Page) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    // The `.html` name turns on HTML auto-escaping of every value.
    env.add_template("timeline.html", TEMPLATE)?;
    env.get_template("timeline.html")?
        .render(minijinja::context! { page => page })
}

/// The whole HTML page for `loaded` and its `outcome`.
pub fn timeline(loaded: &Loaded, outcome: &Outcome) -> Result<String, minijinja::Error> {
    render(&page(loaded, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blame_lines_name_their_step() {
        assert_eq!(
            blamed_step("step 7 (smmu cmd X) did not remove it"),
            Some(7)
        );
        assert_eq!(blamed_step("no invalidation covering it was issued"), None);
    }

    #[test]
    fn origins_group_adjacent_columns() {
        let col = |o: Option<&str>| Column {
            step: 0,
            origin: o.map(str::to_string),
        };
        let spans = origin_spans(&[col(None), col(Some("a")), col(Some("a")), col(None)]);
        let got: Vec<(&str, usize)> = spans.iter().map(|s| (s.text.as_str(), s.span)).collect();
        assert_eq!(got, [("", 1), ("a", 2), ("", 1)]);
    }
}
