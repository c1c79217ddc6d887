"""`RewardModel.score` of two versions of the code, timed in turns on one machine: did a change make scoring slower?

Two worker processes, one importing the package from a checkout of the earlier commit (`--before DIR`, e.g. made with
`git worktree add DIR REV`) and one from this checkout, load the same model in the same precision and wait; the driver
hands both the same chunks of inputs, one worker at a time, alternating which goes first, and each reports the seconds
its `score` call took. Both see the machine's load at nearly the same moments, so the ratio of their times is what
the change did, whatever else shares the cores.

    git worktree add /tmp/before REV
    .venv/bin/python benchmarks/bench_rm_scoring_ab.py --before /tmp/before --before-label REV
        # -> benchmarks/results/rm_scoring_ab-<cpu kind>.{json,md}
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd

OUT, HERE = Path(__file__).resolve().parent/'results', Path(__file__).resolve().parents[1]
WORKER = '''
import json, sys, time, warnings, numpy as np, torch
warnings.simplefilter('ignore')
from rewardbench_nb.reward_model import RewardModel
from rewardbench_nb.data import load_pairs
torch.set_num_threads(int(sys.argv[2]))
rm = RewardModel.load(max_length=512, dtype=sys.argv[1], device='cpu')
sets = ('llmbar-natural', 'mtbench-human', 'judgebench-gpt4o', 'hh-rlhf-harmless')
import pandas as pd
pool = pd.concat([load_pairs(s) for s in sets]).sample(int(sys.argv[3]), random_state=0)
P, R = list(pool.prompt) * 2, list(pool.chosen) + list(pool.rejected)
rm.score(P[:16], R[:16])
print(json.dumps(dict(ready=True, dtype=rm.dtype)), flush=True)
for line in sys.stdin:
    idx = json.loads(line); t = time.perf_counter()
    s = rm.score([P[i] for i in idx], [R[i] for i in idx], batch_size=32)
    print(json.dumps(dict(seconds=time.perf_counter() - t, first=float(s[0]))), flush=True)
'''

def worker(pythonpath:str|None, dtype:str, threads:int, pairs:int)->subprocess.Popen:
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}
    if pythonpath: env['PYTHONPATH'] = pythonpath
    p = subprocess.Popen([sys.executable, '-c', WORKER, dtype, str(threads), str(pairs)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env, cwd='/')
    assert json.loads(p.stdout.readline())['ready']
    return p

def ask(p:subprocess.Popen, idx:list)->dict:
    p.stdin.write(json.dumps(idx) + '\n'); p.stdin.flush()
    return json.loads(p.stdout.readline())

def run(before:Path, dtype:str, threads:int, pairs:int, rounds:int)->dict:
    ws = dict(before=worker(str(before), dtype, threads, pairs), after=worker(str(HERE), dtype, threads, pairs))
    secs, same = dict(before=[], after=[]), True
    for r, chunk in enumerate(np.array_split(np.arange(2 * pairs), rounds)):
        got = {}
        for k in (('before', 'after') if r % 2 == 0 else ('after', 'before')): got[k] = ask(ws[k], chunk.tolist())
        for k in got: secs[k].append(got[k]['seconds'])
        same &= abs(got['before']['first'] - got['after']['first']) < 1e-5
    for p in ws.values(): p.stdin.close(); p.wait()
    tb, ta = sum(secs['before']), sum(secs['after'])
    ratios = np.array(secs['after']) / np.array(secs['before'])
    return dict(dtype=dtype, rounds=rounds, inputs=2 * pairs, before_seconds=round(tb, 2), after_seconds=round(ta, 2),
                after_over_before=round(ta / tb, 3), per_round_ratio_median=round(float(np.median(ratios)), 3),
                per_round_ratio_range=[round(float(ratios.min()), 3), round(float(ratios.max()), 3)], same_scores=bool(same))

def main(before:Path, label:str, pairs:int=600, rounds:int=12, threads:int=2, out:Path=OUT):
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import busy_note, cpu_kind, kind_slug, loadavg
    from rewardbench_nb.core import write_json, write_text
    from rewardbench_nb.curation import md_table
    mach, la0 = cpu_kind(), loadavg()
    rows = [run(before, d, threads, pairs, rounds) for d in ('float32', 'bfloat16' if mach['auto_precision'] == 'bfloat16' else None) if d]
    la1 = loadavg()
    res = dict(before=label, machine=mach, load_average_at_start=la0, load_average_at_end=la1, rows=rows,
               busy_note=busy_note(max(la0[0], la1[0]), threads))
    name = f'rm_scoring_ab-{kind_slug(mach)}'
    text = '\n'.join([f"# RewardModel.score before and after: {mach['label']}\n", __doc__.split('\n\n')[1].replace('\n', ' ') + '\n',
                      f"Before: the code at {label}. After: this checkout. Model: the shipped MiniLM, max_length 512, {2 * pairs} "
                      f"inputs of LLMBar, MT-Bench, JudgeBench and hh-rlhf, {rounds} rounds, {threads} threads. Machine: {mach['cpu']}, "
                      f"{mach['cores']} cores, torch capability {mach['torch_capability']}. Load {la0} at start, {la1} at end: "
                      f"{res['busy_note']}\n", md_table(pd.DataFrame(rows), floatfmt=''), ''])
    write_json(out/f'{name}.json', res); write_text(out/f'{name}.md', text); print(text)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--before', type=Path, required=True); ap.add_argument('--before-label', default='the earlier commit')
    ap.add_argument('--pairs', type=int, default=600); ap.add_argument('--rounds', type=int, default=12)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--out', type=Path, default=OUT)
    a = ap.parse_args(); main(a.before, a.before_label, a.pairs, a.rounds, a.threads, a.out)
