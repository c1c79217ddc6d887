"Overoptimization: the public functions against brute force and closed forms, bad input, the gamma stage from the CLI."
import json, math, os, subprocess, sys
from itertools import combinations
from pathlib import Path
import numpy as np, pandas as pd, pytest
from scipy.integrate import quad
from scipy.optimize import curve_fit
from rewardbench_nb.core import ConfigError, DataError, RBError
from rewardbench_nb import overoptimization as O

ROOT = Path(__file__).resolve().parents[1]
RBNB = [str(Path(sys.executable).parent/'rbnb')]
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

def brute_bon(proxy, gold, n):
    "Mean over prompts of the mean over all n-subsets of the gold score of the subset's proxy maximum (ties: their mean)."
    out = []
    for p, g in zip(np.asarray(proxy, float), np.asarray(gold, float)):
        picks = []
        for s in combinations(range(len(p)), n):
            s = list(s); top = [i for i in s if p[i] == p[s].max()]
            picks.append(g[top].mean())
        out.append(np.mean(picks))
    return float(np.mean(out))

def test_kl_best_of_n_closed_form_and_exact_limit():
    assert O.kl_best_of_n(1) == 0.0
    for n in (2, 3, 10, 100): assert math.isclose(O.kl_best_of_n(n), math.log(n) - (n - 1) / n, rel_tol=1e-12)
    N = 10**6; i = np.arange(1, N + 1)
    for n in (2, 8, 32):
        p = (i / N)**n - ((i - 1) / N)**n; p = p[p > 0]
        assert abs(np.sum(p * np.log(p * N)) - O.kl_best_of_n(n)) < 1e-3
    assert isinstance(O.kl_best_of_n(4), float)

@pytest.mark.parametrize('ties', [False, True])
def test_bon_estimate_equals_enumeration(ties):
    rng = np.random.default_rng(1)
    proxy = rng.integers(0, 3, (5, 8)).astype(float) if ties else rng.normal(size=(5, 8))
    gold = rng.normal(size=(5, 8))
    for n in range(1, 9):
        assert math.isclose(O.bon_estimate(proxy, gold, n), brute_bon(proxy, gold, n), rel_tol=1e-10, abs_tol=1e-12)

def test_bon_estimate_closed_forms_and_order_invariance():
    rng = np.random.default_rng(2); proxy, gold = rng.normal(size=(4, 9)), rng.normal(size=(4, 9))
    assert math.isclose(O.bon_estimate(proxy, gold, 1), gold.mean(), rel_tol=1e-12)
    assert math.isclose(O.bon_estimate(proxy, gold, 9), gold[np.arange(4), proxy.argmax(1)].mean(), rel_tol=1e-12)
    ranks = np.arange(12.)[None]  # proxy = gold = 0..N-1: E[max of n of 1..N] - 1 = n (N+1) / (n+1) - 1
    for n in (1, 3, 12): assert math.isclose(O.bon_estimate(ranks, ranks, n), n * 13 / (n + 1) - 1, rel_tol=1e-12)
    perm = rng.permutation(9)
    assert math.isclose(O.bon_estimate(proxy[:, perm], gold[:, perm], 4), O.bon_estimate(proxy, gold, 4), rel_tol=1e-12)
    tied = np.array([[1., 1., 0.]]); g = np.array([[3., 5., 0.]])  # n = 3: the two tied maxima, each half the time
    assert O.bon_estimate(tied, g, 3) == 4.0 and O.bon_estimate(tied[:, ::-1], g[:, ::-1], 3) == 4.0

def test_fits_recover_parameters_and_agree_with_curve_fit():
    d = np.linspace(0, 4, 20)
    assert np.allclose(O.fit_bon(d, d * (2.0 - 0.3 * d)), (2.0, 0.3))
    assert np.allclose(O.fit_rl(d, d * (2.0 - 0.3 * np.log(np.where(d > 0, d, 1)))), (2.0, 0.3))
    r = d * (1.0 - 0.2 * d) + np.random.default_rng(3).normal(0, 0.1, len(d))
    assert np.allclose(O.fit_bon(d, r), curve_fit(lambda x, a, b: x * (a - b * x), d, r)[0], atol=1e-6)
    rl = lambda x, a, b: x * (a - b * np.log(np.where(x > 0, x, 1)))
    assert np.allclose(O.fit_rl(d, r), curve_fit(rl, d, r)[0], atol=1e-6)
    a, b = O.fit_bon(d, r); assert isinstance(a, float) and isinstance(b, float)
    assert math.isclose(float(O.peak_bon(1.0, 0.25)), 2.0)

