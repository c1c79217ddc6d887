"Reward-model training: resume after SIGKILL, 2-process data parallelism, bad input, the stage."
import argparse, dataclasses, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest
from safetensors.numpy import load_file
from rewardbench_nb.core import ConfigError, DataError, Run, write_json
from rewardbench_nb.data import load_pairs
from rewardbench_nb.reward_model import RewardModel
from rewardbench_nb.rm_training import (RewardModelConfig, STAGE, add_args, apply_args, base_model, check_checkpoint,
                                        check_config, last_checkpoint, main, train_reward_model, train_rm_settings,
                                        train_spec)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}
# A tiny but real run: 32 hh-rlhf train pairs, 2 epochs of 4 steps (batch 8), 48 tokens, float32,
# a checkpoint after every step, 16 validation pairs evaluated at each epoch end, 16 test pairs at the end.
TINY = ['--set', 'max_pairs=32', '--batch-size', '8', '--epochs', '2', '--max-length', '48', '--set', 'dtype=float32',
        '--lr', '5e-5', '--set', 'save_steps=1', '--set', 'evals_per_epoch=1', '--n-eval', '16']
RESUME_TOL = 1e-6   # resumed vs uninterrupted: the same float32 arithmetic, so equal (tolerance for safety)
DDP_TOL = 1e-4      # 2 gloo processes vs 1, same rows per step; only summation order and padding differ.
                    # Observed: 6e-6 on weights after 8 AdamW steps at lr 5e-5, 1e-7 on losses. TINY pins the lr:
                    # Adam's normalised steps move a weight by up to about lr whatever its gradient's size, so
                    # float noise in near-zero gradients grows with lr (the default 1e-4 gave 1.07e-4 once).

def weights(out): return load_file(str(Path(out)/'model'/'model.safetensors'))
def log(out): return json.loads((Path(out)/'training_log.json').read_text())
def max_diff(a, b): return max(float(np.abs(a[k] - b[k]).max()) for k in a)

@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "One uninterrupted single-process run, in this process."
    out = tmp_path_factory.mktemp('ref')
    assert main(['--out', str(out), *TINY]) == 0
    return out

def test_reference_run_log(reference):
    lg = log(reference)
    tr = lg['data']['train']
    assert tr['rows'] == 32 and tr['truncation']['dropped'] == 0
    assert tr['truncation']['prompt_truncated'] > 0      # 48 tokens cut many prompts: counted, trained on
    assert lg['steps'] == 8 and not {'timing', 'machine'} & set(lg)  # measurements of the machine: not in the log
    assert len(tr['sha256']) == 64 and lg['metrics']['validation']['n'] == lg['metrics']['test']['n'] == 16 and lg['test_read_once']
    assert lg['precision'] == dict(requested='float32', used='float32')
    assert lg['provenance'] == {} and lg['config']['eval_split'] == 'validation'
    assert {'loss', 'accuracy', 'eval_accuracy'} <= set(pd.DataFrame(lg['history']).columns)
    assert not [c for c in pd.DataFrame(lg['history']) if c.endswith(('runtime', '_per_second'))]  # the Trainer's clock
    assert not (reference/'checkpoints').exists()          # removed once the run finished
    assert sorted(p.name for p in (reference/'model').glob('*.safetensors')) == ['model.safetensors']
    assert not [p for p in (reference/'model').iterdir() if p.suffix in ('.bin', '.pt', '.pth', '.pkl', '.pickle')]

def test_resume_after_sigkill_matches_uninterrupted(reference, tmp_path):
    out = tmp_path/'killed'
    p = subprocess.Popen([sys.executable, '-m', 'rewardbench_nb.rm_training', '--out', str(out), *TINY], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while last_checkpoint(out/'checkpoints') is None:
        assert p.poll() is None, 'training ended before its first checkpoint'
        assert time.time() - t0 < 300, 'no checkpoint after 5 minutes'
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL and not (out/'model').exists()
    killed_at = int(last_checkpoint(out/'checkpoints').name.split('-')[1])
    assert killed_at < 8
    assert main(['--out', str(out), *TINY, '--resume']) == 0
    lg, ref = log(out), log(reference)
    assert lg['resumed_from'].endswith(f'checkpoint-{killed_at}') or int(lg['resumed_from'].rsplit('-', 1)[1]) >= killed_at
    assert max_diff(weights(out), weights(reference)) <= RESUME_TOL
    for split in ('validation', 'test'):
        assert lg['metrics'][split]['accuracy'] == ref['metrics'][split]['accuracy']
        assert abs(lg['metrics'][split]['mean_margin'] - ref['metrics'][split]['mean_margin']) <= RESUME_TOL
    assert lg['steps'] == ref['steps'] == 8

def test_two_processes_gloo_match_one(reference, tmp_path):
    out = tmp_path/'ddp'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           '-m', 'rewardbench_nb.rm_training', '--out', str(out), *TINY]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lg, ref = log(out), log(reference)
    assert lg['world_size'] == 2 and lg['steps'] == ref['steps']
    d = max_diff(weights(out), weights(reference))
    assert d <= DDP_TOL, d
    assert abs(lg['metrics']['test']['mean_margin'] - ref['metrics']['test']['mean_margin']) <= DDP_TOL
    h, hr = pd.DataFrame(lg['history']).dropna(subset=['loss']), pd.DataFrame(ref['history']).dropna(subset=['loss'])
    np.testing.assert_allclose(h.loss.to_numpy(), hr.loss.to_numpy(), atol=DDP_TOL)

