"""Reward-model scoring speed: `RewardModel.score` in each precision against the usual transformers pipeline.

The same 2,000 pairs (a seeded sample of the 3,542 two-response pairs of the five LLMBar sets, MT-Bench human,
JudgeBench gpt-4o + claude and hh-rlhf harmless; 4,000 (prompt, response) inputs) are scored in one run by

* baseline: `pipeline("text-classification", model=<folder>, function_to_apply="none")`, batch 8, fp32, the inputs in
  data order, each batch padded to its longest input. It is fed the text our encoder keeps (`RewardModel.visible`:
  the end of the prompt and the start of the response, cut at word boundaries), so it sees exactly our token ids;
* ours fp32: `RewardModel.score` (length-sorted batches of at most 32 inputs and 2,048 tokens, padding per batch,
  inference_mode; on CPU the torch threads each run whole batches, one thread per batch);
* ours bf16: the same under bf16 autocast (linear-layer weights cast once per call; layer norms, residual stream and
  head in fp32). Run only where bf16 is native (`precision`): elsewhere it is tens of times slower, which the
  matmul micro-benchmark already shows, and `--force-bf16` runs it anyway;
* ours int8: dynamic int8 quantization of the encoder's linear layers (the opt-in `dtype='int8'`).

The variants take turns on 10 chunks of the pairs (rotating order), so a change in the shared machine's load hits all
alike. The default (`dtype='auto'`) is whichever of fp32 / bf16 `precision` picks on this machine; the result file
says which, and why. A second, smaller table sweeps the token budget per batch (`max_tokens`) in the default precision.

Model: the shipped MiniLM (22.7 M parameters) with its seeded, untrained 1-output head; max_length 512. Achieved GFLOP/s
counts the useful work on real (unpadded) tokens: 2 x (encoder weight-matrix parameters) per token, plus 4 L^2 d per
layer for attention scores and weighted sums, plus the pooler/head once per input; it is compared with the best
torch.matmul throughput measured on this machine at the model's matrix shapes, in the precision of the variant (int8
against the fp32 peak). Accuracy on the untrained head is a coin flip: what matters here is that it does not move
between precisions; the accuracy cost of int8 on a trained model is measured by bench_rm_training.py.

    .venv/bin/python benchmarks/bench_rm_scoring.py                 # -> benchmarks/results/rm_scoring-<cpu kind>.{json,md}
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 .venv/bin/python benchmarks/bench_rm_scoring.py
                                                                    # the same on an AVX-512 machine told to behave like AVX2
"""
import argparse, os, platform, tempfile, time, warnings
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import numpy as np, pandas as pd, torch
from rewardbench_nb.core import package_versions, write_json, write_text
from rewardbench_nb.data import load_pairs
from rewardbench_nb.precision import precision
from rewardbench_nb.reward_model import CPU_MAX_TOKENS, RewardModel, length_batches, pair_accuracy
from rewardbench_nb.curation import md_table
from _common import busy_note, cpu_kind, kind_slug, loadavg

warnings.filterwarnings('ignore', category=UserWarning)
OUT = Path(__file__).resolve().parent/'results'
SETS = ('llmbar-natural', 'llmbar-adver-neighbor', 'llmbar-adver-GPTInst', 'llmbar-adver-GPTOut', 'llmbar-adver-manual',
        'mtbench-human', 'judgebench-gpt4o', 'judgebench-claude', 'hh-rlhf-harmless')
SHAPES = ((8192, 384, 1536), (8192, 1536, 384), (8192, 384, 384))  # tokens x in x out of the model's linear layers
SWEEP = (1024, 2048, 4096)  # max_tokens per batch tried in the sweep

def sample_pairs(n:int, seed:int)->pd.DataFrame:
    "A seeded sample of `n` pairs from the two-response sets."
    pool = pd.concat([load_pairs(s)[['id', 'prompt', 'chosen', 'rejected', 'domain']].assign(set=s) for s in SETS], ignore_index=True)
    return pool.sample(n, random_state=seed).reset_index(drop=True)

