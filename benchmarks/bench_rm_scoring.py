"""Reward-model scoring speed: `RewardModel.score` (fp32 and bf16) against the usual transformers pipeline.

The same 2,000 pairs (a seeded sample of the 3,542 two-response pairs of the five LLMBar sets, MT-Bench human,
JudgeBench gpt-4o + claude and hh-rlhf harmless; 4,000 (prompt, response) inputs) are scored in one run by

* baseline: `pipeline("text-classification", model=<folder>, function_to_apply="none")`, batch 8, fp32, the inputs in
  data order, each batch padded to its longest input. It is fed the text our encoder keeps (`RewardModel.visible`:
  the end of the prompt and the start of the response, cut at word boundaries), so it sees exactly our token ids;
* ours fp32: `RewardModel.score` (length-sorted batches of at most 32 inputs and 2,048 tokens, padding per batch,
  inference_mode; on CPU the 2 torch threads each run whole batches, one thread per batch);
* ours bf16: the same under bf16 autocast (linear-layer weights cast once per call; layer norms, residual stream and
  head in fp32).

The three take turns on 10 chunks of the pairs (rotating order), so a change in the shared machine's load hits all
three alike.

Model: the shipped MiniLM (22.7 M parameters) with its seeded, untrained 1-output head; max_length 512; 2 torch
threads. Achieved GFLOP/s counts the useful work on real (unpadded) tokens: 2 x (encoder weight-matrix parameters)
per token, plus 4 L^2 d per layer for attention scores and weighted sums, plus the pooler/head once per input; it is
compared with the best torch.matmul throughput measured on this machine, same dtype, at the model's matrix shapes.

Run once: `.venv/bin/python benchmarks/bench_rm_scoring.py` -> benchmarks/results/rm_scoring.{json,md}.
"""
import argparse, os, platform, tempfile, time, warnings
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import numpy as np, pandas as pd, torch
from rewardbench_nb.core import package_versions, write_json, write_text
from rewardbench_nb.data import load_pairs
from rewardbench_nb.reward_model import CPU_MAX_TOKENS, RewardModel, length_batches, pair_accuracy
from rewardbench_nb.curation import md_table
from _common import busy_note, cpu_info, loadavg

warnings.filterwarnings('ignore', category=UserWarning)
OUT = Path(__file__).resolve().parent/'results'
SETS = ('llmbar-natural', 'llmbar-adver-neighbor', 'llmbar-adver-GPTInst', 'llmbar-adver-GPTOut', 'llmbar-adver-manual',
        'mtbench-human', 'judgebench-gpt4o', 'judgebench-claude', 'hh-rlhf-harmless')
DESCRIPTION = ("{pairs} pairs ({inputs} (prompt, response) inputs), a seeded sample of the two-response pairs of the five LLMBar sets, MT-Bench human, "
               "JudgeBench (gpt-4o, claude) and hh-rlhf harmless, scored by the usual transformers text-classification pipeline (fp32, batch 8, "
               "data order, padding per batch, fed the same kept text so it sees the same token ids) and by RewardModel.score in fp32 and bf16 "
               "(length-sorted batches of at most 32 inputs and, on CPU, 2,048 tokens; the 2 threads each run whole batches). Model: the shipped MiniLM with its seeded untrained head, max_length {max_length}. The three take turns "
               "on {rounds} chunks of the pairs. GFLOP/s counts useful work on real tokens (2 x encoder weight-matrix parameters per token + "
               "attention 4 L^2 d per layer + head), against the best torch.matmul throughput measured here at the model's shapes, same dtype.")
SHAPES = ((8192, 384, 1536), (8192, 1536, 384), (8192, 384, 384))  # tokens x in x out of the model's linear layers

def sample_pairs(n:int, seed:int)->pd.DataFrame:
    "A seeded sample of `n` pairs from the two-response sets."
    pool = pd.concat([load_pairs(s)[['id', 'prompt', 'chosen', 'rejected', 'domain']].assign(set=s) for s in SETS], ignore_index=True)
    return pool.sample(n, random_state=seed).reset_index(drop=True)

def machine()->dict:
    cpu, flags = cpu_info()
    return dict(platform=platform.platform(), cpu=cpu, cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
                avx512_bf16='avx512_bf16' in flags, amx_bf16='amx_bf16' in flags, cuda=torch.cuda.is_available(),
                gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                versions=package_versions(('numpy', 'pandas', 'torch', 'transformers', 'tokenizers')))

def matmul_gflops(dtype, device='cpu', seconds:float=1.5)->dict:
    "torch.matmul GFLOP/s at the model's shapes (best of a timed loop each)."
    out = {}
    for M, K, N in SHAPES:
        a, b = torch.randn(M, K, dtype=dtype, device=device), torch.randn(K, N, dtype=dtype, device=device)
        for _ in range(3): a @ b
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

