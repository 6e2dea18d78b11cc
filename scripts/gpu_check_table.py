"""The table scripts/gpu-check.sh prints last: phases, tests per suite, the
bf16 agreement lines, and per P varps against the official VAR.

usage: python3 scripts/gpu_check_table.py LOGS_DIR
Reads what the phases left in LOGS_DIR (phases.txt, machine.log,
libraries.txt, tests/, bench-d16/ or bench-cpu/bench.json, official.jsonl);
whatever is missing shows as such. Standard library only.
"""
import json
import os
import re
import sys

logs = sys.argv[1]
out = []


def read(name):
    try:
        with open(os.path.join(logs, name), errors='replace') as f:
            return f.read()
    except OSError:
        return None


def mib(b):
    return f"{b / 2**20:.0f}"


def fmt_ms(x):
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


# Machine.
machine = {}
for line in (read('machine.log') or '').splitlines():
    k, _, v = line.partition(': ')
    machine.setdefault(k, v)
rehearsal = machine.get('rehearsal', 'no')
title = 'gpu-check rehearsal (no GPU)' if rehearsal not in ('', 'no') else 'gpu-check'
out.append(f"==== {title}: gpu {machine.get('gpu', '?')}; {machine.get('cores', '?')} cores; "
           f"commit {machine.get('commit', '?')} ====")
if rehearsal not in ('', 'no'):
    out.append(f"rehearsal: {rehearsal}")
out.append(f"python: {machine.get('python', '?')}")

# Phases.
out.append(f"{'phase':<10} {'status':<8} {'time':>6} {'limit':>6}")
total = None
for line in (read('phases.txt') or '').splitlines():
    f = line.split()
    if f and f[0] == 'total':
        total = f[1]
        continue
    if len(f) >= 4:
        note = f[4] if len(f) > 4 and not f[4].startswith('exit-0') else ''
        out.append(f"{f[0]:<10} {f[1]:<8} {f[2]:>5}s {f[3]:>5}s {note}".rstrip())
if total is not None:
    out.append(f"{'total':<10} {'':<8} {total:>5}s")

# Libraries of the built programs.
libs = read('libraries.txt')
if libs is not None:
    kinds = {}
    odd = []
    for line in libs.splitlines():
        f = line.split(None, 3)
        if len(f) < 3:
            continue
        kinds.setdefault(f[1], set()).add(f[2])
        if f[1] in ('other', 'missing'):
            odd.append(f"{f[2]} ({f[1]}: {f[3] if len(f) > 3 else ''})")
    counts = ', '.join(f"{len(v)} {k}" for k, v in sorted(kinds.items()))
    out.append(f"libraries of varps, varps_tests: {counts or 'none read'}; "
               + ('from elsewhere or missing: ' + '; '.join(sorted(set(odd))) if odd else
                  'none from elsewhere, none missing'))

# Tests: one row per CUDA suite, the others summed.
status = {}
for line in (read('tests/status.txt') or '').splitlines():
    f = line.split()
    if len(f) == 2:
        status[f[0]] = f[1]
result_re = re.compile(r'^\[ +(OK|FAILED|SKIPPED) +\] ([^ ,]+).*\(\d+ ms\)$')
rows, other, failed, unfinished, bf16 = [], [0, 0, 0, 0], [], [], []
for suite, rc in status.items():
    text = read('tests/' + suite.replace('/', '_') + '.log') or ''
    n = {'OK': 0, 'FAILED': 0, 'SKIPPED': 0}
    started, done = [], set()
    for line in text.splitlines():
        m = result_re.match(line)
        if m:
            n[m.group(1)] += 1
            done.add(m.group(2))
            if m.group(1) == 'FAILED':
                failed.append(m.group(2))
        elif line.startswith('[ RUN      ] '):
            started.append(line[13:].strip())
        elif line.startswith('[ bf16'):
            bf16.append(line.split(']', 1)[1].strip())
    note = {'0': '', 'not-run': 'not run: the phase limit was spent'}.get(
        rc, 'timed out' if rc in ('124', '137') else f'exit {rc}')
    for t in started:
        if t not in done:
            unfinished.append(f"{t} ({note or 'no result'})")
    if 'Cuda' in suite:
        rows.append(f"  {suite:<34} {n['OK']:>5} {n['FAILED']:>5} {n['SKIPPED']:>5}  {note}".rstrip())
    else:
        other[0] += 1
        other[1] += n['OK']
        other[2] += n['FAILED']
        other[3] += n['SKIPPED']
        if note and not n['FAILED']:
            unfinished.append(f"{suite}.* ({note})")
