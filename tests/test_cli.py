"The `rbnb` console script as a user runs it: help, one-line errors, a complete quick run."
import json, os, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
RBNB = [str(Path(sys.executable).parent/'rbnb')]  # the console script installed with the package

def rbnb(*args, cwd=ROOT, timeout=900):
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1'}
    return subprocess.run([*RBNB, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)

def stage_names():
    from rewardbench_nb.cli import all_stages
    return list(all_stages())

def test_help_lists_every_stage():
    r = rbnb('--help')
    assert r.returncode == 0, r.stderr
    for name in ['run', *stage_names()]: assert name in r.stdout

@pytest.mark.parametrize('command', ['run', *stage_names()])
def test_every_subcommand_has_help(command):
    r = rbnb(command, '--help')
    assert r.returncode == 0, r.stderr
    assert '--set' in r.stdout and '--seed' in r.stdout

def one_line_error(r):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert 'Traceback' not in r.stderr, r.stderr
    return [l for l in r.stderr.splitlines() if l.startswith('rbnb: error:')][0]

def test_config_typo_is_one_line(tmp_path):
    msg = one_line_error(rbnb('curate', '--set', 'curation.treshold=0.7', '--runs-dir', tmp_path))
    assert "unknown key 'treshold'" in msg and 'threshold' in msg

def test_bad_override_syntax_is_one_line(tmp_path):
    assert 'expected section.key=value' in one_line_error(rbnb('curate', '--set', 'threshold', '--runs-dir', tmp_path))

def test_missing_input_file_is_one_line(tmp_path):
    msg = one_line_error(rbnb('curate', '--prompts', tmp_path/'nope.csv', '--runs-dir', tmp_path))
    assert 'nope.csv' in msg

def test_failed_run_writes_failed_manifest(tmp_path):
    rbnb('curate', '--prompts', tmp_path/'nope.csv', '--runs-dir', tmp_path/'runs', '--run-id', 'bad')
    m = json.loads((tmp_path/'runs'/'bad'/'manifest.json').read_text())
    assert m['status'] == 'failed' and 'nope.csv' in m['error']

def test_quick_run_is_complete_and_reproducible(quick_runs):
    "Two quick runs at once, the second --quiet: both complete with the same bytes; progress bars (time left) only in the first."
    tmp_path, err = quick_runs
    assert re.search(r'rbnb: +\d+%\|', err['a']), err['a'][-2000:]                        # the stage bar
    assert 'train-rm:' in err['a'] and 'step' in err['a'] and '<' in err['a'], err['a'][-2000:]  # ETA: [elapsed<left]
    assert 'scoring:' in err['a']                                                                 # calibrate's bar
    assert '%|' not in err['b'] and 'it/s' not in err['b'], err['b'][-2000:]
    ma, mb = (json.loads((tmp_path/rid/'manifest.json').read_text()) for rid in ('a', 'b'))
    assert ma['status'] == 'complete' and ma['stage'] is None
    assert {'train-rm', 'calibrate'} <= set(ma['records']['precision'])
    assert ma['records']['precision']['train-rm']['used'] in ('float32', 'bfloat16')
    assert ma['code']['source'] in ('git', 'package') and ma['code']['version']
    from rewardbench_nb.cli import all_stages, run_targets
    assert set(ma['timings']) == set(run_targets(all_stages())) == set(all_stages())          # every stage, RLHF too
    assert ma['inputs'] and all(len(h) == 64 for h in ma['inputs'].values())
    for f, h in ma['outputs'].items(): assert (tmp_path/'a'/f).exists(), f
    # same seed, same data -> the same bytes in every file but the manifest, HTML pages and logs included (the
    # curation date is SOURCE_DATE_EPOCH's); what differs between runs (times, machine measurements) is in the manifest
    differ = sorted(f for f in set(ma['outputs']) | set(mb['outputs']) if ma['outputs'].get(f) != mb['outputs'].get(f))
    assert differ == [], differ
    assert any(f.endswith('.plotly.json') for f in ma['outputs']) and any(f.endswith('.parquet') for f in ma['outputs'])
    assert not any(f.endswith('.html') for f in ma['outputs'])  # stage figures are drawn by the one report.html
    assert {'train-rm', 'ppo', 'gamma', 'eval'} <= set(ma['records']['timings'])
    mem = ma['records']['memory']   # every stage's peak memory, for users sizing a machine
    assert set(ma['timings']) <= set(mem) and all(mem[s] > 50 for s in ma['timings']), mem

def test_sigterm_leaves_an_interrupted_manifest(tmp_path):
    "A run stopped by SIGTERM (kill, a scheduler, a container stop) writes a manifest saying so, with its stage, and exits 143."
    import signal, time
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1'}
    p = subprocess.Popen([*RBNB, 'run', '--quick', '--quiet', '--runs-dir', str(tmp_path), '--run-id', 'k'], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    spec, t0 = tmp_path/'k'/'reward_model'/'checkpoints'/'train_spec.json', time.time()
    while not spec.exists():  # written when training starts
        assert p.poll() is None, p.communicate()[1][-2000:]
        assert time.time() - t0 < 600, 'training never started'
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-2000:]
    m = json.loads((tmp_path/'k'/'manifest.json').read_text())
    assert (m['status'], m['stage'], m['error']) == ('interrupted', 'train-rm', 'Interrupted: SIGTERM')
    assert 'Traceback' not in err and 'rbnb: interrupted (SIGTERM)' in err
    assert not (tmp_path/'k'/'reward_model'/'model').exists()  # no half-written model
