//! The DMA API as a program (`tlbcheck_protocols::linux::dma`): what an
//! unmap issues, counted, and whether a lazy unmap lets a page be reused
//! while the SMMU may still translate to it.
//!
//! The SMMU side (stream table, CD, the domain's io-pgtable-arm table) is
//! declared in a scenario; the DMA thread is added to the loaded model.

use std::sync::Arc;
use tlbcheck::load;
use tlbcheck_checker::cost::{count, Counts};
use tlbcheck_checker::model::{Bounds, Model, Thread};
use tlbcheck_checker::op::Op;
use tlbcheck_checker::sync::SyncState;
use tlbcheck_checker::{explore, Choice, ViolationKind};
use tlbcheck_hw::mem::Pfn;
use tlbcheck_hw::smmu::cmd::{Command, TlbiAddr};
use tlbcheck_hw::tlb::MayHold;
use tlbcheck_protocols::linux::dma::{
    flush_iotlb_all, inv_range_domain, DmaKernel, DmaOp, DmaThread, Domain, Item, Mode,
};
use tlbcheck_protocols::linux::sva::{SmmuFeatures, SmmuOp};

/// A domain whose IOVA [0, tables * 2 MiB) is mapped with 4 KiB pages
/// (all to frame DATA, which is enough for counting), or the first `pages`
/// pages when `tables` is 1.
fn setup(tables: usize, pages: usize, smmu: &str) -> String {
    let mut s = format!(
        "scenario dma\nmachine granule=4k cpus=2\nsmmu {smmu}\npool base=0x100000 frames={}\n",
        tables + 16
    );
    s.push_str("frame L0 s1-table process=1 level=0\nframe L1 s1-table process=1 level=1\nframe L2 s1-table process=1 level=2\n");
    for t in 0..tables {
        s.push_str(&format!("frame T{t} s1-table process=1 level=3\n"));
    }
    s.push_str("frame DATA data process=1\nframe DATA1 data process=1\nframe CDT smmu\n");
    s.push_str("context d1 stage1 asid=1 root=L0\nL0[0] = table L1\nL1[0] = table L2\n");
    for t in 0..tables {
        s.push_str(&format!("L2[{t}] = table T{t}\n"));
        for j in 0..pages {
            s.push_str(&format!("T{t}[{j}] = page DATA rw user ng\n"));
        }
    }
    let eats = if smmu.contains("ats") { " eats=1" } else { "" };
    let ats = if smmu.contains("ats") { " ats" } else { "" };
    s.push_str(&format!(
        "ste 3 s1 cd=CDT{eats}\ncd CDT[0] ctx=d1\ndevice dev0 sid=3{ats}\n"
    ));
    s
}

fn domain(kernel: DmaKernel, mode: Mode, ril: bool, ats: bool, root: u64) -> Domain {
    Domain {
        kernel,
        mode,
        feat: SmmuFeatures {
            btm: false,
            ril,
            ats,
        },
        asid: 1,
        root,
        ats_sids: if ats { vec![3] } else { vec![] },
        counters: (0, 1),
    }
}

/// The scenario's model with `threads` added (a DMA thread on CPU 0 and
/// any other threads after it) and the flush-queue counters declared.
fn model(src: &str, mut threads: Vec<Thread>, extra: &str) -> Model {
    let l = load("dma.tlb", &format!("{src}{extra}expect ok\n")).expect("loads");
    let mut m = l.model;
    // The domain's table is the SMMU's alone: no CPU walks it (as for a
    // mirror's shadow table).
    for c in &mut m.machine.cpus {
        c.contexts = Arc::from(Vec::new());
        c.tlb = MayHold::new();
    }
    m.threads.append(&mut threads);
    m.sync = SyncState::new(0, 0, m.threads.len()).with_counters(2);
    m
}

fn root(src: &str) -> u64 {
    // L0 is the first frame of the pool.
    assert!(src.contains("pool base=0x100000"));
    0x100000
}

fn dma_thread(d: Domain, items: Vec<Item>) -> Thread {
    Thread {
        name: "drv".into(),
        cpu: 0,
        program: Arc::new(DmaThread::new(Arc::new(d), items)),
        owns_vmids: None,
    }
}

fn sequential(m: &Model) -> Vec<Choice> {
    tlbcheck::stream::choices(m, &[]).expect("runs")
}

fn counts(m: &Model) -> Counts {
    let r = count(m, &sequential(m)).expect("replays");
    assert_eq!(r.violation, None);
    r.counts
}