def test_bad_pairs_name_row_and_field(tmp_path):
    pairs = load_pairs('hh-rlhf-harmless', split='train').head(4)[['prompt', 'chosen', 'rejected']]
    pairs.loc[2, 'rejected'] = None
    with pytest.raises(DataError, match=r"row 3: field 'rejected': expected a non-empty string"):
        train_reward_model(pairs, RewardModelConfig(), tmp_path)
    with pytest.raises(DataError, match=r"missing column\(s\) 'margin'"):
        train_reward_model(pairs, RewardModelConfig(use_margin=True), tmp_path)
    scored = pd.DataFrame(dict(prompt=['p', 'q'], response=['a', 'b'], final=[0.5, float('nan')]))
    with pytest.raises(DataError, match=r"row 2: field 'final': expected a finite number"):
        train_reward_model(scored, RewardModelConfig(objective='regression'), tmp_path)

# A real checkpoint to damage: 8 train pairs, 2 steps of 4, a checkpoint after each, kept.
CKPT_CFG = RewardModelConfig(max_pairs=8, batch_size=4, epochs=1.0, max_length=32, save_steps=1, keep_checkpoints=True,
                             evals_per_epoch=0, dtype='float32')
def pairs8(): return load_pairs('hh-rlhf-harmless', split='train').head(8)

@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    "The checkpoints/ folder of a finished tiny run: checkpoint-1, checkpoint-2 and train_spec.json."
    out = tmp_path_factory.mktemp('ckpt')
    train_reward_model(pairs8(), CKPT_CFG, out)
    return out/'checkpoints'

def damaged(src, tmp_path, name=None, change=None)->Path:
    "A hard-linked copy of checkpoints folder `src`: its newest checkpoint, file `name` changed by `change` or removed."
    dst = tmp_path/'checkpoints'; shutil.copytree(src, dst, copy_function=os.link)
    ck = last_checkpoint(dst)
    if name is None: return ck
    f = Path(os.path.normpath(ck/name)); data = f.read_bytes()
    f.unlink()  # never write through a hard link into the fixture
    if change is not None: f.write_bytes(change(data))
    return ck

def test_resume_refuses_other_data(tmp_path, checkpoints):
    damaged(checkpoints, tmp_path)
    with pytest.raises(ConfigError, match='trained with different data_sha256'):
        train_reward_model(pairs8().iloc[::-1], CKPT_CFG, tmp_path, resume=True)

def test_resume_refuses_weights_of_another_model(tmp_path, checkpoints):
    "A checkpoint whose model.safetensors is a valid file of another model: the Trainer would load it non-strictly."
    from safetensors.torch import save_file
    import torch
    ck = damaged(checkpoints, tmp_path, 'model.safetensors')
    save_file({'w': torch.zeros(2)}, ck/'model.safetensors')
    msg = r"model.safetensors: weights of another model: 106 tensors differ in name or shape"
    with pytest.raises(DataError, match=msg):
        train_reward_model(pairs8(), CKPT_CFG, tmp_path, resume=True)
    assert not (tmp_path/'model').exists()

def test_complete_checkpoint_passes_the_settings(checkpoints):
    "--resume CKPT is checked with the settings: a complete checkpoint of these settings passes, other settings do not."
    ctx = dict(seed=0, args=argparse.Namespace(rm_resume=str(last_checkpoint(checkpoints))))
    assert train_rm_settings(CKPT_CFG, ctx) == check_config(CKPT_CFG)
    with pytest.raises(ConfigError, match=r"trained with different learning_rate \(was 0.0002\)"):
        train_rm_settings(dataclasses.replace(CKPT_CFG, learning_rate=1e-4), ctx)
    with pytest.raises(DataError, match=r"missing rng_state_0.pth, rng_state_1.pth; resuming without them would not"):
        check_checkpoint(last_checkpoint(checkpoints), world=2)  # two processes write one RNG state each

