#!/usr/bin/env python
"""Build the offline documentation site `_site/` and README.md from the notebooks in nbs/.

Quarto is not needed. nbdev's own processors (`nbdev.serve.proc_nbs`) prepare every notebook in `_proc/`
(hidden cells dropped, `show_doc` rendered), each notebook is executed again so its outputs show (cells
flagged with nbdev's `tst_flags`, e.g. `#| slow` / `#| cuda`, and `#| eval: false` cells are skipped, as
`nbdev-test` does), and mkdocs-material + mkdocs-jupyter render the pages. plotly.js is shipped from the
installed `plotly` package as a site asset, so every page renders without a network.

Math (`$...$`, `$$...$$`) becomes MathML at build time (latex2mathml), so no MathJax is needed either.
Work files live in `_proc/` (nbdev) and `_docs/` (mkdocs.yml, docs sources, execution results reused while
a notebook, the library, configs/ and data/ are unchanged, mkdocs-jupyter's cache); both are git-ignored.

    python tools/build_docs.py                        # whole site + README.md (`make docs`)
    python tools/build_docs.py --only index,00_core   # some notebooks (or RBNB_DOCS_NBS=index,00_core)
    python tools/build_docs.py --rerun                # execute every notebook again, ignoring saved outputs
    python tools/build_docs.py --check-readme         # exit 1 when README.md is not what nbs/index.ipynb gives
"""
from __future__ import annotations
import argparse, fnmatch, hashlib, html, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, PROC, SITE = ROOT/'nbs', ROOT/'_proc', ROOT/'_site'
STAGE = ROOT/'_docs'          # nbdev's (Quarto) doc_path, unused without Quarto: mkdocs.yml, exec results, cache
DOCS_SRC = STAGE/'src'        # mkdocs docs_dir: cleaned, executed notebooks + assets
ASSETS = Path(__file__).resolve().parent/'docs'   # committed theme override and css
PLOTLY_ASSET = 'assets/javascripts/plotly.min.js'
SEL_ENV, TIMEOUT_ENV = 'RBNB_DOCS_NBS', 'RBNB_DOCS_TIMEOUT'

class DocsError(Exception): "The docs build failed; the message says which notebook and cell."

# ---------------------------------------------------------------- notebooks and pages
def selection(only:str|None=None)->list[str]:
    "Notebook name patterns picked by `--only` or $RBNB_DOCS_NBS (empty: every notebook)."
    text = only if only is not None else os.environ.get(SEL_ENV, '')
    return [p.strip().removesuffix('.ipynb') for p in text.split(',') if p.strip()]

def _selected(rel:Path, pats)->bool:
    name = rel.with_suffix('').as_posix()
    return not pats or any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel.stem, p) for p in pats)

def all_notebooks()->list[Path]:
    "Every documented notebook, relative to nbs/, in site order: index, numbered ones, then sub-folders."
    found = [p.relative_to(NBS) for p in NBS.rglob('*.ipynb')
             if not any(part.startswith(('_', '.')) for part in p.relative_to(NBS).parts)]
    return sorted(found, key=lambda r: (r.stem != 'index' or len(r.parts) > 1, len(r.parts) > 1, r.as_posix()))

def notebooks(only:str|None=None)->list[Path]:
    "The documented notebooks selected by `only` (see `selection`)."
    pats = selection(only)
    res = [r for r in all_notebooks() if _selected(r, pats)]
    if pats and not res: raise DocsError(f"no notebook in nbs/ matches {','.join(pats)}")
    return res

def page_of(rel:Path)->Path:
    "Site page of notebook `rel` (nbs-relative): nbdev's rule, numeric prefix stripped (`00_core` -> `core.html`)."
    from nbdev.config import nbpath2html
    return nbpath2html(rel)

def _h1(path:Path)->str|None:
    "The `# title` of a notebook's first markdown cell."
    for c in json.loads(path.read_text(encoding='utf-8'))['cells']:
        if c['cell_type'] == 'markdown':
            m = re.match(r'#\s+(.+)', ''.join(c['source']).strip()); return m.group(1).strip() if m else None

