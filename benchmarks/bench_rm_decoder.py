"""Decoder reward models through their chat template: `RewardModel.score` against the card's recipe and transformers' batched call.

A decoder reward model's card scores one conversation at a time: `tokenizer.apply_chat_template(messages)`, then
`model(...).logits[0][0]`. This script scores the same conversations three ways, in turns on `--rounds` chunks (so a
change in the shared machine's load hits all alike), and checks they give the same rewards:

* recipe: the card's recipe, one conversation per forward pass (float32);
* batched: the usual batched call, `apply_chat_template` over a batch of conversations with `padding=True` (the
  tokenizer pads on the right), `model(**batch).logits[:, 0]`, batches of 8 in data order (float32);
* ours: `RewardModel.score` (length-sorted batches, a batch per thread on CPU, the reward read at the token the recipe
  reads), in float32 and in the precision `auto` picks here.

Model: a random Llama sequence classifier of `--layers` x `--hidden` (the shape of a small real one, not its quality:
speed depends on the shape) on the shipped policy's byte-level BPE tokenizer and the tiny chat template of
`reward_model.build_tiny_chat_rm`, 1,024 positions. Conversations: a seeded sample of two-response pairs (hh-rlhf
dialogues, LLMBar, MT-Bench, JudgeBench) whose templated conversation fits 1,024 tokens, so every way sees the same ids.

    .venv/bin/python benchmarks/bench_rm_decoder.py     # -> benchmarks/results/rm_decoder-<cpu kind>.{json,md}
"""
import argparse, os, time, warnings
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import numpy as np, pandas as pd, torch
from rewardbench_nb.core import package_versions, write_json, write_text
from rewardbench_nb.curation import md_table
from rewardbench_nb.data import data_dir
from rewardbench_nb.reward_model import RewardModel, TINY_CHAT_TEMPLATE, split_turns
from bench_rm_scoring import sample_pairs
from _common import busy_note, cpu_kind, kind_slug, loadavg

warnings.filterwarnings('ignore', category=UserWarning)
OUT = Path(__file__).resolve().parent/'results'

def build_model(folder:Path, layers:int, hidden:int, seed:int=0)->Path:
    "A random Llama reward model of the given shape with the tiny chat template, saved to `folder`."
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification
    tok = AutoTokenizer.from_pretrained(data_dir()/'policy'); tok.chat_template = TINY_CHAT_TEMPLATE
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                      num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, max_position_embeddings=1024,
                      num_labels=1, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(seed); model = LlamaForSequenceClassification(cfg)
    model.save_pretrained(folder); tok.save_pretrained(folder)
    return folder