def test_gamma_closed_form_and_numeric_integral():
    d = np.linspace(0, 2, 9); a, b, c = 1.0, 0.2, 0.3
    gold, proxy = d * (a - b * d), d * (a - b * d) + c * d**2
    assert O.gamma(d, gold, gold) == pytest.approx(0, abs=1e-12)
    assert O.gamma(d, gold, proxy) == pytest.approx((c * 8 / 3) / (a * 2 - b * 8 / 3), rel=1e-10)
    # crossing curves over a range that does not start at 0: against scipy's quad on the fitted curves
    d2 = np.linspace(0.5, 3, 11); g2 = d2 * (1.5 - 0.6 * d2); p2 = d2 * (0.5 + 0.1 * d2)
    (ag, bg), (ap, bp) = O.fit_bon(d2, g2), O.fit_bon(d2, p2)
    f = lambda x, a_, b_: x * (a_ - b_ * x)
    between = quad(lambda x: abs(f(x, ap, bp) - f(x, ag, bg)), 0.5, 3, points=[5 / 3], limit=200)[0]
    under = quad(lambda x: abs(f(x, ag, bg)), 0.5, 3, points=[2.5], limit=200)[0]
    assert O.gamma(d2, g2, p2) == pytest.approx(between / under, rel=1e-7)
    assert O.gamma(d, 3 * gold, 3 * proxy) == pytest.approx(O.gamma(d, gold, proxy), rel=1e-10)

def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(4); s, z = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
    G, P = O.bon_curves(s + z, s - 0.5 * z**2, list(range(1, 9)))
    a, b = (O.bootstrap_bon(G, P, list(range(1, 9)), n_boot=300, seed=7) for _ in range(2))
    pd.testing.assert_frame_equal(a, b)
    assert (a.low <= a.estimate).all() and (a.estimate <= a.high).all()
    d = O.d_best_of_n(range(1, 9))
    assert a.loc['gamma', 'estimate'] == pytest.approx(O.gamma(d, G.mean(0), P.mean(0)))

@pytest.mark.parametrize('proxy, gold, n, match', [
    (np.full((2, 3), np.nan), np.zeros((2, 3)), 1, 'proxy score nan at prompt 0, sample 0'),
    (np.zeros((2, 3)), np.array([[0, 0, 0], [0, np.inf, 0]]), 1, 'gold score inf at prompt 1, sample 1'),
    (np.zeros((2, 3)), np.zeros((2, 4)), 1, 'expected two arrays of one shape'),
    (np.zeros(3), np.zeros(3), 1, 'expected two arrays of one shape'),
    (np.zeros((0, 3)), np.zeros((0, 3)), 1, 'expected at least one prompt'),
    (np.zeros((2, 3)), np.zeros((2, 3)), 4, 'expected n <= N'),
    (np.zeros((2, 3)), np.zeros((2, 3)), 0, 'expected an integer >= 1'),
    (np.zeros((2, 3)), np.zeros((2, 3)), 1.5, 'expected an integer >= 1'),
    ([['x', 'y']], [[1, 2]], 1, 'expected numbers'),
])
def test_bon_estimate_bad_input(proxy, gold, n, match):
    with pytest.raises(RBError, match=match): O.bon_estimate(proxy, gold, n)

def test_fit_and_gamma_bad_input():
    with pytest.raises(DataError, match='a fit needs at least 2'): O.fit_bon([0, 1], [0, 1])
    with pytest.raises(DataError, match='one reward per value of d'): O.fit_rl([0, 1, 2], [0, 1])
    with pytest.raises(DataError, match='NaN or inf'): O.fit_bon([0, 1, 2], [0, np.nan, 1])
    with pytest.raises(DataError, match='zero area'): O.gamma([0, 1, 2], [0, 0, 0], [0, 1, 2])
    with pytest.raises(ConfigError, match='expected an integer >= 1'): O.kl_best_of_n(0)

