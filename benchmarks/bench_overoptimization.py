"""The gamma lab at two sizes: the stage's defaults and a larger "lab" size, timed, with what each can show.

Each size is one `rbnb gamma --gamma-reward-model GOLD` subprocess from the repository root (so `configs/gamma.toml`
holds the defaults, as in `make run`); the lab size adds `--set` overrides. The gold reward model is the one `train-rm`
trains at its defaults (`rbnb run --until train-rm`, run here first unless `--gold DIR` names one). From each run:

* wall seconds of the command and of the stage's steps (pools, best-of-n, PPO: the manifest's `timings`);
* in-domain gamma, gold drop and gold peak of every proxy with their 95% intervals, and the checks the stage is for:
  how many gold curves turn down significantly (gold drop's interval above 0), whether the proxies with the highest
  and the lowest gamma have disjoint intervals, the share of gammas whose interval spans at most a factor 3;
* the seed's claims (rank correlations and slope with intervals and verdicts) and the ensembles' gains;
* the CPU kind and the load average, as every benchmark here records them.

    .venv/bin/python benchmarks/bench_overoptimization.py               # -> results/overoptimization-<kind>.{json,md}
    .venv/bin/python benchmarks/bench_overoptimization.py --sizes default --gold runs/<id>/reward_model/model
    .venv/bin/python benchmarks/bench_overoptimization.py --render      # the .md again from the .json, nothing run

A run of some sizes keeps the recorded results of the others (same CPU kind).
"""
import argparse, json, os, tempfile
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import numpy as np, pandas as pd
from rewardbench_nb.core import package_versions, write_json, write_text
from rewardbench_nb.curation import md_table
from _common import OUT, busy_note, loadavg, rbnb, record_args, train_rm

LAB = dict(pool_prompts=228, pool_size=512, shift_prompts=64, shift_pool_size=64, bench_pairs=256,
           ppo_iterations=40, ppo_proxies=['small', 'small-ensemble-uwo', 'full'])
SIZES = {'default': {}, 'lab': LAB}
GAIN_COLUMNS = ['name', 'baseline', 'quantity', 'estimate', 'low', 'high']
CLAIM_COLUMNS = ['claim', 'statistic', 'expected', 'estimate', 'low', 'high', 'points', 'verdict']

def checks(fits:pd.DataFrame)->dict:
    "The checks the stage is for, on the in-domain best-of-n fits."
    f = fits[(fits.set == fits.set.iloc[0]) & (fits.form == 'bon')].set_index(['quantity', 'name'])
    g, drop = f.loc['gamma'], f.loc['gold_drop']
    hi, lo = g.estimate.idxmax(), g.estimate.idxmin()
    return dict(turning_down=sorted(drop.index[drop.low > 0]), highest_gamma=hi, lowest_gamma=lo,
                extremes_apart=bool(g.low[hi] > g.high[lo]),
                share_within_factor_3=float(((g.high / g.low <= 3) & (g.low > 0)).mean()),
                ensembles=sorted(n for n in g.index if 'ensemble' in n))

def measure(size:str, gold:Path, runs:Path)->dict:
    "One size: the command's time, the stage's steps, the tables that matter."
    sets = [a for k, v in SIZES[size].items() for a in ('--set', f'gamma.{k}={json.dumps(v)}')]
    load0 = loadavg()
    secs, _ = rbnb('gamma', '--gamma-reward-model', gold, '--quiet', '--runs-dir', runs, '--run-id', size, *sets)
    out, m = runs/size/'gamma', json.loads((runs/size/'manifest.json').read_text())
    fits = pd.read_csv(out/'fits.csv')
    home = fits[(fits.set == fits.set.iloc[0]) & (fits.form == 'bon') & fits.quantity.isin(['gamma', 'gold_drop',
                                                                                             'gold_peak'])]
    return dict(size=size, overrides=SIZES[size], settings=m['settings']['gamma'], wall_seconds=round(secs, 1),
                stage_seconds=m['records']['timings']['gamma'], load=[load0, loadavg()], checks=checks(fits),
                in_domain=home.to_dict('records'), claims=pd.read_csv(out/'claims.csv').to_dict('records'),
                ensembles=pd.read_csv(out/'ensembles.csv').to_dict('records'),
                ppo=fits[fits.form == 'rl'].to_dict('records'))

