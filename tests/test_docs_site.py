"""The documentation site, opened in headless Chromium with no network.

Every page renders (HTTP 200, an h1, no uncaught JS error, no local asset missing, nothing needed from the
network), every internal link and #anchor resolves, plotly figures draw and fit the content column, widgets
show as HTML (04's scoring panel as its static snapshot) and never as their repr text, and README.md is what
`tools/build_docs.py` makes of nbs/index.ipynb. `make test` builds `_site/` just before pytest; when it is
missing or older than the notebooks, this module builds it. Set RBNB_DOCS_NBS (as for the build) to check a
site built from some notebooks only.
"""
import functools, importlib.util, subprocess, sys, threading, urllib.error, urllib.request, warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse
import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE, NBS = ROOT/'_site', ROOT/'nbs'
# resources a page needs to render: none of them may come from the network
NEEDED = {'document', 'script', 'stylesheet', 'font', 'xhr', 'fetch', 'websocket', 'eventsource', 'manifest'}

def _load_build_docs():
    spec = importlib.util.spec_from_file_location('build_docs', ROOT/'tools'/'build_docs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

bd = _load_build_docs()

def _expected_pages()->list[str]: return [bd.page_of(r).as_posix() for r in bd.notebooks()]

def _site_stale()->bool:
    pages = [SITE/p for p in _expected_pages()]
    if not all(p.exists() for p in pages): return True
    built = min(p.stat().st_mtime for p in pages)
    srcs = [*(NBS/r for r in bd.notebooks()), ROOT/'tools'/'build_docs.py', *(ROOT/'tools'/'docs').rglob('*.*')]
    return any(p.stat().st_mtime > built for p in srcs)

@pytest.fixture(scope='session')
def site()->Path:
    "A fresh `_site/`: reused when newer than every notebook, else built with tools/build_docs.py."
    if _site_stale():
        r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py')], cwd=ROOT, capture_output=True, text=True, timeout=900)
        if r.returncode: pytest.fail(f"the docs build failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}", pytrace=False)
    return SITE

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

@pytest.fixture(scope='session')
def base_url(site)->str:
    "`_site/` served by http.server on 127.0.0.1, in a thread."
    srv = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_port}/'
    srv.shutdown(); srv.server_close()

# `browser`: the session's one Chromium (tests/conftest.py)

# every plotly figure's drawn width (its svg: a fixed layout width overflows the 100% div) against the content
# column (the article less its padding), with the figure's title to name it
_FIGURE_WIDTHS = """() => {
    const art = document.querySelector('article.md-content__inner') || document.querySelector('.md-content');
    if (!art) return [];
    const cs = getComputedStyle(art);
    const column = art.getBoundingClientRect().width - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    return [...document.querySelectorAll('.plotly-graph-div')].map(g => {
        const svg = g.querySelector('svg.main-svg'), t = g.layout && g.layout.title;
        return {id: g.id, title: (t && (t.text !== undefined ? t.text : t)) || '', column: Math.round(column),
                width: Math.round(Math.max(g.getBoundingClientRect().width, svg ? svg.getBoundingClientRect().width : 0))};
    });
}"""
# what the article shows of widgets: repr text (`VBox(children=...`) means a widget printed as text
_WIDGETS = """() => {
    const text = (document.querySelector('article') || document.body).innerText;
    const snap = document.querySelector('[id^="rbnb-scoring-panel-"]');
    return {repr: (text.match(/\\b(?:[VH]Box|FloatSlider|IntSlider|Output|HTML)\\((?:children|value|layout)=/g) || []),
            snapshot: text.includes('static snapshot of the panel'),
            snapshot_drawn: !!(snap && snap.querySelector('svg.main-svg .scatterlayer .trace')),
            snapshot_table: !!(snap && snap.closest('.jp-OutputArea-output') &&
                               snap.closest('.jp-OutputArea-output').querySelector('table.dataframe'))};
}"""

_PLOTLY_DONE = """() => [...document.querySelectorAll('.plotly-graph-div')]
    .every(d => d.classList.contains('js-plotly-plot') && d.querySelector('svg.main-svg'))"""