def conversations(tok, n:int, seed:int)->tuple:
    "(prompts, responses, message lists) of up to n pairs (chosen and rejected) whose conversation fits 1,024 tokens."
    pairs = sample_pairs(3 * n, seed)
    P, R = list(pairs.prompt) * 2, list(pairs.chosen) + list(pairs.rejected)
    msgs = [[*split_turns(p), dict(role='assistant', content=r)] for p, r in zip(P, R)]
    fits = [len(tok.apply_chat_template(m, return_dict=False)) <= 1024 for m in msgs]
    keep = [i for i in range(len(P)) if fits[i] and fits[(i + len(P) // 2) % len(P)]][:n]
    return [P[i] for i in keep], [R[i] for i in keep], [msgs[i] for i in keep]

def ways(folder:Path, P, R, msgs)->dict:
    "name -> (positions -> rewards) of each way of scoring."
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForSequenceClassification.from_pretrained(folder).eval()
    def recipe(idx):
        with torch.inference_mode():
            return np.array([model(**tok.apply_chat_template(msgs[i], return_tensors='pt')).logits[0][0].item() for i in idx])
    def batched(idx):
        out = []
        with torch.inference_mode():
            for s in range(0, len(idx), 8):
                b = tok.apply_chat_template([msgs[i] for i in idx[s:s + 8]], padding=True, return_tensors='pt')
                out.append(model(**b).logits[:, 0].float().numpy())
        return np.concatenate(out)
    fp32, auto = RewardModel.load(folder, dtype='float32'), RewardModel.load(folder)
    ours = lambda rm: (lambda idx: rm.score([P[i] for i in idx], [R[i] for i in idx], batch_size=32))
    return {'recipe, one at a time (fp32)': recipe, 'transformers batched, 8 (fp32)': batched,
            'RewardModel.score fp32': ours(fp32), f'RewardModel.score auto ({auto.dtype})': ours(auto)}

def timed_in_turns(fns:dict, n:int, rounds:int)->tuple:
    "(rewards, seconds) of each way, the ways taking turns in rotating order on `rounds` chunks."
    out, secs = {k: np.empty(n) for k in fns}, dict.fromkeys(fns, 0.)
    for r, chunk in enumerate(np.array_split(np.arange(n), rounds)):
        names = list(fns); names = names[r % len(names):] + names[:r % len(names)]
        for k in names:
            t = time.perf_counter(); out[k][chunk] = fns[k](chunk); secs[k] += time.perf_counter() - t
    return out, secs

def main(n:int=600, layers:int=6, hidden:int=384, rounds:int=6, threads:int=2, out:Path=OUT):
    torch.set_num_threads(threads)
    import tempfile
    from transformers import AutoTokenizer
    la0, mach = loadavg(), cpu_kind()
    with tempfile.TemporaryDirectory() as d:
        folder = build_model(Path(d)/'rm', layers, hidden)
        P, R, msgs = conversations(AutoTokenizer.from_pretrained(folder), n, 0)
        fns = ways(folder, P, R, msgs)
        for f in fns.values(): f(np.arange(8))  # warm up
        scores, secs = timed_in_turns(fns, len(P), rounds)
        params = sum(p.numel() for p in RewardModel.load(folder, dtype='float32').model.parameters())
    ref = scores['recipe, one at a time (fp32)']
    rows = [dict(way=k, seconds=round(s, 2), inputs_per_s=round(len(P) / s, 2),
                 speedup_over_recipe=round(secs['recipe, one at a time (fp32)'] / s, 2),
                 max_abs_diff_from_recipe=float(np.abs(scores[k] - ref).max())) for k, s in secs.items()]
    res = dict(machine=mach, versions=package_versions(('torch', 'transformers', 'tokenizers')), model=dict(
               layers=layers, hidden=hidden, parameters=params, max_positions=1024), inputs=len(P),
               turns=int(sum(sum(m['role'] == 'user' for m in x) for x in msgs)), rounds=rounds, threads=threads,
               rows=rows, load_average_at_start=la0, load_average_at_end=loadavg())
    res['busy_note'] = busy_note(max(la0[0], res['load_average_at_end'][0]), threads)
    name = f'rm_decoder-{kind_slug(mach)}'
    out.mkdir(parents=True, exist_ok=True); write_json(out/f'{name}.json', res); write_text(out/f'{name}.md', markdown(res))
    print(markdown(res)); return res

def markdown(res:dict)->str:
    m = res['machine']
    return '\n'.join([f"# Decoder reward-model scoring: {m['label']}\n", __doc__.split('\n\n')[1].replace('\n', ' ') + '\n',
        f"Model: random Llama classifier, {res['model']['layers']} layers x {res['model']['hidden']} wide, "
        f"{res['model']['parameters'] / 1e6:.1f} M parameters. {res['inputs']} conversations ({res['turns']} user turns), "
        f"{res['rounds']} rounds, {res['threads']} torch threads. Machine: {m['cpu']}, {m['cores']} cores, torch capability "
        f"**{m['torch_capability']}**, flags {', '.join(m['cpu_flags'])}; `auto`: **{m['auto_precision']}** "
        f"({m['precision_reason']}); torch {res['versions']['torch']}, transformers {res['versions']['transformers']}. "
        f"Load average at start {res['load_average_at_start']}, at end {res['load_average_at_end']}: {res['busy_note']}\n",
        md_table(pd.DataFrame(res['rows']), floatfmt=''), ''])

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--inputs', type=int, default=600); ap.add_argument('--layers', type=int, default=6)
    ap.add_argument('--hidden', type=int, default=384); ap.add_argument('--rounds', type=int, default=6)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--out', type=Path, default=OUT)
    a = ap.parse_args()
    main(a.inputs, a.layers, a.hidden, a.rounds, a.threads, a.out)