# ---------------------------------------------------------------- step 1: nbdev processing
def process(nbs:list[Path], jobs:int):
    "Run nbdev's docs processors on `nbs` into _proc/ (rebuilt when the library changed since last time)."
    from nbdev.serve import proc_nbs
    lib = [ROOT/'rewardbench_nb'/'_modidx.py', Path(__file__)]
    force = not PROC.exists() or any(p.exists() and p.stat().st_mtime > PROC.stat().st_mtime for p in lib)
    names = '|'.join(re.escape(r.name) for r in nbs)
    try: proc_nbs(path=str(NBS), n_workers=jobs, force=force, file_re=f'^({names})$')
    except Exception as e:
        title = m.group(1) if (m := re.search(r'Error in notebook: (\S+)', str(e))) else None
        where = [f'nbs/{r}' for r in nbs if title and _h1(NBS/r) == title]
        raise DocsError(f"nbdev processing (show_doc) failed{' in ' + where[0] if where else ''}: {e}\n"
                        "(to render show_doc, nbdev runs the exported cells and every cell holding an import: "
                        "a cell that imports and also uses names from earlier cells fails there; "
                        "keep imports in cells of their own)") from e
    missing = [r for r in nbs if not (PROC/r).exists()]
    if missing: raise DocsError(f"nbdev processing wrote no _proc/ copy of {', '.join(map(str, missing))}")

# ---------------------------------------------------------------- step 2: execution
# Run in the notebook's kernel before its first cell: every HTML plotly renderer (including CDN ones such as
# `notebook_connected`, should a notebook name one) becomes one that emits a bare div + Plotly.newPlot call,
# with no plotly.js, no require.js and no MathJax from a CDN; pages load plotly.js from the site.
PLOTLY_SETUP = '''
try: import plotly.io as _pio
except ImportError: _pio = None
if _pio is not None:
    from plotly.io._base_renderers import MimetypeRenderer as _MR
    class _DocsRenderer(_MR):
        n = 0   # figure ids numbered, not random: same outputs give the same page (and mkdocs-jupyter's cache hits)
        def to_mimebundle(self, fig_dict):
            type(self).n += 1
            return {'text/html': _pio.to_html(fig_dict, include_plotlyjs=False, include_mathjax=False, full_html=False,
                                              default_width='100%', default_height=450, validate=False,
                                              div_id=f'rbnb-plotly-{type(self).n}')}
    for _n in ('notebook', 'notebook_connected', 'plotly_mimetype', 'jupyterlab', 'nteract', 'vscode', 'colab',
               'kaggle', 'azure', 'iframe', 'iframe_connected', 'cocalc', 'databricks', 'browser', 'sphinx_gallery'):
        _pio.renderers[_n] = _DocsRenderer()
    _pio.renderers.default = 'notebook'
    del _MR, _DocsRenderer, _n
'''

def exec_one(raw:Path, out:Path):
    "Child process: execute notebook `raw` like nbdev-test does, write {cell id: outputs} to `out`."
    from execnb.shell import CaptureShell
    from nbdev.process import NBProcessor
    from nbdev.config import get_config
    from nbdev.test import _skip_cell
    nb = NBProcessor(raw, rm_directives=False, process=True).nb
    skip = _skip_cell(nb, get_config().tst_flags.split(), None)
    os.chdir(raw.parent)
    k = CaptureShell(raw)
    k.run_cell(PLOTLY_SETUP)
    res = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != 'code' or skip(cell): continue
        print(f'cell {i+1} {cell.get("id", "")}', flush=True)
        k.cell(cell)
        if k.exc:
            src = cell.source if len(cell.source) < 2000 else cell.source[:2000] + '\n...'
            sys.stderr.write(f"cell #{i+1} (id {cell.get('id')}) raised:\n{src}\n{'-'*60}\n{k.prettytb(fname=raw)}\n")
            sys.exit(1)
        if cell.get('id'): res[cell.id] = json.loads(json.dumps(cell.outputs))
    out.write_text(json.dumps(res))
    print('done', flush=True)