def variant(name, scores, seconds, la, lengths, flops, peak, padded)->dict:
    n = len(scores) // 2
    return dict(variant=name, seconds=round(seconds, 2), pairs_per_s=round(n / seconds, 2), inputs_per_s=round(len(scores) / seconds, 2),
                real_tokens_per_s=round(lengths.sum() / seconds, 1), padding_share=round(1 - lengths.sum() / padded, 4),
                gflop_per_s=round(flops / seconds / 1e9, 1), peak_gflop_per_s=peak, share_of_peak=round(flops / seconds / 1e9 / peak, 3),
                accuracy=pair_accuracy(scores[:n] - scores[n:]), load_average=la)

def run_device(device:str, rm32:RewardModel, rm16:RewardModel, folder, vis, P, R, lengths, flops, rounds:int)->tuple:
    """(variants, matmul peaks, scores) on one device. The pairs are scored in `rounds` chunks, the three methods taking
    turns on each chunk (in rotating order), so a change in the machine's load hits all three alike."""
    peaks = {d: matmul_gflops(getattr(torch, d), device) for d in ('float32', 'bfloat16')}
    peak = {d: max(v.values()) for d, v in peaks.items()}
    for m in (rm32, rm16): m.model.to(device); m.score(P[:16], R[:16])  # warm up kernels
    pipe = make_pipeline(folder, device); baseline_scores(pipe, vis.head(16))
    bs, mt = (32, CPU_MAX_TOKENS) if device == 'cpu' else (128, None)
    n_pairs = len(P) // 2
    fns = dict(baseline=lambda i: baseline_scores(pipe, vis.iloc[i]),
               fp32=lambda i: rm32.score([P[j] for j in i], [R[j] for j in i], batch_size=bs),
               bf16=lambda i: rm16.score([P[j] for j in i], [R[j] for j in i], batch_size=bs))
    scores = {k: np.empty(len(P), np.float32) for k in fns}; secs = dict.fromkeys(fns, 0.); la = {k: [] for k in fns}; pad = dict.fromkeys(fns, 0)
    for r, chunk in enumerate(np.array_split(np.arange(n_pairs), rounds)):
        idx = np.r_[chunk, chunk + n_pairs]  # the chunk's chosen inputs, then its rejected ones (data order)
        names = list(fns); names = names[r % 3:] + names[:r % 3]
        for k in names:
            la[k].append(loadavg()[0]); t0 = time.perf_counter()
            scores[k][idx] = fns[k](idx); secs[k] += time.perf_counter() - t0
        pad['baseline'] += batch_tokens(lengths[idx], [np.arange(i, min(i + 8, len(idx))) for i in range(0, len(idx), 8)])
        pad['fp32'] += batch_tokens(lengths[idx], length_batches(lengths[idx], bs, mt))
    pad['bf16'] = pad['fp32']
    la = {k: dict(min=min(v), max=max(v)) for k, v in la.items()}
    ours = f'sorted, <= {bs} inputs / {mt or "any"} tokens per batch, a batch per thread'
    names = dict(baseline=('baseline pipeline fp32, batch 8', 'float32'), fp32=(f'RewardModel.score fp32, {ours}', 'float32'),
                 bf16=(f'RewardModel.score bf16, {ours}', 'bfloat16'))
    rows = [variant(name, scores[k], secs[k], la[k], lengths, flops, peak[dt], pad[k]) for k, (name, dt) in names.items()]
    peaks['matmul_after'] = {d: matmul_gflops(getattr(torch, d), device) for d in ('float32', 'bfloat16')}
    return rows, peaks, scores

def top_load(res:dict)->float:
    "The highest 1-minute load seen: at the start, the end, or before any timed chunk."
    return max(res['load_average_at_start'][0], res['load_average_at_end'][0],
               *(r['load_average']['max'] for d in res['devices'].values() for r in d['variants']))