def gold_note(seconds)->str:
    "How the gold model came: trained here (seconds) or a saved one passed with --gold."
    return f"{seconds} s to train" if seconds is not None else "a saved model, passed with --gold"

def render(res:dict)->str:
    "The results as markdown."
    k = res['machine']
    lines = [f"# The gamma lab: {k['label']}", '', __doc__.split('\n\n')[0], '',
             f"Machine: {k['cpu']}, {k['cores']} cores, torch capability **{k['torch_capability']}**, flags "
             f"{', '.join(k['cpu_flags'])}; `auto` precision: **{k['auto_precision']}** ({k['precision_reason']}). "
             f"Gold: train-rm at its defaults ({gold_note(res.get('gold_seconds'))}). {res['busy']}.", '']
    for r in res['runs']:
        c = r['checks']
        lines += [f"## {r['size']} size: {r['wall_seconds']} s", '',
                  f"Overrides of `configs/gamma.toml`: `{json.dumps(r['overrides'])}`. Stage steps (s): "
                  f"`{json.dumps(r['stage_seconds'])}`. Load average before and after: {r['load']}.", '',
                  f"- gold curves that turn down significantly (gold drop's 95% interval above 0): "
                  f"{len(c['turning_down'])} {c['turning_down']}",
                  f"- highest gamma ({c['highest_gamma']}) and lowest ({c['lowest_gamma']}) have disjoint intervals: "
                  f"{c['extremes_apart']}",
                  f"- in-domain gammas whose interval spans at most a factor 3: {c['share_within_factor_3']:.0%}",
                  f"- ensembles reported: {', '.join(c['ensembles'])}", '',
                  '### The seed\'s claims', '', md_table(pd.DataFrame(r['claims'])[CLAIM_COLUMNS].round(3)), '',
                  '### In-domain best-of-n', '',
                  md_table(pd.DataFrame(r['in_domain'])[['name', 'quantity', 'estimate', 'low', 'high']].round(3)), '',
                  '### Ensembles minus their single proxy (paired bootstrap)', '',
                  md_table(pd.DataFrame(r['ensembles'])[GAIN_COLUMNS].round(3)), '']
        if r['ppo']:
            p = pd.DataFrame(r['ppo'])
            lines += ['### PPO (RL form)', '', md_table(p[p.quantity.isin(['gold_peak', 'gold_drop'])][
                ['name', 'quantity', 'estimate', 'low', 'high']].round(3)), '']
    return '\n'.join(lines)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--sizes', nargs='+', choices=list(SIZES), default=list(SIZES))
    ap.add_argument('--gold', type=Path, help='a saved reward model folder (default: train one with train-rm)')
    a, kind, path = record_args(ap, 'overoptimization', render)
    with tempfile.TemporaryDirectory() as tmp:
        if a.gold: gold, gold_secs = a.gold.resolve(), None
        else:
            gold_run, gold_secs = train_rm(Path(tmp), 'gold')
            gold = gold_run/'reward_model'/'model'
        runs = [measure(s, gold, Path(tmp)) for s in a.sizes]
    kept = json.loads(path.with_suffix('.json').read_text())['runs'] if path.with_suffix('.json').exists() else []
    runs = [r for r in kept if r['size'] not in a.sizes] + runs  # sizes not measured now keep their last record
    runs = sorted(runs, key=lambda r: list(SIZES).index(r['size']))
    top = max(x for r in runs for pair in r['load'] for x in pair[:1])
    res = dict(machine=kind, versions=package_versions(), gold_seconds=gold_secs, runs=runs,
               busy=busy_note(top, kind['cores']))
    write_json(path.with_suffix('.json'), res)
    write_text(path.with_suffix('.md'), render(res))
    print(render(res))

if __name__ == '__main__': main()