def _shown_code_ids(proc_nb:dict)->set:
    "Ids of the code cells a processed notebook shows (show_doc cells excepted: nbdev already ran them)."
    return {c.get('id') for c in proc_nb['cells'] if c.get('cell_type') == 'code' and not c.get('has_sd')
            and not re.match(r'\s*show_doc\(', split_directives(_src(c))[1]) and _src(c).strip()}

def _env(jobs:int)->dict:
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', HF_DATASETS_OFFLINE='1',
               TOKENIZERS_PARALLELISM='false', PYTHONHASHSEED='0', PLOTLY_RENDERER='notebook')
    env.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // max(jobs, 1))))
    env.pop('IN_TEST', None)
    return env

def _shared_key()->str:
    "What every notebook's outputs depend on: the library, configs, recorded results, data files (size+mtime), this script."
    h = hashlib.sha256()
    for p in [Path(__file__), *sorted((ROOT/'rewardbench_nb').glob('*.py')), *sorted((ROOT/'configs').glob('*')),
              *sorted((ROOT/'benchmarks'/'results').glob('*.json'))]:
        if p.is_file(): h.update(p.read_bytes())
    for p in sorted((ROOT/'data').rglob('*')):
        if p.is_file(): st = p.stat(); h.update(f'{p.relative_to(ROOT)} {st.st_size} {st.st_mtime_ns}'.encode())
    return h.hexdigest()

def _exec_key(raw:Path, shared:str)->str:
    "What a notebook's outputs depend on: its bytes and `_shared_key()`."
    return hashlib.sha256(raw.read_bytes() + shared.encode()).hexdigest()

def execute(nbs:list[Path], jobs:int, timeout:float, nbs_dir:Path=NBS, outdir:Path=STAGE/'exec', cache:bool=True)->dict[Path, dict]:
    "Execute notebooks `nbs` (relative to `nbs_dir`) in parallel child processes, `timeout` seconds each; fail naming notebook and cell."
    outdir.mkdir(parents=True, exist_ok=True)
    todo, running, results, errors = list(nbs), [], {}, []
    env, shared = _env(jobs), _shared_key()
    while todo or running:
        while todo and len(running) < jobs:
            rel = todo.pop(0); tag = rel.with_suffix('').as_posix().replace('/', '__')
            out, log, err, keyf = (outdir/f'{tag}.{x}' for x in ('json', 'log', 'err', 'key'))
            key = _exec_key(nbs_dir/rel, shared)
            if cache and out.exists() and keyf.exists() and keyf.read_text() == key:
                results[rel] = json.loads(out.read_text()); print(f'  outputs of {nbs_dir.name}/{rel}: unchanged inputs, reused', flush=True)
                continue
            out.unlink(missing_ok=True); keyf.write_text(key)
            p = subprocess.Popen([sys.executable, __file__, '--exec-one', str(nbs_dir/rel), str(out)], env=env, cwd=ROOT,
                                 stdout=log.open('w'), stderr=err.open('w'))
            running.append((rel, p, time.time(), out, log, err))
        time.sleep(0.1)
        for item in list(running):
            rel, p, t0, out, log, err = item
            rc = p.poll()
            if rc is None and time.time() - t0 < timeout: continue
            running.remove(item)
            if rc is None:
                p.kill(); p.wait()
                last = [l for l in log.read_text().splitlines() if l.startswith('cell ')]
                where = ''
                if last: n, cid = (last[-1].split() + [''])[1:3]; where = f'in cell #{n} (id {cid})'
                errors.append(f"{nbs_dir.name}/{rel}: timed out after {timeout:.0f}s {where}".strip())
            elif rc != 0 or not out.exists():
                msg = err.read_text().strip() or f'exited with code {rc}'
                if len(msg) > 8000: msg = msg[:3000] + '\n[...]\n' + msg[-5000:]
                errors.append(f"{nbs_dir.name}/{rel}: {msg}")
            else: results[rel] = json.loads(out.read_text())
            print(f'  executed {nbs_dir.name}/{rel} ({time.time()-t0:.1f}s{"" if rel in results else ", FAILED"})', flush=True)
    if errors: raise DocsError('a notebook failed while executing for the docs:\n\n' + '\n\n'.join(errors))
    return results

