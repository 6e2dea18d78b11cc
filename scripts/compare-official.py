#!/usr/bin/env python3
"""Time varps against the official VAR implementation on this machine, side by side.

usage: scripts/compare-official.py --official DIR --runner FILE [--depth 16,20,30] [--batch 1,4]
                                   [--rounds 3] [--repeats 3] [--threads 2] [--isa native|avx2]
                                   [--varps build/varps] [--python /usr/bin/python3] [--out DIR]

--official is the official tree (FoundationVision/VAR, e.g. extracted from its tarball) and --runner a
script that times its generate call on random weights of a released size and prints one JSON line
per batch with seconds_median/min/max and decoder_seconds_median (the peer runner kept beside the
official tree). Both sides generate the same work: random weights of depth D, B images per call,
cfg 4, top-k 900, top-p 0.95, float32, `--threads` threads, tokens to pixels with the decoder, the
weights already loaded, after one untimed call.

The two run interleaved: each round starts one varps process (`varps bench`, `--repeats` timed
requests) and one official process (`--repeats` timed calls), in alternating order, so that a slow
spell of the machine falls on both. With 3 repeats a round's official minimum, median and maximum
are its three samples. The table gives each side's median over all rounds' samples, with min–max,
and the ratio of the medians (official / varps: above 1, varps is faster), with the range of the
rounds' own ratios. Everything lands in --out (compare.json, compare.md); the table is printed.

--isa avx2 keeps both sides to AVX2 kernels on a machine that has AVX-512, as on one that does not:
OpenBLAS's Haswell kernels for both (OPENBLAS_CORETYPE), and for PyTorch oneDNN's and ATen's AVX2 code
(DNNL_MAX_CPU_ISA, ATEN_CPU_CAPABILITY). varps's own kernels are AVX2 in every build.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def parse_list(text):
    return [int(v) for v in text.split(',') if v]


def machine_line():
    model = 'unknown CPU'
    flags = ''
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name') and model == 'unknown CPU':
                    model = line.split(':', 1)[1].strip()
                if line.startswith('flags') and not flags:
                    flags = line.split(':', 1)[1]
    except OSError:
        pass
    isa = 'AVX-512' if ' avx512f' in flags else ('AVX2' if ' avx2' in flags else 'no AVX2')
    mem = ''
    try:
        with open('/proc/meminfo') as f:
            kb = int(f.readline().split()[1])
            mem = f', {kb / (1 << 20):.0f} GiB'
    except (OSError, ValueError, IndexError):
        pass
    return f'{model} ({isa}), {os.cpu_count()} CPUs{mem}, {platform.system()} {platform.release()}'


def isa_env(isa, official):
    env = dict(os.environ)
    if isa == 'avx2':
        env['OPENBLAS_CORETYPE'] = 'Haswell'
        if official:
            env.update(DNNL_MAX_CPU_ISA='AVX2', ATEN_CPU_CAPABILITY='avx2')
    return env


def run(cmd, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f'compare-official: {" ".join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}')
    return proc.stdout


def time_varps(args, depth, batch, scratch):
    out = os.path.join(scratch, f'varps-d{depth}-b{batch}')
    run([args.varps, 'bench', '--preset', f'd{depth}', '--streams', str(batch), '--schedule', 'batched',
         '--warmup', '1', '--repeats', str(args.repeats), '--threads', str(args.threads), '--out', out, '-q'],
        env=isa_env(args.isa, official=False))
    with open(os.path.join(out, 'bench.json')) as f:
        report = json.load(f)
    r = next(r for r in report['runs'] if r['schedule'] == 'batched' and r['streams'] == batch)
    return {
        'samples_s': [ms / 1000 for ms in r['latency_samples_ms']],
        'decoder_s': r['stages_ms'].get('decode', 0) / 1000,
        'backend': report['machine'].get('backend_info', ''),
        'commit': report['machine'].get('commit', ''),
    }


def time_official(args, depth, batch):
    env = dict(isa_env(args.isa, official=True), OMP_NUM_THREADS=str(args.threads))
    text = run([args.python, args.runner, '--official', args.official, '--depth', str(depth), '--batch', str(batch),
                '--repeats', str(args.repeats), '--warmup', '1', '--threads', str(args.threads)], env=env)
    line = next(l for l in text.splitlines() if l.startswith('{'))
    r = json.loads(line)
    samples = [r['seconds_median']] * args.repeats
    if args.repeats == 3:  # min, median, max are the three samples
        samples = [r['seconds_min'], r['seconds_median'], r['seconds_max']]
    return {'samples_s': samples, 'decoder_s': r['decoder_seconds_median'], 'torch': r.get('torch', '')}


def summary(values):
    v = sorted(values)
    return {'median': statistics.median(v), 'min': v[0], 'max': v[-1], 'n': len(v)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    ap.add_argument('--official', required=True, help='the official VAR tree')
    ap.add_argument('--runner', required=True, help="the script that times the official generate call")
    ap.add_argument('--depth', default='16', help='comma list of released depths (16, 20, 24, 30)')
    ap.add_argument('--batch', default='1', help='comma list of images per call')
    ap.add_argument('--rounds', type=int, default=3, help='interleaved rounds per (depth, batch)')
    ap.add_argument('--repeats', type=int, default=3, help='timed calls per process')
    ap.add_argument('--threads', type=int, default=2, help='threads of both sides')
    ap.add_argument('--isa', choices=('native', 'avx2'), default='native',
                    help="avx2: both sides on AVX2 kernels even where the CPU has AVX-512")
    ap.add_argument('--varps', default=os.path.join(os.path.dirname(__file__), '..', 'build', 'varps'),
                    help='the varps binary (default: build/varps)')
    ap.add_argument('--python', default='/usr/bin/python3', help='the Python with the PyTorch the official runs on')
    ap.add_argument('--out', default='out-compare', help='where compare.json and compare.md go')
    args = ap.parse_args()
    for path, what in ((args.official, 'official tree'), (args.runner, 'runner'), (args.varps, 'varps binary')):
        if not os.path.exists(path):
            sys.exit(f'compare-official: the {what} {path} does not exist')
    if args.rounds < 1 or args.repeats < 1 or args.threads < 1:
        sys.exit('compare-official: --rounds, --repeats and --threads must be >= 1')
    os.makedirs(args.out, exist_ok=True)

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for depth in parse_list(args.depth):
            for batch in parse_list(args.batch):
                ours, theirs, ratios, dec_ours, dec_theirs = [], [], [], [], []
                meta = {}
                for rnd in range(args.rounds):
                    t0 = time.time()
                    order = ('varps', 'official') if rnd % 2 == 0 else ('official', 'varps')
                    got = {}
                    for side in order:
                        got[side] = time_varps(args, depth, batch, scratch) if side == 'varps' \
                            else time_official(args, depth, batch)
                    ours += got['varps']['samples_s']
                    theirs += got['official']['samples_s']
                    dec_ours.append(got['varps']['decoder_s'])
                    dec_theirs.append(got['official']['decoder_s'])
                    ratios.append(statistics.median(got['official']['samples_s']) /
                                  statistics.median(got['varps']['samples_s']))
                    meta = {'varps_backend': got['varps']['backend'], 'varps_commit': got['varps']['commit'],
                            'torch': got['official']['torch']}
                    print(f'compare-official: d{depth} batch {batch} round {rnd + 1}/{args.rounds}: '
                          f'varps {statistics.median(got["varps"]["samples_s"]):.2f} s, '
                          f'official {statistics.median(got["official"]["samples_s"]):.2f} s '
                          f'({time.time() - t0:.0f} s)', file=sys.stderr, flush=True)
                v, o = summary(ours), summary(theirs)
                results.append({'depth': depth, 'batch': batch, 'varps_s': v, 'official_s': o,
                                'ratio': o['median'] / v['median'], 'round_ratios': ratios,
                                'varps_decoder_s': statistics.median(dec_ours),
                                'official_decoder_s': statistics.median(dec_theirs), **meta})

    machine = machine_line()
    isa = 'both sides limited to AVX2 kernels' if args.isa == 'avx2' else 'each side on its native kernels'
    lines = [f'machine: {machine}; {isa}', f'threads: {args.threads} per side; rounds: {args.rounds} x {args.repeats} '
             f'timed calls per side',
             f'varps: {results[0]["varps_commit"]}, {results[0]["varps_backend"]}',
             f'official: PyTorch {results[0]["torch"]}', '',
             '| model | batch | varps s, median [min-max] | official s, median [min-max] | official / varps '
             '[rounds] | decoder: varps / official s |',
             '| --- | ---: | ---: | ---: | ---: | ---: |']
    for r in results:
        v, o = r['varps_s'], r['official_s']
        lines.append(f'| d{r["depth"]} | {r["batch"]} | {v["median"]:.2f} [{v["min"]:.2f}-{v["max"]:.2f}] | '
                     f'{o["median"]:.2f} [{o["min"]:.2f}-{o["max"]:.2f}] | {r["ratio"]:.2f}x '
                     f'[{min(r["round_ratios"]):.2f}-{max(r["round_ratios"]):.2f}] | '
                     f'{r["varps_decoder_s"]:.2f} / {r["official_decoder_s"]:.2f} |')
    table = '\n'.join(lines)
    with open(os.path.join(args.out, 'compare.md'), 'w') as f:
        f.write(table + '\n')
    with open(os.path.join(args.out, 'compare.json'), 'w') as f:
        json.dump({'machine': machine, 'isa': args.isa, 'threads': args.threads, 'rounds': args.rounds,
                   'repeats': args.repeats, 'results': results}, f, indent=1)
    print(table)


if __name__ == '__main__':
    main()