def _visit(ctx, url:str)->dict:
    "Open `url` in a new tab; what it loaded, what failed, its links, ids and plotly figures."
    page, res = ctx.new_page(), {'url': url, 'errors': [], 'local_failed': []}
    local = lambda u: u.startswith(res['origin'])
    res['origin'] = '{0.scheme}://{0.netloc}/'.format(urlparse(url))
    page.on('pageerror', lambda e: res['errors'].append(str(e)))
    page.on('requestfailed', lambda r: res['local_failed'].append(f'{r.url} ({r.failure})') if local(r.url) else None)
    page.on('response', lambda r: res['local_failed'].append(f'{r.url} (HTTP {r.status})') if local(r.url) and r.status >= 400 else None)
    resp = page.goto(url, wait_until='load', timeout=60_000)
    res['status'] = resp.status if resp else None
    res['plotly'] = page.locator('.plotly-graph-div').count()
    if res['plotly']:
        try: page.wait_for_function(_PLOTLY_DONE, timeout=30_000)
        except Exception: pass
    res['plotly_drawn'] = page.locator('.plotly-graph-div.js-plotly-plot:has(svg.main-svg)').count()
    res['figures'] = page.evaluate(_FIGURE_WIDTHS) if res['plotly'] else []
    res['widgets'] = page.evaluate(_WIDGETS)
    res['h1'] = page.locator('article h1, .md-content h1').count()
    res['links'] = page.eval_on_selector_all('a[href]', 'els => els.map(e => e.href)')
    res['ids'] = set(page.evaluate("() => [...document.querySelectorAll('[id]')].map(e => e.id)"
                                   ".concat([...document.querySelectorAll('a[name]')].map(e => e.name))"))
    res['nav'] = page.eval_on_selector_all('nav.md-nav--primary a.md-nav__link[href]', 'els => els.map(e => e.href)')
    page.close()
    return res

@pytest.fixture(scope='session')
def crawl(browser, base_url)->dict:
    "Every page of the site (from disk and from the navigation), each visited once with no network."
    external = []
    ctx = browser.new_context(viewport={'width': 1280, 'height': 900})
    def route(r):
        if r.request.url.startswith(base_url): return r.continue_()
        external.append((r.request.resource_type, r.request.url, r.request.frame.url if r.request.frame else ''))
        r.abort()
    ctx.route('**/*', route)
    on_disk = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob('*.html') if p.name != '404.html')
    pages = {p: _visit(ctx, base_url + p) for p in on_disk}
    nav = [urldefrag(u)[0].removeprefix(base_url) for u in pages['index.html']['nav']] if 'index.html' in pages else []
    for p in nav:
        if p not in pages: pages[p] = _visit(ctx, base_url + p)
    ctx.close()
    return {'base': base_url, 'pages': pages, 'nav': list(dict.fromkeys(nav)), 'external': external}

def test_every_notebook_has_a_page_in_the_navigation(crawl):
    want = _expected_pages()
    missing = [p for p in want if p not in crawl['pages']]
    assert not missing, f"no page for {missing}: run `make docs`"
    nav = [p for p in crawl['nav'] if p in want]
    assert nav == want, f"navigation {crawl['nav']} does not list every notebook in notebook order {want}"

def test_pages_render(crawl):
    bad = []
    for name, r in crawl['pages'].items():
        if r['status'] != 200: bad.append(f"{name}: HTTP {r['status']}")
        if not r['h1']: bad.append(f"{name}: no <h1>")
        bad += [f"{name}: uncaught JS error: {e}" for e in r['errors']]
        bad += [f"{name}: local request failed: {u}" for u in r['local_failed']]
    assert not bad, '\n'.join(bad)

def test_nothing_needed_from_the_network(crawl):
    needed = [f"{t} {u} (from {f})" for t, u, f in crawl['external'] if t in NEEDED]
    other = [f"{t} {u} (from {f})" for t, u, f in crawl['external'] if t not in NEEDED]
    if other: warnings.warn("pages ask the network for (blocked, not needed to render): " + '; '.join(sorted(set(other))))
    assert not needed, "pages load resources from the network (the site must work offline):\n" + '\n'.join(sorted(set(needed)))

def _status(url:str)->int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r: return r.status
    except urllib.error.HTTPError as e: return e.code

def test_internal_links_resolve(crawl):
    base, pages = crawl['base'], crawl['pages']
    unbuilt = {bd.page_of(r).as_posix() for r in bd.all_notebooks()} - set(_expected_pages())
    bad, skipped, checked = [], set(), {}
    for name, r in pages.items():
        for href in r['links']:
            if not href.startswith(base): continue
            target, frag = urldefrag(href)
            path = unquote(target.removeprefix(base)) or 'index.html'
            if path.endswith('/'): path += 'index.html'
            if path in unbuilt: skipped.add(path); continue
            if path in pages: status = pages[path]['status']
            else: status = checked.setdefault(target, _status(target))
            if status != 200: bad.append(f"{name}: link {href} -> HTTP {status}"); continue
            if frag and path in pages and unquote(frag) not in pages[path]['ids']:
                bad.append(f"{name}: link {href}: no element with id '{unquote(frag)}' on {path}")
    if skipped: warnings.warn(f"links to pages not built in this selection were not checked: {sorted(skipped)}")
    assert not bad, '\n'.join(sorted(set(bad)))