#[test]
fn strict_unmap_of_one_page_is_one_tlbi_and_one_sync() {
    let src = setup(1, 2, "");
    let d = domain(DmaKernel::Linux6_12, Mode::Strict, false, false, root(&src));
    let m = model(
        &src,
        vec![dma_thread(
            d,
            vec![Item::Dma(DmaOp::Unmap {
                iova: 0,
                size: 0x1000,
            })],
        )],
        "",
    );
    let c = counts(&m);
    assert_eq!(c.smmu_commands.get("CMD_TLBI_NH_VA"), Some(&1));
    assert_eq!((c.cmd_syncs, c.submissions, c.ptes_written), (1, 1, 1));
    assert_eq!(c.table_frames_freed, 0);
}

#[test]
fn strict_leaf_range_with_ril_is_one_range_command_with_ttl_3() {
    // 2 pages, leaf, RIL: num_pages = 2 = 0b10, scale 1, num 1: NUM 0,
    // SCALE 1, TTL 3 (a 4 KiB leaf), TG 4K.
    let d = domain(DmaKernel::Linux6_1, Mode::Strict, true, true, 0x100000);
    let ops = inv_range_domain(&d, 0x2000, 0x2000, true);
    assert_eq!(
        ops,
        vec![
            SmmuOp::Cmd(Command::TlbiNhVa {
                vmid: 0,
                asid: 1,
                va: TlbiAddr {
                    addr: 0x2000,
                    leaf: true,
                    tg: 1,
                    ttl: 3,
                    num: 0,
                    scale: 1
                }
            }),
            SmmuOp::Sync,
            // Pages 2..3: first ^ last = 1, a span of 2 pages at 0x2000.
            SmmuOp::Cmd(Command::AtcInv {
                sid: 3,
                ssv: false,
                ssid: 0,
                global: false,
                addr: 0x2000,
                size: 1
            }),
            SmmuOp::Sync,
        ]
    );
    assert_eq!(
        flush_iotlb_all(&d),
        vec![
            SmmuOp::Cmd(Command::TlbiNhAsid { vmid: 0, asid: 1 }),
            SmmuOp::Sync,
            SmmuOp::Cmd(Command::AtcInv {
                sid: 3,
                ssv: false,
                ssid: 0,
                global: false,
                addr: 0,
                size: 52
            }),
            SmmuOp::Sync,
        ]
    );
}

/// perf-anchors S2 on arm-smmu-v3: 32 MiB of 4 KiB pages, 16 whole
/// level-3 tables, unmapped in one call.
fn s2(ril: bool) -> Counts {
    let src = setup(16, 512, if ril { "ril" } else { "" });
    let d = domain(DmaKernel::Linux6_12, Mode::Strict, ril, false, root(&src));
    let m = model(
        &src,
        vec![dma_thread(
            d,
            vec![Item::Dma(DmaOp::Unmap {
                iova: 0,
                size: 32 << 20,
            })],
        )],
        "",
    );
    counts(&m)
}

#[test]
fn s2_without_ril_is_8192_commands_16_syncs_128_submissions() {
    let c = s2(false);
    // io_pgtable_tlb_flush_walk per 2 MiB table: 512 non-leaf NH_VA and a
    // CMD_SYNC, sent as 8 batches of 64.
    assert_eq!(c.smmu_commands.get("CMD_TLBI_NH_VA"), Some(&8192));
    assert_eq!(c.cmd_syncs, 16);
    assert_eq!(c.submissions, 128);
    // A dma_wmb (DSB ISHST here) before each submitted batch.
    assert_eq!(c.dsb.get("ISHST"), Some(&128));
    // The level-2 entries are cleared and the tables freed; the 8192
    // PTEs below them are never written.
    assert_eq!(c.ptes_written, 16);
    assert_eq!(c.table_frames_freed, 16);
}

#[test]
fn s2_with_ril_is_one_range_command_per_table() {
    let c = s2(true);
    // 512 pages = 2^9: SCALE 9, NUM 0, one command per table.
    assert_eq!(c.smmu_commands.get("CMD_TLBI_NH_VA (range)"), Some(&16));
    assert_eq!(c.commands(), 16);
    assert_eq!((c.cmd_syncs, c.submissions), (16, 16));
    assert_eq!(c.dsb.get("ISHST"), Some(&16));
    assert_eq!(c.table_frames_freed, 16);
}

fn stream(mode: Mode, n: u64, ats: bool, timeout_at_end: bool) -> Counts {
    let src = setup(1, n as usize, if ats { "ats" } else { "" });
    let d = domain(DmaKernel::Linux6_1, mode, false, ats, root(&src));
    let mut items: Vec<Item> = (0..n)
        .map(|i| {
            Item::Dma(DmaOp::Unmap {
                iova: i * 0x1000,
                size: 0x1000,
            })
        })
        .collect();
    if timeout_at_end {
        items.push(Item::Dma(DmaOp::FlushTimeout));
    }
    counts(&model(&src, vec![dma_thread(d, items)], ""))
}