if status:
    out.append(f"tests {'(suite)':<30} {'pass':>5} {'fail':>5} {'skip':>5}")
    out.extend(rows)
    if other[0]:
        out.append(f"  {'other suites (' + str(other[0]) + ')':<34} {other[1]:>5} {other[2]:>5} {other[3]:>5}")
    if failed:
        out.append("  failed: " + ', '.join(failed[:12]) + (f" and {len(failed) - 12} more" if len(failed) > 12 else ''))
    if unfinished:
        out.append("  did not finish: " + ', '.join(unfinished[:6]))
else:
    out.append("tests: none ran")
for line in bf16:
    out.append("bf16 " + line)

# varps against the official VAR, per P.
bench, source = None, None
for name, label in (('bench-d16', None), ('bench-cpu', 'tiny on the CPU (the rehearsal; not the d16 GPU run)')):
    text = read(os.path.join(name, 'bench.json'))
    if text:
        bench, source = json.loads(text), label
        break
official = {}
official_desc = None
for line in (read('official.jsonl') or '').splitlines():
    try:
        o = json.loads(line)
    except ValueError:
        continue
    official[o['batch']] = o
    official_desc = (f"official VAR d{o['depth']} {o['device']} {o['dtype']}"
                     f"{' autocast + TF32' if o['device'] == 'cuda' and o['dtype'] != 'fp32' else ''}, torch {o['torch']}")
comparable = source is None and bench is not None and all(
    o['device'] == 'cuda' and o['depth'] == 16 for o in official.values())

if source is not None or bench is None:
    # The d16 run on the GPU left no report: say why (its first error line).
    lines = [l.strip() for l in (read('bench.log') or '').splitlines() if l.strip()]
    why = [l for l in lines if 'error' in l.lower()] or lines[-1:]
    out.append("varps d16 on cuda: no bench.json" + (f" ({why[0][:160]})" if why else ''))
memory_device = bench is not None and str(bench.get('machine', {}).get('memory_measure', '')).startswith('device')
if bench is not None:
    m = bench.get('machine', {})
    desc = source or (f"varps d16 {m.get('backend', '?')}, {m.get('dtype', '?')}, graphs "
                      f"{'on' if str(m.get('cuda_graphs', '')).startswith('each') else 'off'}")
    memory = m.get('memory_measure', '?') if memory_device else "the peak of the backend's arrays (what the plan counts)"
    out.append(f"varps: {desc}; memory: {memory}")
out.append(f"official: {official_desc or 'no result'}"
           + ('' if comparable or not official else '; not comparable with the varps rows'))

runs = {}
if bench is not None:
    for r in bench.get('runs', []):
        if r.get('schedule') == 'batched':
            runs[r['streams']] = r
out.append(f"{'P':>3} {'varps ms [p10-p90]':>24} {'official ms [min-max]':>24} {'off/varps':>9} "
           f"{'img/s':>8} {'img/s off':>9} {'peak/plan MiB':>16}")
for p in sorted(set(runs) | set(official)):
    r, o = runs.get(p), official.get(p)
    if r:
        lat = r['latency_ms']
        v = f"{fmt_ms(lat['median'])} [{fmt_ms(lat['p10'])}-{fmt_ms(lat['p90'])}]"
        ips = f"{r['images_per_s']:.1f}"
        peak = r['peak_memory_bytes'] if memory_device else r['arrays_peak_bytes']
        plan = r['planned_memory_bytes']['total']
        mem = f"{mib(peak)}/{mib(plan)} {100 * peak / plan:.0f}%" if plan else f"{mib(peak)}/?"
    else:
        v, ips, mem = '-', '-', '-'
    if o:
        ov = (f"{fmt_ms(1e3 * o['seconds_median'])} [{fmt_ms(1e3 * o['seconds_min'])}-"
              f"{fmt_ms(1e3 * o['seconds_max'])}]")
        oips = f"{o['images_per_s']:.1f}"
    else:
        ov, oips = '-', '-'
    ratio = (f"{1e3 * o['seconds_median'] / r['latency_ms']['median']:.1f}x"
             if comparable and r and o and r['latency_ms']['median'] > 0 else '-')
    out.append(f"{p:>3} {v:>24} {ov:>24} {ratio:>9} {ips:>8} {oips:>9} {mem:>16}")
if not runs and not official:
    out.append("    (no timings)")
print('\n'.join(out))
