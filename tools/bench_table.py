#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""
The README's benchmark table from one `gvm bench --json` run:

    build/gcc/release/gvm bench --json --repeat 5 > bench.json
    tools/bench_table.py bench.json

prints a Markdown table, one row per benchmark in the file's order:
the gvm figure (latency benchmarks: p50 and the tail), the baseline and
what it is, the ratio (median run; with --repeat the runs' min-max) and
the goal, marked "(missed)" where the ratio is above it, then the range
of the host's 1-minute load average over the run.  Nothing is edited by
hand, so the table says what one run measured.
"""
import json
import sys


def num(x):
    """A figure as the table prints it: 3 significant digits, or '-'."""
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return "%d" % round(x)
    return "%.3g" % x


def goal(g, ratio):
    if not g or g <= 0:
        return "-"
    s = "≤ %s" % num(g)
    return s + " (missed)" if ratio is not None and ratio > g else s


def row(b):
    tail = next((k for k in b if k.startswith("p") and k[1:].isdigit()
                 and k != "p50"), None)
    unit = b["unit"]
    spread = ""
    if b.get("repeat", 1) > 1:
        spread = " (%s-%s)" % (num(b["ratio_min"]), num(b["ratio_max"]))
    if tail:
        t = tail[1:]
        value = "p50 %s, %s %s %s" % (num(b["p50"]), tail, num(b[tail]), unit)
        base = "p50 %s, %s %s (%s)" % (num(b["baseline_p50"]), tail,
                                       num(b["baseline_" + tail]),
                                       b["baseline"])
        ratio = "%s / %s%s" % (num(b["ratio"]), num(b["ratio_" + tail]),
                               spread)
        g = b.get("goal_" + tail)
        gl = goal(b["goal"], b["ratio"])
        if g:
            gt = goal(g, b["ratio_" + tail])
            missed = "(missed)" in gl or "(missed)" in gt
            gl = "%s / %s%s" % (gl.replace(" (missed)", ""),
                                gt.replace(" (missed)", ""),
                                " (missed)" if missed else "")
    else:
        value = "%s %s" % (num(b["value"]), unit)
        base = "%s (%s)" % (num(b["baseline_value"]), b["baseline"])
        ratio = num(b["ratio"]) + spread
        gl = goal(b["goal"], b["ratio"])
    return "| `%s` | %s | %s | %s | %s |" % (b["name"], value, base, ratio,
                                            gl)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: tools/bench_table.py BENCH.json")
    with open(sys.argv[1]) as f:
        benches = json.load(f)
    print("| benchmark | gvm | baseline | ratio (min-max) | goal |")
    print("|---|---|---|---|---|")
    for b in benches:
        print(row(b))
    loads = [b[k] for b in benches for k in ("load_before", "load_after")
             if b.get(k) is not None]
    if loads:
        print("\nLoad average (1 min) during the run: %.1f-%.1f."
              % (min(loads), max(loads)))


if __name__ == "__main__":
    main()
