"""How the reward-model training defaults were chosen: settings swept on the VALIDATION split, with their compute cost.

For each setting, `train_reward_model` trains on the hh-rlhf harmless train split (float32) and the saved model is scored
on the validation split (228 pairs; the test split is never read here). Its cost is the CPU time of one optimizer step
(forward, backward, AdamW on 32 pairs of length-grouped batches, one thread, float32), measured in turns on ten batches
spread over an epoch: CPU time, unlike wall time, hardly moves when the machine is shared, so settings measured at
different times compare. The defaults in configs/reward_model.toml are the cheapest setting whose validation accuracy is
within the noise (one standard error, about 3.3 points at n = 228) of the best one, cheap enough that the main job fits its
20-minute budget on a 2-core CPU without native bf16.

    python benchmarks/bench_rm_defaults.py                  # the whole sweep (hours on 2 cores); writes results/rm_defaults.{json,md}
    python benchmarks/bench_rm_defaults.py --only 3:2:1e-4  # one setting (freeze_layers:epochs:learning_rate), printed
    python benchmarks/bench_rm_defaults.py --add 3:1:2e-4 --chosen '...'  # settings added to results/ (same one replaced)

Run it with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 OMP_WAIT_POLICY=PASSIVE so the
step costs are those of the CPU kind the budget is for, comparable with the recorded rows.
"""
import argparse, json, os, tempfile, time, warnings
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
warnings.filterwarnings('ignore')
import numpy as np, pandas as pd, torch
import torch.nn.functional as F
from rewardbench_nb.core import write_json, write_text
from rewardbench_nb.data import load_pairs
from rewardbench_nb.curation import md_table
from rewardbench_nb.rm_training import RewardModelConfig, LengthGroupedSampler, PairCollator, base_model, prepare_pairs, quiet, train_reward_model
from _common import busy_note, cpu_kind, loadavg

OUT = Path(__file__).resolve().parent/'results'
SWEEP = [(0, 3.0, 5e-5), (0, 2.0, 5e-5), (2, 2.0, 5e-5), (3, 2.0, 5e-5), (3, 2.0, 1e-4)]  # (freeze_layers, epochs, learning_rate)

def step_cpu_seconds(train:pd.DataFrame, freeze_layers:int, max_length:int=256, n:int=10)->float:
    "CPU seconds of one float32 optimizer step on one thread, mean over `n` length-grouped batches spread over an epoch."
    cfg = RewardModelConfig(freeze_layers=freeze_layers, max_length=max_length, dtype='float32')
    with quiet(): rm = base_model(cfg); prep = prepare_pairs(train, rm, cfg)
    order, coll = LengthGroupedSampler(prep.lengths, 32, seed=0).order(0), PairCollator(pad_token_id=rm.tokenizer.pad_token_id)
    opt, m, threads = torch.optim.AdamW([p for p in rm.model.parameters() if p.requires_grad], lr=1e-5), rm.model.train(), torch.get_num_threads()
    torch.set_num_threads(1); cpu = 0.
    try:
        for s in np.linspace(0, len(order) // 32 - 1, n).astype(int):
            b = coll([prep.dataset[int(i)] for i in order[s * 32:(s + 1) * 32]]); t = time.process_time()
            c, j = m(**b).logits.squeeze(-1).chunk(2)
            (-F.logsigmoid(c - j).mean()).backward(); opt.step(); opt.zero_grad(); cpu += time.process_time() - t
    finally: torch.set_num_threads(threads)
    return cpu / n

def run_setting(train, val, freeze_layers:int, epochs:float, lr:float)->dict:
    "Validation accuracy (with CI) of one setting, its validation curve, and its compute cost."
    cfg = RewardModelConfig(freeze_layers=freeze_layers, epochs=epochs, learning_rate=lr, dtype='float32', evals_per_epoch=2)
    with tempfile.TemporaryDirectory() as d: r = train_reward_model(train, cfg, d, eval_pairs=val, progress=True)
    h, steps_per_epoch = r.history.dropna(subset=['eval_accuracy']), int(np.ceil(len(train) / cfg.batch_size))
    step = step_cpu_seconds(train, freeze_layers)
    return dict(freeze_layers=freeze_layers, epochs=epochs, learning_rate=lr, validation=r.metrics['validation'],
                curve=[dict(epoch=round(e, 2), accuracy=round(a, 4)) for e, a in zip(h.epoch, h.eval_accuracy)],
                cpu_seconds_per_step=round(step, 2), cpu_seconds_one_thread=round(step * steps_per_epoch * epochs))

def markdown(res:dict)->str:
    rows = [dict(freeze_layers=r['freeze_layers'], epochs=r['epochs'], learning_rate=r['learning_rate'],
                 validation_accuracy=f"{r['validation']['accuracy']:.3f} [{r['validation']['ci_low']:.3f}, {r['validation']['ci_high']:.3f}]",
                 cpu_seconds_one_thread=r['cpu_seconds_one_thread'], source=r.get('source', 'this script')) for r in res['settings']]
    k = res['machine']
    return '\n'.join(['# Reward-model training defaults, chosen on validation', '', __doc__.split('\n\n')[0], '',
                      f"CPU: {k['label']}; {k['load_note']}.", '', md_table(pd.DataFrame(rows), floatfmt=''), '',
                      f"Chosen: {res['chosen']}.", ''])

def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument('--only', default=None, help='one setting, freeze_layers:epochs:learning_rate (printed, not saved)')
    a.add_argument('--add', default=None, help='comma-separated settings to run and add to the recorded results')
    a.add_argument('--chosen', default=None, help='with --add: the new sentence on the chosen setting')
    args = a.parse_args(argv)
    parse = lambda v: tuple(t(x) for t, x in zip((int, float, float), v.split(':')))
    sweep = [parse(args.only)] if args.only else [parse(v) for v in args.add.split(',')] if args.add else SWEEP
    train, val = (load_pairs('hh-rlhf-harmless', split=s) for s in ('train', 'validation'))
    l0, kind = loadavg(), cpu_kind()
    settings = [run_setting(train, val, *s) for s in sweep]
    kind['load_note'] = busy_note(max(l0[0], loadavg()[0]), torch.get_num_threads())
    res = dict(machine=kind, settings=settings, chosen='see configs/reward_model.toml')
    if args.add: res = merged(json.loads((OUT/'rm_defaults.json').read_text()), settings, kind, args.chosen)
    if not args.only:
        write_json(OUT/'rm_defaults.json', res); write_text(OUT/'rm_defaults.md', markdown(res))
    print(markdown(res))

def merged(old:dict, settings:list, kind:dict, chosen:str|None)->dict:
    "The recorded results with `settings` added (a recorded row of the same setting replaced), each new row saying when and how."
    key = lambda s: (s['freeze_layers'], s['epochs'], s['learning_rate'])
    when = time.strftime('%Y-%m-%d')
    for s in settings: s['source'] = f"this script, {when}: {kind['label']}, {kind['torch_capability']} capability; {kind['load_note']}"
    new = {key(s) for s in settings}
    return dict(old, settings=[s for s in old['settings'] if key(s) not in new] + settings, chosen=chosen or old['chosen'])

if __name__ == '__main__': main()
