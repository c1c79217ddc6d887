"Evaluation: the public scoring API, every score-file mistake, the stage from the command line, two processes = one."
import contextlib, hashlib, html, io, json, os, subprocess, sys, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest
from rewardbench_nb import cli
from rewardbench_nb import evaluation as ev
from rewardbench_nb.core import DataError, RBError, write_text
from rewardbench_nb.resampling import percentile_interval
from rewardbench_nb.evaluation import (BENCHMARKS, JOIN_RULE, STAGE, ClaimWarning, EvalConfig, Resampler, Scoreboard,
                                       accuracy_from_scores, aggregate, best_of_n_accuracy, build_suite, header_claims,
                                       length_scores, outcomes, output_names, random_outcomes, read_scores,
                                       rmbench_accuracy, section_scores, write_scores)

ROOT = Path(__file__).resolve().parents[1]
RBNB = [str(Path(sys.executable).parent/'rbnb')]
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}
QUICK = EvalConfig()

def quick_suite():
    "The suite `rbnb eval --quick` builds when no earlier stage ran (seed 0)."
    c = QUICK
    return build_suite(c.benchmarks, {}, c.local, 0, 1500, c.campaign_items, (c.train_set, c.fit_split), c.squality,
                       c.quick_rows)

@pytest.fixture(scope='module')
def suite(): return quick_suite()

@pytest.fixture(scope='module')
def score_file(suite, tmp_path_factory):
    "A valid score file: the 'longer' rule's scores of every benchmark row, under a model name."
    ms = length_scores(suite); ms.name = 'length model'
    return write_scores(tmp_path_factory.mktemp('scores')/'length.jsonl', suite, ms)

# --- the public API ------------------------------------------------------------------------------

def test_public_api_semantics():
    df = pd.DataFrame(dict(subset=['a', 'a', 'a', 'b'], score_chosen=[1., 2., 0., 5.], score_rejected=[0., 2., 1., 4.]))
    assert accuracy_from_scores(df) == {'a': 1/3, 'b': 1.0}                      # the tie (2 vs 2) is wrong
    s = section_scores({'llmbar-natural': 0.9, 'llmbar-adver-neighbor': 0.5, 'alpacaeval-easy': 1.0})
    assert set(s) == {'Chat', 'Chat Hard', 'Safety', 'Reasoning', 'overall'}
    assert abs(s['Chat Hard'] - (0.9 * 100 + 0.5 * 134) / 234) < 1e-12
    assert abs(s['overall'] - (1.0 + s['Chat Hard']) / 2) < 1e-12
    bon = best_of_n_accuracy([1., 1., 0.], [[0., 0., 0.], [1., 1., 0.], [1., 0., 0.]])
    assert bon == pytest.approx((1 + 1/3 + 0) / 3)
    r = rmbench_accuracy(np.ones((4, 3)), np.zeros((4, 3)))
    assert r == dict(hard=1., normal=1., easy=1., avg=1.)

def test_section_scores_math_prm_weight():
    "math-prm (447 pairs) weighs as 984 against 164 per code subset."
    s = section_scores({'math-prm': 1.0, 'hep-go': 0.0})
    assert abs(s['Reasoning'] - 984 / (984 + 164)) < 1e-12

def test_rmbench_matches_reference_on_ties():
    "Ties are wrong in every cell, as in RM-Bench's compute_accuracy (strict >)."
    c, r = np.array([[1., 2., 3.]]), np.array([[1., 2., 3.]])
    assert rmbench_accuracy(c, r) == dict(hard=0., normal=0., easy=1., avg=1/3)

# --- statistics ----------------------------------------------------------------------------------

def test_benchmark_interval_equals_a_brute_force_stratified_bootstrap(suite):
    "The vectorised resamples of a benchmark score equal an explicit loop over the same draws."
    import zlib
    ex = suite.rows('bench'); oc = outcomes(suite.examples, length_scores(suite))
    sb = Scoreboard(suite, {'longer': oc, 'random': random_outcomes(suite.examples)}, n_boot=50, seed=3)
    b = BENCHMARKS['rm-bench']; rows = ex[ex.benchmark == 'rm-bench']
    subs = list(dict.fromkeys(rows.subset))
    vals = {s: oc.loc[rows.index[rows.subset == s], 'correct'].to_numpy() for s in subs}
    rng = lambda s: np.random.default_rng([3, zlib.crc32(s.encode())])
    draws = {s: rng(s).integers(0, len(v), (50, len(v))) for s, v in vals.items()}
    n = {s: len(vals[s]) for s in subs}
    loop = [aggregate(b, {s: vals[s][draws[s][k]].mean() for s in subs}, n) for k in range(50)]
    np.testing.assert_allclose(sb.bench['rm-bench'][1][:, 0], loop, atol=1e-12)

def test_resampler_handles_missing_outcomes():
    V = np.array([[1., np.nan], [0., 1.], [1., 1.]])
    p, bt = Resampler(['s'] * 3, n_boot=20, seed=0).means(V)['s']
    np.testing.assert_allclose(p, [2/3, 1.0])
    assert np.all((bt[:, 1] == 1) | np.isnan(bt[:, 1]))
    lo, hi = percentile_interval(bt)
    assert lo[0] <= p[0] <= hi[0]

# --- score files: every mistake is a clear error naming file, line and field -----------------------

def lines_of(path): return Path(path).read_text().splitlines()

def first_row(lines, kind=None, suite=None):
    "(line index, record) of the first row (of a benchmark of `kind`)."
    for i, l in enumerate(lines[1:], 1):
        r = json.loads(l)
        if kind is None or suite.examples.set_index('id').at[r['id'], 'kind'] == kind: return i, r
    raise AssertionError(kind)

def rewrite(tmp_path, lines, i=None, rec=None, drop=False, extra=()):
    out = list(lines)
    if i is not None: out[i:i + 1] = [] if drop else [rec if isinstance(rec, str) else json.dumps(rec)]
    p = tmp_path/'bad.jsonl'; p.write_text('\n'.join([*out, *extra]) + '\n')
    return p

