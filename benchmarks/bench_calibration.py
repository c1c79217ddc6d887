"""Calibration of the reward model the pipeline trains: temperature scaling and isotonic regression fitted on the
validation pairs, measured on the test pairs, with bootstrap intervals.

The reward model is the one `train-rm` trains at its defaults (`rbnb run --until train-rm`, run here first unless
`--run DIR` names a run folder that holds `reward_model/model`). The `calibrate` stage then runs on it at its defaults,
in this process, exactly as `rbnb run` calls it (every validation and test pair of hh-rlhf harmless, order flipped with
seed 0, and the transfer sets). From it:

* the fitted temperature, accuracy, and ECE, MCE, Brier and NLL of each method on the test pairs;
* the reliability bins of each method (the points of the reliability diagram);
* 95% percentile intervals from 1,000 resamples that redraw the validation pairs (and refit both maps) and the test
  pairs, for each method's ECE and for each calibrated method minus the uncalibrated one (ECE, Brier, NLL), paired;
* the ECE floor: each method's test ECE when the labels are drawn from its own probabilities (perfect calibration),
  median and 95th percentile of 1,000 draws, since ECE on a few hundred pairs is above 0 even for a calibrated model;
* the per-domain table (test and transfer pairs), the seconds of each part, the CPU kind and the load average.

    .venv/bin/python benchmarks/bench_calibration.py                # -> results/calibration-<kind>.{json,md}
    .venv/bin/python benchmarks/bench_calibration.py --run runs/<id>   # a run folder that train-rm wrote
    .venv/bin/python benchmarks/bench_calibration.py --render       # the .md again from the .json, nothing run
"""
import argparse, os, tempfile, time
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import numpy as np, pandas as pd
from rewardbench_nb.core import Run, package_versions, write_json, write_text
from rewardbench_nb.curation import md_table
from rewardbench_nb.resampling import percentile_interval
from rewardbench_nb.reward_model import RewardModel
from rewardbench_nb.calibration import (METHODS, STAGE, calibration_metrics, ece, fit_isotonic, fit_temperature,
                                        pref_prob)
from _common import busy_note, loadavg, record_args, train_rm

N_BOOT, SEED = 1000, 0
QUANTITIES = ('ece', 'brier', 'nll')
METRIC_COLUMNS = ['method', 'ece', 'mce', 'brier', 'nll']
BIN_COLUMNS = ['method', 'bin', 'count', 'confidence', 'accuracy', 'gap']

def stage(model_dir:Path, tmp:Path)->tuple:
    "The calibrate stage at its defaults on the saved model: (report, scored pairs, precision, seconds)."
    t = time.perf_counter()
    run = Run(tmp, {}, seed=0, run_id='calibrate')
    ctx = dict(reward_model=RewardModel.load(model_dir), seed=0, quiet=True)
    STAGE(run, {}, ctx)
    pairs = pd.read_csv(run.path('calibration', 'pairs.csv'))
    return ctx['calibration'], pairs, run.records['precision']['calibrate'], round(time.perf_counter() - t, 1)

def _test_metrics(fit_m, fit_y, test_m, test_y, n_bins:int)->dict:
    "method -> calibration metrics on the test pairs of maps fitted on the fit pairs."
    temperature, iso = fit_temperature(fit_m, fit_y), fit_isotonic(fit_m, fit_y)
    probs = dict(uncalibrated=pref_prob(test_m), temperature=pref_prob(test_m, temperature),
                 isotonic=iso.predict(test_m))
    return {k: calibration_metrics(p, test_y, n_bins) for k, p in probs.items()}

def bootstrap(pairs:pd.DataFrame, n_bins:int)->pd.DataFrame:
    "Each method's metrics and each calibrated method minus the uncalibrated one: estimate and 95% interval."
    fit, test = pairs[pairs.role == 'fit'], pairs[pairs.role == 'test']
    fm, fy = fit.margin.to_numpy(), fit.first_is_chosen.to_numpy()
    tm, ty = test.margin.to_numpy(), test.first_is_chosen.to_numpy()
    rng = np.random.default_rng(SEED)
    def table(res:dict)->dict:
        out = {(k, q): res[k][q] for k in METHODS for q in QUANTITIES}
        out.update({(f'{k} - uncalibrated', q): res[k][q] - res['uncalibrated'][q]
                    for k in METHODS[1:] for q in QUANTITIES})
        return out
    est = table(_test_metrics(fm, fy, tm, ty, n_bins))
    draws = []
    for _ in range(N_BOOT):
        i, j = rng.integers(0, len(fm), len(fm)), rng.integers(0, len(tm), len(tm))
        draws.append(table(_test_metrics(fm[i], fy[i], tm[j], ty[j], n_bins)))
    boot = pd.DataFrame(draws)
    interval = {key: percentile_interval(boot[key]) for key in est}
    return pd.DataFrame([dict(method=k, quantity=q, estimate=v, low=interval[k, q][0], high=interval[k, q][1])
                         for (k, q), v in est.items()])