#[test]
fn s3_strict_invalidates_and_syncs_every_unmap() {
    let c = stream(Mode::Strict, 256, true, false);
    assert_eq!(c.smmu_commands.get("CMD_TLBI_NH_VA"), Some(&256));
    assert_eq!(c.atc_invs, 256);
    // One CMD_SYNC after the TLBI, one after the ATC invalidation.
    assert_eq!(c.cmd_syncs, 512);
}

#[test]
fn s3_lazy_flushes_when_255_entries_wait_and_on_the_timer() {
    // The ring keeps one of its 256 slots empty: the 256th unmap finds it
    // full and flushes the 255 before it; the timer flushes the last one.
    let c = stream(Mode::Lazy, 256, false, true);
    assert_eq!(c.smmu_commands.get("CMD_TLBI_NH_ASID"), Some(&2));
    assert_eq!(c.smmu_commands.get("CMD_TLBI_NH_VA"), None);
    assert_eq!(c.cmd_syncs, 2);
    assert_eq!(c.ptes_written, 256);
    // 255 unmaps fill the queue without a flush; a timer with an empty
    // queue does nothing.
    let c = stream(Mode::Lazy, 255, false, false);
    assert_eq!((c.commands(), c.cmd_syncs), (0, 0));
    let c = stream(Mode::Lazy, 255, true, true);
    assert_eq!(c.smmu_commands.get("CMD_TLBI_NH_ASID"), Some(&1));
    assert_eq!(c.atc_invs, 1);
    assert_eq!(c.cmd_syncs, 2);
}

/// A device writes through IOVA 0 while the driver unmaps it and then
/// reuses its page (frees DATA).
fn reuse(mode: Mode, flush_first: bool) -> Option<ViolationKind> {
    let src = setup(1, 1, "");
    let d = domain(DmaKernel::Linux6_12, mode, false, false, root(&src));
    let data = Pfn(0x100000 / 4096 + 4);
    let mut items = vec![Item::Dma(DmaOp::Unmap {
        iova: 0,
        size: 0x1000,
    })];
    if flush_first {
        items.push(Item::Dma(DmaOp::FlushTimeout));
    }
    items.push(Item::Op(Op::Free { frame: data }));
    let m = model(
        &src,
        vec![dma_thread(d, items)],
        "thread dev cpu=1 {\n  device dev0 access write 0x0\n}\n",
    );
    // The scenario's own thread comes first; the DMA thread after it.
    assert_eq!(m.threads.len(), 2);
    assert_eq!(m.machine.mem.owner(data).to_string(), "data of process 1");
    explore(&m, Bounds::default()).violation.map(|v| v.kind)
}

#[test]
fn strict_unmap_then_reuse_is_safe() {
    assert_eq!(reuse(Mode::Strict, false), None);
}

#[test]
fn lazy_unmap_then_reuse_before_the_flush_is_freed_frame_mapped() {
    assert_eq!(
        reuse(Mode::Lazy, false),
        Some(ViolationKind::FreedFrameMapped)
    );
}

#[test]
fn lazy_unmap_then_reuse_after_the_flush_is_safe() {
    assert_eq!(reuse(Mode::Lazy, true), None);
}

#[test]
fn dma_statements_refuse_bad_input_with_a_location() {
    let base = "scenario x\nmachine granule=4k cpus=1\nsmmu\nframe L0 s1-table process=1 level=0\nframe BUF data process=1\ncontext dom stage1 asid=1 root=L0\n";
    let err = |tail: &str| {
        let e = load("x.tlb", &format!("{base}{tail}expect ok\n")).unwrap_err();
        format!("{e}")
    };
    let e = err("dma-domain dom eager\n");
    assert!(e.contains("x.tlb:7:16"), "{e}");
    assert!(e.contains("`strict` or `lazy`"), "{e}");
    let e = err("dma-domain dom lazy linux-6.2\n");
    assert!(
        e.contains("x.tlb:7:21") && e.contains("unknown DMA kernel"),
        "{e}"
    );
    let e = err("dma-domain dom lazy\ndma-map dom 0x800 0x1000 BUF\n");
    assert!(
        e.contains("x.tlb:8:13") && e.contains("multiple of 4 KiB"),
        "{e}"
    );
    let e = err("dma-domain dom lazy\nthread t cpu=0 {\n  dma unmap other 0x0 0x1000\n}\n");
    assert!(
        e.contains("x.tlb:9:13") && e.contains("not a DMA domain"),
        "{e}"
    );
    let e = err("dma-domain dom lazy\nthread t cpu=0 {\n  dma remap dom\n}\n");
    assert!(
        e.contains("x.tlb:9:7") && e.contains("`unmap` or `flush`"),
        "{e}"
    );
}