def expect(path, suite, *parts):
    with pytest.raises(DataError) as e: read_scores(path, suite)
    for part in parts: assert part in str(e.value), str(e.value)
    return str(e.value)

def test_valid_file_reads_back(suite, score_file):
    ms = read_scores(score_file, suite)
    assert ms.name == 'length model' and ms.scored[suite.rows('bench').index].all()

def test_not_json(suite, score_file, tmp_path):
    p = rewrite(tmp_path, lines_of(score_file), 3, '{"id": "x", ')
    expect(p, suite, 'bad.jsonl:4:', 'not valid JSON')

def test_missing_id(suite, score_file, tmp_path):
    L = lines_of(score_file); i, r = first_row(L); r.pop('id')
    expect(rewrite(tmp_path, L, i, r), suite, f'bad.jsonl:{i + 1}:', "field 'id'", "missing field 'id'")

def test_duplicate_id(suite, score_file, tmp_path):
    L = lines_of(score_file)
    p = rewrite(tmp_path, L, extra=[L[2]])
    expect(p, suite, f'bad.jsonl:{len(L) + 1}:', "field 'id'", 'duplicate id', 'first at line 3')

def test_unknown_id(suite, score_file, tmp_path):
    L = lines_of(score_file); i, r = first_row(L)
    expect(rewrite(tmp_path, L, i, r | dict(id='llmbar-natural/99999')), suite, f'bad.jsonl:{i + 1}:', "field 'id'",
           "unknown id 'llmbar-natural/99999'")

def test_ids_not_matching_the_rows(suite, score_file, tmp_path):
    "An id that exists but whose subset, benchmark or texts differ from what the file says: misaligned ids."
    L = lines_of(score_file); i, r = first_row(L)
    other = 'llmbar-adver-manual' if r['subset'] != 'llmbar-adver-manual' else 'llmbar-natural'
    expect(rewrite(tmp_path, L, i, r | dict(subset=other)), suite, f'bad.jsonl:{i + 1}:', "field 'subset'",
           'do not match the benchmark')
    bench = 'rm-bench' if r['benchmark'] != 'rm-bench' else 'llmbar'
    expect(rewrite(tmp_path, L, i, r | dict(benchmark=bench)), suite, "field 'benchmark'")
    expect(rewrite(tmp_path, L, i, r | dict(sha256='0' * 16)), suite, f'bad.jsonl:{i + 1}:', "field 'sha256'",
           'scored on other texts')

def test_shifted_ids_are_caught_by_the_text_hash(suite, score_file, tmp_path):
    "The #273 failure: every id moved one row down. Subsets stay the same, the hashes do not."
    L = lines_of(score_file); recs = [json.loads(l) for l in L[1:]]
    same = [r for r in recs if r['subset'] == recs[0]['subset']]
    shifted = [json.dumps(a | dict(id=b['id'])) for a, b in zip(same, same[1:] + same[:1])]
    rest = [json.dumps(r) for r in recs if r['subset'] != recs[0]['subset']]
    expect(rewrite(tmp_path, [L[0], *shifted, *rest]), suite, "field 'sha256'")

@pytest.mark.parametrize('value,msg', [(float('nan'), 'got nan'), ('0.5', "got '0.5'"), (None, 'got None'),
                                       (True, 'got True'), (float('inf'), 'got inf')])
def test_bad_score_values(suite, score_file, tmp_path, value, msg):
    L = lines_of(score_file); i, r = first_row(L, 'pairs', suite)
    txt = json.dumps(r | dict(scores_chosen=value))
    expect(rewrite(tmp_path, L, i, txt), suite, f'bad.jsonl:{i + 1}:', "field 'scores_chosen'",
           'expected finite numbers', msg)

def test_missing_scores_field(suite, score_file, tmp_path):
    L = lines_of(score_file); i, r = first_row(L, 'pairs', suite); r.pop('scores_rejected')
    expect(rewrite(tmp_path, L, i, r), suite, f'bad.jsonl:{i + 1}:', "missing field 'scores_rejected'")

def test_wrong_number_of_candidates(suite, score_file, tmp_path):
    L = lines_of(score_file); i, r = first_row(L, 'rmbench', suite)
    expect(rewrite(tmp_path, L, i, r | dict(scores_chosen=r['scores_chosen'][:2])), suite, f'bad.jsonl:{i + 1}:',
           "field 'scores_chosen'", 'expected 3 score(s) (one per style: concise, detailed plain, detailed markdown)',
           'got 2')
    j, q = first_row(L, 'pairs', suite)
    expect(rewrite(tmp_path, L, j, q | dict(scores_rejected=[1.0, 2.0])), suite, f'bad.jsonl:{j + 1}:',
           'expected 1 score(s)')

def test_empty_subset_name(suite, score_file, tmp_path):
    L = lines_of(score_file); i, r = first_row(L)
    expect(rewrite(tmp_path, L, i, r | dict(subset='')), suite, f'bad.jsonl:{i + 1}:', "field 'subset'",
           'expected a non-empty subset name')

def test_missing_rows_of_a_subset(suite, score_file, tmp_path):
    L = lines_of(score_file); i, r = first_row(L)
    msg = expect(rewrite(tmp_path, L, i, drop=True), suite, 'bad.jsonl', f"subset {r['subset']!r}", 'have no scores',
                 r['id'])
    assert 'sample' in msg

def test_a_declared_sample_may_leave_rows_out(suite, score_file, tmp_path):
    L = lines_of(score_file); i, r = first_row(L)
    head = json.loads(L[0]) | dict(sample=True)
    out = [json.dumps(head), *L[1:i], *L[i + 1:]]
    ms = read_scores(rewrite(tmp_path, out), suite)
    assert not ms.scored[suite.examples.index[suite.examples.id == r['id']][0]]