# ---------------------------------------------------------------- step 3: clean notebooks for mkdocs-jupyter
_re_dir = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_re_attrs = re.compile(r'(\]\([^)\s]*\))\{[^}\n]*\}')             # pandoc/quarto `[text](url){attrs}`
_re_source = re.compile(r'\[source\]\(([^)\s]+)\)\{[^}\n]*\}')
_RAW_KEYS = {'cell_type', 'id', 'metadata', 'source', 'attachments'}

def _src(cell)->str:
    s = cell.get('source', '')
    return ''.join(s) if isinstance(s, list) else (s or '')

def split_directives(source:str)->tuple[dict, str]:
    "Quarto-style `#| key: value` lines opening a cell -> (directives, remaining source)."
    lines, dirs = source.splitlines(True), {}
    while lines and (m := _re_dir.match(lines[0])):
        dirs[m.group(1)] = m.group(2).lower() or 'true'; lines.pop(0)
    return dirs, ''.join(lines)

def clean_md(md:str)->str:
    "Turn quarto-only markdown (show_doc's `[source](url){...}`) into plain markdown/HTML."
    md = _re_source.sub(lambda m: f'<a class="rbnb-source" href="{html.escape(m.group(1))}">source</a>', md)
    return _re_attrs.sub(r'\1', md)

_re_code = re.compile(r'(```.*?```|~~~.*?~~~|(`+).*?\2)', re.S)          # code is never math
_re_math = re.compile(r'\$\$(.+?)\$\$|(?<![\\$\w])\$(?![\s$])([^$\n]+?)(?<![\s\\])\$(?![\w$])', re.S)

def tex_to_mathml(md:str)->str:
    "`$tex$` / `$$tex$$` in markdown -> MathML, which browsers draw with no script (no MathJax from a CDN)."
    try: from latex2mathml.converter import convert
    except ImportError:
        if '$' in md and not getattr(tex_to_mathml, 'warned', False):
            print('  note: latex2mathml is not installed: math stays as TeX on the site', flush=True); tex_to_mathml.warned = True
        return md
    def conv(m):
        block = m.group(1) is not None
        try: mml = convert((m.group(1) if block else m.group(2)).strip(), display='block' if block else 'inline')
        except Exception: return m.group(0)   # leave TeX it cannot read as it is
        return mml.replace('<mi>&#x0007E;</mi>', '<mo>&#x0223C;</mo>')   # \sim is a relation, not a tilde
    parts = _re_code.split(md)
    # split() returns text, code, inner-backticks, text, ...: convert only the text parts
    return ''.join(_re_math.sub(conv, p) if i % 3 == 0 else (p or '') for i, p in enumerate(parts) if i % 3 != 2)

def _frontmatter(cell)->dict|None:
    import yaml
    s = _src(cell).strip()
    if cell.get('cell_type') != 'raw' or not s.startswith('---'): return None
    try: return yaml.safe_load(s.strip('-\n')) or {}
    except yaml.YAMLError: return None

def _md_cell(source:str, cid:str)->dict: return {'cell_type': 'markdown', 'id': cid, 'metadata': {}, 'source': source}

# what plotly's CDN renderers leave in outputs saved by an author (cells the build skips keep theirs):
# the page loads plotly.js from the site instead, and plotly figures here need no MathJax
_re_cdn_scripts = re.compile(r'<script[^>]*>\s*import\s+["\']https://cdn\.plot\.ly/[^"\']*["\'];?\s*</script>'
                             r'|<script[^>]*\bsrc=["\']https://(?:cdn\.plot\.ly|cdnjs\.cloudflare\.com/ajax/libs/mathjax)/[^"\']*["\'][^>]*>\s*</script>')

def offline_html(text:str)->str:
    "Drop plotly.js / MathJax CDN script tags from an HTML output."
    return _re_cdn_scripts.sub('', text)

WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'
# what a page shows for a widget that offers no HTML of its own (its text/plain is a repr such as `VBox(children=...`)
WIDGET_NOTE = ('<p class="rbnb-widget-note"><em>An interactive widget: open this notebook in JupyterLab and run it '
               'to use it.</em></p>')