def rbnb(*args, timeout=600):
    return subprocess.run([*RBNB, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV)

def test_best_of_n_alone_when_no_proxy_is_trained_with_ppo(tmp_path):
    "gamma.ppo_proxies = [] asks for best-of-n only: the stage completes, rl.csv is its header, no RL fits."
    r = rbnb('gamma', '--quick', '--quiet', '--set', 'gamma.ppo_proxies=[]', '--set', 'gamma.gold="length"',
             '--runs-dir', tmp_path, '--run-id', 'b')
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path/'b'/'gamma'
    assert (out/'rl.csv').read_text().strip() == 'name,iteration,kl,d,gold,proxy'
    fits = pd.read_csv(out/'fits.csv')
    assert set(fits.form) == {'bon'} and fits.quantity.eq('gamma').any()
    assert (tmp_path/'b'/'report.html').is_file()

def test_stage_quick_with_a_saved_gold_model(tmp_path):
    "rbnb gamma --quick against a saved reward model (the untrained MiniLM here): every output, the gold recorded."
    from rewardbench_nb.reward_model import RewardModel
    RewardModel.load(seed=1).save(tmp_path/'gold')
    for rid in ('a', 'b'):  # twice, in float32 everywhere
        r = rbnb('gamma', '--quick', '--quiet', '--dtype', 'float32', '--gamma-reward-model', tmp_path/'gold',
                 '--runs-dir', tmp_path, '--run-id', rid)
        assert r.returncode == 0, r.stderr[-3000:]
    files = lambda rid: {p.name: p.read_bytes() for p in sorted((tmp_path/rid/'gamma').iterdir())}
    assert files('a') == files('b') and 'curves.plotly.json' in files('a')  # the same seed writes the same bytes
    runs = [tmp_path/'a'/'gamma']  # same seed, same numbers: test_cli's two whole quick runs compare gamma's tables too
    for name in ('bon.csv', 'fits.csv', 'sweep.csv', 'shift.csv', 'rl.csv'): assert len(pd.read_csv(runs[0]/name)), name
    summary = json.loads((runs[0]/'summary.json').read_text())
    assert summary['gold'].startswith('rm_reward') and set(summary['proxies']) == set(O.proxy_names(O.GammaConfig(**O.QUICK)))
    fits, bon = pd.read_csv(runs[0]/'fits.csv'), pd.read_csv(runs[0]/'bon.csv')  # the contract outside checks rely on
    assert list(fits.columns) == ['name', 'set', 'form', 'quantity', 'estimate', 'low', 'high']
    assert fits.set.iloc[0] == 'hh-rlhf-harmless' and fits.set.drop_duplicates().iloc[0] == 'hh-rlhf-harmless'
    home = fits[(fits.set == 'hh-rlhf-harmless') & (fits.form == 'bon')]
    for q in ('gamma', 'gold_peak', 'gold_alpha', 'gold_beta', 'gold_drop'):
        assert set(home[home.quantity == q].name) == set(summary['proxies']), q
    assert list(bon.columns) == ['name', 'set', 'n', 'd', 'gold', 'proxy']
    assert {n for n in summary['proxies'] if 'ensemble' in n} == {'small-ensemble-mean', 'small-ensemble-wco',
                                                                  'small-ensemble-uwo'}
    claims = pd.read_csv(runs[0]/'claims.csv')
    assert list(claims.claim) == list(O.GAMMA_CLAIMS) and claims.verdict.isin(
        ['supported', 'contradicted', 'not shown (the interval includes 0)', 'not measured']).all()
    assert set(pd.read_csv(runs[0]/'ensembles.csv').baseline) == {'small'}
    assert 'seconds' not in summary and summary['dtype'] == summary['config']['dtype'] == 'float32'
    manifest = json.loads((tmp_path/'a'/'manifest.json').read_text())
    p = manifest['records']['precision']
    assert (p['gamma-gold']['used'], p['gamma-encoder']['used']) == ('float32', 'float32')
    assert set(manifest['records']['timings']['gamma']) == {'pools', 'best_of_n', 'ppo'}
    assert manifest['settings']['gamma']['pool_size'] == O.QUICK['pool_size'] and manifest['settings']['gamma']['dtype'] == 'float32'

def test_stage_without_gold_and_bad_setting_are_one_line(tmp_path):
    r = rbnb('gamma', '--quick', '--quiet', '--runs-dir', tmp_path)
    assert r.returncode == 2 and 'Traceback' not in r.stderr and 'gamma: no gold reward model' in r.stderr
    r = rbnb('gamma', '--quick', '--quiet', '--set', 'gamma.noise=0.7', '--set', 'gamma.gold=length', '--runs-dir', tmp_path)
    assert r.returncode == 2 and 'Traceback' not in r.stderr and 'gamma.noise = 0.7' in r.stderr

@pytest.mark.parametrize('args, msg', [
    (['--quick', '--set', 'gamma.ppo_iterations=0'], 'gamma.ppo_iterations = 0: expected a positive integer'),
    (['--set', 'gamma.pool_size=2'], 'gamma.pool_size = 2: expected at least 3 (a fit needs 2 points with n > 1)')])
def test_bad_settings_fail_before_any_stage(tmp_path, capsys, args, msg):
    "A bad gamma value, with or without --quick: one line before the policy stage runs, no run folder."
    from rewardbench_nb.cli import main
    rc, err = main(['gamma', '--quiet', *args, '--runs-dir', str(tmp_path), '--run-id', 'x']), capsys.readouterr().err
    assert (rc, [l for l in err.splitlines() if l.startswith('rbnb:')]) == (2, [f'rbnb: error: {msg}'])
    assert 'Traceback' not in err and not (tmp_path/'x').exists()

def test_gold_drop_is_cross_fitted_over_the_two_halves_of_the_prompts():
    "gold_drop: each prompt's drop from the highest point of the other half's curve; resamples reuse those drops."
    rng = np.random.default_rng(5); s, z = rng.normal(size=(300, 32)), rng.normal(size=(300, 32))
    ns = list(range(1, 33)); G, P = O.bon_curves(s + 1.5 * z, s - 0.4 * z**2, ns)  # the proxy likes z; the gold not
    tops = [int(G[h::2].mean(0).argmax()) for h in (1, 0)]  # even rows use the odd rows' peak, and back
    assert all(0 < t < len(ns) - 1 for t in tops)  # the gold curve rises, then falls, in both halves
    drops = np.where(np.arange(len(G)) % 2 == 0, G[:, tops[0]], G[:, tops[1]]) - G[:, -1]
    assert np.allclose(O.crossfit_drop(G), drops)
    f = O.bootstrap_bon(G, P, ns, n_boot=400, seed=1)
    assert f.loc['gold_drop', 'estimate'] == pytest.approx(drops.mean())
    assert f.loc['gold_drop', 'low'] > 0 and f.loc['gold_end', 'estimate'] == pytest.approx(G.mean(0)[-1])
    from rewardbench_nb.resampling import boot_counts
    counts = next(boot_counts(len(G), 400, [1, 11])).astype(float)
    est, boot = O.bon_boot(G, P, ns, counts)
    assert np.allclose(boot['gold_drop'], counts @ drops / len(G)) and est['gold_drop'] == f.loc['gold_drop', 'estimate']
    rising = O.bootstrap_bon(*O.bon_curves(s + z, s + z, ns), ns, n_boot=100)  # proxy = gold: best at the largest n
    assert rising.loc['gold_drop', ['estimate', 'low', 'high']].tolist() == [0, 0, 0]

def test_a_noise_peak_is_not_a_drop():
    "Curves that truly rise to the end, plus noise: cross-fitting keeps the drop's interval at 0 where choosing on the same prompts does not."
    rng = np.random.default_rng(11); ns = list(range(1, 33))
    G = np.sqrt(ns) * 0.02 + rng.normal(0, 1, (200, 32))
    same = G[:, G.mean(0).argmax()] - G[:, -1]
    from rewardbench_nb.resampling import boot_counts, percentile_interval
    counts = next(boot_counts(len(G), 500, [0, 11])).astype(float)
    assert percentile_interval(counts @ same / len(G), 0.95)[0] > 0  # this seed's noise peak looks "significant"
    f = O.bootstrap_bon(G, G, ns, n_boot=500)
    assert f.loc['gold_drop', 'low'] <= 0

def test_within_prompt_removes_each_prompts_level():
    x = np.array([[1., 2., 3.], [101., 102., 103.]])
    assert np.allclose(O.within_prompt(x), O.within_prompt(x - x.mean(1, keepdims=True)))
    assert np.allclose(O.within_prompt(x).mean(1), 0) and math.isclose((O.within_prompt(x)**2).mean(), 1)
    with pytest.raises(DataError, match='no spread within prompts'): O.within_prompt(np.ones((2, 3)))

def test_spearman_rows_and_verdicts_match_scipy():
    from scipy.stats import spearmanr
    rng = np.random.default_rng(6); x, y = rng.normal(size=(9, 5)), rng.normal(size=(9, 5))
    assert np.allclose(O._spearman_rows(x, y), [spearmanr(x[:, j], y[:, j]).statistic for j in range(5)])
    assert O._verdict(0.1, 0.5, 1) == 'supported' and O._verdict(-0.5, -0.1, -1) == 'supported'
    assert O._verdict(-0.5, -0.1, 1) == 'contradicted' and O._verdict(-0.1, 0.3, 1).startswith('not shown')
    assert O._verdict(np.nan, 0.3, 1) == 'not measured'

def test_ensemble_combinations():
    "mean, worst case and uncertainty-weighted scores of standardised members; members differ; names carry 'ensemble'."
    rng = np.random.default_rng(7); feats = rng.normal(size=(40, 6))
    members = [O.Proxy(f'm{j}', rng.normal(size=6), 10, 0., 'x', 1., []) for j in range(3)]
    S = np.stack([m.score(feats) for m in members]); c, sd = S.mean(1), S.std(1)
    e = {how: O.Ensemble(f'e-ensemble-{how}', members, how, 0.5, c, sd, 10, 0., 'x', 1., []) for how in O.COMBINE}
    Z = (S - c[:, None]) / sd[:, None]
    assert np.allclose(e['mean'].score(feats), Z.mean(0)) and np.allclose(e['wco'].score(feats), Z.min(0))
    assert np.allclose(e['uwo'].score(feats), Z.mean(0) - 0.5 * Z.var(0))
    assert (e['wco'].score(feats) <= e['mean'].score(feats) + 1e-12).all()

def test_a_spurious_annotator_changes_only_pairs_that_differ_in_its_feature_and_the_proxy_learns_to_chase_it():
    "bias = share of the differing pairs given to more of the feature; heads and ensemble members read that count."
    rng = np.random.default_rng(3)
    replies = [rng.choice(['Sure.', 'Sure 2.', 'No 11 or 12?', 'Call 911!', 'I think so.']) for _ in range(800)]
    feats = np.hstack([rng.normal(size=(800, 8)).astype(np.float32), O.surface_counts(replies)])
    gold = rng.normal(size=(400, 2))
    pool = O.Pool(pd.DataFrame(dict(prompt=np.repeat([f'p{i}' for i in range(400)], 2), response=replies)), gold, feats)
    k = 8 + list(O.SURFACE).index('digits')
    X0, y0 = O.gold_pairs(pool)
    X1, y1 = O.gold_pairs(pool, spurious='digits', bias=1.0)
    more = X1[:, k]  # first reply's count of digits minus the second's
    assert np.array_equal(X0, X1) and (more != 0).sum() > 100
    assert np.array_equal(y1[more != 0], (more[more != 0] > 0).astype(float))  # more digits win where counts differ
    assert np.array_equal(y1[more == 0], y0[more == 0])  # elsewhere, the gold label
    _, y_half = O.gold_pairs(pool, spurious='digits', bias=0.5)
    given = (y_half == (more > 0))[(more != 0) & (y0 != (more > 0))]  # differing pairs where gold and bias disagree
    assert 0.35 < given.mean() < 0.65
    px = O.train_proxy(pool, 'spurious', spurious='digits', bias=1.0)
    assert np.flatnonzero(px.weights[8:]).tolist() == [k - 8] and px.weights[k] > 0 and px.spurious == 'digits'
    assert not O.train_proxy(pool, 'plain').weights[8:].any()
    ens = O.train_ensemble(pool, 'spurious', spurious='digits', bias=1.0, size=3)
    for m in ens['spurious-ensemble-mean'].members:
        assert m.weights[k] > 0 and not np.delete(m.weights[8:], k - 8).any()
    with pytest.raises(ConfigError, match="gamma.spurious = 'emoji': expected '' or one of"):
        O.check_gamma_config(O.GammaConfig(spurious='emoji'))
    with pytest.raises(ConfigError, match="gamma.spurious_bias = 1.5: expected a probability in"):
        O.check_gamma_config(O.GammaConfig(spurious_bias=1.5))
    with pytest.raises(ConfigError, match="gamma.ensembles = .*expected names among \\['full', 'small', 'noisy'\\]"):
        O.check_gamma_config(O.GammaConfig(spurious='', ensembles=['spurious']))
    assert 'spurious' not in O.proxy_names(O.GammaConfig(spurious='', ensembles=[]))
