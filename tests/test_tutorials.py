"Every tutorial in nbs/tutorials keeps its promises: what it teaches up front, checked findings, a summary, exercises with solutions."
import json, re
from pathlib import Path
import pytest

TUT = Path(__file__).resolve().parents[1]/'nbs'/'tutorials'
TUTORIALS = sorted(p.stem for p in TUT.glob('[0-9][0-9]_*.ipynb') if not p.stem.endswith('_solutions'))
MIN_CHECKS = 5   # asserted findings per tutorial
TEST_CALL = re.compile(r'\b(test_eq|test_ne|test_close|test_fail|test_is|expect_fail)\b|^\s*assert\b', re.M)

def cells(path:Path)->list:
    "(kind, source) of every cell of the notebook at `path`."
    return [(c['cell_type'], ''.join(c['source'])) for c in json.loads(path.read_text(encoding='utf-8'))['cells']]

def section(cs:list, title:str)->str:
    "Markdown text of the `## title` section (up to the next H2)."
    md = '\n'.join(s for k, s in cs if k == 'markdown')
    m = re.search(rf'^##\s+{title}\s*$(.*?)(?=^##\s|\Z)', md, re.M | re.S)
    return m.group(1) if m else ''

def exercises(cs:list)->int:
    "Number of exercises: the numbered items of the Exercises section."
    return len(re.findall(r'^\d+\.\s', section(cs, 'Exercises'), re.M))

def test_the_four_tutorials_are_there():
    expected = ['01_ratings_to_reward', '02_train_calibrate', '03_evaluate', '04_overoptimization']
    assert set(expected) <= set(TUTORIALS), f'missing tutorials: {sorted(set(expected) - set(TUTORIALS))}'

@pytest.mark.parametrize('name', TUTORIALS)
def test_opens_with_title_objectives_prerequisites_and_time(name):
    cs = cells(TUT/f'{name}.ipynb')
    assert cs[0][0] == 'markdown' and re.match(r'#\s+\S', cs[0][1]), f'{name}: the first cell is not an H1 title'
    head = '\n'.join(s for k, s in cs[:4] if k == 'markdown')
    for what in ('Learning objectives', 'Prerequisites', 'Expected time'):
        assert what in head, f'{name}: no "{what}" in the opening cells'

@pytest.mark.parametrize('name', TUTORIALS)
def test_ends_with_summary_and_exercises(name):
    cs = cells(TUT/f'{name}.ipynb')
    assert section(cs, 'Summary').strip(), f'{name}: no "## Summary" section'
    assert exercises(cs) >= 2, f'{name}: fewer than 2 numbered exercises under "## Exercises"'
    heads = [s.split('\n')[0] for k, s in cs if k == 'markdown' and s.startswith('## ')]
    assert heads[-2:] == ['## Summary', '## Exercises'], f'{name}: the last sections are {heads[-2:]}'

@pytest.mark.parametrize('name', TUTORIALS)
def test_findings_are_asserted_and_introduced(name):
    cs = cells(TUT/f'{name}.ipynb')
    checks = [i for i, (k, s) in enumerate(cs) if k == 'code' and TEST_CALL.search(s)]
    assert len(checks) >= MIN_CHECKS, f'{name}: {len(checks)} cells with asserted checks, expected {MIN_CHECKS}+'
    bare = [cs[i][1].split('\n')[0] for i in checks if cs[i - 1][0] != 'markdown']
    assert not bare, f'{name}: checks with no sentence before them, starting: {bare}'

@pytest.mark.parametrize('name', TUTORIALS)
def test_every_exercise_has_a_solution(name):
    n = exercises(cells(TUT/f'{name}.ipynb'))
    sol = TUT/f'{name}_solutions.ipynb'
    if sol.exists():
        sc = cells(sol)
        found = {int(m) for k, s in sc if k == 'markdown' for m in re.findall(r'^###\s+Exercise\s+(\d+)', s, re.M)}
        assert found == set(range(1, n + 1)), f'{sol.name}: solutions to exercises {sorted(found)}, expected 1..{n}'
        assert any(k == 'code' and TEST_CALL.search(s) for k, s in sc), f'{sol.name}: no solution is checked'
    else:
        ex = section(cells(TUT/f'{name}.ipynb'), 'Exercises')
        assert ex.count('<details>') >= n, f'{name}: {n} exercises, {ex.count("<details>")} collapsed solutions'

@pytest.mark.parametrize('path', sorted(TUT.glob('*.ipynb')), ids=lambda p: p.stem)
def test_reads_as_a_lesson_and_uses_only_the_public_api(path):
    cs = cells(path)
    code = [s for k, s in cs if k == 'code']
    assert (len(cs) - len(code)) / len(cs) >= 0.40, f'{path.name}: under 40% of cells are prose'
    assert not [l for s in code for l in s.split('\n') if len(l) > 120], f'{path.name}: code lines over 120 characters'
    src = '\n'.join(code)
    assert '#| default_exp' not in src and '#| export' not in src, f'{path.name}: tutorials export nothing'
    assert not re.search(r'from rewardbench_nb\.\w+ import [^\n]*\b_\w', src), f'{path.name}: imports a private name'
    assert 'notebook_connected' not in src, f'{path.name}: plotly renderer that needs a CDN'
    assert 'benchmarks/' not in src, f'{path.name}: reads recorded benchmark results'
    widths = [int(w) for w in re.findall(r'\bwidth\s*=\s*(\d+)', src)]
    assert all(w <= 800 for w in widths), f'{path.name}: figure width {max(widths)} px over 800'
    for s in code:   # imports in cells of their own
        lines = [l for l in s.split('\n') if l.strip() and not l.startswith('#')]
        if any(re.match(r'(import|from \S+ import) ', l) for l in lines):
            assert all(re.match(r'(import|from \S+ import) |\s', l) for l in lines), f'{path.name}: mixed import cell'
