"The reference notebooks in TAUGHT read as lessons: enough prose, small exported cells, short lines, tests introduced."
import ast, json, re
from pathlib import Path
import pytest

NBS = Path(__file__).resolve().parents[1]/'nbs'
TAUGHT = ['00_core', '00a_precision', '00b_text', '00c_simulation', '00d_resampling', '01_data', '02_curation',
          '03_agreement', '03a_stats', '04_scoring', '05_reward_model', '05a_rm_training', '05b_implicit_reward',
          '06_calibration', '07_evaluation', '08_policy', '09_rlhf', '10_overoptimization', '11_report', '90_cli',
          '98_notation', '99_traceability']
TEST_CALL = re.compile(r'\b(test_eq|test_ne|test_close|test_fail|test_is|test_warns|expect_fail)\b|^\s*assert\b', re.M)

def cells(name:str)->list:
    "(kind, directives, body) of every cell of notebook `name`."
    out = []
    for c in json.loads((NBS/f'{name}.ipynb').read_text(encoding='utf-8'))['cells']:
        text = ''.join(c['source'])
        directives = [l for l in text.split('\n') if l.startswith('#|')]
        out.append((c['cell_type'], ' '.join(directives), '\n'.join(l for l in text.split('\n') if not l.startswith('#|'))))
    return out

def definitions(body:str)->list:
    "Names a cell defines at its top level: functions, classes and assigned names."
    names = []
    for node in ast.parse(body).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names += [e.id for e in (t.elts if isinstance(t, ast.Tuple) else [t]) if isinstance(e, ast.Name)]
    return names

@pytest.mark.parametrize('name', TAUGHT)
def test_at_least_40_percent_of_cells_are_prose(name):
    kinds = [k for k, _, _ in cells(name)]
    assert kinds.count('markdown') / len(kinds) >= 0.40, f"{name}: {kinds.count('markdown')} of {len(kinds)} cells are prose"

CHAPTERS = [n for n in TAUGHT if n[:2] <= '10']  # the lessons, 00-10

@pytest.mark.parametrize('name', CHAPTERS)
def test_a_chapter_ends_with_its_summary(name):
    "The last cell of a chapter sums it up: what the reader learned, the pitfalls, where it goes next."
    kind, _, body = cells(name)[-1]
    assert kind == 'markdown' and body.startswith('## Summary'), f"{name}: the last cell is not a '## Summary' cell"
    missing = [part for part in ('What you learned', 'Pitfalls', 'Where next') if f'**{part}**' not in body]
    assert not missing, f"{name}: the summary lacks {missing}"

@pytest.mark.parametrize('name', CHAPTERS)
def test_a_third_of_a_chapter_is_prose(name):
    "At least a third of a chapter's characters are prose: a lesson, not an engineering log."
    size = {k: sum(len(b) for kind, _, b in cells(name) if kind == k) for k in ('markdown', 'code')}
    share = size['markdown'] / (size['markdown'] + size['code'])
    assert share >= 1/3, f"{name}: {share:.0%} of its characters are prose, expected at least a third"

@pytest.mark.parametrize('name', TAUGHT)
def test_no_exported_cell_defines_three_things(name):
    big = [definitions(b) for k, d, b in cells(name) if k == 'code' and 'export' in d and len(definitions(b)) >= 3]
    assert not big, f"{name}: exported cells with 3+ definitions: {big}"

@pytest.mark.parametrize('name', TAUGHT)
def test_no_code_line_over_120_characters(name):
    long = [l for k, _, b in cells(name) if k == 'code' for l in b.split('\n') if len(l) > 120]
    assert not long, f"{name}: {len(long)} code lines over 120 characters, e.g. {long[0][:80]!r}"

@pytest.mark.parametrize('name', TAUGHT)
def test_a_sentence_comes_before_every_test_cell(name):
    cs = cells(name)
    bare = [b.split('\n')[0] for i, (k, d, b) in enumerate(cs)
            if k == 'code' and 'export' not in d and TEST_CALL.search(b) and (i == 0 or cs[i-1][0] != 'markdown')]
    assert not bare, f"{name}: test cells with no sentence before them, starting: {bare}"

@pytest.mark.parametrize('name', TAUGHT)
def test_no_unfenced_code_in_prose(name):
    "Code shown in a markdown cell sits in a fenced block; a bare `def` line is a stale copy of code."
    stale = []
    for k, _, b in cells(name):
        if k != 'markdown': continue
        unfenced = re.sub(r'```.*?```', '', b, flags=re.S)
        stale += [l for l in unfenced.split('\n') if re.match(r'\s*(def |class |return |import |from \S+ import )', l)]
    assert not stale, f"{name}: unfenced code in prose: {stale[:3]}"

@pytest.mark.parametrize('path', sorted(NBS.rglob('*.ipynb')), ids=lambda p: str(p.relative_to(NBS)))
def test_every_notebook_names_its_kernel(path):
    "JupyterLab asks for a kernel on every open of a notebook that names none."
    spec = json.loads(path.read_text(encoding='utf-8'))['metadata'].get('kernelspec', {})
    assert spec.get('name') == 'python3' and spec.get('language') == 'python', f'{path.name}: kernelspec {spec}'

@pytest.mark.parametrize('path', sorted(NBS.rglob('*.ipynb')), ids=lambda p: str(p.relative_to(NBS)))
def test_no_figure_needs_the_network(path):
    "A CDN renderer leaves a blank box in an offline JupyterLab: figures use the default renderer."
    text = path.read_text(encoding='utf-8')
    assert not re.search(r'renderer\s*=\s*\\?["\'](notebook_connected|cdn|iframe_connected)', text), path.name