def test_empty_and_missing_files(suite, score_file, tmp_path):
    expect(rewrite(tmp_path, []), suite, 'no scores')
    expect(rewrite(tmp_path, [lines_of(score_file)[0]]), suite, 'no scores')
    expect(tmp_path/'nope.jsonl', suite, 'nope.jsonl', 'score file not found')

def test_scores_of_left_out_rows_only(suite, score_file, tmp_path):
    "A file that scores nothing that takes part is an error, not an empty evaluation."
    L = lines_of(score_file)
    other = suite.examples.copy(); other['leaked'] = True
    from rewardbench_nb.evaluation import Suite
    with pytest.raises(DataError, match='no scores for any row that takes part'):
        read_scores(score_file, Suite(other, suite.benchmarks))

# --- the stage from the command line ---------------------------------------------------------------

def rbnb(*args, cwd=ROOT, timeout=900):
    return subprocess.run([*RBNB, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)

def test_cli_eval_from_a_score_file(score_file, tmp_path):
    opts = ['--quick', '--set', 'evaluation.untrained_baseline=false', '--set', 'evaluation.n_boot=200']
    r = rbnb('eval', '--scores', score_file, *opts, '--runs-dir', tmp_path, '--run-id', 'a')
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path/'a'/'eval'
    table = pd.read_csv(out/'table.csv', index_col=0)
    assert list(table.index) == ['length model', 'longer', 'shorter', 'position', 'random',
                                 'solved by length? (length model)']
    assert list(table.columns) == [*BENCHMARKS, 'mean']
    assert table.loc['length model'].tolist() == table.loc['longer'].tolist()   # the file holds the 'longer' scores
    rb = json.loads((out/'results'/'length_model.json').read_text())
    assert rb['model'] == 'length model' and 0 <= rb['llmbar-natural'] <= 1 and 'protocol' in rb
    assert (out/'figures'/'scoreboard.plotly.json').is_file() and (tmp_path/'a'/'report.html').stat().st_size > 1e6
    assert json.loads((out/'report.json').read_text())['models'] == ['length model']
    m = json.loads((tmp_path/'a'/'manifest.json').read_text())
    assert m['status'] == 'complete' and str(score_file) in m['inputs']
    assert set(m['records']['timings']['eval']) >= {'suite', 'shift', 'statistics'}
    assert 'timings' not in json.loads((out/'report.json').read_text())
    # same seed, same file -> the same bytes in every file under eval/
    r2 = rbnb('eval', '--scores', score_file, *opts, '--runs-dir', tmp_path, '--run-id', 'b')
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert sha256_tree(out) == sha256_tree(tmp_path/'b'/'eval') and len(sha256_tree(out)) > 20

def sha256_tree(folder)->dict:
    "Relative path -> sha256 of every file under `folder`."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob('*')) if p.is_file()}

def one_line_error(r):
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-2000:])
    assert 'Traceback' not in r.stderr, r.stderr[-3000:]
    return [l for l in r.stderr.splitlines() if l.startswith('rbnb: error:')][0]

def test_cli_bad_score_file_is_one_line_and_writes_nothing(score_file, tmp_path):
    L = lines_of(score_file); i, r = first_row(L)
    bad = rewrite(tmp_path, L, i, r | dict(scores_chosen=float('nan')))
    msg = one_line_error(rbnb('eval', '--scores', bad, '--quick', '--runs-dir', tmp_path/'runs', '--run-id', 'bad'))
    assert f'bad.jsonl:{i + 1}: field \'scores_chosen\'' in msg
    assert not (tmp_path/'runs'/'bad'/'eval').exists()
    assert json.loads((tmp_path/'runs'/'bad'/'manifest.json').read_text())['status'] == 'failed'

def test_cli_nothing_to_evaluate(tmp_path):
    assert 'nothing to evaluate' in one_line_error(rbnb('eval', '--quick', '--runs-dir', tmp_path))

# --- several processes -----------------------------------------------------------------------------