def test_max_length_past_the_model_positions():
    with pytest.raises(ConfigError, match="reward_model.max_length = 1000: expected at most the model's 512 positions"):
        base_model(RewardModelConfig(max_length=1000))

def test_cli_flags():
    p = argparse.ArgumentParser(); add_args(p)
    a = p.parse_args(['--lr', '2e-5', '--batch-size', '64', '--epochs', '1', '--max-length', '256', '--resume', 'runs/x'])
    cfg = apply_args(RewardModelConfig(), a)
    assert (cfg.learning_rate, cfg.batch_size, cfg.epochs, cfg.max_length, a.rm_resume) == (2e-5, 64, 1.0, 256, 'runs/x')
    assert main(['--out', 'unused', '--set', 'objective=ranking']) == 2
    assert main(['--out', 'unused', '--config', 'no/such.toml']) == 2
    assert main(['--out', 'unused', '--config', str(Path(__file__).parents[1]/'configs'/'reward_model.toml'), '--set', 'seed=x']) == 2

def test_stage_trains_on_a_pairs_file_and_loads_model(tmp_path):
    hh = load_pairs('hh-rlhf-harmless')
    rows = pd.concat([hh[hh.split == 'train'].head(16), hh[hh.split == 'test'].head(8)])
    f = tmp_path/'pairs.jsonl'
    rows[['id', 'prompt', 'chosen', 'rejected', 'subset', 'domain', 'source', 'split']].to_json(f, orient='records', lines=True)
    run = Run(tmp_path/'runs', {}, run_id='r')
    ctx = dict(seed=0, quick=False, args=argparse.Namespace(rm_pairs=str(f), rm_lr=3e-5))
    cfg = {'reward_model': dict(batch_size=8, epochs=1.0, max_length=48, evals_per_epoch=0)}
    STAGE(run, cfg, ctx)
    res = ctx['rm_training']
    again = Run(tmp_path/'runs', {}, run_id='r2'); STAGE(again, cfg, dict(ctx))
    for name in ('training_log.json', 'curves.plotly.json'):  # same seed, same rows: the same bytes
        assert (run.dir/'reward_model'/name).read_bytes() == (again.dir/'reward_model'/name).read_bytes(), name
    assert len(res.timing['epochs']) == 1 and run.records['timings']['train-rm']['epochs'] == res.timing['epochs']
    for e in res.timing['epochs']: assert 0 < e['seconds'] and 0 < e['cpu_seconds'] and e['eval_seconds'] >= 0
    assert res.timing['trainer'][-1]['train_runtime'] > 0 and 'loadavg' in run.records['machine']['train-rm']
    assert run.settings['reward_model']['learning_rate'] == 3e-5 and run.records['precision']['reward-model']['requested'] == 'auto'
    assert (run.dir/'reward_model'/'model'/'model.safetensors').exists() and (run.dir/'reward_model'/'curves.plotly.json').exists()
    assert set(res.metrics) == {'test'} and res.metrics['test']['n'] == 8  # the file has no validation rows: no curve, test once
    assert res.log['data']['train']['rows'] == 16 and res.log['seed'] == 0
    assert res.log['config']['learning_rate'] == 3e-5 and res.log['provenance']['file_sha256'] == run.inputs[str(f)]
    assert ctx['reward_model'].max_length == 48
    m = ctx['reward_model'].score_pairs(rows.tail(8))  # the saved model, loaded back: the metrics are its metrics
    t = res.metrics['test']  # scored in float32; the stage's model scores in the auto precision
    m32 = RewardModel.load(res.model_dir, 'float32').score_pairs(rows.tail(8))
    assert abs(float((m32 > 0).mean()) - t['accuracy']) < 1e-9 and abs(float(m32.mean()) - t['mean_margin']) < 1e-6
    assert np.abs(m - m32).max() < 0.05 * max(np.abs(m32).max(), 1e-3)

def test_stage_resume_finds_the_unfinished_run(tmp_path):
    from rewardbench_nb.rm_training import previous_checkpoint
    for name, steps in [('a', [3]), ('b', []), ('c', [2, 5])]:
        for st in steps:
            ck = tmp_path/name/'reward_model'/'checkpoints'/f'checkpoint-{st}'; ck.mkdir(parents=True)
            (ck/'trainer_state.json').write_text('{}'); time.sleep(0.01)
    run = Run(tmp_path, {}, run_id='new')
    assert previous_checkpoint(run) == tmp_path/'c'/'reward_model'/'checkpoints'/'checkpoint-5'

