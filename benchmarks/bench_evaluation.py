"""Evaluation benchmark: `rbnb eval` with the trained reward model, and every statistic from a stored score file.

1. `rbnb eval --model DIR` end to end (a subprocess, as a user runs it), at the default settings of
   configs/evaluation.toml: float32 (what a CPU without native bf16 runs) and, where the CPU has native bf16,
   bfloat16 too. Per run: wall seconds, the stage's own split (suite + leakage, scoring, the untrained
   baseline, sentence embeddings for the shift score, statistics and writing), the distinct inputs scored,
   and the scores (the float32 table is the one recorded).
2. From the float32 run's stored score files (the model's and the untrained baseline's sample): build the
   suite, check leakage, read and check the files, compute every statistic and write every file, in one
   process, with the shift score's sentence embeddings already computed (forward passes excluded).
   Target: at most 10 s on 2 cores. The embedding pass is timed on its own, and `rbnb eval --scores ...`
   (a fresh process: imports, embeddings and all) is timed too.

Every result records the CPU, its flags, torch's CPU capability and the machine's load.

    python benchmarks/bench_evaluation.py --model runs/<id>/reward_model/model   # writes results/evaluation.{json,md}
    python benchmarks/bench_evaluation.py --model DIR --quick                   # smoke test, temporary folder
"""
import argparse, json, os, subprocess, sys, tempfile, threading, time, warnings
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
warnings.filterwarnings('ignore')
import pandas as pd, torch
from rewardbench_nb.core import load_config, package_versions, section, sha256_file, write_json, write_text
from rewardbench_nb.curation import md_table
from rewardbench_nb import evaluation as ev
from _common import busy_note, cpu_info, loadavg

ROOT = Path(__file__).resolve().parents[1]
RBNB = str(Path(sys.executable).parent/'rbnb')
TARGET_FROM_FILE_S = 10.0
SPLIT = ('suite', 'scoring', 'untrained', 'shift', 'statistics')

class LoadWatch:
    "Highest 1-minute load average seen while the block runs (sampled every 2 s)."
    def __enter__(self):
        self.top, self._stop = loadavg()[0], threading.Event()
        def watch():
            while not self._stop.wait(2): self.top = max(self.top, loadavg()[0])
        self._t = threading.Thread(target=watch, daemon=True); self._t.start(); return self
    def __exit__(self, *a): self._stop.set(); self._t.join()

def machine()->dict:
    "The CPU, its bf16 support and torch's view of it."
    name, flags = cpu_info()
    return dict(cpu=name, cpus=os.cpu_count(), torch_threads=torch.get_num_threads(),
                cpu_capability=torch.backends.cpu.get_cpu_capability(),
                native_bf16=bool({'avx512_bf16', 'amx_bf16'} & set(flags)), avx512_bf16='avx512_bf16' in flags,
                amx_bf16='amx_bf16' in flags)

def run_eval(args:list, runs:Path, run_id:str)->dict:
    "Time one `rbnb eval` subprocess; its stage timings, protocol and score table."
    t0 = time.perf_counter()
    cmd = [RBNB, 'eval', *args, '--runs-dir', str(runs), '--run-id', run_id]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode: raise SystemExit(f'rbnb eval failed:\n{r.stderr[-4000:]}')
    out = runs/run_id/'eval'; rep = json.loads((out/'report.json').read_text())
    man = json.loads((runs/run_id/'manifest.json').read_text())
    proto = {k: rep['protocol'].get(k) for k in ('max_length', 'dtype', 'batch_size', 'device')}
    return dict(wall_seconds=round(wall, 2), stage_seconds=man['timings']['eval'],
                split=man['records']['timings']['eval'], protocol=proto,
                scoring=next(iter(rep['scoring'].values())), table=pd.read_csv(out/'table.csv').to_dict('records'),
                dir=str(out))

def _suite(cfg:ev.EvalConfig, quick:bool)->tuple:
    "(suite with leakage flags, training prompts) as `rbnb eval` builds them on its own (`cfg`: its resolved settings)."
    train, _ = ev._train_prompts(cfg, {}, None)
    return ev._stage_suite(cfg, {}, 0, quick, train), train

def from_files(eval_dir:Path, cfg:ev.EvalConfig, quick:bool)->dict:
    "Seconds of each step of an evaluation from stored score files (embeddings computed once first, then timed alone)."
    files, t = sorted((eval_dir/'scores').glob('*.jsonl')), {}
    t0 = time.perf_counter(); suite, train = _suite(cfg, quick)
    t['suite_and_leakage'] = time.perf_counter() - t0
    t0 = time.perf_counter(); ms = [ev.read_scores(f, suite) for f in files]
    t['read_and_check_files'] = time.perf_counter() - t0
    sizes = (cfg.shift_prompts, cfg.shift_train_prompts)
    t0 = time.perf_counter(); ev.benchmark_shift(suite, train, 0, *sizes, cfg.n_boot)
    t['embeddings_first_pass'] = time.perf_counter() - t0
    t0 = time.perf_counter(); shift = ev.benchmark_shift(suite, train, 0, *sizes, cfg.n_boot)
    t['shift_scores_cached'] = time.perf_counter() - t0
    models = [m for m in ms if m.meta.get('sample') is not True]
    base = next((m for m in ms if m.meta.get('sample') is True), None)
    temps = {m.name: ev._file_temperature(m, suite, 0) for m in models}
    t0 = time.perf_counter(); rep = ev.evaluate(suite, models, cfg, 0, temps, base, shift)
    t['statistics'] = time.perf_counter() - t0
    t0 = time.perf_counter(); rep.write(Path(tempfile.mkdtemp())/'eval'); t['write'] = time.perf_counter() - t0
    total = sum(v for k, v in t.items() if k != 'embeddings_first_pass')
    return dict(seconds={k: round(v, 3) for k, v in t.items()}, total_without_forward_passes=round(total, 3),
                files=[f.name for f in files], benchmark_rows=int(len(suite.rows('bench'))),
                target_seconds=TARGET_FROM_FILE_S, target_met=total <= TARGET_FROM_FILE_S)