def _clean_output(o:dict)->dict:
    o = {k: v for k, v in o.items() if k in ('output_type', 'name', 'text', 'data', 'metadata', 'execution_count',
                                                'ename', 'evalue', 'traceback')}
    if o['output_type'] == 'execute_result': o['execution_count'] = None
    if o['output_type'] in ('display_data', 'execute_result'): o.setdefault('metadata', {})
    if 'data' in o and WIDGET_MIME in o['data']:
        # no widget manager on a static page: the widget's own HTML (a static snapshot, e.g. 04's scoring panel)
        # shows instead, or else a note; never the repr text
        o['data'] = {k: v for k, v in o['data'].items() if k != WIDGET_MIME}
        o['data'].setdefault('text/html', WIDGET_NOTE)
    if 'data' in o and 'text/html' in o['data']:
        h = o['data']['text/html']; o['data']['text/html'] = offline_html(''.join(h) if isinstance(h, list) else h)
    if 'data' in o and 'text/markdown' in o['data']:
        md = o['data']['text/markdown']; o['data']['text/markdown'] = clean_md(''.join(md) if isinstance(md, list) else md)
    return o

def docs_notebook(nb:dict, outputs:dict|None=None, math=lambda s: s)->dict:
    "A processed notebook (from _proc/) made plain nbformat for mkdocs-jupyter and nbconvert."
    cells = []
    for cell in nb['cells']:
        ct, cid = cell.get('cell_type'), cell.get('id') or f'c{len(cells)}'
        if 'source' not in cell and not cell.get('outputs'): continue
        if (fm := _frontmatter(cell)) is not None:
            title, desc = fm.get('title'), fm.get('description')
            if title: cells.append(_md_cell(f"# {title}" + (f"\n\n> {desc}" if desc else ''), cid))
            continue
        if ct == 'markdown':
            cells.append(_md_cell(math(clean_md(_src(cell))), cid)); continue
        if ct != 'code': cells.append({k: v for k, v in cell.items() if k in _RAW_KEYS}); continue
        dirs, src = split_directives(_src(cell))
        if dirs.get('include') == 'false': continue
        outs = (outputs or {}).get(cell.get('id'), cell.get('outputs', []))
        outs = [_clean_output(o) for o in outs]
        if cell.get('has_sd') or re.match(r'\s*show_doc\(', src):
            md = [''.join(o['data']['text/markdown']) if isinstance(o['data']['text/markdown'], list) else o['data']['text/markdown']
                  for o in outs if 'text/markdown' in o.get('data', {})]
            if md: cells.append(_md_cell(math('\n\n'.join(md)), cid)); continue
        if dirs.get('output') == 'false': outs = []
        tags = ['remove_input'] if dirs.get('echo') == 'false' else []
        if not src.strip() and not outs: continue
        for o in outs:
            if 'text/markdown' in o.get('data', {}): o['data']['text/markdown'] = math(o['data']['text/markdown'])
        cells.append({'cell_type': 'code', 'id': cid, 'metadata': {'tags': tags} if tags else {},
                      'source': src.strip('\n'), 'outputs': outs, 'execution_count': None})
    meta = {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'},
            'language_info': {'name': 'python'}}
    return {'cells': cells, 'metadata': meta, 'nbformat': 4, 'nbformat_minor': 5}

def relink(nb:dict, link)->dict:
    "Apply `link` (text -> text) to the markdown cells and the markdown/HTML outputs of a docs notebook."
    for c in nb['cells']:
        if c['cell_type'] == 'markdown': c['source'] = link(c['source'])
        for o in c.get('outputs', []):
            for mime in ('text/markdown', 'text/html'):
                if mime in o.get('data', {}): o['data'][mime] = link(o['data'][mime])
    return nb

def _slug(anchor:str)->str:
    "The id mkdocs-jupyter gives a heading with text `anchor` (nbdev's anchors are the lower-cased names)."
    from mkdocs_jupyter.utils import slugify
    return slugify(anchor).replace(' ', '-')

_re_heading = re.compile(r'^#{1,6}[ \t]+(.+?)[ \t#]*$', re.M)

