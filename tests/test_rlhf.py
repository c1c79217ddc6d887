"PPO: resume after SIGKILL, 2-process data parallelism, bad input, the stage from the command line."
import argparse, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest
from safetensors.numpy import load_file
from rewardbench_nb.core import ConfigError, DataError, RBError
from rewardbench_nb.data import load_pairs
from rewardbench_nb.policy import load_policy
from rewardbench_nb import rlhf as R
from rewardbench_nb.rm_training import last_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
# A tiny but real run: 4 iterations of 8 rollouts (12 tokens), 2 epochs over minibatches of 4, the known length reward,
# a checkpoint after every iteration, on the first 64 train prompts.
TINY = ['--reward', 'length', '--iterations', '4', '--prompts', '64', '--quiet', '--set', 'batch_size=8', '--set', 'minibatch_size=4',
        '--set', 'ppo_epochs=2', '--set', 'max_new_tokens=12', '--set', 'max_prompt_tokens=48', '--set', 'checkpoint_every=1']
RESUME_TOL = 0.0    # resumed vs uninterrupted: every random draw comes from (seed, iteration), the arithmetic is the same
DDP_TOL = 1e-3      # 2 gloo processes vs 1: the same rows and minibatches; gradients are summed in another grouping

def log(out): return pd.read_csv(Path(out)/'log.csv')
def weights(out): return load_file(str(Path(out)/'policy'/'model.safetensors'))
def max_diff(a, b): return max(float(np.abs(a[k] - b[k]).max()) for k in a)
def no_time(df): return df.drop(columns=[c for c in df if c.startswith('seconds')])
def hashes(folder): return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob('*')) if p.is_file()}

@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "One uninterrupted single-process run, in this process."
    out = tmp_path_factory.mktemp('ref')
    assert R.main(['--out', str(out), *TINY]) == 0
    return out

@pytest.fixture(scope='module')
def policy():
    return load_policy()

def test_reference_run_outputs(reference):
    lg = log(reference)
    assert len(lg) == 4 and {'reward', 'kl', 'entropy', 'clipfrac', 'value_loss', 'explained_variance', 'response_length'} <= set(lg)
    assert abs(lg.kl[0]) < 1e-5 and (lg.kl[1:] != 0).all()
    assert sorted(p.name for p in (reference/'checkpoints').iterdir()) == [f'iter-0000{i}' for i in (1, 2, 3, 4)]
    meta = json.loads((reference/'log.json').read_text())['ppo']
    assert meta['info']['precision']['used'] in ('float32', 'bfloat16') and meta['info']['world_size'] == 1
    assert not {'seconds', 'out_dir'} & set(meta['info']) and set(meta['info']['precision']) == {'requested', 'used', 'shards'}
    assert not [c for c in pd.DataFrame(json.loads((reference/'log.json').read_text())['log']) if c.startswith('seconds')]
    model, tok = load_policy(reference/'policy')
    assert tok.pad_token_id != tok.eos_token_id

