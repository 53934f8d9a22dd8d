#!/usr/bin/env python3
"""Recounts the packet ring's cost from results/capture-off and results/capture-always:
ramp rate per cell and repetition in each arm, the paired ratio always/off (same cell, same
repetition: run.sh runs repetition k of both arms in round k), and per cell and overall the
median ratio, with round 1 (where the off arm made the saved labs) also left out. Also each
arm's verdicts, and whether a ring was kept (capture/tcpdump.txt in the cell directory of an
`always` row: the pcaps themselves are not committed). A repetition with several rows keeps a non-error one, as nicstorm does."""
import csv, glob, json, os, statistics as st, sys

here = os.path.dirname(os.path.abspath(__file__))
res = os.path.join(here, "results")


def rows(arm):
    out = {}
    path = os.path.join(res, f"capture-{arm}", "cells.csv")
    if not os.path.exists(path):
        sys.exit(f"no {path}: run run.sh first")
    with open(path) as f:
        for r in csv.DictReader(f):
            key = (r["cell_id"], int(r["repetition"]))
            if key not in out or out[key]["verdict"] == "error":
                out[key] = r
    return out


def client_rate(arm, r):
    """The clients' own connect rate: the sum over clients of count / elapsed, each from its
    storm-load `reached` line (elapsed from its start to its ramp's end, on its guest's clock:
    exact, where the row's ramp_rate is the host's 250-ms polling of the clients' progress,
    so one tick is ~4% of a 6-s ramp). None if a client has no reached line."""
    path = os.path.join(res, f"capture-{arm}", r["run_id"], f"{r['cell_id']}-r{r['repetition']}",
                        "storm-load.jsonl")
    reached = {}
    try:
        with open(path) as f:
            for line in f:
                stream, _, text = line.partition("\t")
                m = json.loads(text)
                if m.get("kind") == "reached" and m.get("role") == "client":
                    reached[stream] = m["established"] / m["elapsed"]
    except FileNotFoundError:
        return None
    return sum(reached.values()) if len(reached) == 3 else None


off, on = rows("off"), rows("always")
label = lambda r: f"{r['nic']}/{r['mode']}"
print("cell                 rep  off conn/s  always conn/s  always/off  verdicts  ring kept"
      "   clients' own: off / always / ratio")
ratios, cratios = {}, {}
for key in sorted(set(off) & set(on), key=lambda k: (label(off[k]), k[1])):
    a, b = off[key], on[key]
    ra, rb = a["ramp_rate"], b["ramp_rate"]
    if not ra or not rb:
        print(f"{label(a):20} {key[1]:3}  missing ramp rate ({ra!r}, {rb!r})")
        continue
    ratio = float(rb) / float(ra)
    ratios.setdefault(label(a), []).append((ratio, key[1]))
    # A kept ring is capture/ring.pcap0..7 and tcpdump.txt in the cell directory; the pcaps
    # are not committed (74 MB), tcpdump.txt is.
    ring = glob.glob(os.path.join(res, "capture-always", b["run_id"], f"{key[0]}-r{key[1]}", "capture", "tcpdump.txt"))
    ca, cb = client_rate("off", a), client_rate("always", b)
    own = "-"
    if ca and cb:
        cratios.setdefault(label(a), []).append((cb / ca, key[1]))
        own = f"{ca:.0f} / {cb:.0f} / {cb / ca:.3f}"
    print(f"{label(a):20} {key[1]:3}  {float(ra):10.0f}  {float(rb):13.0f}  {ratio:10.3f}  {a['verdict']}/{b['verdict']}  {'yes' if ring else 'no':9}   {own}")
print()
def sign_test(xs):
    """Pairs slower with the ring (ratio < 1), of those not tied, and the two-sided sign test."""
    from math import comb
    below, n = sum(x < 1 for x in xs), sum(x != 1 for x in xs)
    k = max(below, n - below)
    return below, n, min(1.0, 2 * sum(comb(n, i) for i in range(k, n + 1)) / 2 ** n)


def summary(title, ratios):
    print(title)
    allr = [x for v in ratios.values() for x in v]
    for k, v in sorted(ratios.items()):
        print(f"  {k:20} n={len(v)}  always/off min/median/max {min(v):.3f}/{st.median(v):.3f}/{max(v):.3f}")
    if allr:
        below, n, p = sign_test(allr)
        print(f"  {'all':20} n={len(allr)}  always/off min/median/max {min(allr):.3f}/{st.median(allr):.3f}/{max(allr):.3f}"
              f"  (slower with the ring in {below} of {n} untied pairs, sign test p = {p:.3f})")


for name, rs in (("ramp_rate (host's 250-ms ticks)", ratios), ("clients' own rate (reached lines)", cratios)):
    summary(f"{name}, every round:", {k: [x for x, _ in v] for k, v in rs.items()})
    later = {k: [x for x, rep in v if rep > 1] for k, v in rs.items()}
    summary(f"{name}, rounds 2 and later (round 1's off cells made the saved labs):",
            {k: v for k, v in later.items() if v})


def median_interval(xs, level=0.95):
    """The sign test's interval for the median: order statistics k and n-k+1, k the largest
    with 2 P(Binomial(n, 1/2) <= k-1) <= 1 - level (None if n is too small for any)."""
    from math import comb
    xs, n = sorted(xs), len(xs)
    k = 0
    while k + 1 <= n and 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n <= 1 - level:
        k += 1
    return (xs[k - 1], xs[n - k]) if k else None


# The extension (README "Extension", pre-registered before its run): rounds 5 and later, the
# clients' own rate; round 4, whose first cells saved the format-3 labs, left out.
ext = [x for v in cratios.values() for x, rep in v if rep >= 5]
if ext:
    ci = median_interval(ext)
    below, n, p = sign_test(ext)
    print()
    print(f"extension (rounds 5 and later, clients' own rate): n={len(ext)}, median always/off "
          f"{st.median(ext):.3f}, sign-test 95% interval {ci[0]:.3f}-{ci[1]:.3f}" if ci else "(too few)",
          f"slower with the ring in {below} of {n}, p = {p:.3f}")
    print("rule (stated before the run): median below 0.97 -> `off` under TCG; otherwise `on-loss` stays:",
          "off" if st.median(ext) < 0.97 else "on-loss stays")
missing = sorted(set(off) ^ set(on))
if missing:
    print("rows in one arm only:", missing, file=sys.stderr)