def ece_floor(pairs:pd.DataFrame, n_bins:int)->pd.DataFrame:
    "ECE of each method's test probabilities against labels drawn from them: what a perfectly calibrated model scores."
    test, rng = pairs[pairs.role == 'test'], np.random.default_rng(SEED)
    rows = []
    for k in METHODS:
        p = test[f'p_{k}'].to_numpy()
        draws = np.array([ece(p, (rng.random(len(p)) < p).astype(int), n_bins) for _ in range(N_BOOT)])
        rows.append(dict(method=k, median=float(np.median(draws)), q95=float(np.quantile(draws, 0.95))))
    return pd.DataFrame(rows)

def render(res:dict)->str:
    "The results as markdown."
    k, iv = res['machine'], pd.DataFrame(res['intervals'])
    diff = iv[iv.method.str.contains(' - ')]
    train = f"train-rm {res['train_seconds']}" if res['train_seconds'] else 'train-rm not run (a saved run)'
    own = iv[~iv.method.str.contains(' - ') & (iv.quantity == 'ece')].set_index('method')
    ece_cells = [f"{own.estimate[m]:.4f} [{own.low[m]:.4f}, {own.high[m]:.4f}]" for m in METHODS]
    cell = lambda r: f"{r.estimate:+.4f} [{r.low:+.4f}, {r.high:+.4f}]"
    lines = [f"# Calibration of the trained reward model: {k['label']}", '', __doc__.split('\n\n')[0], '',
             f"Machine: {k['cpu']}, {k['cores']} cores, torch capability **{k['torch_capability']}**; the model "
             f"scored in **{res['precision']}**. Seconds: {train}, the calibrate stage {res['stage_seconds']}, "
             f"the bootstrap and the ECE floor {res['bootstrap_seconds']}. Load: {res['busy']}.", '',
             f"Fitted on {res['n_fit']} validation pairs, measured on {res['n_test']} test pairs "
             f"({res['n_bins']} bins): temperature T = {res['temperature']:.4g}, accuracy {res['accuracy']:.3f}.", '',
             '## Test metrics (each ECE with its 95% interval from the resamples)', '',
             md_table(pd.DataFrame(res['metrics']).assign(ece=ece_cells)[METRIC_COLUMNS].round(4)), '',
             f"## Calibrated minus uncalibrated ({res['n_boot']:,} resamples of the validation and test pairs; "
             'negative is better)', '',
             md_table(diff.assign(value=diff.apply(cell, axis=1))[['method', 'quantity', 'value']]), '',
             '## ECE of a perfectly calibrated model on these test pairs (labels drawn from the probabilities)', '',
             md_table(pd.DataFrame(res['ece_floor']).round(4)), '',
             '## Reliability bins (test pairs)', '',
             md_table(pd.DataFrame(res['bins'])[BIN_COLUMNS].round(4)), '',
             '## Per domain (test and transfer pairs)', '', md_table(pd.DataFrame(res['per_domain']).round(4)), '']
    return '\n'.join(lines)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--run', type=Path, help='a run folder holding reward_model/model (default: run train-rm here)')
    a, kind, path = record_args(ap, 'calibration', render)
    load = [loadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, train_secs = (a.run.resolve(), None) if a.run else train_rm(Path(tmp)/'runs')
        rep, pairs, precision, stage_secs = stage(run_dir/'reward_model'/'model', Path(tmp)/'calib')
    load.append(loadavg())
    t = time.perf_counter()
    intervals, floor = bootstrap(pairs, rep.n_bins), ece_floor(pairs, rep.n_bins)
    boot_secs = round(time.perf_counter() - t, 1)
    load.append(loadavg())
    res = dict(machine=kind, versions=package_versions(), train_seconds=train_secs, stage_seconds=stage_secs,
               bootstrap_seconds=boot_secs, precision=precision['used'], load=load, n_boot=N_BOOT, seed=SEED,
               temperature=rep.temperature, accuracy=rep.accuracy, n_fit=rep.n_fit, n_test=rep.n_test,
               n_bins=rep.n_bins, metrics=rep.metrics.to_dict('records'), bins=rep.bins.to_dict('records'),
               intervals=intervals.to_dict('records'),
               ece_floor=floor.to_dict('records'), per_domain=rep.per_domain.to_dict('records'),
               busy=busy_note(max(l[0] for l in load), kind['cores']))
    write_json(path.with_suffix('.json'), res)
    write_text(path.with_suffix('.md'), render(res))
    print(render(res))

if __name__ == '__main__': main()
