#!/usr/bin/env python3
"""Time varps against the official VAR implementation on this machine, side by side.

usage: scripts/compare-official.py --official DIR --runner FILE [--depth 16,20,30] [--batch 1,4]
                                   [--rounds 3] [--repeats 3] [--threads 2] [--isa native|avx2]
                                   [--precision fp32,bf16] [--dtype fp32,bf16]
                                   [--varps build/varps] [--python PY[,PY2]] [--out DIR]

--official is the official tree (FoundationVision/VAR, e.g. extracted from its tarball) and --runner a
script that times its generate call on random weights of a released size and prints one JSON line
per batch with seconds_median/min/max and decoder_seconds_median (the peer runner kept beside the
official tree). Every side generates the same work: random weights of depth D, B images per call,
cfg 4, top-k 900, top-p 0.95, `--threads` threads, tokens to pixels with the decoder, the weights
already loaded, after one untimed call.

The sides: varps at each --precision (`varps bench --precision P`), and the official code at each
--dtype (fp32, or bf16: its generate call under torch.autocast('cpu', torch.bfloat16)) on each
--python (the PyTorch users install is a current release from PyPI in a venv; Debian's
/usr/bin/python3 has PyTorch 1.13 with OpenBLAS). They run interleaved: each round starts one
process per side (`--repeats` timed calls each), the order rotating from round to round, so that a
slow spell of the machine falls on all of them. With 3 repeats a round's official minimum, median
and maximum are its three samples. The first table gives each side's median over all rounds'
samples, with min–max; the second the ratio of medians for every pair of a varps side and an
official side (official / varps: above 1, varps is faster), with the range of the rounds' own
ratios. The machine line names the CPU and its vector and matrix extensions, each side line the
BLAS and kernels it ran. Everything lands in --out (compare.json, compare.md); the tables are
printed.

--isa avx2 keeps every side to AVX2 kernels on a machine that has AVX-512, as on one that does not:
varps through VARPS_CPU_ISA=avx2, OpenBLAS's Haswell kernels (OPENBLAS_CORETYPE), MKL through
MKL_ENABLE_INSTRUCTIONS=AVX2, oneDNN and ATen through DNNL_MAX_CPU_ISA and ATEN_CPU_CAPABILITY.
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


def parse_names(text, allowed, flag):
    names = [v for v in text.split(',') if v]
    for n in names:
        if n not in allowed:
            sys.exit(f'compare-official: {flag} {n}: expected a comma list of {", ".join(allowed)}')
    if not names:
        sys.exit(f'compare-official: {flag} is empty')
    return names


EXTENSIONS = ('avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_bf16', 'avx512_vnni', 'avx512_fp16',
              'amx_tile', 'amx_bf16', 'amx_int8')


def amd_generation(family, model):
    """The Zen generation of an AMD CPU family and model (a VM's model name often omits it), or None."""
    if family == 0x17:
        return 'Zen 2' if model >= 0x30 else 'Zen'
    if family == 0x19:
        return 'Zen 4' if 0x10 <= model <= 0x1f or 0x60 <= model <= 0x7f or 0xa0 <= model <= 0xaf else 'Zen 3'
    if family == 0x1a:
        return 'Zen 5'
    return None


def machine_line():
    model = 'unknown CPU'
    flags = set()
    fields = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'model name' and model == 'unknown CPU':
                    model = value.strip()
                if key == 'flags' and not flags:
                    flags = set(value.split())
                if key in ('vendor_id', 'cpu family', 'model') and key not in fields:
                    fields[key] = value.strip()
    except OSError:
        pass
    if 'cpu family' in fields and 'model' in fields:
        try:
            family, number = int(fields['cpu family']), int(fields['model'])
            generation = amd_generation(family, number) if fields.get('vendor_id') == 'AuthenticAMD' else None
            model += f' [{generation + ": " if generation else ""}family {family}, model {number}]'
        except ValueError:
            pass
    have = [e for e in EXTENSIONS if e in flags] or ['no AVX2']
    mem = ''
    try:
        with open('/proc/meminfo') as f:
            kb = int(f.readline().split()[1])
            mem = f', {kb / (1 << 20):.0f} GiB'
    except (OSError, ValueError, IndexError):
        pass
    return f'{model} ({" ".join(have)}), {os.cpu_count()} CPUs{mem}, {platform.system()} {platform.release()}'


def isa_env(isa, official):
    env = dict(os.environ)
    if isa == 'avx2':
        env['OPENBLAS_CORETYPE'] = 'Haswell'
        if official:
            env.update(DNNL_MAX_CPU_ISA='AVX2', ATEN_CPU_CAPABILITY='avx2', MKL_ENABLE_INSTRUCTIONS='AVX2')
        else:
            env['VARPS_CPU_ISA'] = 'avx2'
    return env


def run(cmd, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f'compare-official: {" ".join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}')
    return proc.stdout


def torch_build(python, isa):
    """PyTorch's version and the BLAS and kernels it was built with and would use here."""
    code = ('import torch, re; c = torch.__config__.show(); '
            'keep = [l.strip(" -") for l in c.splitlines() if re.search("Math Kernel|MKL-DNN|oneDNN|CPU capability", l)]; '
            'keep += re.findall("BLAS_INFO=\\w+", c); '
            'print(torch.__version__ + ": " + "; ".join(keep))')
    return run([python, '-c', code], env=isa_env(isa, official=True)).strip()


def varps_bench(varps, flags, repeats, threads, out, env=None):
    """One `varps bench` process, batched, one warm-up and `repeats` timed requests; its bench.json."""
    run([varps, 'bench', '--schedule', 'batched', '--warmup', '1', '--repeats', str(repeats), '--threads',
         str(threads), '--out', out, '-q'] + flags, env=env)
    with open(os.path.join(out, 'bench.json')) as f:
        return json.load(f)


def time_varps(args, precision, depth, batch, scratch):
    report = varps_bench(args.varps, ['--preset', f'd{depth}', '--streams', str(batch), '--precision', precision],
                         args.repeats, args.threads, os.path.join(scratch, f'varps-{precision}-d{depth}-b{batch}'),
                         env=isa_env(args.isa, official=False))
    r = next(r for r in report['runs'] if r['schedule'] == 'batched' and r['streams'] == batch)
    return {
        'samples_s': [ms / 1000 for ms in r['latency_samples_ms']],
        'decoder_s': r['stages_ms'].get('decode', 0) / 1000,
        'build': f'{report["machine"].get("commit", "")}, {report["machine"].get("backend_info", "")}',
    }


def time_official(args, python, dtype, depth, batch):
    env = dict(isa_env(args.isa, official=True), OMP_NUM_THREADS=str(args.threads))
    text = run([python, args.runner, '--official', args.official, '--depth', str(depth), '--batch', str(batch),
                '--repeats', str(args.repeats), '--warmup', '1', '--threads', str(args.threads), '--dtype', dtype],
               env=env)
    line = next(l for l in text.splitlines() if l.startswith('{'))
    r = json.loads(line)
    samples = [r['seconds_median']] * args.repeats
    if args.repeats == 3:  # min, median, max are the three samples
        samples = [r['seconds_min'], r['seconds_median'], r['seconds_max']]
    return {'samples_s': samples, 'decoder_s': r['decoder_seconds_median']}


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
    ap.add_argument('--threads', type=int, default=2, help='threads of every side')
    ap.add_argument('--isa', choices=('native', 'avx2'), default='native',
                    help="avx2: every side on AVX2 kernels even where the CPU has AVX-512")
    ap.add_argument('--precision', default='fp32', help='comma list of varps precisions (fp32, bf16, int8)')
    ap.add_argument('--dtype', default='fp32', help="comma list of the official code's dtypes (fp32, bf16 autocast)")
    ap.add_argument('--varps', default=os.path.join(os.path.dirname(__file__), '..', 'build', 'varps'),
                    help='the varps binary (default: build/varps)')
    ap.add_argument('--python', default='/usr/bin/python3',
                    help='comma list of Pythons whose PyTorch the official code runs on')
    ap.add_argument('--out', default='out-compare', help='where compare.json and compare.md go')
    args = ap.parse_args()
    precisions = parse_names(args.precision, ('fp32', 'bf16', 'int8'), '--precision')
    dtypes = parse_names(args.dtype, ('fp32', 'bf16'), '--dtype')
    pythons = [p for p in args.python.split(',') if p]
    for path, what in [(args.official, 'official tree'), (args.runner, 'runner'), (args.varps, 'varps binary')] + \
            [(p, 'python') for p in pythons]:
        if not os.path.exists(path):
            sys.exit(f'compare-official: the {what} {path} does not exist')
    if args.rounds < 1 or args.repeats < 1 or args.threads < 1:
        sys.exit('compare-official: --rounds, --repeats and --threads must be >= 1')
    os.makedirs(args.out, exist_ok=True)

    builds = {p: torch_build(p, args.isa) for p in pythons}
    sides = [('varps', p, None) for p in precisions] + [('official', d, py) for py in pythons for d in dtypes]

    def side_name(side):
        kind, what, py = side
        if kind == 'varps':
            return f'varps {what}'
        torch = builds[py].split(':', 1)[0]
        return f'official {what if what == "fp32" else "bf16 autocast"}, torch {torch}'

    results = []
    side_builds = {}
    with tempfile.TemporaryDirectory() as scratch:
        for depth in parse_list(args.depth):
            for batch in parse_list(args.batch):
                samples = {s: [] for s in sides}
                round_medians = {s: [] for s in sides}
                decoders = {s: [] for s in sides}
                for rnd in range(args.rounds):
                    t0 = time.time()
                    shift = rnd % len(sides)
                    for side in sides[shift:] + sides[:shift]:
                        kind, what, py = side
                        got = time_varps(args, what, depth, batch, scratch) if kind == 'varps' \
                            else time_official(args, py, what, depth, batch)
                        if kind == 'varps':
                            side_builds[side] = got['build']
                        samples[side] += got['samples_s']
                        round_medians[side].append(statistics.median(got['samples_s']))
                        decoders[side].append(got['decoder_s'])
                    print(f'compare-official: d{depth} batch {batch} round {rnd + 1}/{args.rounds}: ' +
                          ', '.join(f'{side_name(s)} {round_medians[s][-1]:.2f} s' for s in sides) +
                          f' ({time.time() - t0:.0f} s)', file=sys.stderr, flush=True)
                entry = {'depth': depth, 'batch': batch, 'sides': [], 'ratios': []}
                for s in sides:
                    entry['sides'].append({'side': side_name(s), 'seconds': summary(samples[s]),
                                           'round_medians': round_medians[s],
                                           'decoder_s': statistics.median(decoders[s])})
                for v in (s for s in sides if s[0] == 'varps'):
                    for o in (s for s in sides if s[0] == 'official'):
                        rounds = [a / b for a, b in zip(round_medians[o], round_medians[v])]
                        entry['ratios'].append({'varps': side_name(v), 'official': side_name(o),
                                                'ratio': statistics.median(samples[o]) / statistics.median(samples[v]),
                                                'round_ratios': rounds})
                results.append(entry)

    machine = machine_line()
    isa = 'every side limited to AVX2 kernels' if args.isa == 'avx2' else 'each side on its native kernels'
    lines = [f'machine: {machine}; {isa}',
             f'threads: {args.threads} per side; rounds: {args.rounds} x {args.repeats} timed calls per side']
    for s in sides:
        if s[0] == 'varps':
            lines.append(f'{side_name(s)}: {side_builds.get(s, "")}')
    for py in pythons:
        lines.append(f'official on {py}: PyTorch {builds[py]}')
    lines += ['', '| model | batch | side | seconds, median [min-max] | decoder s |', '| --- | ---: | --- | ---: | ---: |']
    for r in results:
        for s in r['sides']:
            t = s['seconds']
            lines.append(f'| d{r["depth"]} | {r["batch"]} | {s["side"]} | {t["median"]:.2f} '
                         f'[{t["min"]:.2f}-{t["max"]:.2f}] | {s["decoder_s"]:.2f} |')
    lines += ['', '| model | batch | varps | official | official / varps [rounds] |', '| --- | ---: | --- | --- | ---: |']
    for r in results:
        for q in r['ratios']:
            lines.append(f'| d{r["depth"]} | {r["batch"]} | {q["varps"]} | {q["official"]} | {q["ratio"]:.2f}x '
                         f'[{min(q["round_ratios"]):.2f}-{max(q["round_ratios"]):.2f}] |')
    table = '\n'.join(lines)
    with open(os.path.join(args.out, 'compare.md'), 'w') as f:
        f.write(table + '\n')
    with open(os.path.join(args.out, 'compare.json'), 'w') as f:
        json.dump({'machine': machine, 'isa': args.isa, 'threads': args.threads, 'rounds': args.rounds,
                   'repeats': args.repeats, 'torch': builds, 'results': results}, f, indent=1)
    print(table)


if __name__ == '__main__':
    main()
