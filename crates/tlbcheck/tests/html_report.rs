//! `tlbcheck explain SCENARIO --html FILE`: one self-contained page, a lane
//! per agent and a column per step. When headless Chromium is installed the
//! page is loaded in it and the test reads what the browser drew (the
//! page's script writes the lanes and the computed colours of the
//! violation cell into `#render-check`); otherwise it reads the HTML.

mod support;
use support::repo;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The ATC of device 0 refills from the SMMU TLB after the ATC_INV (step
/// 7) because the TLBI was not yet completed: the retry at step 10 faults
/// forever on the read-only entry the ATC holds since step 9.
const ATC: &str = "examples/seed000/04-atc-inv-after-tlbi-completes-buggy.tlb";
/// Kernel-level: the steps come from the memory manager's operations.
const KERNEL: &str = "examples/seed000/05-kernel-upgrade-buggy.tlb";
const FIXED: &str = "examples/seed000/04-atc-inv-after-tlbi-completes-fixed.tlb";

fn out_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tlbcheck-html-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn explain_html(scenario: &str, name: &str) -> (Output, PathBuf, String) {
    let html = out_dir().join(name);
    let o = Command::new(env!("CARGO_BIN_EXE_tlbcheck"))
        .args(["explain", scenario, "--html", html.to_str().unwrap()])
        .current_dir(repo())
        .output()
        .expect("the binary runs");
    let page = std::fs::read_to_string(&html).unwrap_or_default();
    (o, html, page)
}

/// The `<tr>` of one lane.
fn lane<'a>(page: &'a str, name: &str) -> &'a str {
    let at = page
        .find(&format!("data-lane=\"{name}\""))
        .unwrap_or_else(|| panic!("no lane {name}"));
    let end = page[at..].find("</tr>").unwrap() + at;
    &page[at..end]
}

#[test]
fn the_page_has_a_lane_per_agent_and_marks_the_stale_entry() {
    let (o, _, page) = explain_html(ATC, "atc.html");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for l in [
        "CPU 0",
        "CPU 1",
        "SMMU IOTLB",
        "SMMU config cache",
        "ATC of device 0",
        "RCU",
    ] {
        lane(&page, l);
    }
    // Self-contained: no external scripts, styles, images or fonts.
    for external in ["<link", "src=\"http", "url(http", "@import"] {
        assert!(!page.contains(external), "{external}");
    }
    let atc = lane(&page, "ATC of device 0");
    assert!(atc.starts_with("data-lane=\"ATC of device 0\""));
    assert!(page.contains("class=\"lane atc violating\" data-lane=\"ATC of device 0\""));
    // Violation at step 10, the stale entry holdable since step 9, the
    // ATC_INV of step 7 the one that should have removed it.
    assert!(
        atc.contains("<td data-step=\"10\" class=\"life violation \">"),
        "{atc}"
    );
    assert!(
        atc.contains("<td data-step=\"9\" class=\"life \">"),
        "{atc}"
    );
    assert_eq!(atc.matches("class=\"life").count(), 2, "{atc}");
    assert!(
        atc.contains("<td data-step=\"7\" class=\"blamed\">"),
        "{atc}"
    );
    // The entry, escaped (minijinja escapes `/` too), highlighted in the
    // violation cell.
    assert!(atc.contains(
        "<span class=\"stale\">stage-1 leaf L3 VA 0x0&#x2f;4k ASID 1 VMID 0 -&gt; 0x104000 ro user</span>"
    ), "{atc}");
    // The CPU lanes show the acting thread's ops and what left their TLBs.
    let cpu0 = lane(&page, "CPU 0");
    assert!(cpu0.contains("smmu cmd CMD_ATC_INV"), "{cpu0}");
    assert!(
        cpu0.contains("<div class=\"rm\">&minus; stage-1 leaf L3 VA 0x0&#x2f;4k"),
        "{cpu0}"
    );
    assert!(page.contains("did not remove it: the ATC refilled from the SMMU TLB"));
    // The blamed cell says why, in the ATC's lane.
    assert!(
        atc.contains("it did not: the ATC refilled from the SMMU TLB after it"),
        "{atc}"
    );
}

#[test]
fn kernel_operations_head_their_steps() {
    let (o, _, page) = explain_html(KERNEL, "kernel.html");
    assert_eq!(o.status.code(), Some(0));
    assert!(page.contains(
        "<th class=\"origin\" colspan=\"3\">p1 write fault at 0x0: ptep_set_access_flags: flush_tlb_page</th>"
    ), "{page}");
    let iotlb = lane(&page, "SMMU IOTLB");
    assert!(iotlb.contains("violating") || page.contains("class=\"lane iotlb violating\""));
    // Holdable since set-up: the life spans every column, set-up to step 11.
    assert_eq!(iotlb.matches("class=\"life").count(), 12, "{iotlb}");
}

#[test]
fn a_clean_scenario_gets_a_page_without_a_counterexample() {
    let (o, _, page) = explain_html(FIXED, "fixed.html");
    assert_eq!(o.status.code(), Some(0));
    assert!(page.contains("<dt>counterexample</dt><dd>none: "), "{page}");
    assert!(!page.contains("class=\"life"));
    lane(&page, "ATC of device 0");
}

/// Headless Chromium, if installed.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

#[test]
fn the_browser_draws_the_lanes_and_the_highlighted_violation() {
    let (_, html, page) = explain_html(ATC, "browser.html");
    let Some(browser) = chromium() else {
        eprintln!("chromium not installed: checking the page text only");
        assert!(page.contains("<div id=\"render-check\"></div>"));
        assert!(page.contains("td.violation { background: #ffd9d9;"));
        return;
    };
    let profile = out_dir().join("chromium-profile");
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
        ])
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(
        dom.contains("lanes: CPU 0, CPU 1, SMMU IOTLB, SMMU config cache, ATC of device 0, RCU."),
        "{dom}"
    );
    // Computed by the browser: #ffd9d9 background and a #c00018 outline on
    // the violation cell, #ffe066 behind the stale entry.
    assert!(
        dom.contains(
            "violation highlighted in lane ATC of device 0 at step 10 \
         (background rgb(255, 217, 217), outline rgb(192, 0, 24); \
         stale entry background rgb(255, 224, 102))."
        ),
        "{dom}"
    );
    assert!(dom.contains("stale entry alive over 2 column(s)."), "{dom}");
}