def test_regression_stage_trains_on_the_curated_scored_campaign(tmp_path):
    "`rbnb train-rm --set reward_model.objective=regression`: the score stage's finals on curation's train split."
    from rewardbench_nb.cli import run_pipeline
    run, ctx = run_pipeline(['train-rm'], quick=True, runs_dir=tmp_path, run_id='reg', progress=False, dtype='float32',
                            overrides=['reward_model.objective=regression', 'reward_model.max_length=48'])
    res, splits, scores = ctx['rm_training'], ctx['splits'], ctx['scores']
    prov = res.log['provenance']
    n_train = int(scores['final'].reindex(splits.id[splits.split == 'train']).notna().sum())
    assert prov['splits'] == 'curate stage' and prov['score_column'] == 'final' and prov['rows_per_split']['train'] == n_train
    assert prov['items'] + sum(prov['left_out'].values()) == len(ctx['prompts'])
    assert res.log['data']['train']['rows'] == min(n_train, 128)
    t = res.metrics['test']
    assert {'mse', 'spearman', 'spearman_low', 'spearman_high', 'kendall'} <= set(t) and t['n'] == 64
    assert t['spearman_low'] <= t['spearman'] <= t['spearman_high']
    m = json.loads((run.dir/'manifest.json').read_text())
    assert m['status'] == 'complete'
    assert (m['settings']['reward_model']['max_length'], m['settings']['reward_model']['max_pairs']) == (48, 128)
    assert m['records']['quick']['train-rm'] == {'eval_rows': 64}
    # --dtype float32: trained in float32, and the model handed to later stages scores in float32 too
    assert ctx['reward_model'].dtype == 'float32' and m['records']['precision']['reward-model']['used'] == 'float32'
    assert m['records']['precision']['train-rm']['used'] == 'float32'

def test_regression_stage_bad_settings(tmp_path):
    from rewardbench_nb.rm_training import _scored_rows
    cfg = RewardModelConfig(objective='regression')
    with pytest.raises(ConfigError, match="needs the prompts of the data stage and the scores"): _scored_rows(cfg, argparse.Namespace(), {})
    with pytest.raises(ConfigError, match="--pairs is for pairwise training"): _scored_rows(cfg, argparse.Namespace(rm_pairs='p.csv'), {})
    from rewardbench_nb.data import simulate_campaign
    from rewardbench_nb.scoring import score_items
    camp = simulate_campaign(n_prompts=60, seed=0)
    ctx = dict(prompts=camp.prompts, scores=score_items(camp.ratings, camp.preferences).table)
    with pytest.raises(ConfigError, match="score_column = 'novelty': expected a score column"):
        _scored_rows(RewardModelConfig(objective='regression', score_column='novelty'), argparse.Namespace(), ctx)
    with pytest.raises(DataError, match="no scored item with a response in split 'holdout'"):
        _scored_rows(RewardModelConfig(objective='regression', train_split='holdout'), argparse.Namespace(), ctx)

def cli(capsys, *args)->tuple:
    "`rbnb ARGS` in this process: (exit code, the `rbnb: error:` lines, whether a traceback was printed)."
    from rewardbench_nb.cli import main
    rc, err = main([str(a) for a in args]), capsys.readouterr().err
    return rc, [l for l in err.splitlines() if l.startswith('rbnb: error:')], 'Traceback' in err

@pytest.mark.parametrize('args, msg', [
    (['--quick', '--set', 'reward_model.batch_size=0'], 'reward_model.batch_size = 0: expected a positive integer'),
    (['--batch-size', '-8'], 'reward_model.batch_size = -8: expected a positive integer'),
    (['--quick', '--epochs', '0'], 'reward_model.epochs = 0.0: expected a positive number'),
    (['--set', 'reward_model.center_rewards=-0.1'], 'reward_model.center_rewards = -0.1: expected a number >= 0'),
    (['--set', 'reward_model.seed=-1'],
     "reward_model.seed = -1: expected an integer from 0 to 4294967295, or unset (the run's seed)")])
def test_bad_settings_fail_before_any_stage(tmp_path, capsys, args, msg):
    "A bad value, from --set or an option, with or without --quick: one line, before data/curate/score run, no run folder."
    assert cli(capsys, 'train-rm', '--quiet', *args, '--runs-dir', tmp_path, '--run-id', 'x') == (2, [f'rbnb: error: {msg}'], False)
    assert not (tmp_path/'x').exists()

