"The policy: the shipped artifact is what the recipe builds, loading and caching, the build script, the stage, bad input."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from safetensors.numpy import load_file
from rewardbench_nb.core import DataError, RBError, Run
from rewardbench_nb import policy as P

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
# A build small enough for a test: 3 steps of a 1-layer, 32-wide model on 32-token blocks.
TINY = ['--set', 'steps=3', '--set', 'n_embd=32', '--set', 'n_head=2', '--set', 'n_layer=1', '--set', 'context=32',
        '--set', 'batch_size=4', '--set', 'vocab_size=512', '--quiet']

@pytest.fixture(scope='module')
def shipped():
    return P.load_policy()

def test_shipped_policy_is_the_default_recipe():
    log = json.loads((P.shipped_policy_dir()/'build_log.json').read_text())
    assert log['spec'] == P.build_spec(P.PolicyConfig(), P.corpus('train'))
    assert log['spec_id'] == P.spec_id(log['spec'])
    assert log['perplexity']['validation']['all'] < 0.5 * log['perplexity']['unigram']

def test_shipped_policy_is_small_and_pickle_free():
    d = P.shipped_policy_dir()
    assert d == ROOT/'data'/'policy'
    assert sum(f.stat().st_size for f in d.iterdir()) < 8 * 2**20
    assert not [f for f in d.iterdir() if f.suffix in ('.bin', '.pt', '.pth', '.pkl', '.pickle')]

def test_pad_is_not_eos_and_pair_fits(shipped):
    model, tok = shipped
    assert tok.pad_token_id != tok.eos_token_id
    assert model.config.eos_token_id == tok.eos_token_id and model.config.pad_token_id == tok.pad_token_id
    assert len(tok) == model.get_input_embeddings().num_embeddings
    assert not model.training

def test_cache_is_used_when_nothing_is_shipped(tmp_path, monkeypatch):
    "Without a shipped folder, load_policy reads the build of the default spec from the user cache (never the package)."
    monkeypatch.setattr(P, 'shipped_policy_dir', lambda: tmp_path/'absent')
    monkeypatch.setenv('RBNB_CACHE', str(tmp_path/'cache'))
    spec = P.build_spec(P.PolicyConfig(), P.corpus('train'))
    target = tmp_path/'cache'/f'policy-{P.spec_id(spec)}'
    shutil.copytree(ROOT/'data'/'policy', target)
    assert P.default_policy_dir(progress=False) == target
    model, tok = P.load_policy()
    assert tok.pad_token == P.PAD

def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv('RBNB_CACHE', raising=False)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    assert P.cache_dir() == tmp_path/'rewardbench_nb'

def test_build_script_is_deterministic(tmp_path):
    "Two tiny builds with the same settings and seed give the same weights and tokenizer."
    outs = []
    for name in ('a', 'b'):
        r = subprocess.run([sys.executable, '-m', 'rewardbench_nb.policy', '--out', str(tmp_path/name), *TINY],
                           env=ENV, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(tmp_path/name)
    wa, wb = (load_file(str(o/'model.safetensors')) for o in outs)
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert (outs[0]/'tokenizer.json').read_bytes() == (outs[1]/'tokenizer.json').read_bytes()
    model, tok = P.load_policy(outs[0])
    assert len(tok) == 512 and model.config.n_layer == 1

def test_build_script_bad_setting_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'rewardbench_nb.policy', '--out', str(tmp_path/'x'), '--set', 'n_embd=30', '--set', 'n_head=4'],
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'policy.n_embd = 30: expected a multiple of n_head (4)' in r.stderr and 'Traceback' not in r.stderr

def test_corrupt_or_incomplete_policy_folder(tmp_path):
    bad = tmp_path/'bad'; shutil.copytree(ROOT/'data'/'policy', bad)
    (bad/'model.safetensors').write_bytes(b'\x00' * 100)
    with pytest.raises(DataError, match='bad: cannot load the policy'): P.load_policy(bad)
    (bad/'tokenizer.json').unlink()
    with pytest.raises(DataError, match='missing tokenizer.json'): P.load_policy(bad)

def test_mismatched_tokenizer_is_refused(shipped):
    from transformers import PreTrainedTokenizerFast
    model, tok = shipped
    small = P.train_tokenizer(P.corpus('train')[:50], 400)
    with pytest.raises(RBError, match='the tokenizer has 4096 tokens, the model embeds only 400'):
        P.check_policy(P.make_model(P.PolicyConfig(vocab_size=400, n_embd=32, n_head=2, n_layer=1), small), tok)
    with pytest.raises(RBError, match='PAD is the EOS token'):
        P.check_policy(model, PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=P.EOS, pad_token=P.EOS))

