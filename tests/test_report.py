"""The run's report as its readers get it: `report.html` of a real quick run, opened in headless Chromium with no
network (every figure drawn, no console error, nothing fetched), one copy of plotly.js per run, the same page for the
same seed, and `rbnb report` on any run folder, finished or failed, with its mistakes as one line."""
import json, os, re, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
RBNB = str(Path(sys.executable).parent/'rbnb')
CHROMIUM = Path('/usr/bin/chromium')

def rbnb(*args):
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1'}
    return subprocess.run([RBNB, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)

def body(page:str)->str:
    "The stage sections of a report: what depends only on the run's data, seed and settings (not on its clock)."
    return page[page.index('<h2 id="data">'):page.index('<h2 id="manifest">')]

def test_one_report_one_plotly_and_the_same_page_for_the_same_seed(quick_runs):
    runs, _ = quick_runs
    from plotly.offline import get_plotlyjs
    pages = {rid: (runs/rid/'report.html').read_text(encoding='utf-8') for rid in ('a', 'b')}
    js = get_plotlyjs()[:300]
    folder_js = sum(p.read_text(errors='ignore').count(js) for p in (runs/'a').rglob('*') if p.is_file()
                    and p.suffix in ('.html', '.js', '.json'))
    assert pages['a'].count(js) == 1 and folder_js == 1        # one copy of plotly.js in the whole run folder
    assert body(pages['a']) == body(pages['b'])                 # same seed, same sections, figures included
    pages_in_folder = sorted(str(p.relative_to(runs/'a')) for p in (runs/'a').rglob('*.html'))
    assert pages_in_folder == ['report.html']                   # was seven stage pages of 4.8 MB each
    assert (runs/'a'/'report.html').stat().st_size < 8e6
    assert 'This stage did not run' not in pages['a'] and pages['a'].count('class="plotly-graph-div"') >= 12

def test_every_section_and_figure_of_a_quick_run_draws_offline(quick_runs, browser):
    runs, _ = quick_runs
    ctx = browser.new_context(viewport={'width': 1280, 'height': 900})
    page = ctx.new_page()
    errors, outside = [], []
    page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.route('**/*', lambda r: r.continue_() if r.request.url.startswith('file:')
               else (outside.append(r.request.url), r.abort()))
    page.goto((runs/'a'/'report.html').as_uri())
    page.wait_for_function("[...document.querySelectorAll('.plotly-graph-div')].every(d => d._fullLayout)",
                           timeout=60_000)
    figs = page.evaluate("""[...document.querySelectorAll('.plotly-graph-div')].map(d => ({id: d.id,
        traces: d.querySelectorAll('g.trace, g.point, path.js-line').length,
        right: d.getBoundingClientRect().right, width: d.getBoundingClientRect().width}))""")
    column = page.evaluate("document.body.getBoundingClientRect().right")
    headings = page.evaluate("[...document.querySelectorAll('h2')].map(h => h.id)")
    ctx.close()
    assert not errors and not outside, (errors, outside)
    assert headings == ['data', 'curate', 'agree', 'score', 'train-rm', 'calibrate', 'eval', 'policy', 'ppo', 'gamma',
                        'manifest']
    assert [f['id'] for f in figs if not f['traces']] == []                 # every figure drew its data
    assert [f['id'] for f in figs if f['right'] > column + 1] == [], (figs, column)  # none wider than the page
    assert {'curation-audit', 'agreement-0', 'scoring-recovery', 'calibration-reliability', 'eval-scoreboard',
            'ppo-curves', 'gamma-curves', 'gamma-shift'} <= {f['id'] for f in figs}

def test_report_rebuilds_any_run_and_escapes_what_it_shows(quick_runs, tmp_path):
    runs, _ = quick_runs
    run = Path(shutil.copytree(runs/'a', tmp_path/'a'))
    (run/'report.html').unlink()
    m = json.loads((run/'manifest.json').read_text())
    m |= dict(status='failed', stage='gamma', error='RBError: <img src=x onerror=alert(1)> went wrong')
    (run/'manifest.json').write_text(json.dumps(m))
    r = rbnb('report', run)
    assert r.returncode == 0 and 'report.html' in r.stdout, r.stderr
    page = (run/'report.html').read_text()
    assert 'This stage failed: RBError: &lt;img src=x onerror=alert(1)&gt; went wrong' in page
    assert '<img src=x' not in page

def test_report_of_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    r = rbnb('report', tmp_path)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr.strip() == f'rbnb: error: {tmp_path}/manifest.json: not found: expected the folder of a run made by rbnb'

def test_a_failed_run_still_ends_with_its_report(tmp_path):
    r = rbnb('curate', '--prompts', tmp_path/'nope.csv', '--runs-dir', tmp_path, '--run-id', 'bad')
    assert r.returncode == 2
    page = (tmp_path/'bad'/'report.html').read_text()
    assert 'nope.csv' in page and 'This stage failed' in page and page.count('This stage did not run') == 9

def test_every_figure_of_the_report_exports_for_a_paper(quick_runs, tmp_path):
    if not CHROMIUM.exists(): pytest.skip('Debian chromium is not installed (make test installs it)')
    run = Path(shutil.copytree(quick_runs[0]/'a', tmp_path/'a'))
    r = rbnb('report', run, '--figures', 'png', 'svg')
    assert r.returncode == 0, r.stderr[-3000:]
    page = (run/'report.html').read_text()
    names = set(re.findall(r'<div id="([\w-]+)" class="plotly-graph-div"', page))
    for fmt, magic in (('png', b'\x89PNG'), ('svg', b'<svg')):
        files = {p.stem: p for p in (run/'figures').glob(f'*.{fmt}')}
        assert set(files) == names, (fmt, set(files) ^ names)
        assert all(magic in p.read_bytes()[:400] and p.stat().st_size > 2000 for p in files.values())
