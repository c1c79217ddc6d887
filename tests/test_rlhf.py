"PPO: resume after SIGKILL, 2-process data parallelism, bad input, the stage from the command line."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest
from safetensors.numpy import load_file
from rewardbench_nb.core import ConfigError, DataError, RBError
from rewardbench_nb.data import load_pairs
from rewardbench_nb.policy import load_policy
from rewardbench_nb import rlhf as R

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
    model, tok = load_policy(reference/'policy')
    assert tok.pad_token_id != tok.eos_token_id

def test_resume_after_sigkill_matches_uninterrupted(reference, tmp_path):
    out = tmp_path/'killed'
    p = subprocess.Popen([sys.executable, '-m', 'rewardbench_nb.rlhf', '--out', str(out), *TINY], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while R.last_checkpoint(out/'checkpoints') is None:
        assert p.poll() is None, 'the run ended before its first checkpoint'
        assert time.time() - t0 < 300, 'no checkpoint after 5 minutes'
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL and not (out/'log.csv').exists()
    killed_at = int(R.last_checkpoint(out/'checkpoints').name.split('-')[1])
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
    (ck/'optimizer.pt').write_bytes(b'not a torch file')
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
    r = rbnb('ppo', '--quick', '--quiet', '--set', 'rlhf.reward=length', '--runs-dir', tmp_path, '--run-id', 'q')
    assert r.returncode == 0, r.stderr[-3000:]
    d = tmp_path/'q'
    m = json.loads((d/'manifest.json').read_text())
    assert m['status'] == 'complete' and {'policy', 'ppo'} <= set(m['records']['precision'])
    assert m['records']['precision']['ppo']['shards'] >= 1
    cmp = pd.read_csv(d/'ppo'/'comparison.csv')
    assert set(cmp.policy) == {'initial', 'ppo', 'best-of-2'} and set(cmp.set) == {'validation', 'red-team'}
    ev = pd.read_csv(d/'ppo'/'evals.csv')
    assert set(ev.set) == {'validation', 'held-out chat', 'red-team'} and {'psi_vs_start', 'ks_p_vs_previous', 'shift_vs_start'} <= set(ev)
    assert not (d/'ppo'/'checkpoints').exists()

def test_stage_without_reward_model_is_one_line(tmp_path):
    r = rbnb('ppo', '--quick', '--quiet', '--runs-dir', tmp_path)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert [l for l in r.stderr.splitlines() if l.startswith('rbnb: error: ppo: no reward model')]
