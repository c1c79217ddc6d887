"""Reward-model training benchmark: hh-rlhf harmless, train split; choices on validation, test read once at the end.

Two trainers run side by side in one run, in the precision `auto` picks on this machine (recorded with its reason):

* baseline, a plain PyTorch Bradley-Terry loop: the shipped MiniLM with the same seeded head, every weight trainable,
  dropout on, AdamW at a constant learning rate 3e-5, batch 16 pairs, `tokenizer(prompt, response, truncation=True,
  max_length=256)` (longest-first truncation), each batch padded to its longest input, rows in a seeded shuffle with no
  length grouping, 2 epochs;
* ours: `train_reward_model` with the defaults of configs/reward_model.toml (TRL's RewardTrainer, length-grouped
  batches, prompts cut from the left, frozen embeddings and lower layers, linear warm-up and decay).

Both draw a validation curve (each epoch end for the baseline, `evals_per_epoch` points for ours); the test split is
scored once, by each final model, at the end. Reported: wall and process CPU seconds per epoch (training only; the CPU time is the fair comparison on a shared machine), test accuracy with its
bootstrap CI, the paired difference on the same test pairs (bootstrap CI and McNemar's exact test), and for our model
the accuracy of the same weights scored in fp32, bf16 (where native) and int8, with the correlation of their scores.
Also recorded: the cost of one optimizer step in fp32 and bf16 autocast (bf16 only where native), and the token lengths
of the train split.

    python benchmarks/bench_rm_training.py            # full run; writes results/rm_training-<cpu kind>.{json,md}
    python benchmarks/bench_rm_training.py --quick    # smoke test at toy size; writes to a temporary folder
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_rm_training.py
                                                      # an AVX-512 machine told to behave like an AVX2-only one
"""
import argparse, dataclasses, os, tempfile, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
import torch.nn.functional as F

os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
warnings.filterwarnings('ignore')
from scipy.stats import binomtest
from rewardbench_nb.core import load_config, section, sha256_file, write_json, write_text
from rewardbench_nb.data import load_pairs, pair_file
from rewardbench_nb.curation import md_table
from rewardbench_nb.precision import precision
from rewardbench_nb.reward_model import RewardModel
from rewardbench_nb.rm_training import (RewardModelConfig, accuracy_ci, base_model, length_table, quiet, train_dtype,
                                        train_reward_model, prepare_pairs, PairCollator)
from rewardbench_nb.resampling import boot_counts
from _common import busy_note, cpu_kind, kind_slug, loadavg

ROOT = Path(__file__).resolve().parents[1]
PLAIN = dict(lr=3e-5, batch_size=16, epochs=2, max_length=256)
REFERENCE = dict(model='OpenAssistant deberta-v3-large reward model', accuracy=0.564, set="RewardBench's anthropic_harmless")

# --- the plain loop -------------------------------------------------------------------------------

def plain_batches(tok, pairs:pd.DataFrame, idx, max_length:int)->dict:
    "Chosen then rejected inputs of rows `idx`, tokenized the usual way and padded to the longest."
    P = [pairs.prompt.iloc[i] for i in idx] * 2
    R = [pairs.chosen.iloc[i] for i in idx] + [pairs.rejected.iloc[i] for i in idx]
    return tok(P, R, truncation=True, max_length=max_length, padding='longest', return_tensors='pt')

def plain_margins(model, tok, pairs:pd.DataFrame, max_length:int, batch:int=32)->np.ndarray:
    "r(chosen) - r(rejected) of every pair, the plain way: eval mode, fp32, data order."
    model.eval(); out = []
    with torch.inference_mode():
        for s in range(0, len(pairs), batch):
            idx = range(s, min(s + batch, len(pairs)))
            r = model(**plain_batches(tok, pairs, idx, max_length)).logits[:, 0].float()
            out.append((r[:len(idx)] - r[len(idx):]).numpy())
    return np.concatenate(out)

