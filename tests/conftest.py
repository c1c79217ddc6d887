"Fixtures shared by the test modules."
import os
import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')

@pytest.fixture(scope='module')
def one_thread():
    "One torch thread for the module: tiny models run faster without waiting on busy cores, and tests run in parallel."
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

@pytest.fixture(scope='session')
def quick_runs(tmp_path_factory):
    "Two `rbnb run --quick` runs side by side, 'a' and 'b' (the second --quiet): (runs folder, {id: stderr})."
    import subprocess, sys
    from pathlib import Path
    root, runs = Path(__file__).resolve().parents[1], tmp_path_factory.mktemp('quick_runs')
    rbnb = str(Path(sys.executable).parent/'rbnb')
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'SOURCE_DATE_EPOCH': '1767225600'}
    procs = {rid: subprocess.Popen([rbnb, 'run', '--quick', '--runs-dir', str(runs), '--run-id', rid, *extra], cwd=root,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rid, extra in (('a', ()), ('b', ('--quiet',)))}  # side by side: the same numbers whatever shares the CPU
    err = {}
    for rid, p in procs.items():
        err[rid] = p.communicate(timeout=900)[1]
        assert p.returncode == 0, err[rid][-3000:]
    return runs, err

@pytest.fixture(scope='session')
def browser():
    """Debian's chromium driven by playwright (never a downloaded browser): one for the whole session, since
    playwright's sync API cannot run twice at once in one process (the docs site, JupyterLab and report tests share it)."""
    from pathlib import Path
    chromium = Path('/usr/bin/chromium')
    if not chromium.exists():
        pytest.fail(f"{chromium} is missing: run `bash tools/env.sh --browser` (it installs Debian's chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright
    args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
            '--disable-component-update', '--disable-sync']
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), args=args)
        yield b
        b.close()