class _Touch:
    "Unpickling this creates `path`: proof, by its absence, that a file was never unpickled."
    def __init__(self, path): self.path = path
    def __reduce__(self): return (Path.touch, (self.path,))

def resume_error(capsys, tmp_path, ck)->tuple:
    "`rbnb train-rm --quick --resume CK`: (exit code, error lines, traceback?), and whether a run folder was made."
    rc, errors, tb = cli(capsys, 'train-rm', '--quick', '--quiet', '--resume', ck,
                         '--runs-dir', tmp_path/'runs', '--run-id', 'r')
    return rc, errors, tb, (tmp_path/'runs'/'r').exists()

def test_resume_from_a_checkpoint_that_is_not_weights_only(tmp_path, capsys, checkpoints):
    "train-rm --resume CKPT whose optimizer.pt is a pickled object: one line naming the file, never unpickled, no run."
    import torch
    ck = damaged(checkpoints, tmp_path, 'optimizer.pt')
    torch.save(_Touch(tmp_path/'ran'), ck/'optimizer.pt')
    msg = f"rbnb: error: {ck/'optimizer.pt'}: not a weights-only checkpoint (torch.load(weights_only=True) refuses it), so it is not loaded"
    assert resume_error(capsys, tmp_path, ck) == (2, [msg], False, False)
    assert not (tmp_path/'ran').exists()

half = lambda b: b[:len(b) // 2]

@pytest.mark.parametrize('name, change, msg', [
    ('model.safetensors', half, '{f}: not a readable safetensors file '
                                '(Error while deserializing header: incomplete metadata, file not fully covered)'),
    ('../train_spec.json', lambda b: b'{not json',
     '{f}: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))'),
    ('../train_spec.json', lambda b: b'\xff\xfe',
     '{f}:1: not UTF-8: byte 0xff at byte offset 0; save the file as UTF-8'),
    ('trainer_state.json', lambda b: b'[1, 2]', '{f}: expected a JSON object, got list'),
    ('trainer_state.json', lambda b: b'{"global_steps": 2}',
     "{f}: not a Trainer state (TrainerState.__init__() got an unexpected keyword argument 'global_steps')"),
    ('trainer_state.json', lambda b: b'{"global_step": "2"}', "{f}: global_step = '2': expected an integer >= 0"),
    ('optimizer.pt', half, '{f}: unreadable checkpoint file (RuntimeError)'),
    ('config.json', half, '{f}: not valid JSON ('),     # json's own words follow
    ('scheduler.pt', lambda b: b'\0' * 16, '{f}: ')])  # torch's own words follow
def test_resume_from_a_damaged_checkpoint(tmp_path, capsys, checkpoints, name, change, msg):
    "Each damaged file the resume reads: one line naming it and what is wrong, before any stage runs, no run folder."
    ck = damaged(checkpoints, tmp_path, name, change)
    rc, errors, tb, made = resume_error(capsys, tmp_path, ck)
    assert (rc, tb, made, len(errors)) == (2, False, False, 1), errors
    want = 'rbnb: error: ' + msg.format(f=os.path.normpath(ck/name))
    assert errors[0] == want if msg.endswith(')') else errors[0].startswith(want), errors

@pytest.mark.parametrize('names', [('optimizer.pt',), ('scheduler.pt',), ('rng_state.pth',), ('model.safetensors',),
                                   ('trainer_state.json',), ('optimizer.pt', 'scheduler.pt')])
def test_resume_from_an_incomplete_checkpoint(tmp_path, capsys, checkpoints, names):
    "A checkpoint without a file the Trainer needs to continue exactly (it would skip it and train another model)."
    ck = damaged(checkpoints, tmp_path, names[0])
    for n in names[1:]: (ck/n).unlink()
    msg = (f"rbnb: error: {ck}: incomplete checkpoint: missing {', '.join(names)}; resuming without "
           f"{'it' if len(names) == 1 else 'them'} would not continue the same training")
    assert resume_error(capsys, tmp_path, ck) == (2, [msg], False, False)

def test_resume_from_a_path_without_a_checkpoint(tmp_path, capsys):
    "A path that does not exist, and a folder without checkpoints: one line each, before any stage runs."
    missing, empty = tmp_path/'no'/'such', tmp_path/'empty'; empty.mkdir()
    assert resume_error(capsys, tmp_path, missing) == (
        2, [f'rbnb: error: {missing}: no such checkpoint or folder to resume from'], False, False)
    assert resume_error(capsys, tmp_path, empty) == (
        2, [f'rbnb: error: {empty}: no complete checkpoint to resume from '
            '(expected checkpoint-<n>/trainer_state.json or iter-<n>/state.json)'], False, False)
