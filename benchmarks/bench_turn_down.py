"""Does best-of-n by a proxy turn the gold reward down in the gamma lab? A search over many proxies, on training prompts.

The gamma stage trains a handful of proxies and asks of each whether its best-of-n gold curve falls after a peak
(`gold_drop`'s 95% interval above 0). This script asks the question of many proxies at once, on prompts the stage
never measures (hh-rlhf *train* prompts, disjoint from the proxies' own pairs), so that what it finds can inform the
stage's design without touching its validation pool:

* proxies: the data sweep of Gao et al. (8 to 256 gold-labelled pairs, several random draws of pairs at each size)
  and noisy-label proxies (25% and 40% of 256 labels flipped); **spurious** proxies, one family per candidate feature
  (`CANDIDATES`: the stage's `SURFACE` counts and more patterns a reply can be counted for), each on 256 pairs whose
  annotator prefers the reply with more of the feature wherever the two differ in it; **control** proxies that read
  the count of quotation marks but learn from the gold labels alone; all heads of the stage's kind (`train_proxy`; a
  candidate's count stands in the column of one `SURFACE` feature, `STAND_IN`, so every head goes through the stage's
  own code); and
  **tuned** proxies, closer to Gao et al.'s fine-tuned reward models: the encoder's last transformer layer and a head
  fine-tuned on 32 pairs (Adam, learning rate 1e-3, 100 full-batch steps), on the reply alone;
* two search pools of different train prompts and samples, A and B, so that a turn-down found on one can be repeated
  on the other (every head on both; the tuned proxies, which need the encoder's hidden states, on A);
* each proxy's drop measured two ways on each pool: **same prompts** (the highest point of the mean curve chosen on the
  prompts that then measure the drop) and **cross-fitted** (`crossfit_drop`, the stage's statistic), each with a
  95% percentile interval (linear interpolation) over the same 1,000 resamples of prompts;
* the **pick**: the candidate whose spurious proxies rise and then fall (a cross-fitted drop above 0 after a peak past
  n = 1) in the most draws over both pools, ties broken by the larger mean drop, beside each candidate's share of
  replies that have the feature. The stage's `spurious` feature is this pick, chosen on training prompts;
* the CPU kind, the load average and the time of each step, as every benchmark here records them.

    .venv/bin/python benchmarks/bench_turn_down.py --gold runs/<id>/reward_model/model  # -> results/turn_down-<kind>.*
    .venv/bin/python benchmarks/bench_turn_down.py --render      # the .md again from the .json, nothing run
"""
import argparse, copy, tempfile, time, warnings
from pathlib import Path
import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import numpy as np, pandas as pd, torch, torch.nn.functional as F
from rewardbench_nb.core import package_versions, write_json, write_text
from rewardbench_nb.curation import md_table
from rewardbench_nb.data import load_pairs
from rewardbench_nb.policy import load_policy
from rewardbench_nb.reward_model import RewardModel
from rewardbench_nb.resampling import boot_counts, percentile_interval
from rewardbench_nb.rlhf import rm_reward
from rewardbench_nb.overoptimization import (GammaConfig, IN_DOMAIN, Pool, Proxy, bon_curves, bon_boot,
                                             SURFACE, d_best_of_n, proxy_columns, scored_pool, train_proxy,
                                             within_prompt)
from _common import busy_note, loadavg, record_args, train_rm

SIZES = dict(pair_prompts=512, pool_prompts=192, pool_size=256, draws=8, n_boot=1000)
SWEEP = (8, 16, 32, 64, 128, 256)
NOISE = (0.25, 0.4)
BIAS = 1.0  # the spurious proxies' annotator: always more of the feature, where two replies differ in it
CANDIDATES = {**SURFACE, 'capitals': '[A-Z]', 'commas': ',', 'full stops': r'\.', 'colons': ':', 'dashes': '-',
              'apostrophes': "'", 'newlines': '\n', 'double spaces': '  ', 'long words': r'\w{8,}', 'I': r'\bI\b',
              'you': r'\b[Yy]ou\b', 'refusals': r"(?i)sorry|cannot|can't", 'repeated words': r'\b(\w+)\b(?=.*\b\1\b)',
              'characters': '.'}  # feature -> pattern counted in a reply
STAND_IN = 'quotes'  # the SURFACE column whose count each candidate's count replaces
SUMMARY = ['pool', 'family', 'pairs', 'proxies', 'peak_before_N', 'significant_same', 'significant_cross', 'cross_drop_mean',
           'cross_drop_max', 'gold_end_mean']
TUNED = dict(pairs=32, lr=1e-3, steps=100, width=32)