def test_plotly_figures_draw_offline(crawl):
    with_plots = {n: r for n, r in crawl['pages'].items() if r['plotly']}
    if not with_plots:
        warnings.warn("no page has a plotly figure yet: plotly rendering was not exercised")
        return
    bad = [f"{n}: {r['plotly_drawn']} of {r['plotly']} plotly figures drawn" for n, r in with_plots.items()
           if r['plotly_drawn'] != r['plotly']]
    assert not bad, '\n'.join(bad)

def test_no_figure_wider_than_the_column(crawl):
    "A plotly figure with a fixed width past the content column spills over the page (STYLE: fit an 800 px column)."
    wide = [f"{n}: figure '{f['title'] or f['id']}' is {f['width']} px wide, the column {f['column']} px"
            for n, r in crawl['pages'].items() for f in r['figures'] if f['width'] > f['column'] + 1]
    assert not wide, '\n'.join(wide)

def test_widgets_never_print_as_text(crawl):
    "No page shows a widget's repr (`VBox(children=...`): a widget offers HTML of its own, or the build puts a note."
    bad = [f"{n}: {sorted(set(r['widgets']['repr']))}" for n, r in crawl['pages'].items() if r['widgets']['repr']]
    assert not bad, "widgets printed as text:\n" + '\n'.join(bad)

def test_scoring_page_shows_the_panel_snapshot(crawl):
    "04's scoring panel shows on the site as a static snapshot: the note, its top-k table and its chart, drawn."
    if 'scoring.html' not in crawl['pages']:
        warnings.warn("scoring.html is not in this build's selection: the panel snapshot was not checked"); return
    w = crawl['pages']['scoring.html']['widgets']
    assert w['snapshot'] and w['snapshot_table'] and w['snapshot_drawn'], f"scoring.html, the panel snapshot: {w}"

def test_widget_outputs_on_a_static_page():
    "The build drops the widget view (no widget manager on the site); the widget's HTML stays, else a note replaces its repr."
    view = {'application/vnd.jupyter.widget-view+json': {'model_id': 'x', 'version_major': 2, 'version_minor': 0}}
    bare = bd._clean_output({'output_type': 'display_data', 'data': {**view, 'text/plain': 'VBox(children=(...))'}})
    assert bare['data']['text/html'] == bd.WIDGET_NOTE and bd.WIDGET_MIME not in bare['data']
    own = bd._clean_output({'output_type': 'execute_result', 'data': {**view, 'text/plain': 'VBox()', 'text/html': '<p>x</p>'}})
    assert own['data']['text/html'] == '<p>x</p>' and bd.WIDGET_MIME not in own['data']

def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--check-readme'], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr.strip()[-2000:] or r.stdout

def _nb(tmp:Path, name:str, *cells:tuple[str, str])->Path:
    "A notebook in `tmp` made of (cell_type, source) pairs."
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) if t == 'code' else nbformat.v4.new_markdown_cell(s)
                                         for t, s in cells])
    nbformat.write(nb, tmp/name); return tmp/name

def test_build_fails_naming_notebook_and_cell(tmp_path):
    "A raising cell and a notebook past its timeout fail the build, named; `#| slow` cells are not run."
    _nb(tmp_path, 'broken.ipynb', ('markdown', '# broken'), ('code', '#| slow\nraise SystemExit("slow cells are skipped")'),
        ('code', 'y = 1'), ('code', 'y = undefined_name + 1'))
    _nb(tmp_path, 'stuck.ipynb', ('markdown', '# stuck'), ('code', 'import time; time.sleep(300)'))
    with pytest.raises(bd.DocsError) as e:
        bd.execute([Path('broken.ipynb'), Path('stuck.ipynb')], jobs=2, timeout=6, nbs_dir=tmp_path, outdir=tmp_path/'exec')
    msg = str(e.value)
    assert 'broken.ipynb: cell #4' in msg and 'undefined_name' in msg and 'NameError' in msg, msg
    assert 'stuck.ipynb: timed out after 6s in cell #2' in msg, msg