def plain_loop(train:pd.DataFrame, val:pd.DataFrame, test:pd.DataFrame, dtype:str, seed:int=0, **kw)->dict:
    "Train the plain baseline; validation accuracy each epoch, test margins at the end."
    c = PLAIN | kw
    rm = RewardModel.load(dtype='float32', seed=seed, device='cpu')
    model, tok = rm.model, rm.tokenizer
    opt = torch.optim.AdamW(model.parameters(), lr=c['lr'])
    g, epochs = torch.Generator().manual_seed(seed), []
    for ep in range(c['epochs']):
        model.train(); order = torch.randperm(len(train), generator=g).tolist(); t0, c0 = time.perf_counter(), time.process_time()
        for s in range(0, len(order), c['batch_size']):
            idx = order[s:s + c['batch_size']]
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bfloat16'):
                r = model(**plain_batches(tok, train, idx, c['max_length'])).logits[:, 0].float()
            loss = -F.logsigmoid(r[:len(idx)] - r[len(idx):]).mean()
            loss.backward(); opt.step(); opt.zero_grad()
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        epochs.append(dict(epoch=ep + 1, seconds=round(secs, 2), cpu_seconds=round(cpu, 2), validation_accuracy=round(float((plain_margins(model, tok, val, c['max_length']) > 0).mean()), 4)))
        print(f"  plain loop epoch {ep + 1}: {secs:.0f} s ({cpu:.0f} CPU s), validation {epochs[-1]['validation_accuracy']:.3f}", flush=True)
    return dict(settings=c, epochs=epochs, test_margins=plain_margins(model, tok, test, c['max_length']))

# --- comparisons ----------------------------------------------------------------------------------

def paired_difference(ours:np.ndarray, base:np.ndarray, n_boot:int=2000, seed:int=0)->dict:
    "Accuracy difference (ours - baseline) on the same pairs: bootstrap CI over pairs and McNemar's exact p-value."
    d = ours.astype(float) - base.astype(float)
    boot = np.concatenate([cnt @ d / len(d) for cnt in boot_counts(len(d), n_boot, seed, chunk=500)])
    b, c = int(((ours == 1) & (base == 0)).sum()), int(((ours == 0) & (base == 1)).sum())
    p = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return dict(difference=float(d.mean()), ci_low=float(np.quantile(boot, 0.025)), ci_high=float(np.quantile(boot, 0.975)),
                ours_only_correct=b, baseline_only_correct=c, mcnemar_exact_p=float(p))

def precisions_of(model_dir:Path, test:pd.DataFrame, native:bool)->list:
    "Test accuracy of the trained weights scored in each precision, and how their scores follow fp32."
    dts = ['float32', *(['bfloat16'] if native else []), 'int8']
    out, ref = [], None
    for dt in dts:
        rm = RewardModel.load(model_dir, dtype=dt, device='cpu')
        t0 = time.perf_counter(); r = rm.score(list(test.prompt) * 2, list(test.chosen) + list(test.rejected)); secs = time.perf_counter() - t0
        ref = r if ref is None else ref
        m, m32 = r[:len(test)] - r[len(test):], ref[:len(test)] - ref[len(test):]
        out.append(dict(dtype=dt, **{k: round(v, 4) for k, v in accuracy_ci(m > 0).items() if k in ('accuracy', 'ci_low', 'ci_high')},
                        score_correlation_with_fp32=round(float(np.corrcoef(r, ref)[0, 1]), 4),
                        pairs_ordered_unlike_fp32=int(np.sum(np.sign(m) != np.sign(m32))), scoring_seconds=round(secs, 2)))
    return out

def step_throughput(pairs:pd.DataFrame, max_length:int, native:bool, reps:int=3)->list:
    "Sequences/s of one optimizer step (forward, backward, AdamW) on 32 real pairs: fp32, and bf16 autocast where native."
    rows, kinds = [], [False, True] if native else [False]
    with quiet():
        rm = base_model(RewardModelConfig(max_length=max_length))
        prep = prepare_pairs(pairs.head(32), rm, RewardModelConfig(max_length=max_length))
        batch = PairCollator(pad_token_id=rm.tokenizer.pad_token_id)([prep.dataset[i] for i in range(32)])
    opt = torch.optim.AdamW([p for p in rm.model.parameters() if p.requires_grad], lr=1e-5)
    times = {bf: [] for bf in kinds}
    for rep in range(reps + 1):  # interleaved, so load changes hit both alike; the first round warms up
        for bf, ts in times.items():
            m = rm.model.train(); t = time.perf_counter()
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf): r = m(**batch).logits.squeeze(-1)
            c, j = r.float().chunk(2)
            (-F.logsigmoid(c - j).mean()).backward(); opt.step(); opt.zero_grad()
            if rep: ts.append(time.perf_counter() - t)
    n = batch['input_ids'].shape[0]
    for bf, ts in times.items():
        rows.append(dict(max_length=max_length, padded_length=int(batch['input_ids'].shape[1]), dtype='bf16 autocast' if bf else 'float32',
                         seconds_per_step=round(min(ts), 3), sequences_per_s=round(n / min(ts), 1)))
    return rows

