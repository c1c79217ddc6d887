"""The notebooks as users run them: a real JupyterLab in headless Chromium, with no network.

A JupyterLab server (the project's python3 kernel) serves a temporary copy of the notebooks, so nothing is written
into nbs/; the copy leaves out the cells nbdev-test skips (`#| slow`, `#| cuda`, `#| eval: false`), which run for
minutes. Each test opens a notebook, runs all cells from the Run menu, waits for the kernel to go idle and then
checks what a reader sees. Every request the page makes must stay on 127.0.0.1 (the rest are blocked and fail the
test), and so must the console stay free of errors.
"""
import json, os, re, shutil, socket, subprocess, sys, time, tomllib, urllib.request
from pathlib import Path
from urllib.parse import urlparse
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
JUPYTER = Path(sys.executable).parent/'jupyter'
NOTEBOOKS = ['04_scoring.ipynb', '06_calibration.ipynb']
RUN_TIMEOUT = 120   # seconds for one notebook's Run All (each takes about 10 s in nbdev-test)

def _skipped(cell:dict, flags:list[str])->bool:
    "Whether nbdev-test skips `cell`: a `#| <flag>` of tst_flags or `#| eval: false`."
    dirs = [l[2:].strip() for l in ''.join(cell['source']).splitlines() if l.startswith('#|')]
    return any(d in flags or re.fullmatch(r'eval\s*:\s*false', d, re.I) for d in dirs)

def copy_notebooks(dest:Path)->Path:
    "The notebooks under test, copied to `dest` without the cells nbdev-test skips."
    flags = tomllib.loads((ROOT/'pyproject.toml').read_text())['tool']['nbdev'].get('tst_flags', '').split()
    dest.mkdir(parents=True, exist_ok=True)
    for name in NOTEBOOKS:
        nb = json.loads((NBS/name).read_text(encoding='utf-8'))
        nb['cells'] = [c for c in nb['cells'] if not (c['cell_type'] == 'code' and _skipped(c, flags))]
        (dest/name).write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding='utf-8')
    return dest

def _free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _settings(d:Path):
    "JupyterLab user settings for the test: every cell in the DOM, no news or update checks."
    for plugin, values in {'notebook-extension/tracker': {'windowingMode': 'none'},
                           'apputils-extension/notification': {'fetchNews': 'false', 'checkForUpdates': False}}.items():
        f = d/'@jupyterlab'/f'{plugin}.jupyterlab-settings'
        f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(values))