def markdown(res:dict)->str:
    cols = ['variant', 'seconds', 'pairs_per_s', 'inputs_per_s', 'real_tokens_per_s', 'padding_share', 'gflop_per_s', 'peak_gflop_per_s', 'share_of_peak', 'accuracy']
    st = res['setup']
    lines = [f"# Reward-model scoring benchmark\n", st['description'].format(**st) + "\n",
             f"Inputs: mean {st['mean_tokens']} tokens, {st['inputs_at_max_length']} at max_length; prompts cut: {st['prompt_cut']}, responses cut: {st['response_cut']}; baseline sees the same ids for {st['baseline_sees_same_ids']} inputs; sets: {st['sets']}.\n",
             f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, torch threads {res['machine']['torch_threads']}, "
             f"AVX-512 BF16: {res['machine']['avx512_bf16']}; torch {res['machine']['versions']['torch']}, transformers {res['machine']['versions']['transformers']}. "
             f"Load average at start {res['load_average_at_start']}, at end {res['load_average_at_end']}: {res['busy_note']}\n"]
    for dev, d in res['devices'].items():
        lines += [f"## {dev}\n", md_table(pd.DataFrame(d['variants'])[cols], floatfmt='')]
        lines += ['', f"matmul GFLOP/s (best at the model's shapes), before: {d['matmul']['float32']} fp32, {d['matmul']['bfloat16']} bf16; "
                      f"after: {d['matmul']['matmul_after']['float32']} fp32, {d['matmul']['matmul_after']['bfloat16']} bf16\n"]
        lines += ['Checks:\n'] + [f"- {k}: {v}" for k, v in d['checks'].items()] + ['']
    return '\n'.join(lines) + '\n'

def main(n_pairs:int=2000, max_length:int=512, seed:int=0, threads:int=2, rounds:int=10, out:Path=OUT):
    torch.set_num_threads(threads)
    la_start = loadavg()
    pairs = sample_pairs(n_pairs, seed)
    P, R = list(pairs.prompt) * 2, list(pairs.chosen) + list(pairs.rejected)
    rm32, rm16 = RewardModel.load(max_length=max_length, device='cpu'), RewardModel.load(dtype='bfloat16', max_length=max_length, device='cpu')
    enc = rm32.encode(P, R); lengths = enc.lengths
    vis = rm32.visible(P, R)
    same_ids = sum(a == b for a, b in zip(rm32.tokenizer(list(vis.prompt), list(vis.response))['input_ids'], enc.ids))
    flops = float(flops_per_input(rm32.model, lengths).sum())
    res = dict(setup=dict(description=DESCRIPTION, pairs=n_pairs, rounds=rounds, inputs=len(P), max_length=max_length, seed=seed,
                          sets={k: int(v) for k, v in pairs.set.value_counts().items()}, mean_tokens=round(float(lengths.mean()), 1), max_tokens=int(lengths.max()),
                          inputs_at_max_length=int((lengths == max_length).sum()), prompt_cut=int(enc.prompt_cut.sum()), response_cut=int(enc.response_cut.sum()),
                          baseline_sees_same_ids=f'{same_ids}/{len(P)}', useful_gflop=round(flops / 1e9, 1)),
               machine=machine(), load_average_at_start=la_start, devices={})
    with tempfile.TemporaryDirectory() as d:
        folder = rm32.save(Path(d)/'rm')
        devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
        for dev in devices:
            rows, peaks, s = run_device(dev, rm32, rm16, folder, vis, P, R, lengths, flops, rounds)
            base, f32, b16 = rows
            speedup, acc_diff = round(b16['pairs_per_s'] / base['pairs_per_s'], 2), round(100 * (b16['accuracy'] - f32['accuracy']), 2)
            fp32_dev = float(np.abs(s['fp32'] - s['baseline']).max())
            checks = {'bf16 speed-up over baseline (>= 3x)': speedup,
                      'fp32 speed-up over baseline': round(f32['pairs_per_s'] / base['pairs_per_s'], 2),
                      'bf16 accuracy - fp32 accuracy, points (|.| <= 0.5)': acc_diff,
                      'pairs whose order differs between bf16 and fp32': int(np.sum(np.sign(s['bf16'][:n_pairs] - s['bf16'][n_pairs:]) != np.sign(s['fp32'][:n_pairs] - s['fp32'][n_pairs:]))),
                      'max |fp32 - baseline| score (<= 1e-4)': fp32_dev,
                      'max |bf16 - fp32| score': float(np.abs(s['bf16'] - s['fp32']).max()),
                      'score spread (std, fp32)': float(s['fp32'].std())}
            checks['passed'] = bool(speedup >= 3 and abs(acc_diff) <= 0.5 and fp32_dev <= 1e-4)
            res['devices'][dev] = dict(variants=rows, matmul=peaks, checks=checks)
    res['load_average_at_end'] = loadavg()
    res['busy_note'] = busy_note(top_load(res), threads)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out/'rm_scoring.json', res)
    write_text(out/'rm_scoring.md', markdown(res))
    print(markdown(res))
    return res

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--pairs', type=int, default=2000); ap.add_argument('--max-length', type=int, default=512)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--rounds', type=int, default=10)
    ap.add_argument('--out', type=Path, default=OUT)
    a = ap.parse_args()
    main(a.pairs, a.max_length, threads=a.threads, rounds=a.rounds, out=a.out)
