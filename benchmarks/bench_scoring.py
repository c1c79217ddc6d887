"""Scoring the full simulated campaign: 15,000 prompts x 5 annotators x 4 criteria = 300,000 ratings and
their pairwise preferences. Times `score_items` (validation, criterion scores, Borda, blend, ranking with
tie-breaks), `rescore` (what a slider move costs) and the truth-recovery CIs at one alpha.
Target: scoring well under 2 s on 2 cores. Writes benchmarks/results/scoring.json and scoring.md.

    .venv/bin/python benchmarks/bench_scoring.py
"""
import os, platform, statistics, time
from pathlib import Path
import numpy as np
from rewardbench_nb.core import package_versions, write_json, write_text
from rewardbench_nb.data import simulate_campaign
from rewardbench_nb.scoring import score_items, rescore, recovery
from _common import cpu_kind

N_PROMPTS, SEED, REPEATS = 15000, 0, 5
OUT = Path(__file__).resolve().parent/'results'

def timed(f, repeats=REPEATS):
    ts, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter(); out = f(); ts.append(time.perf_counter() - t0)
    return out, ts

def main():
    t0 = time.perf_counter(); camp = simulate_campaign(n_prompts=N_PROMPTS, seed=SEED); t_sim = time.perf_counter() - t0
    groups = camp.prompts.dropna(subset=['group']).set_index('id')['group']
    score_items(camp.ratings.head(400), camp.preferences.head(200))   # warm up
    scores, t_score = timed(lambda: score_items(camp.ratings, camp.preferences, items=camp.prompts['id'], groups=groups))
    _, t_comp = timed(lambda: score_items(camp.ratings, camp.preferences))          # groups from the comparison graph
    _, t_re = timed(lambda: rescore(scores, {'usefulness': .25, 'factuality': .25, 'safety': .25, 'alignment': .25}, 0.5))
    rec, t_rec = timed(lambda: recovery(camp, alphas=[0.6], n_boot=1000, scores=scores), 1)
    t = scores.table
    med = statistics.median
    res = dict(n_prompts=N_PROMPTS, n_ratings=len(camp.ratings), n_preferences=len(camp.preferences), n_items=len(t),
               n_scored=int(t['final'].notna().sum()), tie_breaks=t['tie_break'].value_counts().to_dict(),
               simulate_seconds=t_sim,
               score_items_seconds=dict(median=med(t_score), min=min(t_score), all=t_score),
               score_items_components_seconds=dict(median=med(t_comp), min=min(t_comp)),
               rescore_seconds=dict(median=med(t_re), min=min(t_re)),
               recovery_one_alpha_seconds=t_rec[0], recovery=rec.to_dict('records'),
               cpu_count=os.cpu_count(), cpu_kind=cpu_kind(), load_average=os.getloadavg(), platform=platform.platform(),
               versions=package_versions(('rewardbench_nb', 'numpy', 'pandas', 'scipy')))
    res['target_met'] = res['score_items_seconds']['median'] < 2.0
    write_json(OUT/'scoring.json', res)
    sp = rec.set_index('method').estimate
    md = f"""# bench_scoring: the full simulated campaign

{N_PROMPTS:,} prompts, {len(camp.ratings):,} ratings (5 annotators x 4 criteria), {len(camp.preferences):,} preferences;
{len(t):,} items, {res['n_scored']:,} with a final score. Machine: {os.cpu_count()} CPU cores, CPU kind {res['cpu_kind']['label']} (shared; load average at the end {res['load_average'][0]:.1f}).

| step | median of {REPEATS} | fastest |
|---|---|---|
| `score_items` (checks, criterion scores, Borda by given groups, blend, ranking) | {med(t_score):.3f} s | {min(t_score):.3f} s |
| `score_items`, groups = components of the comparison graph | {med(t_comp):.3f} s | {min(t_comp):.3f} s |
| `rescore` (new weights and alpha: what one slider move costs) | {med(t_re):.3f} s | {min(t_re):.3f} s |
| recovery at alpha 0.6: Spearman + Kendall with 1,000-resample CIs on {int(rec.n_items.iloc[0]):,} items (once) | {t_rec[0]:.3f} s | |
| (simulating the campaign, not part of scoring) | {t_sim:.3f} s | |

Tie-breaks used: {', '.join(f"{k or 'no tie'} {v:,}" for k, v in res['tie_breaks'].items())}.
Recovery of the true quality at alpha 0.6: Spearman {sp['spearman']:.3f}, Kendall {sp['kendall']:.3f}.

Target (scoring well under 2 s): {'met' if res['target_met'] else 'NOT met'}.
"""
    write_text(OUT/'scoring.md', md)
    print(md)

if __name__ == '__main__': main()
