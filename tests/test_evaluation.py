"Evaluation: the public scoring API, every score-file mistake, the stage from the command line, two processes = one."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from rewardbench_nb.core import DataError
from rewardbench_nb.evaluation import (BENCHMARKS, EvalConfig, Resampler, Scoreboard, accuracy_from_scores,
                                       aggregate, best_of_n_accuracy, build_suite, interval, length_scores, outcomes,
                                       random_outcomes, read_scores, rmbench_accuracy, section_scores, write_scores)

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
    lo, hi = interval(bt)
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
    assert (out/'report.html').stat().st_size > 1e6
    assert json.loads((out/'report.json').read_text())['models'] == ['length model']
    m = json.loads((tmp_path/'a'/'manifest.json').read_text())
    assert m['status'] == 'complete' and str(score_file) in m['inputs']
    # same seed, same file -> the same tables
    r2 = rbnb('eval', '--scores', score_file, *opts, '--runs-dir', tmp_path, '--run-id', 'b')
    assert r2.returncode == 0, r2.stderr[-3000:]
    for f in sorted(out.glob('*.csv')): assert f.read_bytes() == (tmp_path/'b'/'eval'/f.name).read_bytes(), f.name

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