def heading_ids(nb:dict)->set[str]:
    "Ids of the headings of a docs notebook's markdown cells (show_doc entries included)."
    ids = set()
    for c in nb['cells']:
        if c['cell_type'] != 'markdown': continue
        text = re.sub(r'```.*?```', '', c['source'], flags=re.S)
        for h in _re_heading.findall(text):
            h = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', h)   # [text](url) -> text
            ids.add(_slug(html.unescape(re.sub(r'<[^>]+>', '', h))))
    return ids

def site_linker(page:Path, stems:dict[str, Path], doc_url:str, anchors:dict[Path, set]|None=None):
    "Rewrite links in `page`: nbdev's absolute doc links and `x.ipynb` links (`stems`: notebook stem -> page) -> relative links."
    depth = len(page.parts) - 1
    def rel(target:Path, anchor:str|None):
        known = (anchors or {}).get(target)
        if anchor and known is not None:   # nbdev links members it has no entry for (`Cls.attr`): use the class's
            parts = anchor.split('.')
            anchor = next(('.'.join(parts[:i]) for i in range(len(parts), 0, -1) if _slug('.'.join(parts[:i])) in known), None)
        return '../' * depth + target.as_posix() + (f'#{_slug(anchor)}' if anchor else '')
    abs_re = re.compile(re.escape(doc_url.rstrip('/')) + r'/([\w./-]+\.html)(?:#([^)"\s\'>]*))?')
    nb_re = re.compile(r'(?<=[("\'])((?:\.\./|\./)?[\w/-]+)\.ipynb(?:#([^)"\s\'>]*))?(?=[)"\'])')
    def sub(text:str)->str:
        text = abs_re.sub(lambda m: rel(Path(m.group(1)), m.group(2)), text)
        def nb(m):
            hit = stems.get(Path(m.group(1)).name)
            return rel(hit, m.group(2)) if hit else m.group(0)
        return nb_re.sub(nb, text)
    return sub

# ---------------------------------------------------------------- README
def readme_text(proc_nb:dict, doc_url:str)->str:
    "README.md from the processed index notebook: nbconvert markdown, page links made absolute doc-site links."
    from nbconvert.exporters import MarkdownExporter
    import nbformat
    nb = nbformat.from_dict(docs_notebook(proc_nb))
    md, _ = MarkdownExporter().from_notebook_node(nb)
    # links to site pages (`core.html`) would 404 on a code host: point them at the documentation site
    md = re.sub(r'\]\((?!https?:|#|/|mailto:)([\w./-]+\.html(?:#[^)\s]*)?)\)', lambda m: f']({doc_url.rstrip("/")}/{m.group(1)})', md)
    md = md.replace('](images/', '](nbs/images/')  # pictures live beside the notebooks; README sits one level up
    return md.strip() + '\n'

def doc_url()->str:
    from nbdev.config import get_config
    c = get_config(); return c.doc_host.rstrip('/') + '/' + c.doc_baseurl.strip('/')

def readme_from_source()->str:
    "README text built straight from nbs/index.ipynb with nbdev's processors (no _proc/ needed)."
    from fastcore.nbio import read_nb, nb2str
    from nbdev.processors import FilterDefaults
    nb = read_nb(NBS/'index.ipynb'); os.environ['IN_TEST'] = '1'
    try: FilterDefaults()(nb)
    finally: os.environ.pop('IN_TEST', None)
    return readme_text(json.loads(nb2str(nb)), doc_url())  # as proc_nbs writes it

# ---------------------------------------------------------------- step 4: mkdocs
def _title(nb:dict, rel:Path)->str:
    for c in nb['cells']:
        if c['cell_type'] == 'markdown' and (m := re.match(r'#\s+(.+)', _src(c).strip())): return m.group(1).strip()
    return rel.stem

