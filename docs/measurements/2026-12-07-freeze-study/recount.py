#!/usr/bin/env python3
"""Recounts every figure of this measurement's README from the committed files.

Usage: python3 recount.py [coarse|repeat|nat|search|depths|nics|burst|band|bandfix|start|coarse-nat ...]
(default: every part present, then the NICs pooled over the parts after the coarse sweep).
`start` is the booted-against-restored run (start/boot and start/restore, band-boot.yaml):
both parts, then the test fixed before the run.

For each row of <part>/cells.csv: the point of the sweep, the verdict, how far the ramp got,
where the run first saw a network lost, and the vmnet model's account read back from the
committed QEMU logs (gzip): per VM the first refusal, placed in the cell's phases.csv, and
the last totals line before teardown. Then the verdict counts per cell and Fisher's exact
test (two-sided) between the cells that differ in one thing. Plain Python 3, no packages.
"""

import csv
import gzip
import math
import os
import re
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROLES = ["server", "client1", "client2", "client3"]
PREFIX = "NICSTORM_VMNET_"


def point(row):
    env = dict(p.split("=", 1) for p in row["qemu_env"].split(";") if "=" in p)
    return ",".join(f"{k[len(PREFIX):] if k.startswith(PREFIX) else k}={v}"
                    for k, v in sorted(env.items()))


def phases(cell_dir):
    """(name, started_at) in order, from phases.csv."""
    with open(os.path.join(cell_dir, "phases.csv")) as f:
        return [(r["phase"], float(r["started_at"])) for r in csv.DictReader(f)]


def phase_at(ph, t):
    name = None
    for p, start in ph:
        if t >= start:
            name = p
    return name


def log_lines(path):
    if os.path.exists(path + ".gz"):
        with gzip.open(path + ".gz", "rt", errors="replace") as f:
            return f.read().splitlines()
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    return None


def model_account(cell_dir, until):
    """Per role: (first refusal time or None, last totals dict before `until`)."""
    out = {}
    for role in ROLES:
        lines = log_lines(os.path.join(cell_dir, f"{role}.qemu.log"))
        if lines is None:
            out[role] = None
            continue
        first, totals = None, None
        for line in lines:
            m = re.search(r"nicstorm-vmnet: netdev \S+: first refusal t=([0-9.]+)", line)
            if m:
                first = float(m.group(1)) if first is None else min(first, float(m.group(1)))
            m = re.search(r"nicstorm-vmnet: totals (.*)", line)
            if m:
                kv = dict(p.split("=", 1) for p in m.group(1).split() if "=" in p)
                if float(kv.get("t", "inf")) <= until:
                    totals = kv
        out[role] = (first, totals)
    return out


def cell_dir(part, row):
    """The row's cell directory: <part>/<run_id>/<cell_id>-r<rep>[-s<search step>]."""
    step = f"-s{row['search_step']}" if row.get("search_step") else ""
    return os.path.join(HERE, part, row["run_id"],
                        f"{row['cell_id']}-r{row['repetition']}{step}")


def fisher(a, n1, b, n2):
    """Two-sided Fisher's exact test: a of n1 against b of n2."""
    n, k = n1 + n2, a + b
    total = math.comb(n, n1)

    def prob(x):
        return math.comb(k, x) * math.comb(n - k, n1 - x) / total

    seen = prob(a)
    return min(1.0, sum(prob(x) for x in range(max(0, k - n2), min(k, n1) + 1)
                        if prob(x) <= seen * (1 + 1e-9)))