@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "A JupyterLab server on 127.0.0.1 over a temporary copy of the notebooks; yields its base URL."
    if not JUPYTER.exists(): pytest.fail(f"{JUPYTER} is missing: jupyterlab is part of the dev environment", pytrace=False)
    tmp = tmp_path_factory.mktemp('lab')
    root = copy_notebooks(tmp/'nbs')
    _settings(tmp/'settings')
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', JUPYTER_CONFIG_DIR=str(tmp/'config'),
               JUPYTERLAB_SETTINGS_DIR=str(tmp/'settings'), JUPYTERLAB_WORKSPACES_DIR=str(tmp/'workspaces'),
               JUPYTER_RUNTIME_DIR=str(tmp/'runtime'), IPYTHONDIR=str(tmp/'ipython'))
    log = (tmp/'lab.log').open('w')
    cmd = [str(JUPYTER), 'lab', '--no-browser', '--IdentityProvider.token=', f'--port={port}', '--ip=127.0.0.1',
           f'--ServerApp.root_dir={root}', '--LabApp.news_url=None', '--LabApp.extension_manager=readonly',
           '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    if hasattr(os, 'geteuid') and os.geteuid() == 0: cmd.append('--allow-root')   # containers often run as root
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    try:
        for _ in range(600):
            if proc.poll() is not None: break
            try:
                with urllib.request.urlopen(url + 'api/status', timeout=2): break
            except OSError: time.sleep(0.1)
        else: pytest.fail(f"JupyterLab did not answer on {url} in 60 s:\n{(tmp/'lab.log').read_text()[-3000:]}", pytrace=False)
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {proc.returncode}:\n{(tmp/'lab.log').read_text()[-3000:]}", pytrace=False)
        yield url
    finally:
        proc.terminate()
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()

# `browser`: the session's one Chromium (tests/conftest.py)

class Watch:
    "What a page asked of the network outside 127.0.0.1 (blocked) and what it logged as an error."
    def __init__(self): self.outside, self.errors = [], []
    def route(self, route):
        if urlparse(route.request.url).hostname == '127.0.0.1': return route.continue_()
        self.outside.append(f'{route.request.resource_type} {route.request.url}'); route.abort()
    def console(self, msg):
        if msg.type == 'error': self.errors.append(f'console: {msg.text} ({msg.location.get("url", "")})')
    def check(self):
        assert not self.outside, "requests left 127.0.0.1 (the notebooks must work offline):\n" + '\n'.join(self.outside)
        assert not self.errors, "errors in the browser console:\n" + '\n'.join(self.errors)

@pytest.fixture
def page(browser, lab):
    "A new tab on the JupyterLab server, every request routed through `Watch`; checked when the test ends."
    ctx = browser.new_context(viewport={'width': 1400, 'height': 1000})
    watch = Watch()
    ctx.route('**/*', watch.route)
    pg = ctx.new_page()
    pg.on('console', watch.console)
    pg.on('pageerror', lambda e: watch.errors.append(f'uncaught: {e}'))
    pg.watch, pg.lab = watch, lab
    yield pg
    ctx.close()
    watch.check()

_PROMPTS = "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim())"
_STATUS = "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator')?.dataset.status"

def run_all(page, name:str):
    "Open notebook `name`, wait for its kernel, Run All Cells from the Run menu and wait until the kernel is idle."
    # the status reads 'idle' before a kernel exists; a kernel's websocket opening marks it started
    with page.expect_websocket(lambda ws: '/api/kernels/' in ws.url, timeout=90_000):
        # a workspace of its own, reset: JupyterLab would otherwise reopen the notebooks of earlier tests
        page.goto(page.lab + f'lab/workspaces/{Path(name).stem}/tree/{name}?reset', wait_until='domcontentloaded',
                  timeout=60_000)
    page.wait_for_function(f"() => ({_STATUS})() === 'idle'", timeout=60_000)
    page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
    page.locator('.lm-Menu-itemLabel', has_text=re.compile(r'^Run All Cells$')).first.click()
    page.wait_for_function(f"() => ({_PROMPTS})().some(p => p !== '[ ]:')", timeout=30_000)
    t0 = time.time()
    page.wait_for_function(f"() => !({_PROMPTS})().includes('[*]:') && ({_STATUS})() === 'idle'", timeout=RUN_TIMEOUT*1000,
                           polling=250)
    prompts = page.evaluate(_PROMPTS)
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    not_run = [i for i, p in enumerate(prompts) if not re.fullmatch(r'\[\d+\]:', p)]
    assert not not_run, f"{name}: code cells {not_run} did not run after Run All: {errors[-1:] or prompts}"
    return time.time() - t0

# ---------------------------------------------------------------- 04_scoring: the scoring panel
_PANEL = """() => {
    const out = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output:has(.widget-hslider)');
    if (!out) return null;
    const sliders = Object.fromEntries([...out.querySelectorAll('.widget-hslider')].map(s => [
        s.querySelector('.widget-label').textContent.trim(),
        [Number(s.querySelector('.noUi-handle').getAttribute('aria-valuenow')), s.querySelector('.widget-readout').textContent.trim()]]));
    const table = out.querySelector('table.dataframe'), gd = out.querySelector('.js-plotly-plot');
    const shown = [...out.querySelectorAll('.widget-html-content')].map(h => h.textContent).find(t => t.includes('normalised'));
    const clipped = [...out.querySelectorAll('.widget-hslider')].filter(s =>   // readouts cut off by the panel's layout
        s.querySelector('.widget-readout').getBoundingClientRect().right > s.parentElement.getBoundingClientRect().right + 1)
        .map(s => s.querySelector('.widget-label').textContent.trim());
    return {sliders, clipped, shown: shown || '',
            columns: table ? [...table.querySelectorAll('thead tr:first-child th')].map(th => th.textContent.trim()) : [],
            rows: table ? [...table.querySelectorAll('tbody tr')].map(tr => [...tr.children].map(c => c.textContent.trim())) : [],
            lines: gd && gd.data ? gd.data.map(t => [t.name, ...t.y]) : [],
            labels: gd ? [...gd.querySelectorAll('.textpoint text')].map(t => t.textContent) : []};
}"""

def panel(page)->dict:
    "What the scoring panel shows: slider values (handle and readout), the normalised line, table, chart lines, labels."
    p = page.evaluate(_PANEL)
    assert p, "the scoring panel is not on the page (no output holds sliders)"
    return p

def move(page, slider:str, key:str, times:int):
    "Focus the handle of `slider` and press `key` `times` times, as a keyboard user does."
    handle = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .widget-hslider', has=page.locator(
        '.widget-label', has_text=re.compile(f'^{slider}$'))).locator('.noUi-handle')
    handle.focus()
    for _ in range(times): handle.press(key)