def curve(history:pd.DataFrame)->pd.DataFrame:
    "Validation points of our curve with the mean training loss/accuracy since the previous point."
    rows, last = [], 0.0
    for _, e in history.dropna(subset=['eval_loss']).iterrows():
        tr = history[(history.epoch > last) & (history.epoch <= e.epoch)].dropna(subset=['loss'])
        rows.append(dict(epoch=round(e.epoch, 2), train_loss=round(tr.loss.mean(), 4), train_accuracy=round(tr.accuracy.mean(), 3),
                         validation_loss=round(e.eval_loss, 4), validation_accuracy=round(e.eval_accuracy, 3)))
        last = e.epoch
    return pd.DataFrame(rows)

# --- report ---------------------------------------------------------------------------------------

def table(rows)->str: return md_table(pd.DataFrame(rows), floatfmt='')

def fmt_acc(m:dict)->str: return f"**{m['accuracy']:.3f}** [{m['ci_low']:.3f}, {m['ci_high']:.3f}] (n={m['n']})"

def markdown(r:dict)->str:
    o, b, k, mc = r['ours'], r['baseline'], r['machine'], r['machine']['load']
    d, ch = r['paired_difference'], r['checks']
    lines = [
        f"# Reward-model training benchmark (hh-rlhf harmless): {k['label']}", '',
        f"Run {r['started']} on {k['cpu']}, {k['cores']} cores (torch threads {k['torch_threads']}), torch CPU capability **{k['torch_capability']}**, "
        f"CPU flags {', '.join(k['cpu_flags'])}. Precision of both trainers: **{r['precision']['used']}** (auto: {k['precision_reason']}). "
        f"Load average (1, 5, 15 min) before {mc['before']}, after {mc['after']}: {mc['note']}.", '',
        f"Data: `{r['data']['file']}` (sha256 `{r['data']['file_sha256'][:16]}…`), train {r['data']['train_rows']} pairs, "
        f"validation {r['data']['validation_rows']}, test {r['data']['test_rows']} (80/10/10 split by prompt hash). Every choice was made on "
        "validation; the test split was scored once per model, after training.", '',
        '## Result', '',
        '| | test accuracy (95% bootstrap CI) | seconds per epoch | CPU seconds per epoch | epochs | total training seconds | final validation accuracy |', '|---|---|---|---|---|---|---|',
        f"| ours (configs/reward_model.toml) | {fmt_acc(o['test'])} | {o['seconds_per_epoch']:.0f} | {o['cpu_seconds_per_epoch']:.0f} | {o['epochs']} | {o['train_seconds']:.0f} | {o['validation']['accuracy']:.3f} |",
        f"| plain loop (baseline, same run) | {fmt_acc(b['test'])} | {b['seconds_per_epoch']:.0f} | {b['cpu_seconds_per_epoch']:.0f} | {b['settings']['epochs']} | {b['train_seconds']:.0f} | {b['epochs'][-1]['validation_accuracy']:.3f} |",
        f"| {REFERENCE['model']} | {REFERENCE['accuracy']:.3f} ({REFERENCE['set']}, published) | | | | | |", '',
        f"Ours minus baseline on the same {b['test']['n']} test pairs: {100 * d['difference']:+.1f} points [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] "
        f"(only ours right on {d['ours_only_correct']}, only the baseline on {d['baseline_only_correct']}; McNemar exact p = {d['mcnemar_exact_p']:.3g}).", '',
        'Checks:', '', *[f'- {c}: {v}' for c, v in ch.items()], '',
        f"Our settings: {', '.join(f'{k}={v}' for k, v in r['config'].items() if k in ('learning_rate', 'batch_size', 'epochs', 'max_length', 'warmup_ratio', 'lr_scheduler', 'dtype', 'group_by_length', 'freeze_embeddings', 'freeze_layers', 'seed'))}. "
        f"Baseline: {', '.join(f'{k}={v}' for k, v in b['settings'].items())}, every weight trainable, dropout on, constant learning rate.", '',
        f"Truncation (ours, train): {r['truncation']['prompt_truncated']} of {r['truncation']['inputs']} inputs lost the start of their prompt, "
        f"{r['truncation']['response_truncated']} the end of their response; {r['truncation']['dropped']} dropped.", '',
        '## Our validation curve (train columns average the steps since the previous point)', '', table(r['curve']), '',
        '## Baseline epochs', '', table(b['epochs']), '',
        '## Our seconds per epoch (training only; validation evaluations excluded)', '', table(o['epoch_seconds']), '',
        '## Our trained model scored in each precision (test split)', '', table(r['precisions']), '',
        '## One training step, 32 pairs (64 sequences)', '', table(r['step_throughput']), '',
        '## Token lengths of the train split (share of inputs cut at each max length)', '', table(r['length_table']), '',
    ]
    return '\n'.join(lines)