def recount(part):
    path = os.path.join(HERE, part, "cells.csv")
    with open(path) as f:
        rows = [r for r in csv.DictReader(f)]
    print(f"== {part}: {len(rows)} rows ({path})")
    print("nic        point                         rep verdict        peak  lost          "
          "server: first refusal / refused / flushes / largest   clients refused (first)")
    by_cell = defaultdict(list)
    # Per cell: repetitions whose server was refused and never flushed before teardown (its
    # backend disabled for good: the server's network lost to the model).
    server_lost = defaultdict(int)
    # ...and of those, the ones where no client was refused at all: the server alone lost
    # its network (the seed's signature).
    server_alone = defaultdict(int)
    for r in rows:
        if r["verdict"] == "error":
            continue
        by_cell[(r["nic"], point(r))].append(r)
        d = cell_dir(part, r)
        server, clients = "no logs", ""
        if os.path.isdir(d):
            ph = phases(d)
            until = dict(ph).get("teardown", float("inf"))
            acc = model_account(d, until)
            s = acc.get("server")
            lost_server = bool(s and s[1] and int(s[1]["refused"]) > 0
                               and int(s[1]["flushes"]) == 0)
            any_client = any(acc.get(c) and acc[c][1] and int(acc[c][1]["refused"]) > 0
                             for c in ROLES[1:])
            if lost_server:
                server_lost[(r["nic"], point(r))] += 1
                if not any_client:
                    server_alone[(r["nic"], point(r))] += 1
            if s:
                first, tot = s
                server = (f"{phase_at(ph, first) if first else '-':10} "
                          f"{tot['refused'] if tot else '?':>4} {tot['flushes'] if tot else '?':>5} "
                          f"{tot['largest'] if tot else '?':>5}")
            cl = []
            for role in ROLES[1:]:
                c = acc.get(role)
                if c and c[1] and int(c[1]["refused"]) > 0:
                    cl.append(f"{role} {c[1]['refused']} ({phase_at(ph, c[0]) if c[0] else '-'})")
            clients = ", ".join(cl) or "none"
            # The server's first refusal after the first client's (seconds; negative: before).
            firsts = [acc[r][0] for r in ROLES[1:] if acc.get(r) and acc[r][0]]
            if s and s[0] and firsts:
                clients += f"; server {s[0] - min(firsts):+.2f} s after the first client"
        lost = f"{r['lost_phase'] or '-'} {r['lost_role'] or ''}".strip()
        print(f"{r['nic']:10} {point(r):29} {r['repetition']:>3} {r['verdict']:14} "
              f"{r['peak_established'] or '-':>5}  {lost:13} {server:45} {clients}")
    print()
    print("per cell: verdict not ok / measured; server refused and never flushed / measured")
    counts, frozen = {}, {}
    for (nic, pt), rs in sorted(by_cell.items()):
        bad = sum(1 for r in rs if r["verdict"] != "ok")
        counts[(nic, pt)] = (bad, len(rs))
        frozen[(nic, pt)] = (server_lost[(nic, pt)], len(rs))
        verdicts = defaultdict(int)
        for r in rs:
            verdicts[r["verdict"]] += 1
        print(f"  {nic:10} {pt:29} not ok {bad}/{len(rs)}; server lost {server_lost[(nic, pt)]}/{len(rs)}"
              f" (alone, no client refused: {server_alone[(nic, pt)]});  "
              + " ".join(f"{v}={n}" for v, n in sorted(verdicts.items())))

    def differences(a, b):
        ea = dict(p.split("=", 1) for p in a[1].split(","))
        eb = dict(p.split("=", 1) for p in b[1].split(","))
        return int(a[0] != b[0]) + sum(1 for k in set(ea) | set(eb) if ea.get(k) != eb.get(k))

    keys = sorted(counts)
    pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:] if differences(a, b) == 1]
    if any(counts[k][1] >= 4 for k in keys):
        print("Fisher's exact test, two-sided, cells that differ in one thing (NIC or one variable):")
        for what, table in (("verdict not ok", counts), ("server lost", frozen)):
            for a, b in pairs:
                (x, n1), (y, n2) = table[a], table[b]
                print(f"  {what:14} {a[0]} {a[1]}  {x}/{n1}  vs  {b[0]} {b[1]}  {y}/{n2}:  "
                      f"p = {fisher(x, n1, y, n2):.4f}")
    searches = defaultdict(list)
    for r in rows:
        if r.get("search_id") and r["verdict"] != "error":
            searches[(r["nic"], r["search_id"])].append(r)
    for (nic, sid), rs in sorted(searches.items()):
        rs.sort(key=lambda r: int(r["search_step"]))
        steps = ", ".join(f"{point(r)} {r['verdict']}"
                          + (" (server lost)" if server_lost_row(part, r) else "")
                          for r in rs)
        print(f"search {sid} {nic}: {steps}")
    print()


def server_lost_row(part, r):
    """Whether the row's server backend was refused and never flushed before teardown."""
    return outcome(part, r)[0]