def subpool(pool:Pool, rows)->Pool:
    "The prompts `rows` of a pool, in that order."
    rows, N = np.asarray(rows), pool.shape[1]
    idx = (rows[:, None] * N + np.arange(N)).ravel()
    return Pool(pool.samples.iloc[idx].reset_index(drop=True), pool.gold[rows], pool.feats[idx])

def counting(pool:Pool, feature:str)->Pool:
    "The pool with the count of the candidate `feature` in the STAND_IN column."
    feats = pool.feats.copy()
    feats[:, proxy_columns(feats.shape[1], STAND_IN)[-1]] = pool.samples.response.str.count(CANDIDATES[feature])
    return Pool(pool.samples, pool.gold, feats)

def proxies(pairs:Pool, draws:int)->list:
    "(family, size, draw, feature, proxy): sweep, noisy, spurious and control proxies, each on `draws` draws of pairs."
    out, rng = [], np.random.default_rng(19)
    def head(name:str, k:int, r:int, pool:Pool=pairs, gen=rng, **kw)->Proxy:  # a head on k pairs drawn by gen
        return train_proxy(subpool(pool, gen.permutation(len(pool.gold))[:k]), name, seed=r, **kw)
    for k in SWEEP:
        out += [('sweep', k, r, '', head(f'{k}-{r}', k, r)) for r in range(draws)]
    for noise in NOISE:
        out += [(f'noise {noise}', 256, r, '', head(f'n{noise}-{r}', 256, r, noise=noise)) for r in range(draws)]
    for feature in CANDIDATES:
        counted = counting(pairs, feature)
        out += [(f'spurious {feature}', 256, r, feature, head(f'{feature}-{r}', 256, r, counted, spurious=STAND_IN,
                                                               bias=BIAS)) for r in range(draws)]
    # the control: reads the count of STAND_IN, learns from the gold labels alone (its own draws of pairs)
    control = np.random.default_rng(29)
    out += [(f'control {STAND_IN}', 256, r, '', head(f'control-{r}', 256, r, gen=control, spurious=STAND_IN))
            for r in range(draws)]
    return out

def ranking(t:pd.DataFrame, shares:dict)->pd.DataFrame:
    "Per candidate, best first: draws that rose then fell (cross-fitted), per pool and in all; mean drop; replies with it."
    s = t[t.family.str.startswith('spurious ')].assign(feature=t.family.str.removeprefix('spurious '),
                                                       fell=(t.cross_low > 0) & (t.peak_n > 1))
    r = s.pivot_table(index='feature', columns='pool', values='fell', aggfunc='sum').add_prefix('fell_')
    r = r.assign(fell=r.sum(axis=1), drop=s.groupby('feature').cross_drop.mean())
    r = r.join(pd.DataFrame(shares).add_prefix('share_'))
    return r.sort_values(['fell', 'drop'], ascending=False).rename_axis('feature').reset_index()

def penultimate(encoder:RewardModel, texts:list, width:int)->tuple:
    "Hidden states entering the encoder's last layer (float16, texts x width x hidden) and the attention masks."
    body, tok = encoder.model.base_model, encoder.tokenizer
    H = np.zeros((len(texts), width, body.config.hidden_size), np.float16)
    M = np.zeros((len(texts), width), np.int8)
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=encoder.dtype == 'bfloat16'):
        for i in range(0, len(texts), 512):
            b = tok(texts[i:i + 512], padding='max_length', truncation=True, max_length=width, return_tensors='pt')
            H[i:i + 512] = body(**b, output_hidden_states=True).hidden_states[-2].float().numpy()
            M[i:i + 512] = b['attention_mask'].numpy()
    return H, M

class Tuned(torch.nn.Module):
    "The encoder's last layer and a linear head on its mean-pooled, unit-length output: a fine-tunable proxy."
    def __init__(self, last_layer, width:int):
        super().__init__()
        self.layer, self.head = copy.deepcopy(last_layer).float(), torch.nn.Linear(width, 1)
    def forward(self, h, m):
        x = self.layer(h.float(), attention_mask=(1.0 - m[:, None, None, :].float()) * -1e4)
        x, w = (x[0] if isinstance(x, tuple) else x), m[..., None].float()
        return self.head(F.normalize((x * w).sum(1) / w.sum(1), dim=-1))[:, 0]