def rows(p:dict)->list[dict]:
    "The panel's table as dicts of floats (text where a cell is not a number)."
    def num(v):
        try: return float(v)
        except ValueError: return v
    return [dict(zip(['item', *p['columns'][1:]], [r[0], *map(num, r[1:])])) for r in p['rows']]

def test_scoring_panel_after_run_all(page):
    "After Run All the panel shows the default weights; moving alpha and a weight re-ranks the table and the chart."
    from rewardbench_nb.scoring import DEFAULT_WEIGHTS, ScoringConfig
    took = run_all(page, '04_scoring.ipynb')
    start = panel(page)
    want = {**DEFAULT_WEIGHTS, 'alpha': ScoringConfig().alpha}
    assert {k: v[0] for k, v in start['sliders'].items()} == want, f"sliders after Run All: {start['sliders']}"
    assert {k: v[1] for k, v in start['sliders'].items()} == {k: f'{v:.2f}' for k, v in want.items()}
    assert not start['clipped'], f"slider readouts cut off: {start['clipped']}"
    assert 'usefulness 0.40' in start['shown'] and 'alpha 0.60' in start['shown'], start['shown']
    assert len(start['rows']) == 5 and start['lines'], "the panel shows its top-5 table and its chart"
    assert all(a == b for _, a, b in start['lines']), "at the starting weights no rank has moved"
    assert sorted(start['labels']) == sorted(n for n, *_ in start['lines'] for _ in (0, 1)), start['labels']

    move(page, 'alpha', 'ArrowLeft', 4)        # 0.60 -> 0.40
    move(page, 'safety', 'ArrowRight', 30)     # 0.20 -> 0.50
    raw = {**DEFAULT_WEIGHTS, 'safety': 0.5}
    w = {c: v / sum(raw.values()) for c, v in raw.items()}
    expect = f"safety {w['safety']:.2f}, alignment {w['alignment']:.2f}; alpha 0.40"
    page.wait_for_function(f"() => {{ const p = ({_PANEL})(); return p && p.shown.includes({json.dumps(expect)}) && "
                           "p.lines.length && p.labels.length; }", timeout=30_000)
    page.wait_for_function(f"() => ({_STATUS})() === 'idle'", timeout=30_000)
    now = panel(page)
    assert now['sliders']['alpha'][0] == 0.4 and now['sliders']['safety'][0] == 0.5, now['sliders']
    assert now['rows'] != start['rows'], "moving alpha and safety changes the table"
    for r in rows(now):   # every row is the blend of the weights the sliders show (the table prints 3 decimals)
        assert abs(r['criterion'] - sum(w[c] * r[c] for c in w)) < 3e-3, r
        assert abs(r['final'] - (0.4 * r['criterion'] + 0.6 * r['borda'])) < 2e-3, r
    ranks = {r['item']: r['rank'] for r in rows(now)}
    assert {n: b for n, a, b in now['lines'] if b is not None and b <= 5} == ranks, (now['lines'], ranks)
    assert any(a != b for _, a, b in now['lines']), "the chart shows ranks that moved"
    assert sorted(now['labels']) == sorted(n for n, a, b in now['lines'] for y in (a, b) if y is not None), \
        f"the chart lost labels when it was redrawn: {now['labels']}"
    page.watch.check()
    print(f'04_scoring: Run All took {took:.1f}s in JupyterLab')

# ---------------------------------------------------------------- 06_calibration: the reliability diagram
_FIGURES = """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .js-plotly-plot')].map(g => ({
    title: (g.layout && g.layout.title && g.layout.title.text) || '', traces: g.querySelectorAll('svg .trace').length,
    data: (g.data || []).length}))"""

def test_reliability_diagram_draws(page):
    "Run All draws the reliability diagram offline: its diagonal, and a line and bars per method."
    took = run_all(page, '06_calibration.ipynb')
    figs = page.evaluate(_FIGURES)
    diagram = [f for f in figs if f['title'].startswith('Reliability on')]
    assert diagram, f"no reliability diagram drawn; plotly figures on the page: {figs}"
    assert diagram[0]['data'] == 7 and diagram[0]['traces'] >= 7, diagram
    page.watch.check()
    print(f'06_calibration: Run All took {took:.1f}s in JupyterLab')