def mkdocs_config(nav:list)->dict:
    import tomllib
    desc = tomllib.loads((ROOT/'pyproject.toml').read_text())['project'].get('description', '')
    return {
        'site_name': 'rewardbench_nb', 'site_description': desc,
        'docs_dir': str(DOCS_SRC), 'site_dir': str(SITE), 'use_directory_urls': False,
        'theme': {'name': 'material', 'font': False, 'custom_dir': str(ASSETS/'overrides'),
                  'features': ['navigation.sections', 'navigation.top', 'toc.follow', 'content.code.copy'],
                  'palette': {'scheme': 'default', 'primary': 'indigo', 'accent': 'indigo'}},
        'extra_css': ['assets/rbnb.css'],
        'markdown_extensions': [{'toc': {'permalink': True}}, 'admonition', 'tables'],
        'plugins': ['search', {'mkdocs-jupyter': {
            'include': ['*.ipynb'], 'execute': False, 'no_prompt': True, 'include_requirejs': False,
            'include_source': False, 'ignore_h1_titles': True, 'toc_depth': 3, 'custom_mathjax_url': '', 'cache': True,
            'cache_dir': str(_cache_dir()), 'remove_tag_config': {'remove_input_tags': ['remove_input']}}}],
        'hooks': [str(ASSETS/'hooks.py')],
        'nav': nav, 'validation': {'nav': {'omitted_files': 'ignore'}},
    }

def _cache_dir()->Path:
    "mkdocs-jupyter's page cache, one per version of this script and the hooks (its key covers neither)."
    h = hashlib.sha256(Path(__file__).read_bytes() + (ASSETS/'hooks.py').read_bytes()).hexdigest()[:12]
    for old in (STAGE/'cache').glob('*'):
        if old.name != h: shutil.rmtree(old, ignore_errors=True)
    return STAGE/'cache'/h

def build_site(pages:list[tuple[Path, Path, str]]):
    "Write mkdocs.yml for `pages` (notebook, page, title) and build _site/."
    import yaml
    top, groups = [], {}
    for rel, page, title in pages:
        entry = {title: page.with_suffix('.ipynb').as_posix()}
        if len(rel.parts) == 1: top.append(entry)
        else: groups.setdefault(rel.parts[0].replace('_', ' ').capitalize(), []).append(entry)
    nav = top + [{k: v} for k, v in groups.items()]
    (DOCS_SRC/'assets'/'javascripts').mkdir(parents=True, exist_ok=True)
    import plotly
    shutil.copy2(Path(plotly.__file__).parent/'package_data'/'plotly.min.js', DOCS_SRC/PLOTLY_ASSET)
    shutil.copy2(ASSETS/'rbnb.css', DOCS_SRC/'assets'/'rbnb.css')
    if (NBS/'images').is_dir(): shutil.copytree(NBS/'images', DOCS_SRC/'images', dirs_exist_ok=True)  # pictures in prose
    cfg = STAGE/'mkdocs.yml'
    cfg.write_text(yaml.safe_dump(mkdocs_config(nav), sort_keys=False))
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--clean', '-q', '-f', str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ, NO_MKDOCS_2_WARNING='1'))
    if r.returncode: raise DocsError(f"mkdocs build failed:\n{r.stdout}\n{r.stderr}")
    for line in (r.stdout + r.stderr).splitlines():
        if 'WARNING' in line: print('  mkdocs:', line.strip(), flush=True)

_re_cdn_plotly = re.compile(r'https://cdn\.plot\.ly/plotly-[\w.-]*?(?:\.min)?\.js')
_re_tag = re.compile(r'<(script|link)\b[^>]*>', re.I)
_re_url = re.compile(r'\b(?:src|href)=["\']((?:https?:)?//[^"\']+)', re.I)

def finish_site():
    "Point any plotly CDN script at the local copy; fail on any other script or stylesheet from the network."
    bad = []
    for f in SITE.rglob('*.html'):
        text = f.read_text(encoding='utf-8')
        local = '../' * (len(f.relative_to(SITE).parts) - 1) + PLOTLY_ASSET
        new = _re_cdn_plotly.sub(local, text).replace('<script src=""> </script>', '')
        if new != text: f.write_text(new, encoding='utf-8')
        for m in _re_tag.finditer(new):
            tag, url = m.group(0), _re_url.search(m.group(0))
            if not url: continue
            if m.group(1).lower() == 'link' and not re.search(r'rel=["\']?(stylesheet|preload|modulepreload|icon)', tag, re.I): continue
            bad.append(f"{f.relative_to(SITE)}: {url.group(1)}")
    if bad: raise DocsError("pages load scripts/stylesheets from the network (the site must work offline):\n  " + '\n  '.join(bad))