def test_two_processes_score_like_one(tmp_path):
    "torchrun with 2 CPU (gloo) processes writes the same scores as one process (in float32: bf16 rounds by batch)."
    from rewardbench_nb.reward_model import RewardModel
    RewardModel.load(max_length=48).save(tmp_path/'rm')
    common = ['-m', 'rewardbench_nb.evaluation', '--model', str(tmp_path/'rm'), '--quick', '--set', 'quick_rows=2',
              '--set', 'squality=false', '--set', 'dtype=float32']
    one = subprocess.run([sys.executable, *common, '--out', str(tmp_path/'one.jsonl')], env=ENV, capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']
    two = subprocess.run([*torchrun, *common, '--out', str(tmp_path/'two.jsonl')], env=ENV, capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = ([json.loads(l) for l in (tmp_path/f).read_text().splitlines()] for f in ('one.jsonl', 'two.jsonl'))
    assert b[0]['protocol']['world_size'] == 2 and a[0]['protocol']['world_size'] == 1
    assert [r['id'] for r in a[1:]] == [r['id'] for r in b[1:]] and len(a) > 30
    flat = lambda rows, k: np.concatenate([np.atleast_1d(r[k]) for r in rows[1:]]).astype(float)
    for k in ('scores_chosen', 'scores_rejected'): np.testing.assert_allclose(flat(a, k), flat(b, k), atol=1e-5)

def test_untrained_baseline_is_read_back_from_its_score_file(suite, score_file, tmp_path):
    "A stored evaluation re-runs from files: the untrained baseline's file (a declared sample) becomes its row."
    import argparse
    from rewardbench_nb.core import Run
    from rewardbench_nb.evaluation import STAGE, _per_benchmark
    base = length_scores(suite, -1); keep = set(_per_benchmark(suite, 3, 0))
    base.chosen = [c if i in keep else np.empty(0) for i, c in enumerate(base.chosen)]
    base.rejected = [r if i in keep else np.empty(0) for i, r in enumerate(base.rejected)]
    base.name = 'untrained MiniLM'
    f = write_scores(tmp_path/'untrained.jsonl', suite, base, dict(sample=True, model_type='baseline'))
    ctx = dict(seed=0, quick=True, args=argparse.Namespace(eval_model=None, eval_scores=[str(score_file), str(f)]))
    STAGE(Run(tmp_path/'runs', {}, seed=0), {'evaluation': dict(n_boot=50)}, ctx)
    rep = ctx['evaluation']
    assert rep.models == ['length model'] and 'untrained' not in rep.timings
    long = rep.tables['scores'].set_index(['model', 'benchmark'])
    assert (long.loc['untrained MiniLM', 'n'].drop('mean') <= 3).all()
    assert long.loc[('untrained MiniLM', 'llmbar'), 'n'] == 3

# --- score-file headers: every field typed, checked before any work ------------------------------------

def with_header(tmp_path, score_file, name='bad.jsonl', drop=(), **fields):
    "A copy of the score file whose header has `fields` set (and the fields in `drop` removed)."
    L = lines_of(score_file); head = {k: v for k, v in json.loads(L[0]).items() if k not in drop} | fields
    p = tmp_path/name; p.write_text('\n'.join([json.dumps(head), *L[1:]]) + '\n')
    return p

@pytest.mark.parametrize('field,value,msg', [
    ('model', 3, "field 'model': expected a non-empty string, got 3 (a number)"),
    ('model', [1, 2], "field 'model': expected a non-empty string, got [1, 2] (a list)"),
    ('model', {'name': 'x'}, "field 'model': expected a non-empty string, got {'name': 'x'} (an object)"),
    ('model', ' ', "field 'model': expected a non-empty string, got ' ' (a string)"),
    ('model_type', None, "field 'model_type': expected a non-empty string, got null"),
    ('sample', 'false', "field 'sample': expected true or false, got 'false' (a string)"),
    ('sample', 1, "field 'sample': expected true or false, got 1 (a number)"),
    ('temperature', -1,
     'field \'temperature\': expected an object {"value": T, "fitted_on": "..."}, got -1 (a number)'),
    ('temperature', {'value': -1}, "field 'temperature.value': expected a finite number >= 1e-06, got -1 (a number)"),
    ('temperature', {'value': 0}, "field 'temperature.value': expected a finite number >= 1e-06, got 0 (a number)"),
    ('temperature', {'value': 1e-320},
     "field 'temperature.value': expected a finite number >= 1e-06, got 1e-320 (a number)"),
    ('temperature', {'value': float('nan')},
     "field 'temperature.value': expected a finite number >= 1e-06, got nan (a number)"),
    ('temperature', {'value': '2'}, "field 'temperature.value': expected a finite number >= 1e-06, got '2' (a string)"),
    ('temperature', {'value': True},
     "field 'temperature.value': expected a finite number >= 1e-06, got True (a boolean)"),
    ('temperature', {'fitted_on': 'x'}, "field 'temperature.value': expected a finite number >= 1e-06, got null"),
    ('temperature', {'value': 2, 'fitted_on': 3}, "field 'temperature.fitted_on': expected a string, got 3 (a number)"),
    ('protocol', 'v1', "field 'protocol': expected an object, got 'v1' (a string)")])
def test_header_fields_are_typed(suite, score_file, tmp_path, field, value, msg):
    p = with_header(tmp_path, score_file, **{field: value})
    with pytest.raises(DataError) as e: read_scores(p, suite)
    assert str(e.value) == f'{p}:1: {msg}'

def test_a_header_temperature_is_used(suite, score_file, tmp_path):
    ms = read_scores(with_header(tmp_path, score_file, temperature=dict(value=2.5, fitted_on='elsewhere')), suite)
    assert ev._file_temperature(ms, suite, 0) == (2.5, 'elsewhere')

def test_a_header_without_a_model_names_the_row_after_the_file(suite, score_file, tmp_path):
    "A first line with header fields but no model is still the header; the row is named after the file."
    assert read_scores(with_header(tmp_path, score_file, 'mine.jsonl', drop=['model']), suite).name == 'mine'

def rbnb_here(*args)->tuple:
    "(exit code, stderr lines) of `rbnb ARGS` run in this process."
    err = io.StringIO()
    with contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter('always', ClaimWarning)
        rc = cli.main([str(a) for a in args])
    return rc, err.getvalue().splitlines()

def error_of(rc:int, err:list)->str:
    "The one `rbnb: error:` line of a failed run."
    assert rc == 2, err[-20:]
    lines = [l for l in err if l.startswith('rbnb: error:')]
    assert len(lines) == 1 and not any('Traceback' in l for l in err), err[-20:]
    return lines[0]

def failed_without_outputs(run_dir:Path):
    "The run folder holds a manifest that says failed and the report that shows it, and nothing else."
    assert sorted(p.name for p in run_dir.iterdir()) == ['manifest.json', 'report.html']
    assert json.loads((run_dir/'manifest.json').read_text())['status'] == 'failed'

@pytest.fixture
def no_work(monkeypatch):
    "Make building the suite, loading a model or reading training prompts fail: the checks must come first."
    def fail(*a, **k): raise AssertionError('work started before the score files were checked')
    for f in ('_stage_suite', '_stage_model', '_train_prompts'): monkeypatch.setattr(ev, f, fail)

def test_cli_bad_header_fails_before_any_work(score_file, tmp_path, no_work):
    p = with_header(tmp_path, score_file, sample='false')
    rc, err = rbnb_here('eval', '--scores', p, '--quick', '--quiet', '--runs-dir', tmp_path/'runs', '--run-id', 'h')
    assert error_of(rc, err) == f"rbnb: error: {p}:1: field 'sample': expected true or false, got 'false' (a string)"
    failed_without_outputs(tmp_path/'runs'/'h')

def test_cli_a_vanishing_temperature_is_one_line_before_any_work(score_file, tmp_path, no_work):
    p = with_header(tmp_path, score_file, temperature={'value': 1e-320})
    rc, err = rbnb_here('eval', '--scores', p, '--quick', '--quiet', '--runs-dir', tmp_path/'runs', '--run-id', 't')
    assert error_of(rc, err) == (f"rbnb: error: {p}:1: field 'temperature.value': expected a finite number >= 1e-06, "
                                 "got 1e-320 (a number)")
    assert not any('RuntimeWarning' in l for l in err)
    failed_without_outputs(tmp_path/'runs'/'t')

def test_probabilities_past_the_float_range_print_no_numpy_warnings(suite):
    "Margins of 1e305 over the smallest temperature allowed: probabilities exactly 0 and 1, fitted T, no warnings."
    ms = length_scores(suite)
    ms.chosen, ms.rejected = [c * 1e303 for c in ms.chosen], [r * 1e303 for r in ms.rejected]
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        cal, _ = ev.benchmark_calibration(suite, ms, ev.MIN_TEMPERATURE)
        T, _ = ev.fit_rows_temperature(suite, ms)
    assert len(cal) and np.isfinite(cal.brier).all() and T > 0

# --- output names: unique by construction ------------------------------------------------------------

@pytest.mark.parametrize('a,b,fname', [('a b', 'a/b', 'a_b'), ('Model', 'model', 'model'), ('x', 'x', 'x'),
                                       ('.x', 'x', 'x')])
def test_cli_two_models_written_as_one_file_are_refused(score_file, tmp_path, no_work, a, b, fname):
    pa = with_header(tmp_path, score_file, 'one.jsonl', model=a)
    pb = with_header(tmp_path, score_file, 'two.jsonl', model=b)
    rc, err = rbnb_here('eval', '--scores', pa, '--scores', pb, '--quick', '--runs-dir', tmp_path/'runs',
                        '--run-id', 'n')
    assert error_of(rc, err) == (f"rbnb: error: {pb}:1: field 'model': model name {b!r} and {a!r} of {pa} would both "
                                 f"be written as '{fname}': rename one of them")
    failed_without_outputs(tmp_path/'runs'/'n')

@pytest.mark.parametrize('name,base', [('untrained_MiniLM', 'untrained MiniLM'), ('random', 'random'),
                                       ('.longer', 'longer')])
def test_cli_a_model_written_as_a_baseline_is_refused(score_file, tmp_path, no_work, name, base):
    p = with_header(tmp_path, score_file, model=name)
    rc, err = rbnb_here('eval', '--scores', p, '--quick', '--runs-dir', tmp_path/'runs', '--run-id', 'b')
    assert error_of(rc, err) == (f"rbnb: error: {p}:1: field 'model': model name {name!r} and the baseline {base!r} "
                                 f"would both be written as '{output_names([])[base]}': rename the model")
    failed_without_outputs(tmp_path/'runs'/'b')

def test_cli_a_name_taken_from_the_file_name_is_checked_too(score_file, tmp_path, no_work):
    p = with_header(tmp_path, score_file, 'shorter.jsonl', drop=['model'])
    rc, err = rbnb_here('eval', '--scores', p, '--quick', '--runs-dir', tmp_path/'runs', '--run-id', 'f')
    assert error_of(rc, err) == (f"rbnb: error: {p}: model name 'shorter' and the baseline 'shorter' would both be "
                                 "written as 'shorter': rename the model")

def test_output_names_are_never_hidden():
    fn = output_names([('.hidden', {}), ('..a/b', {})])
    assert (fn['.hidden'], fn['..a/b']) == ('hidden', 'a_b')

# --- claims the run does not honour: warned, noted, kept ---------------------------------------------------

CLAIMED = dict(join='chat template', seed=7, n_boot=1000, dtype='bfloat16', batch_size=8)

@pytest.fixture(scope='module')
def claimed_run(score_file, tmp_path_factory):
    "`rbnb eval` (in this process) of a score file named '.claimed' whose header claims another protocol."
    d = tmp_path_factory.mktemp('claims')
    p = with_header(d, score_file, 'claimed.jsonl', model='.claimed', chat_template='llama-3', protocol=CLAIMED)
    rc, err = rbnb_here('eval', '--scores', p, '--quick', '--quiet', '--set', 'evaluation.n_boot=50',
                        '--set', 'evaluation.untrained_baseline=false', '--set', 'evaluation.shift_train_prompts=40',
                        '--runs-dir', d/'runs', '--run-id', 'c')
    assert rc == 0, err[-20:]
    return p, err, d/'runs'/'c'

def claims_of(p)->list:
    return [f"{p}:1: field 'chat_template': not read by this evaluation (a header holds model, model_type, sample, "
            "temperature, protocol); ignored",
            f"{p}:1: field 'protocol.join': the file claims 'chat template', this run uses {JOIN_RULE!r}",
            f"{p}:1: field 'protocol.seed': the file claims 7, this run uses 0",
            f"{p}:1: field 'protocol.n_boot': the file claims 1000, this run uses 50"]

def test_claims_are_warned_as_one_line_each(claimed_run):
    p, err, _ = claimed_run
    assert [l for l in err if l.startswith('rbnb: warning:')] == [f'rbnb: warning: {c}' for c in claims_of(p)]

def test_claims_are_in_the_report_notes(claimed_run):
    p, _, run = claimed_run
    assert json.loads((run/'eval'/'report.json').read_text())['notes'] == claims_of(p)
    page = (run/'report.html').read_text()   # the run's report shows them, escaped
    assert all(f'<li>{html.escape(c)}</li>' in page for c in claims_of(p))

def test_a_file_model_keeps_its_own_protocol_and_no_output_is_hidden(claimed_run):
    _, _, run = claimed_run
    head = json.loads((run/'eval'/'scores'/'claimed.jsonl').read_text().splitlines()[0])
    assert head['protocol'] == CLAIMED and head['model'] == '.claimed'
    assert (run/'eval'/'results'/'claimed.json').is_file()
    assert not [p for p in run.rglob('*') if p.name.startswith('.')]

def test_the_manifest_records_the_settings_used(claimed_run):
    _, _, run = claimed_run
    m = json.loads((run/'manifest.json').read_text())
    s = m['settings']['evaluation']
    assert (s['shift_prompts'], s['shift_train_prompts'], s['campaign_prompts'], s['untrained_rows'], s['n_boot']) == \
           (16, 40, 1500, 8, 50)
    assert m['status'] == 'complete' and 'statistics' in m['records']['timings']['eval']

def test_header_claims_compare_only_what_this_run_does():
    proto = dict(join=JOIN_RULE, seed=0, n_boot=200, max_length=128, dtype='float32', batch_size=32)
    head = dict(model='m', protocol=dict(join=JOIN_RULE, seed=0, n_boot=200, max_length=512, dtype='bfloat16'))
    assert header_claims(head, proto, 'f.jsonl') == ["f.jsonl:1: field 'protocol.max_length': the file claims 512, "
                                                     "this run uses 128"]
    assert header_claims(head, dict(seed=0), 'f.jsonl') == []   # no model scored here: no max_length to compare

CLAIMY = {"model": "claimy", "foo": 1, "temperature": {"value": 2.0, "fitted_on": "x", "bar": 3},
          "protocol": {"seed": 7, "n_boot": 5, "quick": False, "batch_size": 999, "dtype": "int8", "bogus": 1}}

def test_unknown_protocol_and_temperature_fields_and_quick_are_warned(score_file, tmp_path):
    "Every field nothing reads is warned and `quick` is compared; batch_size and dtype describe the file's scores."
    L = lines_of(score_file); p = tmp_path/'claimy.jsonl'
    p.write_text('\n'.join([json.dumps(CLAIMY), *L[1:]]) + '\n')
    rc, err = rbnb_here('eval', '--scores', p, '--quick', '--quiet', '--set', 'evaluation.n_boot=20',
                        '--set', 'evaluation.untrained_baseline=false', '--set', 'evaluation.shift_train_prompts=10',
                        '--runs-dir', tmp_path/'runs', '--run-id', 'c')
    assert rc == 0, err[-20:]
    known = ', '.join(ev.CLAIMS + ev.MADE_WITH)
    assert [l for l in err if l.startswith('rbnb: warning:')] == [f'rbnb: warning: {p}:1: field {c}' for c in [
        "'foo': not read by this evaluation (a header holds model, model_type, sample, temperature, protocol); ignored",
        "'temperature.bar': not read by this evaluation (a temperature holds value, fitted_on); ignored",
        f"'protocol.bogus': not read by this evaluation (a protocol holds {known}); ignored",
        "'protocol.seed': the file claims 7, this run uses 0",
        "'protocol.n_boot': the file claims 5, this run uses 20",
        "'protocol.quick': the file claims False, this run uses True"]]

@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_every_model_the_stage_runs_has_its_precision_recorded(score_file, tmp_path, dtype):
    "A score file alone: the untrained baseline and the shift encoder still run, in --dtype, and the manifest says so."
    rc, err = rbnb_here('eval', '--scores', score_file, '--quick', '--quiet', '--dtype', dtype,
                        '--set', 'evaluation.n_boot=20', '--set', 'evaluation.untrained_rows=2',
                        '--set', 'evaluation.shift_train_prompts=10', '--runs-dir', tmp_path, '--run-id', 'p')
    assert rc == 0, err[-20:]
    m = json.loads((tmp_path/'p'/'manifest.json').read_text())
    p = m['records']['precision']
    assert m['settings']['evaluation']['dtype'] == dtype and set(p) == {'eval-untrained', 'eval-shift-encoder'}
    assert all((v['requested'], v['used']) == (dtype, dtype) and 'reason' in v['auto'] for v in p.values())

def test_the_pipeline_model_is_scored_in_the_evaluation_dtype():
    "train-rm's model, asked for another precision than evaluation.dtype, is scored (same weights) in evaluation.dtype."
    from rewardbench_nb.reward_model import RewardModel
    rm = RewardModel.load(max_length=32, dtype='float32')
    assert ev._stage_model(EvalConfig(dtype='float32'), dict(reward_model=rm)) == (rm, None, True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # bf16 on a CPU without it: a PrecisionWarning
        other, _, pipe = ev._stage_model(EvalConfig(dtype='bfloat16'), dict(reward_model=rm))
    assert (other.model is rm.model, other.requested_dtype, other.dtype, pipe) == (True, 'bfloat16', 'bfloat16', True)

# --- settings: quick sizes, --set wins, every value checked before any stage runs -----------------------

def test_quick_sizes_give_way_to_set_values():
    c = STAGE.resolve({'evaluation': {'shift_prompts': 30, 'quick_rows': 3}},
                      dict(quick=True, explicit={'evaluation': {'shift_prompts', 'quick_rows'}}))
    assert (c.shift_prompts, c.shift_train_prompts, c.campaign_prompts, c.untrained_rows) == (30, 48, 1500, 3)
    assert STAGE.resolve({}, dict(quick=False)) == EvalConfig()

@pytest.mark.parametrize('setting,msg', [
    ('n_boot=0', 'evaluation.n_boot: expected at least 1, got 0'),
    ('ci=1.5', 'evaluation.ci: expected a level in (0, 1), got 1.5'),
    ('alpha=0.5', 'evaluation.alpha: expected a level in (0, 0.5), got 0.5'),
    ('n_bins=0', 'evaluation.n_bins: expected at least 1, got 0'),
    ('batch_size=-1', 'evaluation.batch_size: expected at least 1, got -1'),
    ('dtype="fp16"', "evaluation.dtype: expected one of auto, float32, bfloat16, int8, got 'fp16'"),
    ('leakage_threshold=0', 'evaluation.leakage_threshold: expected a Jaccard similarity in (0, 1], got 0.0'),
    ('untrained_rows=-1', 'evaluation.untrained_rows: expected at least 0 (0 = all), got -1'),
    ('shift_prompts=3', 'evaluation.shift_prompts: expected at least 5 (5-fold cross-validation), got 3'),
    ('ab_power=1', 'evaluation.ab_power: expected a probability in (0, 1), got 1.0'),
    ('benchmarks=["llmbar", "llmbar"]', "evaluation.benchmarks: ['llmbar'] listed more than once"),
    ('local=[{name = "x"}]', "evaluation.local entry {'name': 'x'}: expected a table with keys name and file, both "
                             "strings (and optionally kind, shifted, groups, note)")])
def test_bad_settings_stop_the_run_before_it_starts(tmp_path, setting, msg):
    rc, err = rbnb_here('eval', '--scores', 'x.jsonl', '--quick', '--set', f'evaluation.{setting}',
                        '--runs-dir', tmp_path)
    assert error_of(rc, err) == f'rbnb: error: {msg}'
    assert not any(tmp_path.iterdir())   # no run folder: nothing started

# --- a stage that fails while writing leaves no eval/ ------------------------------------------------------

def test_a_failed_write_leaves_no_eval_folder(score_file, tmp_path, monkeypatch):
    def broken(self, folder):
        write_text(Path(folder)/'table.csv', 'half a report'); raise RBError('disk full (simulated)')
    monkeypatch.setattr(ev, 'benchmark_shift', lambda *a, **k: pd.DataFrame())
    monkeypatch.setattr(ev.EvalReport, 'write', broken)
    rc, err = rbnb_here('eval', '--scores', score_file, '--quick', '--quiet', '--set', 'evaluation.n_boot=20',
                        '--set', 'evaluation.untrained_baseline=false', '--runs-dir', tmp_path, '--run-id', 'w')
    assert error_of(rc, err) == 'rbnb: error: disk full (simulated)'
    failed_without_outputs(tmp_path/'w')

def test_cli_eval_of_a_chat_template_model_records_its_encoding(tmp_path):
    "`rbnb eval --model DIR` of a decoder reward model with a chat template: scored through it, and the protocol says so."
    from rewardbench_nb.reward_model import build_tiny_chat_rm, CHAT_ENCODING, template_sha256, RewardModel
    path = build_tiny_chat_rm(tmp_path/'chat-rm', positions=2048)   # more room than the MiniLM baseline's 512
    rc, err = rbnb_here('eval', '--model', path, '--quick', '--quiet', '--dtype', 'float32',
                        '--set', 'evaluation.n_boot=50', '--runs-dir', tmp_path/'runs', '--run-id', 'c')
    assert rc == 0, err[-20:]
    rep = json.loads((tmp_path/'runs'/'c'/'eval'/'report.json').read_text())
    sha = template_sha256(RewardModel.load(path).tokenizer)
    assert rep['protocol']['join'] == CHAT_ENCODING and rep['protocol']['chat_template_sha256'] == sha
    assert rep['protocol']['model_class'] == 'LlamaForSequenceClassification'
    head = json.loads((tmp_path/'runs'/'c'/'eval'/'scores'/'chat-rm.jsonl').read_text().splitlines()[0])
    assert head['protocol']['join'] == CHAT_ENCODING
    res = json.loads((tmp_path/'runs'/'c'/'eval'/'results'/'chat-rm.json').read_text())
    assert res['chat_template'] == sha
    # each baseline records its own protocol, not the evaluated model's
    base = json.loads((tmp_path/'runs'/'c'/'eval'/'scores'/'untrained_MiniLM.jsonl').read_text().splitlines()[0])
    assert base['protocol']['join'] == JOIN_RULE and base['protocol']['model_class'] == 'BertForSequenceClassification'
    assert base['protocol']['max_length'] == 512 and 'chat_template_sha256' not in base['protocol']
    longer = json.loads((tmp_path/'runs'/'c'/'eval'/'results'/'longer.json').read_text())
    assert 'chat_template_sha256' not in longer['protocol'] and longer['chat_template'] != sha

# --- causal LMs as implicit reward models (05b) ----------------------------------------------------------

POLICY = ROOT/'data'/'policy'

@pytest.fixture(scope='module')
def reference_dir(tmp_path_factory):
    "A reference policy for the shipped one: its weights moved by seeded noise, the same tokenizer."
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(POLICY, local_files_only=True)
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        for p in model.parameters(): p.add_(torch.randn(p.shape, generator=g) * 0.02)
    d = tmp_path_factory.mktemp('ref')/'reference'
    model.save_pretrained(d); AutoTokenizer.from_pretrained(POLICY).save_pretrained(d)
    return d

@pytest.mark.parametrize('how,model_type', [('dpo', 'DPO'), ('mean', 'DPO Ref. Free')])
def test_cli_eval_of_a_causal_lm_scores_its_implicit_reward(tmp_path, reference_dir, how, model_type):
    "`rbnb eval --model POLICY --reference REF` (or --reference-free): DPO's rewards, the type and protocol recorded."
    from rewardbench_nb.implicit_reward import DIALOGUE_ENCODING
    opt = ['--reference', reference_dir] if how == 'dpo' else ['--reference-free', how]
    rc, err = rbnb_here('eval', '--model', POLICY, *opt, '--quick', '--quiet', '--set', 'evaluation.quick_rows=3',
                        '--set', 'evaluation.untrained_baseline=false', '--set', 'evaluation.n_boot=50',
                        '--runs-dir', tmp_path/'runs', '--run-id', 'i')
    assert rc == 0, err[-20:]
    out = tmp_path/'runs'/'i'/'eval'
    p = json.loads((out/'report.json').read_text())['protocol']
    assert (p['model_type'], p['variant'].split(':')[0], p['join']) == (model_type, how, DIALOGUE_ENCODING)
    assert p['model_class'] == 'GPT2LMHeadModel' and p['max_length'] == 256
    if how == 'dpo':
        assert p['reference']['folder'] == str(reference_dir) and len(p['reference']['weights_sha256']) == 64
        m = json.loads((tmp_path/'runs'/'i'/'manifest.json').read_text())
        assert str(reference_dir/'model.safetensors') in m['inputs'] and str(POLICY/'model.safetensors') in m['inputs']
    else: assert p['reference'] is None
    head = json.loads((out/'scores'/'policy.jsonl').read_text().splitlines()[0])
    assert head['model_type'] == model_type and head['protocol']['variant'] == p['variant']
    res = json.loads((out/'results'/'policy.json').read_text())
    assert (res['model_type'], res['chat_template']) == (model_type, DIALOGUE_ENCODING)
    assert header_claims(head, {}, 'policy.jsonl') == []  # every field of an implicit reward's protocol is read

@pytest.mark.parametrize('args,msg', [
    ([], "holds a causal LM (GPT2LMHeadModel), scored as an implicit reward: pass --reference DIR (the policy it was "
         "trained from, for DPO's reward) or --reference-free sum|mean"),
    (['--reference', POLICY, '--reference-free', 'sum'], "pass --reference DIR or --reference-free sum|mean, not both"),
    (['--set', 'evaluation.dtype="int8"', '--reference-free', 'sum'],
     "evaluation.dtype = 'int8': an implicit reward runs in auto, float32 or bfloat16")])
def test_cli_a_causal_lm_needs_its_options_before_any_work(tmp_path, no_work, args, msg):
    rc, err = rbnb_here('eval', '--model', POLICY, *args, '--quick', '--quiet', '--runs-dir', tmp_path)
    assert error_of(rc, err).endswith(msg)
    assert not any(tmp_path.iterdir())   # checked with the settings: no run folder, nothing started

def test_cli_bad_reference_folders_are_one_line_before_any_work(tmp_path, no_work):
    from transformers import AutoTokenizer
    odd = tmp_path/'odd'; odd.mkdir()
    for f in ('config.json', 'model.safetensors'): (odd/f).write_bytes((POLICY/f).read_bytes())
    t = AutoTokenizer.from_pretrained(POLICY); t.add_tokens(['<|extra|>']); t.save_pretrained(odd)
    runs = tmp_path/'runs'
    for args, msg in [(['--model', POLICY, '--reference', odd], f"{odd}: its tokenizer differs from the policy's"),
                      (['--model', POLICY, '--reference', ev.default_model_path()],
                       f"{ev.default_model_path()}: not a causal language model (config architectures: ['BertModel'])"),
                      (['--model', ev.default_model_path(), '--reference-free', 'sum'], "holds no causal LM (BertModel)"),
                      (['--reference-free', 'mean'], "eval: --reference and --reference-free go with --model DIR")]:
        rc, err = rbnb_here('eval', *args, '--quick', '--quiet', '--runs-dir', runs)
        assert msg in error_of(rc, err) and not runs.exists()

def test_the_scoring_script_scores_a_causal_lm(tmp_path):
    "python -m rewardbench_nb.evaluation --model POLICY --reference-free sum: a score file of type 'DPO Ref. Free'."
    r = subprocess.run([sys.executable, '-m', 'rewardbench_nb.evaluation', '--model', str(POLICY), '--reference-free',
                        'sum', '--quick', '--set', 'quick_rows=2', '--set', 'squality=false', '--out',
                        str(tmp_path/'s.jsonl')], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    head = json.loads((tmp_path/'s.jsonl').read_text().splitlines()[0])
    assert head['model_type'] == 'DPO Ref. Free' and head['protocol']['variant'].startswith('sum:')
    bad = subprocess.run([sys.executable, '-m', 'rewardbench_nb.evaluation', '--model', str(POLICY), '--out',
                          str(tmp_path/'t.jsonl')], env=ENV, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and 'pass --reference DIR' in bad.stderr and not (tmp_path/'t.jsonl').exists()


def test_cli_eval_warns_of_a_reward_head_made_at_random(tmp_path):
    "A policy folder whose config names no architecture loads as a classifier with a random head: said, not hidden."
    import shutil
    from rewardbench_nb.data import data_dir
    folder = tmp_path/'headless'; shutil.copytree(data_dir()/'policy', folder)
    cfg = json.loads((folder/'config.json').read_text()); cfg.pop('architectures', None)
    (folder/'config.json').write_text(json.dumps(cfg))
    rc, err = rbnb_here('eval', '--model', folder, '--quick', '--quiet', '--set', 'evaluation.untrained_baseline=false',
                        '--set', 'evaluation.n_boot=20', '--runs-dir', tmp_path/'runs', '--run-id', 'h')
    assert rc == 0, err[-10:]
    warned = [l for l in err if 'holds no trained reward head' in l]
    assert warned and warned[0].startswith('rbnb: warning: headless: the folder holds no trained reward head'), err[-10:]
    rep = json.loads((tmp_path/'runs'/'h'/'eval'/'report.json').read_text())
    assert any('no trained reward head' in n for n in rep['notes']) and rep['protocol']['untrained_weights']

def test_cli_implicit_reward_refuses_what_it_does_not_do(tmp_path):
    import shutil
    from rewardbench_nb.data import data_dir
    folder = tmp_path/'coded'; shutil.copytree(data_dir()/'policy', folder)
    cfg = json.loads((folder/'config.json').read_text()); cfg['auto_map'] = {'AutoModelForCausalLM': 'm.LM'}
    (folder/'config.json').write_text(json.dumps(cfg))
    msg = error_of(*rbnb_here('eval', '--model', folder, '--reference-free', 'sum', '--quick', '--quiet',
                              '--runs-dir', tmp_path/'runs'))
    assert msg == (f"rbnb: error: {folder}: an implicit reward loads transformers' own causal LMs; this one ships its "
                   "own code (m.LM)"), msg
    msg = error_of(*rbnb_here('eval', '--model', data_dir()/'policy', '--reference-free', 'sum', '--quick', '--quiet',
                              '--set', 'evaluation.attn_implementation="eager"', '--runs-dir', tmp_path/'runs2'))
    assert msg.startswith("rbnb: error: evaluation.attn_implementation: a reward model's loading options;"), msg
