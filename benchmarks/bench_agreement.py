"""Agreement at full scale: the simulated campaign (15,000 items x 5 annotators x 4 criteria = 300,000 ratings).

Times Krippendorff's alpha with 1,000-resample bootstrap CIs for the four criteria (the part of the agree+score
budget of 5 s on 2 cores that this stage owns), the per-domain breakdown and the whole stage, and compares our alpha
with the `krippendorff` package (GPL-3.0, used here only as a reference, as in the tests) on the same data.

Run once: `.venv/bin/python benchmarks/bench_agreement.py` -> benchmarks/results/agreement.{json,md}.
"""
import argparse, os, platform, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd
import krippendorff
from rewardbench_nb.core import Run, package_versions, write_json, write_text
from rewardbench_nb.data import simulate_campaign
from rewardbench_nb.agreement import STAGE, agreement_report, krippendorff_alpha, LEVELS
from _common import cpu_kind

OUT = Path(__file__).resolve().parent/'results'

def best_of(fn, repeat:int)->tuple:
    "(min seconds over `repeat` calls, last result)."
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t0)
    return min(times), out

def machine()->dict:
    cpu = next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name')), platform.processor()) \
          if Path('/proc/cpuinfo').exists() else platform.processor()
    return dict(platform=platform.platform(), cpu=cpu, cores=os.cpu_count(), cpu_kind=cpu_kind(), load_average_at_start=[round(x, 2) for x in os.getloadavg()],
                versions={**package_versions(('numpy', 'pandas', 'scipy', 'statsmodels', 'plotly')), 'krippendorff': krippendorff.__version__ if hasattr(krippendorff, '__version__') else '0.9.0'})

def main(n_prompts:int=15000, n_boot:int=1000, repeat:int=3):
    info = machine()
    camp = simulate_campaign(n_prompts=n_prompts, seed=0, agreement=0.7)
    ratings, prompts = camp.ratings, camp.prompts
    criteria = list(pd.unique(ratings.criterion))
    shape = dict(ratings=len(ratings), items=ratings.item.nunique(), annotators=ratings.annotator.nunique(), criteria=len(criteria),
                 ratings_per_item_criterion=float(ratings.groupby(['item', 'criterion']).size().mean()))

    t_ci, rep = best_of(lambda: agreement_report(ratings, None, 'interval', n_boot), repeat)
    t_dom, rep_dom = best_of(lambda: agreement_report(ratings, prompts, 'interval', n_boot), repeat)
    def stage():
        with tempfile.TemporaryDirectory() as d:
            ctx = dict(seed=0, ratings=ratings, prompts=prompts, args=argparse.Namespace())
            STAGE(Run(d, {}, run_id='bench'), {'agreement': {'n_boot': n_boot}}, ctx)
    t_stage, _ = best_of(stage, 1)

    mats = {c: ratings[ratings.criterion == c].pivot(index='annotator', columns='item', values='likert').to_numpy(float) for c in criteria}
    vs = []
    for level in LEVELS:
        for c, m in mats.items():
            t_ours, a_ours = best_of(lambda: krippendorff_alpha(m, level), repeat + 2)
            t_ref, a_ref = best_of(lambda: float(krippendorff.alpha(reliability_data=m, level_of_measurement=level)), repeat + 2)
            vs.append(dict(level=level, criterion=c, ours_s=t_ours, krippendorff_s=t_ref, speed_ratio=t_ref / t_ours, abs_diff=abs(a_ours - a_ref)))
    vs = pd.DataFrame(vs)
    m0 = mats[criteria[0]]
    t_one_ref, _ = best_of(lambda: krippendorff.alpha(reliability_data=m0[:, np.random.default_rng(0).integers(0, m0.shape[1], m0.shape[1])],
                                                      level_of_measurement='interval'), 5)

    res = dict(machine=info, data=shape, n_boot=n_boot,
               seconds=dict(alpha_with_ci_4_criteria=round(t_ci, 3), alpha_with_ci_4_criteria_and_domains=round(t_dom, 3),
                            stage_total=round(t_stage, 3), domain_rows=int((rep_dom.table.domain != 'all').sum()),
                            naive_bootstrap_with_krippendorff_4_criteria_estimate=round(4 * n_boot * t_one_ref, 1)),
               alpha=rep.table.query("statistic == 'alpha'").set_index('criterion').rename(columns={'estimate': 'alpha'})[
                   ['alpha', 'ci_low', 'ci_high']].round(4).to_dict('index'),
               versus_krippendorff=dict(max_abs_diff=float(vs.abs_diff.max()), min_speed_ratio=round(float(vs.speed_ratio.min()), 2),
                                        median_speed_ratio=round(float(vs.speed_ratio.median()), 2),
                                        by_level=vs.groupby('level')[['ours_s', 'krippendorff_s', 'speed_ratio']].median().round(4).to_dict('index')))
    OUT.mkdir(exist_ok=True)
    write_json(OUT/'agreement.json', res)
    write_text(OUT/'agreement.md', markdown(res))
    print(markdown(res))
    return res

def markdown(r:dict)->str:
    s, v, m, d = r['seconds'], r['versus_krippendorff'], r['machine'], r['data']
    lines = ["# Agreement benchmark", "",
             f"Simulated campaign: {d['ratings']:,} ratings, {d['items']:,} items, {d['annotators']} annotators, {d['criteria']} criteria "
             f"({d['ratings_per_item_criterion']:.0f} ratings per item and criterion). Interval alpha, {r['n_boot']:,} bootstrap resamples; best of 3 runs.", "",
             "| what | seconds |", "|---|---|",
             f"| alpha and Fleiss' kappa, each with a 95% CI, 4 criteria (the agree part of the 5 s agree+score budget) | {s['alpha_with_ci_4_criteria']} |",
             f"| ... plus {s['domain_rows']} criterion x domain rows (alpha and kappa) | {s['alpha_with_ci_4_criteria_and_domains']} |",
             f"| whole `agree` stage (quorum, review queue, report with domains, CSV + HTML) | {s['stage_total']} |",
             f"| the same CIs by calling the `krippendorff` package once per resample (estimate) | {s['naive_bootstrap_with_krippendorff_4_criteria_estimate']} |", "",
             "Alpha alone, ours vs the `krippendorff` package (0.9.0) on the same annotators x items matrix (median over the 4 criteria, best of 5):", "",
             "| level | ours (s) | krippendorff (s) | speed ratio |", "|---|---|---|---|"]
    lines += [f"| {lvl} | {x['ours_s']:.4f} | {x['krippendorff_s']:.4f} | {x['speed_ratio']:.1f}x |" for lvl, x in v['by_level'].items()]
    lines += ["", f"Largest difference between the two alphas: {v['max_abs_diff']:.1e}. Slowest case: ours {v['min_speed_ratio']}x as fast.", "",
              "| criterion | alpha | 95% CI |", "|---|---|---|"]
    lines += [f"| {c} | {x['alpha']:.4f} | [{x['ci_low']:.4f}, {x['ci_high']:.4f}] |" for c, x in r['alpha'].items()]
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores, CPU kind {m['cpu_kind']['label']}, {m['platform']}; load average at start {m['load_average_at_start']} "
              "(the machine is shared, so times are upper bounds). Versions: " + ', '.join(f'{k} {x}' for k, x in m['versions'].items()) + "."]
    return '\n'.join(lines) + '\n'

if __name__ == '__main__':
    main()
