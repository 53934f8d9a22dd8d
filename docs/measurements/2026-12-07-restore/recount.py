#!/usr/bin/env python3
"""Recounts the figures of README.md from equivalence/*/cells.csv: per way and cell the
verdicts, the medians of ramp rate, drain and slowest SSH probe, the time to SSH
(min/median/max) and the whole cell's median time. With --provision: the range of each
step of the restored guests' provision.csv. With --upto N: only repetitions 1 to N (rounds 1
to 6 ran both cells; rounds 7 to 12 the nat cell alone). With --dir D: D/*/cells.csv instead
of equivalence/ (equivalence2/: the rerun after the release changed, README "Format 2"),
which also has a client's own ramp rate (client_ramp_rate) and the time storm-load was in
every guest (storm_load_pushed_s)."""
import csv
import datetime as dt
import sys
import statistics as st
from pathlib import Path

here = Path(__file__).parent
data = sys.argv[sys.argv.index("--dir") + 1] if "--dir" in sys.argv else "equivalence"
for way in ["boot", "restore"]:
    rows = list(csv.DictReader(open(here / data / way / "cells.csv")))
    if "--upto" in sys.argv:
        upto = int(sys.argv[sys.argv.index("--upto") + 1])
        rows = [r for r in rows if int(r["repetition"]) <= upto]
    for cell in sorted({r["cell_id"] for r in rows}):
        rr = [r for r in rows if r["cell_id"] == cell]
        med = lambda k: st.median(float(r[k]) for r in rr if r[k])
        ssh = sorted(float(r["boot_to_ssh_seconds"]) for r in rr)
        secs = [
            (dt.datetime.fromisoformat(r["finished_at"]) - dt.datetime.fromisoformat(r["started_at"])).total_seconds()
            for r in rr
        ]
        verdicts = {v: sum(r["verdict"] == v for r in rr) for v in {r["verdict"] for r in rr}}
        clients = (f" client_ramp_rate={med('client_ramp_rate'):.0f}"
                   if any(r.get("client_ramp_rate") for r in rr) else "")
        print(
            f"{way:8} {rr[0]['nic']}/{rr[0]['mode']:7} n={len(rr)} verdicts={verdicts} "
            f"ramp_rate={med('ramp_rate'):.0f}{clients} drain={med('drain_seconds'):.2f} ssh_max={med('ssh_max_seconds'):.2f} "
            f"to_ssh={ssh[0]:.1f}/{st.median(ssh):.1f}/{ssh[-1]:.1f} cell={st.median(secs):.0f}s "
            f"lab_start={sorted({r['lab_start'] for r in rr})}"
        )

if "--provision" in sys.argv:
    steps = {k: [] for k in ["domain_start_s", "released_s", "sshd_seen_s", "ssh_login_s",
                             "storm_load_pushed_s"]}
    for f in sorted((here / data).glob("restore/*/*/provision.csv")):
        rep = int(f.parent.name.rsplit("-r", 1)[1])
        if "--upto" in sys.argv and rep > int(sys.argv[sys.argv.index("--upto") + 1]):
            continue
        for r in csv.DictReader(open(f)):
            for k in steps:
                # Format 3 has no push for a restored guest (storm-load is in its saved lab)
                # and adds ready_s; earlier files have no ready_s.
                if r.get(k):
                    steps[k].append(float(r[k]))
    for k, v in steps.items():
        print(f"restored guests: {k} n={len(v)} {min(v):.2f}..{max(v):.2f}" if v
              else f"restored guests: {k} none")
