"""Reward-model training benchmark: hh-rlhf harmless, train split -> held-out test split.

Records the machine and its load, the cost of one training step in float32 vs bf16 autocast (with and
without frozen embeddings), the token-length distribution, then one full training run with the default
settings (configs/reward_model.toml): seconds per epoch, the loss/accuracy curve, the held-out test
accuracy with its bootstrap CI, and the validation accuracy of the same final model.

    python benchmarks/bench_rm_training.py            # full run (~10-20 min on 2 cores); writes results/
    python benchmarks/bench_rm_training.py --quick    # smoke test at toy size; writes nothing to results/
"""
import argparse, os, tempfile, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch

os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
warnings.filterwarnings('ignore')
from rewardbench_nb.core import load_config, section, sha256_file, write_json, write_text
from rewardbench_nb.data import load_pairs, pair_file
from rewardbench_nb.curation import md_table
from rewardbench_nb.reward_model import RewardModel
from rewardbench_nb.rm_training import (RewardModelConfig, base_model, evaluate_pairs, length_table, quiet,
                                        train_reward_model, prepare_pairs, PairCollator)
from _common import busy_note, loadavg

ROOT = Path(__file__).resolve().parents[1]
BASELINE = dict(description='plain Bradley-Terry loop on MiniLM, bf16 autocast, batch 16, lr 3e-5, 2 epochs, max length 256, '
                            '10% hash split, 2 cores (reported, not re-run here)', accuracy=0.55, seconds_per_epoch=420, epochs=2)
REFERENCE = dict(model='OpenAssistant deberta-v3-large reward model', accuracy=0.564, set="RewardBench's anthropic_harmless")

def step_throughput(pairs:pd.DataFrame, max_length:int, reps:int=3)->list:
    "Sequences/s of one optimizer step (forward, backward, AdamW) on 32 real pairs: fp32 vs bf16, frozen embeddings or not."
    rows = []
    with quiet():
        models = {fr: base_model(RewardModelConfig(max_length=max_length, freeze_embeddings=fr)) for fr in (False, True)}
        prep = prepare_pairs(pairs.head(32), models[True], RewardModelConfig(max_length=max_length))
        batch = PairCollator(pad_token_id=models[True].tokenizer.pad_token_id)([prep.dataset[i] for i in range(32)])
    opts = {fr: torch.optim.AdamW([p for p in m.model.parameters() if p.requires_grad], lr=1e-5, fused=True) for fr, m in models.items()}
    times = {(fr, bf): [] for fr in (False, True) for bf in (False, True)}
    for rep in range(reps + 1):                         # interleaved, so load changes hit every variant alike
        for (fr, bf), ts in times.items():
            m, opt = models[fr].model.train(), opts[fr]
            t = time.perf_counter()
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf):
                r = m(**batch).logits.squeeze(-1)
            c, j = r.float().chunk(2)
            (-torch.nn.functional.logsigmoid(c - j).mean()).backward(); opt.step(); opt.zero_grad()
            if rep: ts.append(time.perf_counter() - t)  # the first round warms up
    n = batch['input_ids'].shape[0]
    for (fr, bf), ts in times.items():
        rows.append(dict(max_length=max_length, padded_length=int(batch['input_ids'].shape[1]), freeze_embeddings=fr,
                         dtype='bf16 autocast' if bf else 'float32', seconds_per_step=round(min(ts), 3), sequences_per_s=round(n / min(ts), 1)))
    return rows

def curve(history:pd.DataFrame)->pd.DataFrame:
    "Held-out points of the curve with the mean training loss/accuracy since the previous point."
    rows, last = [], 0.0
    for _, e in history.dropna(subset=['eval_loss']).iterrows():
        tr = history[(history.epoch > last) & (history.epoch <= e.epoch)].dropna(subset=['loss'])
        rows.append(dict(epoch=round(e.epoch, 2), train_loss=round(tr.loss.mean(), 4), train_accuracy=round(tr.accuracy.mean(), 3),
                         test_loss=round(e.eval_loss, 4), test_accuracy=round(e.eval_accuracy, 3)))
        last = e.epoch
    return pd.DataFrame(rows)

def table(rows)->str: return md_table(pd.DataFrame(rows), floatfmt='')

