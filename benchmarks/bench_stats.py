"""Bootstrap CIs of Spearman's rho and Kendall's tau-b: rewardbench_nb.stats against scipy.stats.bootstrap.

n = 3,000 pairs, 1,000 paired resamples, percentile intervals, the same seed on both sides (so the
resamples, and therefore the intervals, are identical). Target: both intervals in at most 2 s and at
least 5x faster than scipy. Writes benchmarks/results/stats.json and stats.md.

    .venv/bin/python benchmarks/bench_stats.py
"""
import os, platform, statistics, time
from pathlib import Path
import numpy as np
from scipy import stats
from rewardbench_nb.core import package_versions, write_json, write_text
from rewardbench_nb.stats import corr_cis
from _common import cpu_kind

N, B, SEED, REPEATS = 3000, 1000, 0, 5
OUT = Path(__file__).resolve().parent/'results'

def data(n=N, seed=1):
    "Correlated scores with ties (two decimals), like reward-model scores against ratings."
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n); y = 0.7*x + 0.7*rng.normal(size=n)
    return x.round(2), y.round(2)

def ours(x, y): return {c.method: (c.low, c.high) for c in corr_cis(x, y, n_boot=B, seed=SEED)}

def scipy_ci(x, y, method):
    f = {'spearman': stats.spearmanr, 'kendall': stats.kendalltau}[method]
    r = stats.bootstrap((x, y), lambda a, b: f(a, b).statistic, paired=True, vectorized=False, n_resamples=B,
                        method='percentile', rng=np.random.default_rng(SEED))
    return tuple(r.confidence_interval)

def timed(f, repeats):
    ts, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter(); out = f(); ts.append(time.perf_counter() - t0)
    return out, ts

def main():
    x, y = data()
    ours(*data(200))                                                    # warm up imports and caches
    mine, t_ours = timed(lambda: ours(x, y), REPEATS)
    theirs, t_sp = {}, {}
    for m in ('spearman', 'kendall'):
        ci, ts = timed(lambda: scipy_ci(x, y, m), 2)
        theirs[m], t_sp[m] = ci, ts
    t_scipy = [a + b for a, b in zip(t_sp['spearman'], t_sp['kendall'])]
    diff = max(abs(a - b) for m in mine for a, b in zip(mine[m], theirs[m]))
    res = dict(n=N, n_boot=B, seed=SEED, ci_method='percentile',
               ours_seconds=dict(median=statistics.median(t_ours), min=min(t_ours), all=t_ours),
               scipy_seconds=dict(median=statistics.median(t_scipy), min=min(t_scipy), spearman=t_sp['spearman'], kendall=t_sp['kendall']),
               speedup_median=statistics.median(t_scipy)/statistics.median(t_ours), speedup_min=min(t_scipy)/min(t_ours),
               ours_ci={m: list(v) for m, v in mine.items()}, scipy_ci={m: list(v) for m, v in theirs.items()},
               max_abs_ci_difference=diff, cpu_count=os.cpu_count(), cpu_kind=cpu_kind(), load_average=os.getloadavg(),
               platform=platform.platform(), versions=package_versions(('rewardbench_nb', 'numpy', 'scipy', 'threadpoolctl')))
    targets = dict(under_2s=res['ours_seconds']['median'] <= 2.0, at_least_5x=res['speedup_median'] >= 5, same_intervals=diff < 1e-12)
    res['targets_met'] = targets
    write_json(OUT/'stats.json', res)
    md = f"""# bench_stats: bootstrap CIs of Spearman and Kendall

n = {N:,} pairs with ties, {B:,} paired resamples, percentile 95% intervals, seed {SEED} on both sides.
Machine: {os.cpu_count()} CPU cores, CPU kind {res['cpu_kind']['label']} (shared; load average at the end {res['load_average'][0]:.1f}), {platform.platform()}.

| | both intervals (median of runs) | fastest run |
|---|---|---|
| `rewardbench_nb.stats.corr_cis` (Spearman + Kendall) | {res['ours_seconds']['median']:.3f} s | {res['ours_seconds']['min']:.3f} s |
| `scipy.stats.bootstrap` (Spearman, then Kendall) | {res['scipy_seconds']['median']:.3f} s | {res['scipy_seconds']['min']:.3f} s |
| speed-up | {res['speedup_median']:.1f}x | {res['speedup_min']:.1f}x |

Intervals (identical resamples, so identical intervals; largest difference {diff:.1e}):

| method | ours | scipy |
|---|---|---|
""" + '\n'.join(f"| {m} | [{mine[m][0]:.4f}, {mine[m][1]:.4f}] | [{theirs[m][0]:.4f}, {theirs[m][1]:.4f}] |" for m in mine) + f"""

Targets: at most 2 s: {'met' if targets['under_2s'] else 'NOT met'}; at least 5x faster than scipy: {'met' if targets['at_least_5x'] else 'NOT met'}; same intervals: {'yes' if targets['same_intervals'] else 'NO'}.
"""
    write_text(OUT/'stats.md', md)
    print(md)

if __name__ == '__main__': main()