def test_stage_quick_records_precision(tmp_path):
    r = subprocess.run([str(Path(sys.executable).parent/'rbnb'), 'policy', '--quick', '--quiet', '--runs-dir', str(tmp_path), '--run-id', 'p'],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path/'p'/'manifest.json').read_text())
    assert m['status'] == 'complete' and 'policy' in m['records']['precision']
    metrics = json.loads((tmp_path/'p'/'policy'/'metrics.json').read_text())
    assert metrics['source'] == 'shipped' and metrics['dialogues'] == 16 and metrics['perplexity']['all'] > 1
    assert 'folder' not in metrics and m['settings']['policy']['samples'] == 2  # no absolute path; the quick sizes that ran
    assert (tmp_path/'p'/'policy'/'samples.md').read_text().count('**Assistant:**') == 2

def test_stage_build_is_byte_identical(tmp_path):
    "rbnb policy --quick with a (tiny) build, twice: every file the same; timings and measured speeds in the manifest only."
    sets = [x for k, v in zip(TINY[:-1:2], TINY[1::2]) for x in (k, f'policy.{v}')]  # '--set key=v' -> '--set policy.key=v'
    sets = [a.replace('context=32', 'context=64') for a in sets]  # room for a prompt before the 48 tokens of a reply
    for rid in ('a', 'b'):
        r = subprocess.run([str(Path(sys.executable).parent/'rbnb'), 'policy', '--quick', '--quiet', '--set', 'policy.build=true',
                            *sets, '--runs-dir', str(tmp_path), '--run-id', rid], cwd=ROOT, env=ENV, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    files = lambda rid: {str(p.relative_to(tmp_path/rid)): p.read_bytes() for p in sorted((tmp_path/rid/'policy').rglob('*')) if p.is_file()}
    a, b = files('a'), files('b')
    assert 'policy/model/build_log.json' in a and a == b
    log = json.loads(a['policy/model/build_log.json'])
    assert not {'seconds', 'machine'} & set(log) and log['precision'] == dict(requested='auto', used=log['precision']['used'])
    m = json.loads((tmp_path/'a'/'manifest.json').read_text())
    rec = m['records']['precision']['policy']
    assert m['records']['timings']['policy-build']['train'] > 0 and 'auto' in rec and 'shipped_build' not in rec
    assert (rec['requested'], rec['trained'], rec['evaluated']) == ('auto', log['precision']['used'], 'float32')

@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_stage_records_what_this_run_used(tmp_path, capsys, dtype):
    "--dtype sets how a build would train; the loaded policy is evaluated in float32, and the shipped build is apart."
    from rewardbench_nb.cli import main
    rc = main(['policy', '--quick', '--quiet', '--dtype', dtype, '--runs-dir', str(tmp_path), '--run-id', 'p'])
    assert rc == 0, capsys.readouterr().err[-2000:]
    m = json.loads((tmp_path/'p'/'manifest.json').read_text())
    built = json.loads((P.shipped_policy_dir()/'build_log.json').read_text())['precision']
    assert m['settings']['policy']['dtype'] == dtype
    built = dict(requested=built['requested'], used=built['used'])
    rec = m['records']['precision']['policy']
    assert rec == dict(requested=dtype, trained=None, evaluated='float32', shipped_build=built)
    metrics = json.loads((tmp_path/'p'/'policy'/'metrics.json').read_text())
    assert (metrics['evaluated_in'], metrics['built_in']) == ('float32', built)

@pytest.mark.parametrize('args, msg', [
    (['--quick', '--set', 'policy.samples=-1'], 'policy.samples = -1: expected an integer >= 0'),
    (['--set', 'policy.steps=0'], 'policy.steps = 0: expected a positive integer'),
    (['--set', 'policy.build=true', '--set', 'policy.context=32'],
     'policy.context = 32: expected more than the 48 tokens of a sampled reply (or policy.samples = 0)')])
def test_bad_settings_fail_before_the_stage(tmp_path, capsys, args, msg):
    "A bad policy value, with or without --quick: one line before anything runs, no run folder."
    from rewardbench_nb.cli import main
    rc, err = main(['policy', '--quiet', *args, '--runs-dir', str(tmp_path), '--run-id', 'x']), capsys.readouterr().err
    assert (rc, [l for l in err.splitlines() if l.startswith('rbnb:')]) == (2, [f'rbnb: error: {msg}'])
    assert 'Traceback' not in err and not (tmp_path/'x').exists()