def machine()->dict:
    return dict(platform=platform.platform(), torch_threads=torch.get_num_threads(), cuda=torch.cuda.is_available(),
                gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                versions=package_versions(('numpy', 'pandas', 'torch', 'transformers', 'tokenizers')), **cpu_kind())

def matmul_gflops(dtype, device='cpu', seconds:float=1.5)->dict:
    "torch.matmul GFLOP/s at the model's shapes (best of a timed loop each)."
    out = {}
    for M, K, N in SHAPES:
        a, b = torch.randn(M, K, dtype=dtype, device=device), torch.randn(K, N, dtype=dtype, device=device)
        for _ in range(2): a @ b
        best, t_end = 0., time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            if device != 'cpu': torch.cuda.synchronize()
            t0 = time.perf_counter(); a @ b
            if device != 'cpu': torch.cuda.synchronize()
            best = max(best, 2 * M * K * N / (time.perf_counter() - t0) / 1e9)
        out[f'{M}x{K}x{N}'] = round(best, 1)
    return out

def flops_per_input(model, lengths:np.ndarray)->np.ndarray:
    "Useful FLOPs of each input of `lengths` real tokens."
    cfg = model.config
    enc = sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and '.encoder.' in f'.{n}')
    head = sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and '.encoder.' not in f'.{n}')
    L = lengths.astype(float)
    return 2 * enc * L + cfg.num_hidden_layers * 4 * L ** 2 * cfg.hidden_size + 2 * head

def make_pipeline(folder, device):
    "The usual scoring route: a text-classification pipeline on the saved model, raw logits out."
    from transformers import pipeline
    return pipeline('text-classification', model=str(folder), tokenizer=str(folder), function_to_apply='none', device=device, dtype=torch.float32)

def baseline_scores(pipe, vis:pd.DataFrame, batch_size:int=8)->np.ndarray:
    "Scores of the kept (prompt, response) texts, in data order, batches of `batch_size` padded per batch."
    out = pipe([dict(text=p, text_pair=r) for p, r in zip(vis.prompt, vis.response)], batch_size=batch_size)
    return np.array([(o[0] if isinstance(o, list) else o)['score'] for o in out], np.float32)

def batch_tokens(lengths:np.ndarray, batches)->int:
    "Tokens computed, padding included, for `batches` of input indices."
    return int(sum(lengths[b].max() * len(b) for b in batches))

def variant(name, dtype, scores, seconds, la, lengths, flops, peak, padded)->dict:
    n = len(scores) // 2
    return dict(variant=name, dtype=dtype, seconds=round(seconds, 2), pairs_per_s=round(n / seconds, 2), inputs_per_s=round(len(scores) / seconds, 2),
                real_tokens_per_s=round(lengths.sum() / seconds, 1), padding_share=round(1 - lengths.sum() / padded, 4),
                gflop_per_s=round(flops / seconds / 1e9, 1), peak_gflop_per_s=peak, share_of_peak=round(flops / seconds / 1e9 / peak, 3),
                accuracy=pair_accuracy(scores[:n] - scores[n:]), load_average=la)

def interleaved(fns:dict, n_inputs:int, rounds:int)->tuple:
    "Time each of `fns` (indices -> scores) over `rounds` chunks, taking turns in rotating order: (scores, seconds, load)."
    n_pairs = n_inputs // 2
    scores = {k: np.empty(n_inputs, np.float32) for k in fns}; secs = dict.fromkeys(fns, 0.); la = {k: [] for k in fns}
    for r, chunk in enumerate(np.array_split(np.arange(n_pairs), rounds)):
        idx = np.r_[chunk, chunk + n_pairs]  # the chunk's chosen inputs, then its rejected ones (data order)
        names = list(fns); names = names[r % len(names):] + names[:r % len(names)]
        for k in names:
            la[k].append(loadavg()[0]); t0 = time.perf_counter()
            scores[k][idx] = fns[k](idx); secs[k] += time.perf_counter() - t0
    return scores, secs, {k: dict(min=min(v), max=max(v)) for k, v in la.items()}