def test_resume_after_sigkill_matches_uninterrupted(reference, tmp_path):
    out = tmp_path/'killed'
    p = subprocess.Popen([sys.executable, '-m', 'rewardbench_nb.rlhf', '--out', str(out), *TINY], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while last_checkpoint(out/'checkpoints') is None:
        assert p.poll() is None, 'the run ended before its first checkpoint'
        assert time.time() - t0 < 300, 'no checkpoint after 5 minutes'
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL and not (out/'log.csv').exists()
    killed_at = int(last_checkpoint(out/'checkpoints').name.split('-')[1])
    assert killed_at < 4
    assert R.main(['--out', str(out), *TINY, '--resume']) == 0
    meta = json.loads((out/'log.json').read_text())['ppo']['info']
    assert int(meta['resumed_from'].rsplit('-', 1)[1]) >= killed_at
    pd.testing.assert_frame_equal(no_time(log(out)), no_time(log(reference)), rtol=0, atol=RESUME_TOL)
    assert max_diff(weights(out), weights(reference)) <= RESUME_TOL

def test_two_processes_gloo_match_one(reference, tmp_path):
    out = tmp_path/'ddp'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m', 'rewardbench_nb.rlhf', '--out', str(out), *TINY]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((out/'log.json').read_text())['ppo']['info']
    assert meta['world_size'] == 2
    a, b = log(out), log(reference)
    np.testing.assert_allclose(a.reward, b.reward, atol=DDP_TOL)
    np.testing.assert_allclose(a.kl, b.kl, atol=DDP_TOL * 10)
    assert max_diff(weights(out), weights(reference)) <= DDP_TOL

def test_corrupt_checkpoint_names_the_file(reference, tmp_path, policy):
    ck = tmp_path/'ck'; shutil.copytree(reference/'checkpoints'/'iter-00002', ck)
    model, tok = policy
    P = load_pairs('hh-rlhf-harmless', split='train').prompt.tolist()[:64]
    kw = dict(batch_size=8, minibatch_size=4, ppo_epochs=2, max_new_tokens=12, max_prompt_tokens=48)
    good = (ck/'optimizer.pt').read_bytes()
    (ck/'optimizer.pt').write_bytes(b'not a torch file')
    with pytest.raises(DataError, match=r"ck/optimizer.pt: not a weights-only checkpoint"):
        R.train_ppo(model, tok, R.length_reward(8), P, 4, resume=ck, **kw)
    (ck/'optimizer.pt').write_bytes(good[:len(good) // 2])  # torch's zip format, cut short
    with pytest.raises(DataError, match=r"ck/optimizer.pt: corrupt checkpoint: optimizer state unreadable"):
        R.train_ppo(model, tok, R.length_reward(8), P, 4, resume=ck, **kw)
    (ck/'state.json').write_text('{"iteration": 2, ')
    with pytest.raises(DataError, match='ck/state.json: corrupt checkpoint: not valid JSON'):
        R.train_ppo(model, tok, R.length_reward(8), P, 4, resume=ck, **kw)
    (ck/'value.safetensors').unlink()
    with pytest.raises(DataError, match='incomplete checkpoint: missing value.safetensors'):
        R.load_checkpoint(ck, *([None] * 3))

def test_bad_reward_functions(policy):
    model, tok = policy
    P = ['\n\nHuman: hi\n\nAssistant:'] * 8
    kw = dict(iterations=1, batch_size=8, minibatch_size=4, ppo_epochs=1, max_new_tokens=4, max_prompt_tokens=16)
    cases = [(lambda p, r: [float('nan')] * len(r), "returned nan for row 0"),
             (lambda p, r: [0.0] * (len(r) + 1), "returned 9 scores for 8 responses"),
             (lambda p, r: 1 / 0, "raised ZeroDivisionError"),
             (lambda p, r: None, "returned NoneType, expected 8 numbers"),
             (lambda p, r: [float('inf')] + [0.] * (len(r) - 1), "returned inf for row 0")]
    for fn, msg in cases:
        with pytest.raises(R.RewardError, match=msg): R.train_ppo(model, tok, fn, P, **kw)

def test_bad_prompts_and_settings(policy):
    model, tok = policy
    with pytest.raises(DataError, match='prompts: no prompts'): R.train_ppo(model, tok, R.length_reward(), [])
    with pytest.raises(DataError, match="row 2: field 'prompt'"): R.train_ppo(model, tok, R.length_reward(), ['a', None])
    with pytest.raises(ConfigError, match='rlhf.minibatch_size = 3: expected a multiple of the 2 processes'):
        R.check_ppo_config(R.PPOConfig(batch_size=6, minibatch_size=3), world=2)
    with pytest.raises(ConfigError, match='rlhf.missing_eos'): R.train_ppo(model, tok, R.length_reward(), ['a'], missing_eos='drop')
    with pytest.raises(ConfigError, match="unknown key 'kl'"): R.train_ppo(model, tok, R.length_reward(), ['a'], kl=0.1)
    with pytest.raises(RBError, match='reward_fn is required'): R.train_ppo(model, tok, None, ['a'])
    with pytest.raises(RBError, match='expected a RewardModel or a function'): R.train_ppo(model, tok, 'length', ['a'])

def rbnb(*args, timeout=900):
    return subprocess.run([str(Path(sys.executable).parent/'rbnb'), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV)

def test_stage_quick_with_known_reward(tmp_path):
    "Two quick runs with the same seed: complete, and every file of policy/ and ppo/ the same, byte for byte."
    for rid in ('q', 'q2'):
        r = rbnb('ppo', '--quick', '--quiet', '--set', 'rlhf.reward=length', '--runs-dir', tmp_path, '--run-id', rid)
        assert r.returncode == 0, r.stderr[-3000:]
    d = tmp_path/'q'
    for part in ('policy', 'ppo'):
        a, b = hashes(d/part), hashes(tmp_path/'q2'/part)
        assert a and {f for f in a if a[f] != b.get(f)} == set() and set(a) == set(b), part
    m = json.loads((d/'manifest.json').read_text())
    assert [it['iteration'] for it in m['records']['timings']['ppo']['iterations']] == [0, 1]
    assert m['settings']['rlhf']['batch_size'] == 8 and m['settings']['rlhf']['iterations'] == 2  # the quick sizes that ran
    assert m['status'] == 'complete' and {'policy', 'ppo'} <= set(m['records']['precision'])
    assert m['records']['precision']['ppo']['shards'] >= 1
    cmp = pd.read_csv(d/'ppo'/'comparison.csv')
    assert set(cmp.policy) == {'initial', 'ppo', 'best-of-2'} and set(cmp.set) == {'validation', 'red-team'}
    ev = pd.read_csv(d/'ppo'/'evals.csv')
    assert set(ev.set) == {'validation', 'held-out chat', 'red-team'} and {'psi_vs_start', 'ks_p_vs_previous', 'shift_vs_start'} <= set(ev)
    assert not (d/'ppo'/'checkpoints').exists()
    # no eval stage in this run: no suite to score the policy on as an implicit reward model, and the note says so
    assert (d/'ppo'/'implicit.md').read_text() == R.IMPLICIT_SKIPPED + '\n' and not (d/'ppo'/'implicit.csv').exists()

def test_stage_without_reward_model_is_one_line(tmp_path):
    r = rbnb('ppo', '--quick', '--quiet', '--runs-dir', tmp_path)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert [l for l in r.stderr.splitlines() if l.startswith('rbnb: error: ppo: no reward model')]

def cli(capsys, *args)->tuple:
    "`rbnb ARGS` in this process: (exit code, the `rbnb: error:` lines, whether a traceback was printed)."
    from rewardbench_nb.cli import main
    rc, err = main([str(a) for a in args]), capsys.readouterr().err
    return rc, [l for l in err.splitlines() if l.startswith('rbnb: error:')], 'Traceback' in err

@pytest.mark.parametrize('args, msg', [
    (['ppo', '--quick', '--set', 'rlhf.batch_size=-8'], 'rlhf.batch_size = -8: expected a positive integer'),
    (['ppo', '--set', 'rlhf.batch_size=-8'], 'rlhf.batch_size = -8: expected a positive integer'),
    (['ppo', '--quick', '--ppo-iterations', '-3'], 'rlhf.iterations = -3: expected a positive integer'),
    (['ppo', '--ppo-iterations', '0'], 'rlhf.iterations = 0: expected a positive integer'),
    (['run', '--quick', '--set', 'rlhf.batch_size=-8'], 'rlhf.batch_size = -8: expected a positive integer'),
    (['ppo', '--quick', '--set', 'rlhf.reward=gold'], "rlhf.reward = 'gold': expected 'rm' or 'length'"),
    (['ppo', '--set', 'rlhf.vf_coef=-1'], 'rlhf.vf_coef = -1.0: expected a number >= 0'),
    (['ppo', '--set', 'rlhf.adam_eps=0'], 'rlhf.adam_eps = 0.0: expected a number in (0, 0.001], e.g. 1e-5'),
    (['ppo', '--set', 'rlhf.adam_eps=0.5'], 'rlhf.adam_eps = 0.5: expected a number in (0, 0.001], e.g. 1e-5'),
    (['ppo', '--set', 'rlhf.max_grad_norm=0'], 'rlhf.max_grad_norm = 0.0: expected a positive number'),
    (['ppo', '--set', 'rlhf.max_grad_norm=-1'], 'rlhf.max_grad_norm = -1.0: expected a positive number'),
    (['ppo', '--set', 'rlhf.clip_range=0'], 'rlhf.clip_range = 0.0: expected a positive number'),
    (['ppo', '--set', 'rlhf.clip_range_value=0'], 'rlhf.clip_range_value = 0.0: expected a positive number'),
    (['ppo', '--set', 'rlhf.temperature=0'], 'rlhf.temperature = 0.0: expected a positive number'),
    (['ppo', '--set', 'rlhf.kl_coef=0', '--set', 'rlhf.target_kl=6'],
     'rlhf.kl_coef = 0.0: expected a positive number when target_kl > 0'),
    (['ppo', '--set', 'rlhf.rm_max_length=4'], 'rlhf.rm_max_length = 4: expected at least 8 tokens')])
def test_bad_settings_fail_before_any_stage(tmp_path, capsys, args, msg):
    "A bad rlhf value or --ppo-iterations, with or without --quick, even 8 stages later in `run`: one line, no run folder."
    assert cli(capsys, *args, '--quiet', '--runs-dir', tmp_path, '--run-id', 'x') == (2, [f'rbnb: error: {msg}'], False)
    assert not (tmp_path/'x').exists()

class _Touch:
    "Unpickling this creates `path`: proof, by its absence, that a file was never unpickled."
    def __init__(self, path): self.path = path
    def __reduce__(self): return (Path.touch, (self.path,))

def copied(reference, tmp_path, name=None, change=None)->Path:
    "A hard-linked copy of the reference's second checkpoint, with file `name` changed by `change`, or removed."
    ck = tmp_path/'iter-00002'; shutil.copytree(reference/'checkpoints'/'iter-00002', ck, copy_function=os.link)
    if name is None: return ck
    data = (ck/name).read_bytes(); (ck/name).unlink()  # never write through a hard link into the reference
    if change is not None: (ck/name).write_bytes(change(data))
    return ck

def resume_error(capsys, tmp_path, ck)->tuple:
    "`rbnb ppo --quick --ppo-resume CK`: (exit code, error lines, traceback?, run folder made?)."
    rc, errors, tb = cli(capsys, 'ppo', '--quick', '--quiet', '--set', 'rlhf.reward=length', '--ppo-resume', ck,
                         '--runs-dir', tmp_path/'runs', '--run-id', 'r')
    return rc, errors, tb, (tmp_path/'runs'/'r').exists()

def test_resume_from_a_checkpoint_that_is_not_weights_only(reference, tmp_path, capsys):
    "rbnb ppo --ppo-resume CKPT whose optimizer.pt is a pickled object: one line naming it, never unpickled, no run."
    import torch
    ck = copied(reference, tmp_path, 'optimizer.pt')
    torch.save(_Touch(tmp_path/'ran'), ck/'optimizer.pt')
    msg = f"rbnb: error: {ck/'optimizer.pt'}: not a weights-only checkpoint (torch.load(weights_only=True) refuses it), so it is not loaded"
    assert resume_error(capsys, tmp_path, ck) == (2, [msg], False, False)
    assert not (tmp_path/'ran').exists()

@pytest.mark.parametrize('names', [('optimizer.pt',), ('value.safetensors',), ('state.json',),
                                   ('policy.safetensors', 'optimizer.pt')])
def test_resume_from_an_incomplete_checkpoint(reference, tmp_path, capsys, names):
    "A checkpoint without a file the resume needs: one line naming it and why, before any stage runs, no run folder."
    ck = copied(reference, tmp_path, names[0])
    for n in names[1:]: (ck/n).unlink()
    msg = (f"rbnb: error: {ck}: incomplete checkpoint: missing {', '.join(names)}; resuming without "
           f"{'it' if len(names) == 1 else 'them'} would not continue the same training")
    assert resume_error(capsys, tmp_path, ck) == (2, [msg], False, False)

@pytest.mark.parametrize('name, change, msg', [
    ('state.json', lambda b: b'\xff\xfe', ':1: not UTF-8: byte 0xff at byte offset 0; save the file as UTF-8'),
    ('state.json', lambda b: b'{not json',
     ': corrupt checkpoint: not valid JSON '
     '(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))'),
    ('state.json', lambda b: b'{}',
     ': corrupt checkpoint: no valid iteration, kl_coef, norm, log, evals, eval_rewards, eval_last, spec in the state'),
    ('state.json', lambda b: b.replace(b'"config"', b'"konfig"'),
     ': corrupt checkpoint: no valid spec.config in the state'),
    ('policy.safetensors', lambda b: b[:len(b) // 2], ': corrupt checkpoint: not a readable safetensors file '
                                                      '(Error while deserializing header: incomplete metadata, '
                                                      'file not fully covered)'),
    ('value.safetensors', lambda b: b'', ': corrupt checkpoint: not a readable safetensors file '
                                         '(Error while deserializing header: header too small)'),
    ('optimizer.pt', lambda b: b[:len(b) // 2], ': corrupt checkpoint: optimizer state unreadable (RuntimeError)')])
def test_resume_from_a_damaged_checkpoint(reference, tmp_path, capsys, name, change, msg):
    "Each damaged file of a --ppo-resume checkpoint: one line naming it and what is wrong, before any stage, no run."
    ck = copied(reference, tmp_path, name, change)
    assert resume_error(capsys, tmp_path, ck) == (2, [f'rbnb: error: {ck/name}{msg}'], False, False)

def test_resume_settings_are_checked_before_any_stage(reference, tmp_path, capsys):
    "--ppo-resume of a checkpoint trained with other settings, or a path without one: refused before any stage runs."
    ck = copied(reference, tmp_path)
    assert resume_error(capsys, tmp_path, ck) == (
        2, [f"rbnb: error: {ck}: cannot resume, this run differs from the checkpoint's in "
            "max_prompt_tokens, max_new_tokens"], False, False)
    same = R.PPOStageConfig(batch_size=8, minibatch_size=4, ppo_epochs=2, max_new_tokens=12, max_prompt_tokens=48)
    assert R.ppo_settings(same, dict(seed=0, args=argparse.Namespace(ppo_resume=str(ck)))) == same
    with pytest.raises(ConfigError, match="differs from the checkpoint's in seed"):
        R.ppo_settings(same, dict(seed=1, args=argparse.Namespace(ppo_resume=str(ck))))
    assert resume_error(capsys, tmp_path, tmp_path/'no') == (
        2, [f"rbnb: error: {tmp_path/'no'}: no such checkpoint or folder to resume from"], False, False)
    (tmp_path/'empty').mkdir()
    assert resume_error(capsys, tmp_path, tmp_path/'empty') == (
        2, [f"rbnb: error: {tmp_path/'empty'}: no complete checkpoint to resume from "
            "(expected checkpoint-<n>/trainer_state.json or iter-<n>/state.json)"],
        False, False)

def test_reward_model_max_length_past_its_positions(tmp_path):
    from rewardbench_nb.core import Run
    from rewardbench_nb.reward_model import RewardModel
    RewardModel.load(seed=1).save(tmp_path/'rm')
    msg = "ppo-reward-model: max_length = 1000: expected at most the model's 512 positions"
    with pytest.raises(ConfigError, match=msg):
        R.stage_reward_model(Run(tmp_path/'runs', {}, run_id='m'), {}, tmp_path/'rm', 1000, 'ppo-reward-model', 'none')

def test_stage_scores_with_the_reward_model_in_float32(tmp_path):
    "--dtype float32: the saved reward model ppo scores with, and PPO itself, run in float32, as the manifest records."
    from rewardbench_nb.reward_model import RewardModel
    RewardModel.load(seed=1).save(tmp_path/'rm')
    r = rbnb('ppo', '--quick', '--quiet', '--dtype', 'float32', '--ppo-iterations', '1', '--ppo-reward-model', tmp_path/'rm',
             '--runs-dir', tmp_path, '--run-id', 'f')
    assert r.returncode == 0, r.stderr[-3000:]
    p = json.loads((tmp_path/'f'/'manifest.json').read_text())['records']['precision']
    assert (p['ppo-reward-model']['requested'], p['ppo-reward-model']['used'], p['ppo']['used']) == ('float32',) * 3

def test_stage_scores_the_policy_as_an_implicit_reward_beside_the_evaluated_model(tmp_path, policy):
    "With the eval stage's report in the run: ppo/implicit.* hold the PPO policy's and the RM's accuracies, same rows."
    from rewardbench_nb.core import Run
    from rewardbench_nb.evaluation import EvalConfig, build_suite, evaluate, length_scores
    from rewardbench_nb.implicit_reward import state_dict_sha256
    suite = build_suite(['llmbar', 'rm-bench'], rows_per_subset=3, squality=False)
    ms = length_scores(suite); ms.name = 'length model'
    rep = evaluate(suite, [ms], EvalConfig(n_boot=50), seed=0)
    ctx = dict(quick=True, seed=0, quiet=True, policy=policy, evaluation=rep, explicit={'rlhf': {'implicit_rows'}})
    run = Run(tmp_path/'runs', {}, run_id='i')
    R.STAGE(run, {'rlhf': {'reward': 'length', 'implicit_rows': 2, 'dtype': 'float32'}}, ctx)
    t = pd.read_csv(run.path('ppo', 'implicit.csv'))
    assert set(t.model) == {'PPO policy (implicit)', 'length model', 'random'}
    assert set(t.benchmark) == {'llmbar', 'rm-bench', 'mean'}
    llm = t[(t.benchmark == 'llmbar') & (t.model != 'random')]
    assert (llm.n == 10).all() and ((llm.low <= llm.score) & (llm.score <= llm.high)).all()  # 2 rows x 5 subsets
    imp = ctx['ppo_implicit']
    again = R.implicit_comparison(ctx['ppo'].model, policy[1], policy[0], suite, [ms], 2, 0, 50, rep.scoreboard.ci,
                                  'float32')
    pd.testing.assert_frame_equal(imp.table, again.table)   # the stage computes what the function computes
    # the RM's accuracies are those of the eval stage's own scores, on the sampled rows
    assert imp.protocol['reference']['weights_sha256'] == state_dict_sha256(policy[0])
    assert imp.protocol['model_type'] == 'DPO' and imp.protocol['rows'] == 2 * 5 + 2 * 4
    assert set(imp.versus.benchmark) == {'llmbar', 'rm-bench', 'mean'} and imp.versus.agreement.between(0, 1).all()
    md = run.path('ppo', 'implicit.md').read_text()
    assert md.startswith('**PPO policy (implicit)**: dpo:') and '| length model |' in md
    summary = json.loads(run.path('ppo', 'summary.json').read_text())
    assert {r['model'] for r in summary['implicit']} == set(t.model)
    assert set(run.records['timings']['ppo-implicit']) == {'seconds', 'rows', 'inputs'}
    assert run.records['precision']['ppo-implicit']['used'] == 'float32'