def outcome(part, r):
    """(server lost, any client refused) before teardown, from the row's committed QEMU logs:
    the server's backend refused and never flushed; any client's backend refused at all."""
    d = cell_dir(part, r)
    if not os.path.isdir(d):
        return False, False
    ph = phases(d)
    acc = model_account(d, dict(ph).get("teardown", float("inf")))
    s = acc.get("server")
    lost = bool(s and s[1] and int(s[1]["refused"]) > 0 and int(s[1]["flushes"]) == 0)
    client = any(acc.get(c) and acc[c][1] and int(acc[c][1]["refused"]) > 0 for c in ROLES[1:])
    return lost, client


def booted_vs_restored(boot, restore):
    """The test band-boot.yaml fixed before its run: per way, the cells whose server alone
    lost its network (refused, never flushed, no client refused) and the cells not ok, pooled
    over the NICs, Fisher's exact test (two-sided) booted against restored; per NIC a look."""
    print("== booted against restored (band-boot.yaml): server alone lost / not ok / measured")
    table = {}
    for way, part in (("booted", boot), ("restored", restore)):
        rows = [r for r in csv.DictReader(open(os.path.join(HERE, part, "cells.csv")))
                if r["verdict"] != "error"]
        for r in rows:
            if r["lab_start"] != way:
                sys.exit(f"{part}: row {r['cell_id']}-r{r['repetition']} says lab_start "
                         f"{r['lab_start']!r}, not {way}")
        for nic in sorted({r["nic"] for r in rows}) + ["pooled"]:
            rs = [r for r in rows if nic in ("pooled", r["nic"])]
            alone = sum(1 for r in rs if outcome(part, r) == (True, False))
            bad = sum(1 for r in rs if r["verdict"] != "ok")
            table[(way, nic)] = (alone, bad, len(rs))
            print(f"  {way:8} {nic:10} server alone {alone}/{len(rs)}, not ok {bad}/{len(rs)}")
    for nic in sorted({n for (_, n) in table}):
        if ("booted", nic) not in table or ("restored", nic) not in table:
            continue
        (a1, b1, n1), (a2, b2, n2) = table[("booted", nic)], table[("restored", nic)]
        label = "the test" if nic == "pooled" else "a look"
        print(f"  {nic:10} ({label}): server alone p = {fisher(a1, n1, a2, n2):.4f}, "
              f"not ok p = {fisher(b1, n1, b2, n2):.4f}")
    print()


def pooled(parts):
    """Per run (part) and NIC, of the `disable` cells that lost a network (verdict not ok): in
    how many the server's backend was refused and never flushed. Then the NICs pooled over
    the parts, with Fisher's test: a lead only, since the parts differ (run, mode, depth)."""
    print("== pooled: disable cells that lost a network, server lost too, per part and NIC")
    total = defaultdict(lambda: [0, 0])
    for part in parts:
        path = os.path.join(HERE, part, "cells.csv")
        per = defaultdict(lambda: [0, 0])
        for r in csv.DictReader(open(path)):
            if r["verdict"] in ("error", "ok") or "MODE=disable" not in point(r):
                continue
            per[r["nic"]][1] += 1
            per[r["nic"]][0] += int(server_lost_row(part, r))
        for nic, (lost, n) in sorted(per.items()):
            print(f"  {part:7} {nic:10} server lost {lost}/{n}")
            total[nic][0] += lost
            total[nic][1] += n
    if "virtio-net" in total and "vmxnet3" in total:
        (a, n1), (b, n2) = total["virtio-net"], total["vmxnet3"]
        print(f"  pooled: virtio-net {a}/{n1}, vmxnet3 {b}/{n2}, Fisher p = {fisher(a, n1, b, n2):.4f}"
              " (pooled over runs, modes and depths: not like with like)")
    print()


def main():
    parts = sys.argv[1:] or [p for p in ("coarse", "repeat", "nat", "search", "depths", "nics",
                                         "burst", "band", "bandfix", "start", "coarse-nat")
                             if os.path.exists(os.path.join(HERE, p, "cells.csv"))
                             or os.path.exists(os.path.join(HERE, p, "boot", "cells.csv"))]
    for p in parts:
        if p == "start":
            recount("start/boot")
            recount("start/restore")
            booted_vs_restored("start/boot", "start/restore")
        else:
            recount(p)
    if not sys.argv[1:]:
        pooled([p for p in ("repeat", "nat", "search", "depths") if p in parts])


if __name__ == "__main__":
    main()
