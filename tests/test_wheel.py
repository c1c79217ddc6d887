"""The wheel as a practitioner installs it: built from a copy of the checkout, installed with its pinned dependencies
into a clean virtual environment, and used from a folder that holds no checkout.

`test_data.py` checks that the wheel holds every data file (installed with `--no-deps` beside this environment's
packages). Here the wheel stands alone: `pip install -c constraints.txt <wheel>` into a new venv without system site
packages (pip uses its configured indexes and cache; nothing else is fetched), then `import rewardbench_nb`,
`rbnb --help`, every shipped data set through the package's own loaders (read from the installed package data and
equal to what the checkout loads), and `rbnb run --quick`, whose manifest must say complete and name the installed
package as the code that ran. Minutes: the install and the quick run dominate; each step's seconds are printed.
"""
import json, os, re, shutil, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ['pyproject.toml', 'README.md', 'LICENSE', 'rewardbench_nb', 'data']   # what the build reads
NETWORK = re.compile(r'NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|'
                     r'Network is unreachable|Name or service not known|ProxyError|ReadTimeoutError')
SECONDS = {}   # step -> wall seconds, printed at the end of the module

def _tail(r:subprocess.CompletedProcess, n:int=3000)->str:
    "The last n characters of a finished command's stdout and stderr, for a failure message."
    return f"exit {r.returncode}\n--- stdout (tail)\n{(r.stdout or '')[-n:]}\n--- stderr (tail)\n{(r.stderr or '')[-n:]}"

def _run(step:str, cmd:list, timeout:int, **kw)->subprocess.CompletedProcess:
    "Run `cmd`, note its wall seconds under `step`, fail with the tail of its output when it fails."
    t = time.perf_counter()
    try: r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{step}: no answer in {timeout} s\n{(e.stdout or b'')[-3000:]!r}\n{(e.stderr or b'')[-3000:]!r}")
    SECONDS[step] = round(time.perf_counter() - t, 1)
    if r.returncode and step == 'pip install' and NETWORK.search(r.stderr or ''):
        pytest.skip(f"pip could not reach its package index (offline?), so the clean install was not tried:\n{_tail(r)}")
    assert r.returncode == 0, f"{step} failed: {' '.join(map(str, cmd))}\n{_tail(r)}"
    return r

def _clean_env(venv:Path, home:Path)->dict:
    "The environment of a user of the installed package: its venv first on PATH, no PYTHONPATH, offline hub."
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV', 'PYTHONSTARTUP')}
    return {**env, 'PATH': f"{venv/'bin'}{os.pathsep}{env.get('PATH', '')}", 'VIRTUAL_ENV': str(venv),
            'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
            'TOKENIZERS_PARALLELISM': 'false', 'RBNB_CACHE': str(home/'cache'), 'PIP_NO_INPUT': '1'}