def _run_row(k:str, v:dict)->str:
    split = ' | '.join(str(v['split'].get(s, '-')) for s in SPLIT)
    p = v['protocol']
    return f"| {k} | {v['wall_seconds']} | {v['stage_seconds']} | {split} | {p['dtype']} | {p['max_length']} |"

def _model_facts(d:Path)->dict:
    "Name, weights hash and test accuracy (from its training log, when next to it) of the evaluated model."
    log = d.parent/'training_log.json'
    m = json.loads(log.read_text())['metrics'] if log.is_file() else {}
    return dict(folder=d.name, weights_sha256=sha256_file(d/'model.safetensors'), held_out=m.get('test', m))

def markdown(r:dict)->str:
    m, f = r['machine'], r['from_score_file']
    runs = '\n'.join(_run_row(k, v) for k, v in r['end_to_end'].items())
    steps = '\n'.join(f'| {k} | {v} |' for k, v in f['seconds'].items())
    sc = r['end_to_end']['float32']['scoring']
    return f"""# Evaluation benchmark

Model: the reward model in `{r['model']['folder']}` (weights sha256 {r['model']['weights_sha256'][:12]}; held-out
accuracy in its training log {r['model']['held_out'].get('accuracy', float('nan')):.3f}).
Machine: {m['cpu']}, {m['cpus']} CPUs, torch threads {m['torch_threads']},
torch CPU capability **{m['cpu_capability']}**, native bf16: {m['native_bf16']}
(AVX-512 BF16 {m['avx512_bf16']}, AMX {m['amx_bf16']}).
{r['load_note']}. Started {r['started']}; {'QUICK sizes (smoke test)' if r['quick'] else 'default settings'}.

## `rbnb eval --model DIR`, end to end

| run | wall s | stage s | suite | scoring | untrained | shift | statistics + write | dtype | max_length |
|---|---|---|---|---|---|---|---|---|---|
{runs}

Inputs the model scored: {sc['distinct_inputs']} distinct (prompt, response) of {sc['inputs']} candidates in the rows.
(suite: build + leakage check; shift: sentence embeddings + classifier two-sample tests.)

## From the stored score files (forward passes excluded)

Files: {', '.join(f['files'])}; {f['benchmark_rows']} benchmark rows.

| step | seconds |
|---|---|
{steps}

Total without forward passes: **{f['total_without_forward_passes']} s** (target <= {f['target_seconds']} s:
{'met' if f['target_met'] else 'NOT met'}). `rbnb eval --scores ...` in a fresh process (imports and the embedding pass
included): {r['cli_from_files_seconds']} s.

## Scores of the float32 run

{md_table(pd.DataFrame(r['end_to_end']['float32']['table']))}
"""

def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument('--model', required=True, help='the trained reward model folder (runs/<id>/reward_model/model)')
    a.add_argument('--quick', action='store_true', help='--quick sizes; results go to a temporary folder')
    a.add_argument('--out', default=None, help='results folder (default: benchmarks/results; temporary with --quick)')
    args = a.parse_args(argv)
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp()) if args.quick else ROOT/'benchmarks'/'results')
    runs, started, mach = Path(tempfile.mkdtemp()), time.strftime('%Y-%m-%d %H:%M:%S'), machine()
    q = ['--quick'] * args.quick
    with LoadWatch() as w:
        e2e = {'float32': run_eval(['--model', args.model, '--set', 'evaluation.dtype="float32"', *q], runs, 'fp32')}
        if mach['native_bf16']:
            bf16 = ['--model', args.model, '--set', 'evaluation.dtype="bfloat16"', *q]
            e2e['bfloat16'] = run_eval(bf16, runs, 'bf16')
        eval_dir = Path(e2e['float32']['dir'])
        cfg = ev.eval_settings(section(load_config(ROOT/'configs'), 'evaluation', ev.EvalConfig), {'quick': args.quick})
        ff = from_files(eval_dir, cfg, args.quick)
        files = [x for f in sorted((eval_dir/'scores').glob('*.jsonl')) for x in ('--scores', str(f))]
        t0 = time.perf_counter(); run_eval([*files, *q], runs, 'files')
        cli_files = round(time.perf_counter() - t0, 2)
    r = dict(started=started, model=_model_facts(Path(args.model)), quick=args.quick, machine=mach, load_top=w.top,
             load_note=busy_note(w.top, mach['torch_threads']), versions=package_versions(),
             end_to_end={k: {kk: vv for kk, vv in v.items() if kk != 'dir'} for k, v in e2e.items()},
             from_score_file=ff, cli_from_files_seconds=cli_files,
             protocol=json.loads((eval_dir/'report.json').read_text())['protocol'])
    write_json(out/'evaluation.json', r); write_text(out/'evaluation.md', markdown(r))
    print(markdown(r)); print(f'\nwritten: {out}/evaluation.json, evaluation.md')
    return r

if __name__ == '__main__': main()