# ---------------------------------------------------------------- main
def build(only:str|None=None, jobs:int=2, timeout:float=900., cache:bool=True)->float:
    t0 = time.time()
    nbs = notebooks(only)
    print(f'docs: {len(nbs)} notebooks: {", ".join(r.with_suffix("").as_posix() for r in nbs)}', flush=True)
    process(nbs, jobs); print(f'  nbdev processing done ({time.time()-t0:.1f}s)', flush=True)
    # a notebook whose visible cells are all markdown (e.g. an index) has nothing to show: no need to run it
    procs = {rel: json.loads((PROC/rel).read_text(encoding='utf-8')) for rel in nbs}
    outputs = execute([r for r in nbs if _shown_code_ids(procs[r])], jobs, timeout, cache=cache)
    print(f'  notebooks executed ({time.time()-t0:.1f}s)', flush=True)
    import nbformat
    url = doc_url()
    if DOCS_SRC.exists(): shutil.rmtree(DOCS_SRC)
    DOCS_SRC.mkdir(parents=True)
    stems = {r.stem: page_of(r) for r in all_notebooks()}
    docs = {rel: docs_notebook(procs[rel], outputs.get(rel), tex_to_mathml) for rel in nbs}
    anchors = {page_of(rel): heading_ids(nb) for rel, nb in docs.items()}
    pages = []
    for rel, nb in docs.items():
        page = page_of(rel); proc = procs[rel]
        relink(nb, site_linker(page, stems, url, anchors))
        node = nbformat.from_dict(nb)
        try: nbformat.validate(node)
        except nbformat.ValidationError as e: raise DocsError(f"nbs/{rel}: cleaned notebook is not valid nbformat: {e.message}")
        dst = DOCS_SRC/page.with_suffix('.ipynb'); dst.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(node, dst)
        pages.append((rel, page, 'Overview' if rel == Path('index.ipynb') else _title(nb, rel)))
        if rel == Path('index.ipynb'):
            (ROOT/'README.md').write_text(readme_text(proc, url), encoding='utf-8')
            print('  README.md written from nbs/index.ipynb', flush=True)
    build_site(pages); finish_site()
    print(f'  mkdocs done ({time.time()-t0:.1f}s)', flush=True)
    took = time.time() - t0
    print(f'docs: built {SITE.relative_to(ROOT)}/ ({len(pages)} pages) in {took:.1f}s', flush=True)
    return took

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--only', help=f'comma-separated notebook names or globs (default: ${SEL_ENV} or all)')
    ap.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1), help='notebooks executed at once')
    ap.add_argument('--timeout', type=float, default=float(os.environ.get(TIMEOUT_ENV, 900)), help='seconds per notebook')
    ap.add_argument('--rerun', action='store_true', help='execute every notebook even when its inputs did not change')
    ap.add_argument('--check-readme', action='store_true', help='only check README.md against nbs/index.ipynb')
    ap.add_argument('--readme', action='store_true', help='only write README.md from nbs/index.ipynb (no site build)')
    ap.add_argument('--exec-one', nargs=2, metavar=('NB', 'OUT'), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    os.chdir(ROOT)
    if a.exec_one: return exec_one(Path(a.exec_one[0]), Path(a.exec_one[1]))
    try:
        if a.readme:
            (ROOT/'README.md').write_text(readme_from_source(), encoding='utf-8'); print('README.md written'); return
        if a.check_readme:
            want = readme_from_source()
            if (ROOT/'README.md').read_text(encoding='utf-8') != want:
                sys.exit("README.md is stale: it is generated from nbs/index.ipynb; run `make docs` and commit README.md")
            print('README.md is up to date'); return
        build(a.only, a.jobs, a.timeout, cache=not a.rerun)
    except DocsError as e: sys.exit(f"docs build FAILED: {e}")

if __name__ == '__main__': main()