@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    "(venv, user folder, environment): the wheel built from a copy of the checkout, installed into a new venv."
    tmp = tmp_path_factory.mktemp('wheel')
    src, dist, venv, user = tmp/'src', tmp/'dist', tmp/'venv', tmp/'user'
    src.mkdir(); user.mkdir()
    for name in SOURCES:   # a copy, so the build leaves no build/ or egg-info in the checkout
        if (ROOT/name).is_dir(): shutil.copytree(ROOT/name, src/name, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else: shutil.copy2(ROOT/name, src/name)
    _run('pip wheel', [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-input', '-q',
                       '-w', dist, src], timeout=600)
    whl, = dist.glob('rewardbench_nb-*.whl')
    _run('python3 -m venv', [sys.executable, '-m', 'venv', venv], timeout=300)
    env = _clean_env(venv, user)
    _run('pip install', [venv/'bin'/'python', '-m', 'pip', 'install', '--no-input', '-q', '--disable-pip-version-check',
                         '-c', ROOT/'constraints.txt', whl], timeout=1800, cwd=user, env=env)
    yield venv, user, env
    print('\nwheel test, wall seconds per step: ' + ', '.join(f'{k} {v}' for k, v in SECONDS.items()))
    # The venv is about 2 GB of small files, minutes to delete on a slow disk: removed in the background, not waited for.
    subprocess.Popen(['rm', '-rf', '--', str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)

def test_venv_is_clean_and_holds_the_pins(installed):
    "No system site packages, torch as pinned, and `pip check` finds nothing broken."
    venv, user, env = installed
    assert 'include-system-site-packages = false' in (venv/'pyvenv.cfg').read_text()
    code = "import torch, transformers; print(torch.__version__, transformers.__version__)"
    out = _run('versions', [venv/'bin'/'python', '-c', code], timeout=300, cwd=user, env=env).stdout.split()
    assert out[0].split('+')[0] == '2.13.0' and out[1] == '5.24.0', out
    _run('pip check', [venv/'bin'/'python', '-m', 'pip', 'check'], timeout=300, cwd=user, env=env)

def test_import_comes_from_the_installed_package(installed):
    "`import rewardbench_nb` in a folder with no checkout finds the venv's copy, which knows it is a package."
    venv, user, env = installed
    code = ("import rewardbench_nb, json; from rewardbench_nb.core import code_version; "
            "print(json.dumps(dict(file=rewardbench_nb.__file__, code=code_version())))")
    got = json.loads(_run('import', [venv/'bin'/'python', '-c', code], timeout=300, cwd=user, env=env).stdout)
    assert Path(got['file']).resolve().is_relative_to(venv.resolve()), got
    assert got['code']['source'] == 'package', got

def test_rbnb_help(installed):
    "The console script is installed and lists the pipeline's subcommands."
    venv, user, env = installed
    out = _run('rbnb --help', [venv/'bin'/'rbnb', '--help'], timeout=300, cwd=user, env=env).stdout
    for sub in ('run', 'data', 'curate', 'agree', 'score', 'train-rm', 'calibrate', 'eval', 'policy', 'ppo', 'gamma'):
        assert re.search(rf'\b{re.escape(sub)}\b', out), f"`rbnb --help` does not list {sub}:\n{out}"

# Prints, for every shipped data set, a fingerprint of what the package's own loaders give: run in the clean venv and
# here (the checkout), the two must agree, and the venv's must have been read from its installed package data.
FINGERPRINT = r'''
import hashlib, json, sys, warnings
import numpy as np
from rewardbench_nb import data as D
from rewardbench_nb.policy import load_policy, shipped_policy_dir

def frame(df): return dict(rows=len(df), set_aside=len(df.attrs.get('quarantine', [])), columns=list(df.columns),
                           sha256=hashlib.sha256(df.to_json(orient='split', default_handler=str).encode()).hexdigest())
def array(a): return dict(shape=list(a.shape), sha256=hashlib.sha256(np.nan_to_num(a, nan=-1).tobytes()).hexdigest())
with warnings.catch_warnings():
    warnings.simplefilter('ignore', D.DataWarning)
    sets = {f'pairs:{n}': frame(D.load_pairs(n)) for n in D.list_pairs()}
    sets |= {f'ratings:{n}': frame(D.load_ratings(n)) for n in D.RATING_FILES}
    sets |= {f'reliability:{n}': array(D.load_reliability(n)) for n in D.RELIABILITY_FILES}
    sets['rewardbench-results'] = frame(D.load_rewardbench_results())
    model, tok = load_policy()
    sets['policy'] = dict(parameters=sum(p.numel() for p in model.parameters()), vocab=len(tok))
print(json.dumps(dict(data_dir=str(D.data_dir()), policy_dir=str(shipped_policy_dir()), sets=sets)))
'''

def test_every_shipped_set_loads_from_the_installed_package(installed):
    "Each pair, ratings and reliability set, the RewardBench results and the policy load in the venv as in the checkout."
    venv, user, env = installed
    script = user/'fingerprint.py'; script.write_text(FINGERPRINT)
    got = json.loads(_run('data sets', [venv/'bin'/'python', script], timeout=600, cwd=user, env=env).stdout)
    here = json.loads(_run('data sets, checkout', [sys.executable, script], timeout=600, cwd=ROOT,
                           env={**os.environ, 'HF_HUB_OFFLINE': '1', 'PYTHONPATH': str(ROOT)}).stdout)
    assert Path(here['data_dir']) == ROOT/'data'
    for key in ('data_dir', 'policy_dir'):
        assert Path(got[key]).resolve().is_relative_to(venv.resolve()), f"{key} outside the installed package: {got[key]}"
    assert not Path(got['data_dir']).resolve().is_relative_to(ROOT), got['data_dir']
    assert len(got['sets']) == len(here['sets']) >= 17, sorted(got['sets'])
    diff = {k: (got['sets'].get(k), v) for k, v in here['sets'].items() if got['sets'].get(k) != v}
    assert not diff, f"installed loaders give other tables than the checkout's: {diff}"
    assert got['sets']['pairs:rmbench-code']['rows'] == 228 and got['sets']['ratings:squality']['rows'] == 2700

def test_quick_run_completes(installed):
    "`rbnb run --quick` from the folder with no checkout (built-in defaults) ends with a complete manifest."
    venv, user, env = installed
    runs = user/'runs'
    _run('rbnb run --quick', [venv/'bin'/'rbnb', 'run', '--quick', '--quiet', '--runs-dir', runs, '--run-id', 'quick'],
         timeout=1800, cwd=user, env=env)
    m = json.loads((runs/'quick'/'manifest.json').read_text())
    assert m['status'] == 'complete' and m['error'] is None, {k: m.get(k) for k in ('status', 'error', 'stage')}
    assert m['code']['source'] == 'package', m['code']
    assert m['timings'] and all(v >= 0 for v in m['timings'].values()), m['timings']
    assert not (user/'configs').exists() and not any(str(ROOT) in k for k in m['inputs']), list(m['inputs'])[:5]
    assert all((runs/'quick'/f).is_file() for f in m['outputs']), 'an output named in the manifest is missing'