def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument('--quick', action='store_true', help='toy sizes; results go to a temporary folder')
    a.add_argument('--out', default=None, help='where to write the results (default: benchmarks/results, or a temporary folder with --quick)')
    args = a.parse_args(argv)
    res_dir = Path(args.out) if args.out else (Path(tempfile.mkdtemp()) if args.quick else ROOT/'benchmarks'/'results')
    load0, started, kind = loadavg(), time.strftime('%Y-%m-%d %H:%M:%S'), cpu_kind()
    cfg = section(load_config(ROOT/'configs'), 'reward_model', RewardModelConfig)
    train, val, test = (load_pairs(cfg.dataset, split=s) for s in ('train', 'validation', 'test'))
    plain_kw = {}
    if args.quick:
        cfg = dataclasses.replace(cfg, max_pairs=64, epochs=1.0, max_length=64)
        train, val, test, plain_kw = train.head(64), val.head(32), test.head(32), dict(epochs=1, max_length=64)
    dtype, native = train_dtype(cfg), kind['auto_precision'] == 'bfloat16'
    print(f'precision: {dtype} ({kind["precision_reason"]})', flush=True)
    thr = step_throughput(train, cfg.max_length, native, reps=1 if args.quick else 3)
    with quiet(): lt = length_table(base_model(cfg), train.head(200) if args.quick else train)
    print('baseline: plain loop', flush=True)
    base = plain_loop(train, val, test, dtype, seed=cfg.seed or 0, **plain_kw)
    print('ours: train_reward_model', flush=True)
    src = pair_file(cfg.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        res = train_reward_model(train, cfg, Path(tmp)/'rm', eval_pairs=val, test_pairs=test, progress=True,
                                 provenance=dict(file=str(src.relative_to(ROOT)) if src.is_relative_to(ROOT) else src.name, file_sha256=sha256_file(src)))
        ours_m32 = RewardModel.load(res.model_dir, 'float32').score_pairs(test)
        precs = precisions_of(res.model_dir, test, native)
    ep = res.timing['epochs']  # timings are on the result (training_log.json holds none: same seed, same bytes)
    ours = dict(test=res.metrics['test'], validation=res.metrics['validation'], epochs=len(ep), epoch_seconds=ep,
                seconds_per_epoch=float(np.mean([e['seconds'] for e in ep])),
                cpu_seconds_per_epoch=float(np.mean([e['cpu_seconds'] for e in ep])), train_seconds=res.timing['train_seconds'])
    bm = base.pop('test_margins')
    baseline = dict(base, test=accuracy_ci(bm > 0), seconds_per_epoch=float(np.mean([e['seconds'] for e in base['epochs']])),
                    cpu_seconds_per_epoch=float(np.mean([e['cpu_seconds'] for e in base['epochs']])),
                    train_seconds=float(sum(e['seconds'] for e in base['epochs'])))
    diff = paired_difference((ours_m32 > 0).astype(int), (bm > 0).astype(int))
    ratio = ours['seconds_per_epoch'] / baseline['seconds_per_epoch']
    cpu_ratio = ours['cpu_seconds_per_epoch'] / baseline['cpu_seconds_per_epoch']
    checks = {'ours / baseline CPU seconds per epoch (<= 2/3; fair when the machine is shared)': round(cpu_ratio, 3),
              'ours / baseline wall seconds per epoch (<= 2/3 on an otherwise idle machine)': round(ratio, 3),
              'ours test accuracy >= baseline test accuracy': bool(ours['test']['accuracy'] >= baseline['test']['accuracy']),
              'passed': bool(cpu_ratio <= 2 / 3 and ours['test']['accuracy'] >= baseline['test']['accuracy'])}
    load1 = loadavg()
    kind['torch_threads'] = torch.get_num_threads()
    kind['load'] = dict(before=load0, after=load1, note=busy_note(max(load0[0], load1[0]), kind['torch_threads']))
    r = dict(started=started, config=res.log['config'], versions=res.log['versions'], machine=kind, precision=res.log['precision'],
             data=dict(file=res.log['provenance']['file'], file_sha256=res.log['provenance']['file_sha256'], train_sha256=res.log['data']['train']['sha256'],
                       train_rows=len(train), validation_rows=len(val), test_rows=len(test)),
             truncation=res.log['data']['train']['truncation'], ours=ours, baseline=baseline, paired_difference=diff, checks=checks,
             curve=curve(res.history).to_dict('records'), precisions=precs, step_throughput=thr, length_table=lt.to_dict('records'),
             reference=REFERENCE, history=res.log['history'])
    name = f'rm_training-{kind_slug(kind)}'
    write_json(res_dir/f'{name}.json', r)
    write_text(res_dir/f'{name}.md', markdown(r))
    print(markdown(r)); print(f'\nwritten: {res_dir}/{name}.json, .md')
    return r

if __name__ == '__main__': main()