def markdown(r:dict)->str:
    f, m, t = r['final'], r['final']['test'], r['timing']
    lines = [
        '# Reward-model training benchmark (hh-rlhf harmless)', '',
        f"Run {r['started']} on {r['machine']['cpus']} CPU cores (torch threads {r['machine']['torch_threads']}); "
        f"load average (1, 5, 15 min) before {r['machine']['loadavg_before']}, after {r['machine']['loadavg_after']}: "
        f"{r['machine']['load_note']}.", '',
        f"Data: `{r['data']['file']}` (sha256 `{r['data']['file_sha256'][:16]}…`), train {r['data']['train_rows']} pairs, "
        f"test {r['data']['test_rows']}, validation {r['data']['validation_rows']} (80/10/10 split by prompt hash).", '',
        '## Result', '',
        '| | held-out test accuracy (95% bootstrap CI) | seconds per epoch | epochs | total training seconds |', '|---|---|---|---|---|',
        f"| this run (defaults) | **{m['accuracy']:.3f}** [{m['ci_low']:.3f}, {m['ci_high']:.3f}] (n={m['n']}) | "
        f"{np.mean([e['seconds'] for e in t['epochs']]):.0f} | {len(t['epochs'])} | {t['train_seconds']:.0f} |",
        f"| baseline (reported) | {BASELINE['accuracy']:.2f} (10% hash split) | {BASELINE['seconds_per_epoch']} | {BASELINE['epochs']} | {BASELINE['seconds_per_epoch'] * BASELINE['epochs']} |",
        f"| {REFERENCE['model']} | {REFERENCE['accuracy']:.3f} ({REFERENCE['set']}) | | | |", '',
        f"Validation accuracy of the same final model: {f['validation']['accuracy']:.3f} [{f['validation']['ci_low']:.3f}, {f['validation']['ci_high']:.3f}] (n={f['validation']['n']}). "
        'No setting was chosen by looking at the test split.', '',
        f"Settings: {', '.join(f'{k}={v}' for k, v in r['config'].items() if k in ('learning_rate', 'batch_size', 'epochs', 'max_length', 'warmup_ratio', 'lr_scheduler', 'bf16', 'group_by_length', 'freeze_embeddings', 'freeze_layers', 'seed'))}.", '',
        f"Truncation (train): {r['truncation']['prompt_truncated']} of {r['truncation']['inputs']} inputs lost the start of their prompt, "
        f"{r['truncation']['response_truncated']} the end of their response; {r['truncation']['dropped']} dropped.", '',
        '## Seconds per epoch (training only; held-out evaluations excluded)', '',
        table(t['epochs']), '',
        '## Curve (held-out test set; train columns average the steps since the previous point)', '',
        table(r['curve']), '',
        '## One training step, 32 pairs (64 sequences): float32 vs bf16 autocast', '',
        table(r['step_throughput']), '',
        '## Token lengths of the train split (share of inputs cut at each max length)', '',
        table(r['length_table']), '',
    ]
    return '\n'.join(lines)

def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument('--quick', action='store_true', help='toy sizes; results go to a temporary folder')
    a.add_argument('--out', default=None, help='where to write the results (default: benchmarks/results, or a temporary folder with --quick)')
    args = a.parse_args(argv)
    res_dir = Path(args.out) if args.out else (Path(tempfile.mkdtemp()) if args.quick else ROOT/'benchmarks'/'results')
    load0, started = loadavg(), time.strftime('%Y-%m-%d %H:%M:%S')
    cfg = section(load_config(ROOT/'configs'), 'reward_model', RewardModelConfig)
    train, test, val = (load_pairs(cfg.dataset, split=s) for s in ('train', 'test', 'validation'))
    if args.quick:
        cfg.max_pairs, cfg.epochs, cfg.max_length = 64, 1.0, 64
        test, val = test.head(32), val.head(32)
    thr = step_throughput(train, cfg.max_length, reps=1 if args.quick else 3)
    with quiet(): lt = length_table(base_model(cfg), train.head(200) if args.quick else train)
    src = pair_file(cfg.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        res = train_reward_model(train, cfg, Path(tmp)/'rm', eval_pairs=test,
                                 provenance=dict(file=str(src.relative_to(ROOT)) if src.is_relative_to(ROOT) else src.name, file_sha256=sha256_file(src)))
        val_m = evaluate_pairs(RewardModel.load(res.model_dir), val, cfg)
    load1, threads = loadavg(), torch.get_num_threads()
    r = dict(started=started, config=res.log['config'], versions=res.log['versions'],
             machine=dict(cpus=os.cpu_count(), torch_threads=threads, loadavg_before=load0, loadavg_after=load1,
                          load_note=busy_note(max(load0[0], load1[0]), threads)),
             data=dict(file=res.log['provenance']['file'], file_sha256=res.log['provenance']['file_sha256'], train_sha256=res.log['data']['train']['sha256'],
                       train_rows=res.log['data']['train']['rows'], test_rows=len(test), validation_rows=len(val)),
             truncation=res.log['data']['train']['truncation'], timing=res.log['timing'],
             final=dict(test=res.metrics, validation=val_m), curve=curve(res.history).to_dict('records'),
             step_throughput=thr, length_table=lt.to_dict('records'), baseline=BASELINE, reference=REFERENCE,
             history=res.log['history'])
    write_json(res_dir/'rm_training.json', r)
    write_text(res_dir/'rm_training.md', markdown(r))
    print(markdown(r)); print(f'\nwritten: {res_dir}/rm_training.json, rm_training.md')
    return r

if __name__ == '__main__': main()