def tuned_scores(encoder:RewardModel, pairs:Pool, pool:Pool, draws:int)->list:
    "(family, size, draw, scores on `pool`) of the tuned proxies, one per draw of TUNED['pairs'] gold-labelled pairs."
    torch.set_num_threads(os.cpu_count() or 1)
    Hp, Mp = penultimate(encoder, pairs.samples.response.tolist(), TUNED['width'])
    Hh, Mh = (torch.from_numpy(x) for x in penultimate(encoder, pool.samples.response.tolist(), TUNED['width']))
    usable = np.flatnonzero(pairs.gold[:, 0] != pairs.gold[:, 1])
    out, rng = [], np.random.default_rng(23)
    for r in range(draws):
        torch.manual_seed(r)
        rows = rng.choice(usable, TUNED['pairs'], replace=False)
        a, b = (torch.from_numpy(x) for x in (Hp[2 * rows], Hp[2 * rows + 1]))
        ma, mb = (torch.from_numpy(x) for x in (Mp[2 * rows], Mp[2 * rows + 1]))
        y = torch.tensor(pairs.gold[rows, 0] > pairs.gold[rows, 1], dtype=torch.float32)
        model = Tuned(encoder.model.base_model.encoder.layer[-1], Hp.shape[-1])
        opt = torch.optim.Adam(model.parameters(), lr=TUNED['lr'])
        for _ in range(TUNED['steps']):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(model(a, ma) - model(b, mb), y).backward()
            opt.step()
        with torch.inference_mode():
            s = torch.cat([model(Hh[i:i + 4096], Mh[i:i + 4096]) for i in range(0, len(Hh), 4096)]).numpy()
        out.append(('tuned', TUNED['pairs'], r, s.astype(np.float64)))
    return out

def measure(scores:np.ndarray, pool:Pool, counts:np.ndarray)->dict:
    "The drop of one proxy's gold curve (its scores of the pool's samples), same prompts and cross-fitted, with intervals."
    ns = list(range(1, pool.shape[1] + 1))
    G, P = bon_curves(within_prompt(scores.reshape(pool.shape)), within_prompt(pool.gold), ns)
    est, boot = bon_boot(G, P, ns, counts)  # its gold_drop is the cross-fitted one
    mean = G.mean(0)
    same = G[:, mean.argmax()] - G[:, -1]
    draws = dict(same=(same.mean(), counts @ same / len(same)), cross=(est['gold_drop'], boot['gold_drop']))
    row = dict(peak_n=int(mean.argmax()) + 1, gold_end=float(est['gold_end']), gold_best=float(mean.max()),
               gold_peak=float(est['gold_peak']), gamma=float(est['gamma']))
    for name, (drop, resampled) in draws.items():
        low, high = percentile_interval(resampled, 0.95)
        row.update({f'{name}_drop': float(drop), f'{name}_low': float(low), f'{name}_high': float(high)})
    return row

def summary(t:pd.DataFrame, n_max:int)->pd.DataFrame:
    "Per pool, family and size: how many proxies, how many drops are significant each way, the cross-fitted drops."
    g = t.groupby(['pool', 'family', 'pairs'], sort=False)
    return pd.DataFrame(dict(proxies=g.size(), peak_before_N=g.peak_n.apply(lambda x: int((x < n_max).sum())),
                             significant_same=g.same_low.apply(lambda x: int((x > 0).sum())),
                             significant_cross=g.cross_low.apply(lambda x: int((x > 0).sum())),
                             cross_drop_mean=g.cross_drop.mean(), cross_drop_max=g.cross_drop.max(),
                             gold_end_mean=g.gold_end.mean())).reset_index()

def run(gold:Path, sizes:dict)->dict:
    "Pools on train prompts, the proxies, and every proxy's drop."
    t0, cfg = time.perf_counter(), GammaConfig()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        train = load_pairs(IN_DOMAIN, split='train').prompt.drop_duplicates().tolist()
    a, p, N = sizes['pair_prompts'], sizes['pool_prompts'], sizes['pool_size']
    policy, encoder = load_policy(), RewardModel.load(dtype='auto', max_length=cfg.rm_max_length)
    gold_fn = rm_reward(RewardModel.load(gold, dtype='auto', max_length=cfg.rm_max_length))
    kw = dict(max_new_tokens=cfg.max_new_tokens, dtype='auto')
    pairs = scored_pool(policy, train[:a], 2, gold_fn, encoder, 1, cfg.reads, **kw)
    pools = {name: scored_pool(policy, train[a + i * p:a + (i + 1) * p], N, gold_fn, encoder, 3 + i, cfg.reads, **kw)
             for i, name in enumerate('AB')}
    t1 = time.perf_counter()
    counts = next(boot_counts(p, sizes['n_boot'], [0, 11])).astype(float)
    heads = proxies(pairs, sizes['draws'])
    found = []
    for name, pool in pools.items():  # one pool's inputs with one candidate's count at a time, heads kept in order
        scores = {}
        for feature in dict.fromkeys(h[3] for h in heads):
            x = counting(pool, feature).feats if feature else pool.feats
            scores.update({i: h[4].score(x) for i, h in enumerate(heads) if h[3] == feature})
        found += [(name, *heads[i][:3], scores[i]) for i in range(len(heads))]
    found += [('A', *x) for x in tuned_scores(encoder, pairs, pools['A'], sizes['draws'])]
    rows = [dict(pool=name, family=f, pairs=k, draw=r, **measure(s, pools[name], counts))
            for name, f, k, r, s in found]
    t2 = time.perf_counter()
    table = pd.DataFrame(rows)
    shares = {name: {f: float((pool.samples.response.str.count(p) > 0).mean()) for f, p in CANDIDATES.items()}
              for name, pool in pools.items()}
    best = ranking(table, shares)
    return dict(sizes=sizes, d_max=float(d_best_of_n([N])[0]), seconds=dict(pools=round(t1 - t0, 1),
                proxies_and_drops=round(t2 - t1, 1)), proxies=table.to_dict('records'),
                summary=summary(table, N).to_dict('records'), candidates=CANDIDATES,
                ranking=best.to_dict('records'), pick=best.feature[0])

