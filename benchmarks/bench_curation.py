"""Benchmark of curation: dedup + split wall time, peak memory and duplicate-detection accuracy at 15k-200k prompts.

Each size runs in its own subprocess (so peak memory is that size's alone). The campaign is simulated
first (not timed); then `dedup` + `make_splits` are timed together, and the clusters are scored against
the simulator's planted duplicates. A separate child compares the engines (MinHash, LSH, whole dedup; numpy vs datasketch) on the smallest size.

    python benchmarks/bench_curation.py                  # 15k, 50k, 100k, 200k; writes benchmarks/results/curation.{json,md}
    python benchmarks/bench_curation.py --sizes 15000    # a quick look
"""
import argparse, datetime as dt, json, os, platform, resource, subprocess, sys, time
from pathlib import Path
from _common import cpu_kind

SIZES = (15_000, 50_000, 100_000, 200_000)
TARGET_100K_S, TARGET_GROWTH = 60.0, 5.0
RESULTS = Path(__file__).resolve().parent/'results'

def _rss_mb()->float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

def _campaign(n:int, seed:int):
    from rewardbench_nb.simulation import simulate
    return simulate(n_prompts=n, seed=seed, ratings=False, preferences=False)

def _kind_recall(table, truth, kind:str)->float:
    "Share of planted duplicates of `kind` put in the same cluster as their original."
    cl = dict(zip(table['id'], table['cluster']))
    t = truth[truth['dup_kind'] == kind]
    return float(sum(cl[i] == cl[o] for i, o in zip(t['id'], t['dup_of'])) / max(len(t), 1))

def child_size(n:int, seed:int, repeats:int=3)->dict:
    "Time dedup + split of a simulated campaign of `n` prompts (best of `repeats`); score it against the truth."
    import gc, statistics
    from rewardbench_nb.curation import dedup, make_splits, pair_scores, true_clusters
    camp = _campaign(n, seed); prompts = camp.prompts
    gc.collect(); rss0 = _rss_mb(); runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        d = dedup(prompts, seed=seed)
        t1 = time.perf_counter()
        splits = make_splits(d.kept, seed=seed)
        runs.append((time.perf_counter() - t0, t1 - t0, d.timings))
    best = min(runs, key=lambda x: x[0])
    s = pair_scores(d.table['cluster'], true_clusters(camp.truth, prompts['id']))
    return dict(n=n, seconds=round(best[0], 2), median_s=round(statistics.median(r[0] for r in runs), 2), repeats=repeats,
                dedup_s=round(best[1], 2), split_s=round(best[0] - best[1], 2), steps=best[2],
                lsh_candidates=d.n_candidates, kept=len(d.kept), split_counts={k: int(v) for k, v in splits.value_counts().items()},
                rss_before_mb=round(rss0), peak_rss_mb=round(_rss_mb()), precision=round(s['precision'], 5), recall=round(s['recall'], 5),
                true_pairs=s['true_pairs'], predicted_pairs=s['predicted_pairs'],
                recall_exact=round(_kind_recall(d.table, camp.truth, 'exact'), 5), recall_near=round(_kind_recall(d.table, camp.truth, 'near'), 5),
                mean_text_chars=round(float(prompts['text'].str.len().mean()), 1), loadavg=os.getloadavg())

def _timed(f, *a, **k):
    t0 = time.perf_counter(); out = f(*a, **k)
    return out, round(time.perf_counter() - t0, 2)

