#!/usr/bin/env python3
"""Regenerates the generated scale scenarios (issue 9) in this directory.

Run from anywhere: `python3 crates/tlbcheck/benches/scale/gen.py`. Writes
two-threads-{4,8,12}-tlbis.tlb, unmap-{3,4,5}x6.tlb,
tlbis-in-flight-{1000,2000,4000}.tlb, long-dsb-chain-buggy.tlb and
flush-range-512-buggy.tlb. The stuck-*.tlb files are written by hand.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent

TABLES = """\
frame L0 s1-table process=1 level=0
frame L1 s1-table process=1 level=1
frame L2 s1-table process=1 level=2
frame L3 s1-table process=1 level=3
"""

WALK = """\
context p1 stage1 asid=1 root=L0

L0[0] = table L1
L1[0] = table L2
L2[0] = table L3
"""


def write(name: str, text: str) -> None:
    (HERE / name).write_text(text)


def two_threads(k: int) -> None:
    lines = [
        f"# Scale (issue 9): two threads on two CPUs, each issuing {k} TLBI VALE1IS",
        "# for distinct mapped VAs of process 1 (ASID 1) with no DSB between them,",
        "# then one DSB ISH each. Measures how the explorer copes with many",
        "# broadcast TLBIs in flight on two CPUs at once. Nothing is freed: clean.",
        f"scenario scale-two-threads-{k}-tlbis",
        "machine granule=4k cpus=2",
        "",
        TABLES.rstrip("\n"),
    ]
    lines += [f"frame D{i} data process=1" for i in range(2 * k)]
    lines += ["", WALK.rstrip("\n")]
    lines += [f"L3[{i}] = page D{i} rw user ng" for i in range(2 * k)]
    for t in range(2):
        lines += ["", f"thread t{t} cpu={t} {{"]
        lines += [
            f"  tlbi VALE1IS asid=1 va={(t * k + i) << 12:#x}" for i in range(k)
        ]
        lines += ["  dsb ish", "}"]
    lines += ["", "expect ok", ""]
    write(f"two-threads-{k}-tlbis.tlb", "\n".join(lines))


def unmap(n: int) -> None:
    lines = [
        f"# Scale (issue 9): {n} threads on {n} CPUs, each unmapping its own page of",
        "# process 1 (ASID 1) with arm64 Linux's 6-step sequence under KPTI:",
        "# store invalid PTE, DSB ISHST, TLBI VALE1IS for the kernel ASID (0,",
        "# __tlbi), TLBI VALE1IS for the user ASID (1, __tlbi_user), DSB ISH, free",
        "# the data frame. The language has no ISB, so the sixth step is the",
        "# second (user-ASID) TLBI of flush_tlb_page. Measures the interleavings of",
        f"# {n} x 6 steps. Clean.",
        f"scenario scale-unmap-{n}x6",
        f"machine granule=4k cpus={n}",
        "",
        TABLES.rstrip("\n"),
    ]
    lines += [f"frame D{i} data process=1" for i in range(n)]
    lines += ["", WALK.rstrip("\n")]
    lines += [f"L3[{i}] = page D{i} rw user ng" for i in range(n)]
    for t in range(n):
        va = t << 12
        lines += [
            "",
            f"thread t{t} cpu={t} {{",
            f"  L3[{t}] = invalid",
            "  dsb ishst",
            f"  tlbi VALE1IS asid=0 va={va:#x}",
            f"  tlbi VALE1IS asid=1 va={va:#x}",
            "  dsb ish",
            f"  free D{t}",
            "}",
        ]
    lines += ["", "expect ok", ""]
    write(f"unmap-{n}x6.tlb", "\n".join(lines))


def in_flight(n: int) -> None:
    lines = [
        f"# Scale (issue 9): one thread issuing {n} TLBI VALE1IS for distinct VAs of",
        "# process 1 (ASID 1; only the first 4 pages are mapped) with no DSB",
        f"# between them, then one DSB ISH: {n} TLBIs in flight at once. Clean.",
        f"scenario scale-tlbis-in-flight-{n}",
        "machine granule=4k cpus=2",
        "",
        TABLES.rstrip("\n"),
    ]
    lines += [f"frame D{i} data process=1" for i in range(4)]
    lines += ["", WALK.rstrip("\n")]
    lines += [f"L3[{i}] = page D{i} rw user ng" for i in range(4)]
    lines += ["", "thread mm cpu=0 {"]
    lines += [f"  tlbi VALE1IS asid=1 va={i << 12:#x}" for i in range(n)]
    lines += ["  dsb ish", "}", ""]
    lines += ["expect ok", ""]
    write(f"tlbis-in-flight-{n}.tlb", "\n".join(lines))


def long_dsb_chain(n: int) -> None:
    lines = [
        f"# Scale (issue 9): one thread executing {n} DSB ISH, then freeing a data",
        "# frame that is still mapped (no store, no TLBI). Measures a long path",
        "# of steps that change nothing. Buggy: expect freed-frame-mapped.",
        "scenario scale-long-dsb-chain-buggy",
        "machine granule=4k cpus=2",
        "",
        TABLES.rstrip("\n"),
        "frame DATA data process=1",
        "",
        WALK.rstrip("\n"),
        "L3[0] = page DATA rw user ng",
        "",
        "thread mm cpu=0 {",
    ]
    lines += ["  dsb ish"] * n
    lines += ["  free DATA               # still mapped", "}", ""]
    lines += ["expect violation freed-frame-mapped", ""]
    write("long-dsb-chain-buggy.tlb", "\n".join(lines))


def flush_range(n: int) -> None:
    lines = [
        f"# Scale (issue 9): a __flush_tlb_range-shaped unmap of all {n} PTEs of one",
        f"# L3 table: {n} stores of an invalid PTE, DSB ISHST, {n} TLBI VALE1IS",
        "# (ASID 1), then the data frames are freed WITHOUT the DSB ISH that",
        "# completes the TLBIs. Measures many pending stores and TLBIs on one",
        "# path. Buggy: expect freed-frame-mapped.",
        "scenario scale-flush-range-512-buggy",
        "machine granule=4k cpus=2",
        # DATA first: a 512-frame run is aligned to 2 MiB.
        f"pool base=0x200000 frames={n + 4}",
        "",
        f"frame DATA data process=1 frames={n}",
        TABLES.rstrip("\n"),
        "",
        WALK.rstrip("\n"),
    ]
    lines += [f"L3[{i}] = page DATA+{i << 12:#x} rw user ng" for i in range(n)]
    lines += ["", "thread mm cpu=0 {"]
    lines += [f"  L3[{i}] = invalid" for i in range(n)]
    lines += ["  dsb ishst"]
    lines += [f"  tlbi VALE1IS asid=1 va={i << 12:#x}" for i in range(n)]
    lines += ["  free DATA               # no dsb ish: the TLBIs may not have completed"]
    lines += ["}", ""]
    lines += ["expect violation freed-frame-mapped", ""]
    write(f"flush-range-{n}-buggy.tlb", "\n".join(lines))


def main() -> None:
    for k in (4, 8, 12):
        two_threads(k)
    for n in (3, 4, 5):
        unmap(n)
    for n in (1000, 2000, 4000):
        in_flight(n)
    long_dsb_chain(250)
    flush_range(512)


if __name__ == "__main__":
    main()