def run_device(device:str, models:dict, folder, vis, P, R, lengths, flops, rounds:int)->tuple:
    "(variants, matmul peaks, scores, token sweep) on one device."
    peaks = {d: matmul_gflops(getattr(torch, d), device) for d in ('float32', 'bfloat16')}
    peak = {d: max(v.values()) for d, v in peaks.items()} | {'int8': max(peaks['float32'].values())}
    for m in models.values(): m.model.to(device); m.score(P[:16], R[:16])  # warm up kernels
    pipe = make_pipeline(folder, device); baseline_scores(pipe, vis.head(16))
    bs, mt = (32, CPU_MAX_TOKENS) if device == 'cpu' else (128, None)
    score = lambda m: (lambda i: m.score([P[j] for j in i], [R[j] for j in i], batch_size=bs))
    fns = dict(baseline=lambda i: baseline_scores(pipe, vis.iloc[i]), **{k: score(m) for k, m in models.items()})
    scores, secs, la = interleaved(fns, len(P), rounds)
    n_pairs, pad = len(P) // 2, dict(baseline=0, ours=0)
    for chunk in np.array_split(np.arange(n_pairs), rounds):
        idx = np.r_[chunk, chunk + n_pairs]
        pad['baseline'] += batch_tokens(lengths[idx], [np.arange(i, min(i + 8, len(idx))) for i in range(0, len(idx), 8)])
        pad['ours'] += batch_tokens(lengths[idx], length_batches(lengths[idx], bs, mt))
    ours = f'sorted, <= {bs} inputs / {mt or "any"} tokens per batch, a batch per thread'
    rows = [variant('baseline pipeline fp32, batch 8', 'float32', scores['baseline'], secs['baseline'], la['baseline'], lengths, flops,
                    peak['float32'], pad['baseline'])]
    rows += [variant(f'RewardModel.score {k}, {ours}', m.dtype, scores[k], secs[k], la[k], lengths, flops, peak[m.dtype], pad['ours'])
             for k, m in models.items()]
    peaks['matmul_after'] = {d: matmul_gflops(getattr(torch, d), device) for d in ('float32', 'bfloat16')}
    return rows, peaks, scores