def child_engines(n:int, seed:int)->dict:
    "Engines on the same campaign: MinHash signatures, LSH candidates and whole dedup, numpy vs datasketch."
    import numpy as np
    from datasketch import MinHash
    from rewardbench_nb.text import normalise_text, shingle_list
    from rewardbench_nb.curation import dedup, _signatures_numpy, _signatures_datasketch, _lsh_pairs
    prompts = _campaign(n, seed).prompts
    norms = [normalise_text(t) for t in prompts['text']]
    a, sig_np = _timed(_signatures_numpy, norms, 128, 5, seed)
    b, sig_ds = _timed(_signatures_datasketch, norms, 128, 5, seed)
    _, sig_sha1 = _timed(MinHash.bulk, ([s.encode() for s in shingle_list(t, 5)] for t in norms), num_perm=128, seed=seed)
    ca, lsh_np = _timed(_lsh_pairs, a, 0.8, seed, 'numpy')
    cb, lsh_ds = _timed(_lsh_pairs, a, 0.8, seed, 'datasketch')
    da, dedup_np = _timed(dedup, prompts, seed=seed, engine='numpy')
    db, dedup_ds = _timed(dedup, prompts, seed=seed, engine='datasketch')
    return dict(n=n, minhash=dict(numpy=sig_np, datasketch_same_hash=sig_ds, datasketch_sha1=sig_sha1, identical=bool((a == b).all())),
                lsh=dict(numpy=lsh_np, datasketch=lsh_ds, candidates=len(ca), identical=bool(np.array_equal(ca, cb))),
                dedup=dict(numpy=dedup_np, datasketch=dedup_ds, identical=bool((da.table['cluster'] == db.table['cluster']).all())))

def _run_child(args:list)->dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode: raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])

def machine()->dict:
    from rewardbench_nb.core import package_versions
    cpu = next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name')), platform.processor()) \
          if Path('/proc/cpuinfo').exists() else platform.processor()
    return dict(date=dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'), cores=os.cpu_count(),
                usable_cores=len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
                cpu=cpu, platform=platform.platform(), versions=package_versions(('rewardbench_nb', 'numpy', 'pandas', 'scipy', 'datasketch')),
                loadavg_start=os.getloadavg(), cpu_kind=cpu_kind())

