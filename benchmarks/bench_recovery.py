"""How well the blended score recovers the simulator's true quality at full scale, on a fine grid of alpha.

The scoring notebook draws its conclusion about the best alpha from these numbers (a 600-prompt campaign in the
notebook is too small to carry one). Two parts, on the default 15,000-prompt campaign (seed 0):

* the recovery curve: Spearman and Kendall between `final` and the true quality, with 95% bootstrap CIs
  (1,000 resamples), at alpha = 0, 0.05, ..., 1;
* what moves the best alpha: the same Spearman curve (point estimates) on campaigns whose preferences say more or
  less (groups of 2 or 6 items, 1 or 5 judges per pair, a wider tie margin) or whose annotators agree more or less.

Not a speed benchmark: the numbers do not depend on the machine. Writes benchmarks/results/recovery.{json,md}.

    .venv/bin/python benchmarks/bench_recovery.py
"""
from pathlib import Path
import numpy as np, pandas as pd
from scipy.stats import spearmanr
from rewardbench_nb.core import package_versions, write_json, write_text
from rewardbench_nb.data import simulate_campaign
from rewardbench_nb.scoring import recovery, rescore, score_items

OUT = Path(__file__).resolve().parent/'results'
ALPHAS = np.round(np.linspace(0, 1, 21), 2)
N_PROMPTS, SEED, N_BOOT = 15000, 0, 1000
SETTINGS = {'default (groups of 3, 3 judges per pair)': {}, 'groups of 2': dict(group_size=2), 'groups of 6': dict(group_size=6),
            '1 judge per pair': dict(judges_per_pair=1), '5 judges per pair, groups of 6': dict(judges_per_pair=5, group_size=6),
            'tie margin 0.5': dict(tie_margin=0.5), 'agreement 0.4': dict(agreement=0.4), 'agreement 0.9': dict(agreement=0.9)}

def spearman_curve(camp)->pd.Series:
    "Spearman of final vs true quality at every alpha of `ALPHAS` (point estimates)."
    groups = camp.prompts.dropna(subset=['group']).set_index('id')['group']
    scores, truth = score_items(camp.ratings, camp.preferences, groups=groups), camp.truth.set_index('id')['quality']
    def rho(a):
        t = rescore(scores, alpha=float(a)).table
        xy = pd.DataFrame({'x': t['final'], 'y': truth.reindex(t.index)}).dropna()
        return float(spearmanr(xy.x, xy.y).statistic)
    return pd.Series({float(a): rho(a) for a in ALPHAS})

def main():
    camp = simulate_campaign(n_prompts=N_PROMPTS, seed=SEED)
    curve = recovery(camp, alphas=ALPHAS, n_boot=N_BOOT, seed=SEED)
    sweep = []
    for name, kw in SETTINGS.items():
        s = spearman_curve(camp if not kw else simulate_campaign(n_prompts=N_PROMPTS, seed=SEED, **kw))
        sweep.append(dict(setting=name, best_alpha=float(s.idxmax()), spearman_at_best=round(s.max(), 4),
                          spearman_at_0_6=round(s[0.6], 4), spearman_at_1=round(s[1.0], 4)))
    res = dict(campaign=dict(n_prompts=N_PROMPTS, seed=SEED), n_boot=N_BOOT, alphas=ALPHAS.tolist(),
               curve=curve.round(6).to_dict('records'), sweep=sweep,
               versions=package_versions(('rewardbench_nb', 'numpy', 'pandas', 'scipy')))
    OUT.mkdir(exist_ok=True)
    write_json(OUT/'recovery.json', res)
    write_text(OUT/'recovery.md', markdown(res))
    print(markdown(res))
    return res

def markdown(r:dict)->str:
    sp = pd.DataFrame(r['curve']).query("method == 'spearman'").set_index('alpha')
    best = sp.estimate.idxmax()
    lines = ["# Recovery of the true quality at full scale", "",
             f"Simulated campaign of {r['campaign']['n_prompts']:,} prompts (seed {r['campaign']['seed']}); "
             f"Spearman and Kendall between the final score and the true quality, 95% bootstrap CIs ({r['n_boot']:,} resamples).", "",
             f"Best alpha by Spearman: **{best:g}** ({sp.estimate[best]:.4f} [{sp.low[best]:.4f}, {sp.high[best]:.4f}]); "
             f"at the default 0.6: {sp.estimate[0.6]:.4f}; at 1 (ratings only): {sp.estimate[1.0]:.4f}.", "",
             "| alpha | Spearman | 95% CI |", "|---|---|---|",
             *[f"| {a:g} | {row.estimate:.4f} | [{row.low:.4f}, {row.high:.4f}] |" for a, row in sp.iterrows()], "",
             "What moves the best alpha (Spearman, point estimates on the same grid):", "",
             "| campaign | best alpha | Spearman there | at 0.6 | at 1 |", "|---|---|---|---|---|",
             *[f"| {s['setting']} | {s['best_alpha']:g} | {s['spearman_at_best']:.4f} | {s['spearman_at_0_6']:.4f} | "
               f"{s['spearman_at_1']:.4f} |" for s in r['sweep']], ""]
    return '\n'.join(lines)

if __name__ == '__main__': main()