def token_sweep(model:RewardModel, P, R, lengths, flops_each, peak:float, n_pairs:int, rounds:int)->list:
    "Seconds and share of peak of the default precision at each `max_tokens` of SWEEP, on the first `n_pairs` pairs."
    idx = np.r_[np.arange(n_pairs), np.arange(n_pairs) + len(P) // 2]
    Ps, Rs = [P[j] for j in idx], [R[j] for j in idx]
    fns = {t: (lambda t: lambda i: model.score([Ps[j] for j in i], [Rs[j] for j in i], batch_size=32, max_tokens=t))(t) for t in SWEEP}
    _, secs, _ = interleaved(fns, len(idx), rounds)
    fl = float(flops_each[idx].sum())
    return [dict(max_tokens=t, seconds=round(s, 2), gflop_per_s=round(fl / s / 1e9, 1), share_of_peak=round(fl / s / 1e9 / peak, 3))
            for t, s in secs.items()]

def checks_for(rows:list, scores:dict, default:str, native_bf16:bool)->dict:
    "What the targets ask, for this machine's kind."
    by = {r['dtype'] if i else 'baseline': r for i, r in enumerate(rows)}
    n, base, f32, dflt = len(scores['fp32']) // 2, by['baseline'], by['float32'], by[default]
    order = lambda s: np.sign(s[:n] - s[n:])
    c = {'default precision (auto)': default,
         'default speed-up over baseline': round(dflt['pairs_per_s'] / base['pairs_per_s'], 2),
         'fp32 speed-up over baseline': round(f32['pairs_per_s'] / base['pairs_per_s'], 2),
         'fp32 share of the fp32 matmul peak': f32['share_of_peak'],
         'default accuracy - fp32 accuracy, points (|.| <= 0.5)': round(100 * (dflt['accuracy'] - f32['accuracy']), 2),
         'max |fp32 - baseline| score (<= 1e-4)': float(np.abs(scores['fp32'] - scores['baseline']).max())}
    for k, dt in (('bf16', 'bfloat16'), ('int8', 'int8')):
        if k not in scores: continue
        c |= {f'{k} speed-up over baseline': round(by[dt]['pairs_per_s'] / base['pairs_per_s'], 2),
              f'{k} speed-up over fp32': round(by[dt]['pairs_per_s'] / f32['pairs_per_s'], 2),
              f'{k} correlation of scores with fp32': round(float(np.corrcoef(scores[k], scores['fp32'])[0, 1]), 4),
              f'{k} pairs whose order differs from fp32': int(np.sum(order(scores[k]) != order(scores['fp32']))),
              f'max |{k} - fp32| score / fp32 score std': round(float(np.abs(scores[k] - scores['fp32']).max() / scores['fp32'].std()), 4)}
    speed_ok = c['default speed-up over baseline'] >= 3 if native_bf16 else c['fp32 share of the fp32 matmul peak'] >= 0.9
    c['target'] = ('default >= 3x the baseline (bf16 native)' if native_bf16 else 'fp32 within 10% of the fp32 matmul peak (bf16 not native)')
    c['passed'] = bool(speed_ok and abs(c['default accuracy - fp32 accuracy, points (|.| <= 0.5)']) <= 0.5
                       and c['max |fp32 - baseline| score (<= 1e-4)'] <= 1e-4)
    return c

def top_load(res:dict)->float:
    "The highest 1-minute load seen: at the start, the end, or before any timed chunk."
    return max(res['load_average_at_start'][0], res['load_average_at_end'][0],
               *(r['load_average']['max'] for d in res['devices'].values() for r in d['variants']))

def markdown(res:dict)->str:
    cols = ['variant', 'dtype', 'seconds', 'pairs_per_s', 'inputs_per_s', 'real_tokens_per_s', 'padding_share', 'gflop_per_s', 'peak_gflop_per_s',
            'share_of_peak', 'accuracy']
    st, m = res['setup'], res['machine']
    lines = [f"# Reward-model scoring benchmark: {m['label']}\n", st['description'] + "\n",
             f"Inputs: mean {st['mean_tokens']} tokens, {st['inputs_at_max_length']} at max_length; prompts cut: {st['prompt_cut']}, responses cut: "
             f"{st['response_cut']}; baseline sees the same ids for {st['baseline_sees_same_ids']} inputs; sets: {st['sets']}.\n",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, torch CPU capability **{m['torch_capability']}**, "
             f"CPU flags {', '.join(m['cpu_flags'])}; `auto` precision: **{m['auto_precision']}** ({m['precision_reason']}); "
             f"torch {m['versions']['torch']}, transformers {m['versions']['transformers']}. "
             f"Load average at start {res['load_average_at_start']}, at end {res['load_average_at_end']}: {res['busy_note']}\n"]
    for dev, d in res['devices'].items():
        lines += [f"## {dev}\n", md_table(pd.DataFrame(d['variants'])[cols], floatfmt='')]
        lines += ['', f"matmul GFLOP/s (best at the model's shapes), before: {d['matmul']['float32']} fp32, {d['matmul']['bfloat16']} bf16; "
                      f"after: {d['matmul']['matmul_after']['float32']} fp32, {d['matmul']['matmul_after']['bfloat16']} bf16\n"]
        if d.get('sweep'):
            lines += [f"Token budget per batch, default precision ({m['auto_precision']}), first {st['sweep_pairs']} pairs:\n",
                      md_table(pd.DataFrame(d['sweep']), floatfmt=''), '']
        lines += ['Checks:\n'] + [f"- {k}: {v}" for k, v in d['checks'].items()] + ['']
    return '\n'.join(lines) + '\n'

def main(n_pairs:int=2000, max_length:int=512, seed:int=0, threads:int=2, rounds:int=10, sweep_pairs:int=300, force_bf16:bool=False, out:Path=OUT):
    torch.set_num_threads(threads)
    la_start, mach = loadavg(), machine()
    native = mach['auto_precision'] == 'bfloat16'
    pairs = sample_pairs(n_pairs, seed)
    P, R = list(pairs.prompt) * 2, list(pairs.chosen) + list(pairs.rejected)
    models = dict(fp32=RewardModel.load(max_length=max_length, device='cpu', dtype='float32'))
    if native or force_bf16: models['bf16'] = RewardModel.load(dtype='bfloat16', max_length=max_length, device='cpu')
    models['int8'] = RewardModel(models['fp32'].model, models['fp32'].tokenizer, 'int8', max_length)
    rm32 = models['fp32']; enc = rm32.encode(P, R); lengths = enc.lengths
    vis = rm32.visible(P, R)
    same_ids = sum(a == b for a, b in zip(rm32.tokenizer(list(vis.prompt), list(vis.response))['input_ids'], enc.ids))
    flops_each = flops_per_input(rm32.model, lengths); flops = float(flops_each.sum())
    desc = (f"{n_pairs} pairs ({len(P)} (prompt, response) inputs), a seeded sample of the two-response pairs of the five LLMBar sets, MT-Bench human, "
            "JudgeBench (gpt-4o, claude) and hh-rlhf harmless, scored by the usual transformers text-classification pipeline (fp32, batch 8, data "
            "order, padding per batch, fed the same kept text so it sees the same token ids) and by RewardModel.score in "
            f"{', '.join(models)} (length-sorted batches of at most 32 inputs and, on CPU, 2,048 tokens; the {threads} threads each run whole batches). "
            f"Model: the shipped MiniLM with its seeded untrained head, max_length {max_length}. The variants take turns on {rounds} chunks of the "
            "pairs. GFLOP/s counts useful work on real tokens (2 x encoder weight-matrix parameters per token + attention 4 L^2 d per layer + head), "
            "against the best torch.matmul throughput measured here at the model's shapes in the variant's precision (int8: the fp32 peak)."
            + ('' if 'bf16' in models else ' bf16 was not run: it is not native here (see the matmul numbers), so auto never picks it.'))
    res = dict(setup=dict(description=desc, pairs=n_pairs, rounds=rounds, inputs=len(P), max_length=max_length, seed=seed, sweep_pairs=sweep_pairs,
                          sets={k: int(v) for k, v in pairs.set.value_counts().items()}, mean_tokens=round(float(lengths.mean()), 1), max_tokens=int(lengths.max()),
                          inputs_at_max_length=int((lengths == max_length).sum()), prompt_cut=int(enc.prompt_cut.sum()), response_cut=int(enc.response_cut.sum()),
                          baseline_sees_same_ids=f'{same_ids}/{len(P)}', useful_gflop=round(flops / 1e9, 1)),
               machine=mach, load_average_at_start=la_start, devices={})
    default = mach['auto_precision']
    with tempfile.TemporaryDirectory() as d:
        folder = rm32.save(Path(d)/'rm')
        for dev in ['cpu'] + (['cuda'] if torch.cuda.is_available() else []):
            rows, peaks, s = run_device(dev, models, folder, vis, P, R, lengths, flops, rounds)
            dm = models['bf16' if default == 'bfloat16' else 'fp32']
            sweep = token_sweep(dm, P, R, lengths, flops_each, max(peaks[default].values()), sweep_pairs, 3) if dev == 'cpu' else []
            res['devices'][dev] = dict(variants=rows, matmul=peaks, sweep=sweep, checks=checks_for(rows, s, default, native))
    res['load_average_at_end'] = loadavg()
    res['busy_note'] = busy_note(top_load(res), threads)
    out.mkdir(parents=True, exist_ok=True)
    name = f'rm_scoring-{kind_slug(mach)}'
    write_json(out/f'{name}.json', res)
    write_text(out/f'{name}.md', markdown(res))
    print(markdown(res)); print(f'written: {out}/{name}.json, .md')
    return res

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--pairs', type=int, default=2000); ap.add_argument('--max-length', type=int, default=512)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--rounds', type=int, default=10)
    ap.add_argument('--sweep-pairs', type=int, default=300); ap.add_argument('--force-bf16', action='store_true')
    ap.add_argument('--out', type=Path, default=OUT)
    a = ap.parse_args()
    main(a.pairs, a.max_length, threads=a.threads, rounds=a.rounds, sweep_pairs=a.sweep_pairs, force_bf16=a.force_bf16, out=a.out)