def markdown(res:dict)->str:
    m, rows = res['machine'], res['sizes']
    lines = ["# Curation benchmark", "",
             f"{m['date']}, {m['cpu']}, {m['usable_cores']} usable cores ({m['cores']} online), CPU kind {m['cpu_kind']['label']}, {m['platform']}.",
             "Versions: " + ', '.join(f"{k} {v}" for k, v in m['versions'].items()) + ".",
             f"Load average (1/5/15 min) at start {tuple(round(x, 2) for x in m['loadavg_start'])}, at end {tuple(round(x, 2) for x in res['loadavg_end'])}"
             + (" — the machine was shared with other work, so times are upper bounds." if m['loadavg_start'][0] > 1.5 else "."), "",
             "Dedup (exact + MinHash LSH near duplicates, threshold 0.8, 128 permutations, char 5-grams) + domain-stratified split with 2 held-out domains, "
             "default numpy engine, on campaigns from `rewardbench_nb.simulation.simulate` (3% exact and 5% near duplicates planted). Each size runs in its own process. "
             "Times are the best of `--repeats` runs (median alongside; the machine may be shared); "
             "peak RSS includes the simulated campaign (`rss before` is the peak before dedup started).", "",
             "| prompts | dedup + split (s, best) | median (s) | dedup (s) | split (s) | LSH step (s) | MinHash step (s) | candidates | peak RSS (MB) | RSS before (MB) | pair precision | pair recall | recall exact | recall near |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['seconds']} | {r['median_s']} | {r['dedup_s']} | {r['split_s']} | {r['steps']['lsh']} | {r['steps']['minhash']} | {r['lsh_candidates']:,} | "
                     f"{r['peak_rss_mb']:,} | {r['rss_before_mb']:,} | {r['precision']:.4f} | {r['recall']:.4f} | {r['recall_exact']:.4f} | {r['recall_near']:.4f} |")
    c = res['checks']
    lines += ["", "Targets: " + (f"100k in {c['seconds_100k']} s (target <= {TARGET_100K_S:.0f} s: {'met' if c['met_100k'] else 'NOT met'}); " if 'seconds_100k' in c else '')
              + (f"time(200k)/time(50k) = {c['growth_200k_50k']} (target <= {TARGET_GROWTH:.0f}: {'met' if c['met_growth'] else 'NOT met'})." if 'growth_200k_50k' in c else '')]
    if res.get('engines'):
        e = res['engines']; x = lambda part, k: f"{e[part][k] / e[part]['numpy']:.1f}x" if e[part]['numpy'] else 'n/a'
        lines += ["", f"## Engines ({e['n']:,} prompts): numpy (default) vs datasketch", "",
                  "| step | numpy (s) | datasketch (s) | datasketch / numpy | same result |", "|---|---|---|---|---|",
                  f"| MinHash signatures (`MinHash.bulk`, same shingle hash) | {e['minhash']['numpy']} | {e['minhash']['datasketch_same_hash']} | {x('minhash', 'datasketch_same_hash')} | {e['minhash']['identical']} |",
                  f"| MinHash signatures (`MinHash.bulk`, datasketch's default sha1 hash) | {e['minhash']['numpy']} | {e['minhash']['datasketch_sha1']} | {x('minhash', 'datasketch_sha1')} | (other hash) |",
                  f"| LSH candidates (`MinHashLSH` + `insertion_session`; {e['lsh']['candidates']:,} pairs) | {e['lsh']['numpy']} | {e['lsh']['datasketch']} | {x('lsh', 'datasketch')} | {e['lsh']['identical']} |",
                  f"| whole dedup | {e['dedup']['numpy']} | {e['dedup']['datasketch']} | {x('dedup', 'datasketch')} | {e['dedup']['identical']} |"]
    lines += ["", "Per-step seconds of the largest size: " + ', '.join(f"{k} {v}" for k, v in rows[-1]['steps'].items()) + "." if rows else ""]
    return '\n'.join(lines) + '\n'

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', type=int, nargs='+', default=list(SIZES))
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=str(RESULTS), help='folder for curation.json and curation.md')
    p.add_argument('--repeats', type=int, default=3, help='timed runs per size (the best is reported)')
    p.add_argument('--no-engines', action='store_true', help='skip the engine comparison')
    p.add_argument('--child', choices=['size', 'engines'], help=argparse.SUPPRESS)
    p.add_argument('--n', type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child: print(json.dumps(child_size(a.n, a.seed, a.repeats) if a.child == 'size' else child_engines(a.n, a.seed))); return
    res = dict(machine=machine(), sizes=[], engines=None)
    for n in a.sizes:
        r = _run_child(['--child', 'size', '--n', str(n), '--seed', str(a.seed), '--repeats', str(a.repeats)]); res['sizes'].append(r)
        print(f"{n:>8,} prompts: dedup+split {r['seconds']:7.2f} s (lsh {r['steps']['lsh']} s), peak {r['peak_rss_mb']:,} MB, "
              f"precision {r['precision']:.4f}, recall {r['recall']:.4f}, load {r['loadavg'][0]:.1f}", flush=True)
    if not a.no_engines:
        res['engines'] = _run_child(['--child', 'engines', '--n', str(min(a.sizes)), '--seed', str(a.seed)])
        print(f"engines: {res['engines']}", flush=True)
    t = {r['n']: r['seconds'] for r in res['sizes']}
    checks = {}
    if 100_000 in t: checks.update(seconds_100k=t[100_000], met_100k=t[100_000] <= TARGET_100K_S)
    if 200_000 in t and 50_000 in t: checks.update(growth_200k_50k=round(t[200_000] / t[50_000], 2), met_growth=t[200_000] / t[50_000] <= TARGET_GROWTH)
    res['checks'], res['loadavg_end'] = checks, os.getloadavg()
    from rewardbench_nb.core import write_json, write_text
    out = Path(a.out); write_json(out/'curation.json', res); write_text(out/'curation.md', markdown(res))
    print(markdown(res))

if __name__ == '__main__': main()