def render(res:dict)->str:
    "The results as markdown."
    k, r = res['machine'], res['result']
    t = pd.DataFrame(r['proxies'])
    sig = t[(t.cross_low > 0) | (t.same_low > 0)]
    ranked = pd.DataFrame(r['ranking'])  # columns in a fixed order: the .json stores its keys sorted
    fells, shares = (sorted(c for c in ranked if c.startswith(p)) for p in ('fell_', 'share_'))
    order = sorted(r['candidates'], key=lambda f: [*CANDIDATES, f].index(f))  # as listed in CANDIDATES
    s = r['sizes']
    return '\n'.join([
        f"# Does best-of-n turn the gold down? {k['label']}", '', __doc__.split('\n\n')[0], '',
        f"Machine: {k['cpu']}, {k['cores']} cores, torch capability **{k['torch_capability']}**; `auto` precision: "
        f"**{k['auto_precision']}**. Gold: train-rm at its defaults. {res['busy']}.", '',
        f"Pairs pool: {s['pair_prompts']} train prompts x 2 samples. Search pools: A, the next {s['pool_prompts']} train "
        f"prompts x {s['pool_size']} samples (d up to {r['d_max']:.2f}), and B, the {s['pool_prompts']} after those "
        f"(every head on both, the tuned ones on A). {s['draws']} draws of pairs per size; "
        f"{s['n_boot']} resamples of prompts. Seconds: `{r['seconds']}`.", '',
        '## Per pool, family and size', '',
        md_table(pd.DataFrame(r['summary'])[SUMMARY].round(3)), '',
        '`peak_before_N`: proxies whose mean gold curve is highest before the largest n. `significant_same` / '
        '`significant_cross`: proxies whose drop has a 95% interval above 0, the highest point chosen on the same '
        'prompts / on the other half of them.', '',
        '## The pick', '',
        f"The candidate whose spurious proxies rise and then fall (cross-fitted) in the most draws over both pools, ties "
        f"broken by the larger mean drop: **{r['pick']}**. `fell_<pool>`: draws that rose then fell; `drop`: the mean "
        f"cross-fitted drop over both pools; `share_<pool>`: replies of the pool with the feature at least once.", '',
        md_table(ranked[['feature', *fells, 'fell', 'drop', *shares]].round(3)), '',
        'Patterns counted: ' + ', '.join(f + ' `' + r['candidates'][f].replace('\n', r'\n') + '`' for f in order)
        + '.', '',
        '## Every proxy with a significant drop either way', '',
        md_table(sig[['pool', 'family', 'pairs', 'draw', 'peak_n', 'gold_best', 'gold_end', 'gold_peak', 'same_drop',
                      'same_low', 'cross_drop', 'cross_low', 'cross_high']].round(3)) if len(sig) else 'none', ''])

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--gold', type=Path, help='a saved reward model folder (default: train one with train-rm)')
    a, kind, path = record_args(ap, 'turn_down', render)
    load0 = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        gold = a.gold.resolve() if a.gold else train_rm(Path(tmp), 'gold')[0]/'reward_model'/'model'
        result = run(gold, SIZES)
    load = [load0, loadavg()]
    res = dict(machine=kind, versions=package_versions(), load=load, result=result,
               busy=busy_note(max(x[0] for x in load), kind['cores']))
    write_json(path.with_suffix('.json'), res)
    write_text(path.with_suffix('.md'), render(res))
    print(render(res))

if __name__ == '__main__': main()
