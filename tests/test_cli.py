"The `rbnb` console script as a user runs it: help, one-line errors, a complete quick run."
import json, os, subprocess, sys
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

def test_quick_run_is_complete_and_reproducible(tmp_path):
    for rid in ('a', 'b'):
        r = rbnb('run', '--quick', '--runs-dir', tmp_path, '--run-id', rid)
        assert r.returncode == 0, r.stderr[-3000:]
    ma, mb = (json.loads((tmp_path/rid/'manifest.json').read_text()) for rid in ('a', 'b'))
    assert ma['status'] == 'complete'
    assert set(ma['timings']) == set(stage_names())
    assert ma['inputs'] and all(len(h) == 64 for h in ma['inputs'].values())
    for f, h in ma['outputs'].items(): assert (tmp_path/'a'/f).exists(), f
    # same seed, same data -> same tables (the provenance log carries each run's timestamp)
    tables = [f for f in ma['outputs'] if f.endswith(('.csv', '.parquet')) and 'provenance' not in f]
    assert tables
    assert {f: ma['outputs'][f] for f in tables} == {f: mb['outputs'].get(f) for f in tables}
