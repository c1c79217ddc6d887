"Agreement against the krippendorff (test-only oracle), sklearn and published values; bad input; the stage on real data and files."
import argparse, re
from pathlib import Path
import numpy as np, pandas as pd
import pytest
import krippendorff  # GPL-3.0: a test-only oracle, never imported by the package
from sklearn.metrics import cohen_kappa_score
from rewardbench_nb.core import ConfigError, DataError, RBError, Run, load_config, section
from rewardbench_nb.data import load_ratings, load_reliability, simulate_campaign
from rewardbench_nb.agreement import (LEVELS, STAGE, AgreementConfig, AlphaUndefined, agreement_band, agreement_report,
                                      bootstrap_alpha, bootstrap_kappa, check_ratings, cohen_kappa, count_table, fleiss_kappa,
                                      krippendorff_alpha, matrix_counts, quorum_split, reliability_matrix, resampled_alphas,
                                      resampled_kappas, review_queue)

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_2011 = {'nominal': 0.743, 'ordinal': 0.815, 'interval': 0.849, 'ratio': 0.797}  # Krippendorff (2011), p. 7-10

def oracle(data, level): return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))

def random_matrix(seed, raters, units, missing, values):
    "Raters x units matrix drawn from `values` with a share `missing` of blank cells (some correlation between raters)."
    rng = np.random.default_rng(seed)
    truth = rng.choice(values, units)
    noisy = np.where(rng.random((raters, units)) < 0.6, truth, rng.choice(values, (raters, units))).astype(float)
    noisy[rng.random((raters, units)) < missing] = np.nan
    return noisy

# --- Krippendorff's alpha ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('level', LEVELS)
def test_krippendorff_2011_published_values(level):
    data = load_reliability('krippendorff2011')
    ours = krippendorff_alpha(data, level)
    assert round(ours, 3) == PUBLISHED_2011[level]
    assert abs(ours - oracle(data, level)) < 1e-12

CASES = [(seed, raters, units, missing, values)
         for seed, (raters, units, missing, values) in enumerate([
             (2, 10, 0.0, [1, 2, 3, 4, 5]), (3, 40, 0.2, [1, 2, 3, 4, 5]), (5, 300, 0.4, [1, 2, 3, 4, 5]),
             (4, 25, 0.3, [0, 1]), (7, 120, 0.5, list(range(0, 101, 5))), (12, 60, 0.6, [0.5, 1.5, 2.25, 7.0]),
             (6, 500, 0.1, list(range(1, 8))), (3, 80, 0.3, list(range(0, 101)))])]

@pytest.mark.parametrize('level', LEVELS)
@pytest.mark.parametrize('case', CASES, ids=lambda c: f'seed{c[0]}-{c[1]}x{c[2]}-miss{c[3]}')
def test_alpha_matches_the_oracle_on_random_matrices(case, level):
    data = random_matrix(*case)
    assert abs(krippendorff_alpha(data, level) - oracle(data, level)) < 1e-9

def test_units_with_one_rating_are_ignored():
    data = random_matrix(1, 4, 30, 0.2, [1, 2, 3, 4, 5])
    lone = np.full((4, 3), np.nan); lone[0] = [1, 5, 3]; lone[2, 1] = np.nan
    for level in LEVELS:
        assert krippendorff_alpha(np.hstack([data, lone]), level) == pytest.approx(krippendorff_alpha(data, level), abs=1e-12)

@pytest.mark.parametrize('data, why', [
    ([[1, 2, 3, 4]], 'single rater'),
    ([[1, np.nan, np.nan], [np.nan, 2, np.nan], [np.nan, np.nan, 3]], 'no unit has ratings from 2+ raters'),
    ([[4, 4, np.nan], [4, 4, 4]], 'no variation (expected disagreement 0)'),
    (np.full((3, 5), np.nan), 'no unit has ratings from 2+ raters')])
def test_undefined_alpha_is_an_error_that_says_why(data, why):
    for level in LEVELS:
        with pytest.raises(AlphaUndefined, match=re.escape(why)):
            krippendorff_alpha(data, level)
    assert issubclass(AlphaUndefined, DataError) and issubclass(AlphaUndefined, RBError)

@pytest.mark.parametrize('data, msg', [
    ([1, 2, 3], 'must be a 2-d raters x units matrix'), ([['a', 'b'], ['a', 'c']], 'must be numeric'),
    ([[1, np.inf], [1, 2]], 'infinite')])
def test_malformed_matrices(data, msg):
    with pytest.raises(DataError, match=msg): krippendorff_alpha(data)

def test_unknown_level_and_negative_ratio_values():
    with pytest.raises(ConfigError, match="unknown level of measurement 'cardinal'"): krippendorff_alpha([[1, 2], [1, 2]], 'cardinal')
    with pytest.raises(DataError, match='ratio level needs non-negative values'): krippendorff_alpha([[-1, 2], [1, 2]], 'ratio')

# --- bootstrap ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('level', LEVELS)
def test_resampled_alphas_are_the_oracle_on_repeated_units(level):
    data = random_matrix(4, 5, 60, 0.3, [1, 2, 3, 4, 5])
    values, counts = matrix_counts(data)
    keep = (~np.isnan(data)).sum(0) >= 2
    rng = np.random.default_rng(0)
    w = rng.multinomial(counts.shape[0], np.full(counts.shape[0], 1 / counts.shape[0]), size=5)
    got = resampled_alphas(values, counts, w, level)
    want = [oracle(np.repeat(data[:, keep], wb, axis=1), level) for wb in w]
    np.testing.assert_allclose(got, want, atol=1e-9)

def test_bootstrap_is_seeded_and_brackets_alpha():
    data = random_matrix(9, 5, 400, 0.2, [1, 2, 3, 4, 5])
    r = bootstrap_alpha(data, 'ordinal', n_boot=400, seed=3)
    assert r == bootstrap_alpha(data, 'ordinal', n_boot=400, seed=3)
    assert r != bootstrap_alpha(data, 'ordinal', n_boot=400, seed=4)
    assert r.low < r.alpha < r.high and r.n_boot == 400 and r.n_undefined == 0

def test_bootstrap_ci_covers_the_population_alpha():
    "Percentile CIs from samples of a large population cover its alpha about 95% of the time (loose check)."
    pop = random_matrix(0, 4, 200_000, 0.1, [1, 2, 3, 4, 5])
    true = krippendorff_alpha(pop)
    rng = np.random.default_rng(1)
    hits = [(lambda r: r.low <= true <= r.high)(bootstrap_alpha(pop[:, rng.choice(pop.shape[1], 300, replace=False)], n_boot=300, seed=s))
            for s in range(60)]
    assert 0.85 <= np.mean(hits) <= 1.0

# --- kappas ------------------------------------------------------------------------------------------------------

def test_fleiss_1971_diagnoses():
    table, cats = count_table(load_reliability('fleiss1971').T)
    assert table.shape == (30, 5) and (table.sum(1) == 6).all() and list(cats) == [1, 2, 3, 4, 5]
    assert round(fleiss_kappa(table), 3) == 0.430  # irr::kappam.fleiss(diagnoses): 0.43
    assert agreement_band(fleiss_kappa(table)) == 'moderate'

def test_resampled_kappas_are_statsmodels_on_repeated_subjects():
    table = count_table(load_reliability('fleiss1971').T)[0]
    w = np.random.default_rng(0).multinomial(30, np.full(30, 1 / 30), size=5)
    np.testing.assert_allclose(resampled_kappas(table, w), [fleiss_kappa(np.repeat(table, wb, axis=0)) for wb in w], atol=1e-12)

def test_kappa_bootstrap_covers_the_population_kappa():
    "Percentile CIs of Fleiss' kappa from samples of a large population cover its kappa about 95% of the time."
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 4, 100_000)
    pop = np.where(rng.random((4, 100_000)) < 0.5, truth, rng.integers(0, 4, (4, 100_000)))
    table = count_table(pop)[0]
    true = fleiss_kappa(table)
    hits = [(lambda r: r.low <= true <= r.high)(bootstrap_kappa(table[rng.choice(len(table), 300, replace=False)], 300, seed=s))
            for s in range(60)]
    assert 0.85 <= np.mean(hits) <= 1.0

def test_landis_koch_bands():
    bands = [agreement_band(v) for v in (-0.3, 0.0, 0.15, 0.2, 0.35, 0.55, 0.7, 0.8, 0.95, np.nan)]
    assert bands == ['poor', 'slight', 'slight', 'slight', 'fair', 'moderate', 'substantial', 'substantial', 'almost perfect', '']

@pytest.mark.parametrize('weights', [None, 'linear', 'quadratic'])
@pytest.mark.parametrize('seed', range(4))
def test_cohen_kappa_matches_sklearn(seed, weights):
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 6, 80); b = np.where(rng.random(80) < 0.5, a, rng.integers(1, 6, 80))
    assert cohen_kappa(a, b, weights) == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)

@pytest.mark.parametrize('weights', [None, 'linear', 'quadratic'])
@pytest.mark.parametrize('seed', range(4))
def test_weighted_kappa_measures_distance_on_the_values(seed, weights):
    "With an unused Likert level (3), 2 -> 5 is three steps: the kappa equals sklearn's given the whole scale."
    rng = np.random.default_rng(seed)
    a = rng.choice([1, 2, 4, 5], 120); b = np.where(rng.random(120) < 0.5, a, rng.choice([1, 2, 4, 5], 120))
    want = cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights=weights)
    assert cohen_kappa(a, b, weights) == pytest.approx(want, abs=1e-12)
    assert cohen_kappa(a, b, weights, labels=[1, 2, 3, 4, 5]) == pytest.approx(want, abs=1e-12)

def test_weighted_kappa_on_a_value_scale_with_gaps():
    "On the values 0, 50, 100 a 0 -> 100 disagreement is twice a 0 -> 50 one, as on sklearn's index scale 0, 1, 2."
    a, b = [0, 0, 50, 100, 100, 50], [0, 50, 50, 100, 0, 100]
    assert cohen_kappa(a, b, 'linear') == pytest.approx(cohen_kappa_score([0, 0, 1, 2, 2, 1], [0, 1, 1, 2, 0, 2], weights='linear'), abs=1e-12)
    with pytest.raises(DataError, match=r"rating 7 is not among the categories \[1, 2, 3\]"): cohen_kappa([1, 7], [1, 2], labels=[1, 2, 3])

def test_cohen_kappa_on_labels_and_bad_input():
    a, b = ['yes', 'no', 'yes', 'maybe', 'no'], ['yes', 'no', 'no', 'maybe', 'no']
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    with pytest.raises(DataError, match='the two raters must rate the same items: 5 vs 4'): cohen_kappa(a, b[:4])
    with pytest.raises(DataError, match='missing rating at position 2'): cohen_kappa([1, 2, np.nan], [1, 2, 3])
    with pytest.raises(AlphaUndefined, match='single category'): cohen_kappa([1, 1], [1, 1])
    with pytest.raises(DataError, match='same number of raters per subject'): fleiss_kappa([[3, 0], [1, 1]])
    with pytest.raises(DataError, match="needs every subject rated by every rater"): count_table(load_reliability('krippendorff2011'))

# --- long tables: bad input --------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def campaign():
    return simulate_campaign(n_prompts=300, seed=0, agreement=0.7)

def _with(df, row, col, value):
    df = df.astype({col: object}).copy(); df.loc[row, col] = value
    return df

@pytest.mark.parametrize('col, value, msg', [
    ('item', None, "row 8: field 'item': expected a non-empty string or integer id, got a missing value"),
    ('item', '  ', "row 8: field 'item': expected a non-empty string or integer id, got a blank string"),
    ('annotator', np.nan, "row 8: field 'annotator': expected a non-empty string or integer id, got a missing value"),
    ('criterion', '', "row 8: field 'criterion': expected a non-empty label (a string or an integer), got an empty string"),
    ('likert', np.nan, "row 8: field 'likert': expected an integer Likert value 1-5, got a missing value"),
    ('likert', 'good', "row 8: field 'likert': expected an integer Likert value 1-5, got 'good'"),
    ('likert', 7, "row 8: field 'likert': expected an integer Likert value 1-5, got 7")])
def test_bad_long_tables_name_the_row(campaign, col, value, msg):
    bad = _with(campaign.ratings, 7, col, value)
    for fn in (check_ratings, agreement_report, quorum_split, review_queue):
        with pytest.raises(DataError, match=re.escape(msg)): fn(bad)

def test_duplicate_rating_and_missing_columns(campaign):
    r = campaign.ratings
    with pytest.raises(DataError, match=r'duplicate item / annotator / criterion .* \(first at row 1\)'):
        check_ratings(pd.concat([r, r.head(1)], ignore_index=True))
    with pytest.raises(DataError, match="missing column\\(s\\) 'annotator': a ratings table needs"): check_ratings(r.drop(columns='annotator'))
    with pytest.raises(DataError, match="no rating column: expected 'likert' or 'value'"): check_ratings(r.drop(columns='likert'))

def test_the_same_mistake_gets_the_same_message_as_in_a_file(campaign, tmp_path):
    "check_ratings is the data layer's validator: a bad rating reads the same in a DataFrame and in a CSV file."
    bad = campaign.ratings.head(5).astype({'likert': object}); bad.loc[2, 'likert'] = 9
    with pytest.raises(DataError) as frame: check_ratings(bad)
    bad.to_csv(tmp_path/'r.csv', index=False)
    from rewardbench_nb.data import read_table
    with pytest.raises(DataError) as file: read_table(tmp_path/'r.csv', 'ratings')
    assert frame.value.msg == file.value.msg == 'expected an integer Likert value 1-5, got 9'

def test_ratings_on_other_scales(campaign):
    "A 0-4 campaign is the 1-5 one shifted: the same alphas and kappas, once the scale is given."
    r = campaign.ratings
    a = agreement_report(r, n_boot=50).table
    b = agreement_report(r.assign(likert=r.likert - 1), n_boot=50, scale='0-4').table
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(DataError, match="expected an integer Likert value 1-5, got 0"): agreement_report(r.assign(likert=r.likert - 1))
    binary = r.assign(likert=(r.likert >= 4).astype(int))
    assert set(agreement_report(binary, n_boot=50, scale='0-1').table.statistic) == {'alpha', 'fleiss_kappa'}

def test_single_rater_no_variation_unknown_criterion(campaign):
    r = campaign.ratings
    with pytest.raises(AlphaUndefined, match="criterion 'usefulness': alpha is undefined with a single rater"):
        agreement_report(r[r.annotator == r.annotator.iloc[0]])
    with pytest.raises(AlphaUndefined, match="criterion 'usefulness': .*no variation"): agreement_report(r.assign(likert=3))
    with pytest.raises(DataError, match="unknown criterion 'helpfulness'"): agreement_report(r, criteria=['usefulness', 'helpfulness'])
    with pytest.raises(DataError, match="unknown criterion 'helpfulness'"): reliability_matrix(r, 'helpfulness')
    with pytest.raises(DataError, match="is not in the prompts table"): agreement_report(r, campaign.prompts.iloc[1:])

def test_report_matches_the_oracle_per_criterion_and_domain(campaign):
    r, p = campaign.ratings, campaign.prompts
    rep = agreement_report(r, p, level='ordinal', n_boot=200)
    dom = p.set_index('id').domain
    for row in rep.table.itertuples():
        sub = r[(r.criterion == row.criterion) & ((row.domain == 'all') | (r.item.map(dom) == row.domain))]
        m = sub.pivot(index='annotator', columns='item', values='likert').to_numpy(float)
        if np.isnan(row.estimate): continue
        if row.statistic == 'alpha':
            assert row.estimate == pytest.approx(oracle(m, 'ordinal'), abs=1e-9)
            assert row.passes == (row.estimate >= 0.6) and row.ci_clears == (row.ci_low >= 0.6)
        else:  # every item has 5 ratings: Fleiss' kappa of the items' 5 ratings, by statsmodels
            five = np.stack([c[~np.isnan(c)] for c in m.T], axis=1)
            assert row.estimate == pytest.approx(fleiss_kappa(count_table(five)[0]), abs=1e-12)
            assert row.passes is None and row.ci_low <= row.estimate <= row.ci_high
        assert row.band == agreement_band(row.estimate)
    assert set(rep.table.domain) == {'all', *p.domain[p.id.isin(r.item)]}
    assert all(v == ['alpha', 'fleiss_kappa'] for v in rep.table.groupby(['criterion', 'domain']).statistic.apply(sorted))
    html = rep._repr_html_()
    assert 'CI clears target' in html and 'alpha &gt;= 0.6' in html and "Fleiss&#x27; kappa" in html and 'Landis &amp; Koch' in html
    fig = rep.figure()
    assert [len(t.x) for t in fig.data] == rep.table.groupby('statistic').estimate.count().reindex(['alpha', 'fleiss_kappa']).tolist()

# --- SQuALITY ----------------------------------------------------------------------------------------------------

def test_squality_interval_alpha_matches_the_oracle():
    sq = load_ratings('squality')
    rep = agreement_report(sq)
    for row in rep.table[rep.table.statistic == 'alpha'].itertuples():
        assert row.estimate == pytest.approx(oracle(reliability_matrix(sq, row.criterion).to_numpy(), 'interval'), abs=1e-9)
        assert row.ci_low < row.estimate < row.ci_high
    assert rep.table[rep.table.statistic == 'fleiss_kappa'].estimate.isna().all()

# --- quorum and review queue -------------------------------------------------------------------------------------

def test_quorum_excludes_and_lists_items(campaign):
    r = campaign.ratings
    thin = r[~((r.item == r.item.iloc[0]) & r.annotator.isin(r[r.item == r.item.iloc[0]].annotator.unique()[:3]))]
    kept, below = quorum_split(thin, quorum=3)
    assert below.item.tolist() == [r.item.iloc[0]] and below.min_ratings.tolist() == [2]
    assert below.reason[0] == 'fewer than 3 ratings on alignment (2), factuality (2), safety (2), usefulness (2)'
    assert len(kept) == len(thin) - 8
    assert len(quorum_split(r, quorum=6)[1]) == r.item.nunique()
    with pytest.raises(ConfigError, match='quorum must be at least 1'): quorum_split(r, 0)

def test_quorum_counts_a_criterion_an_item_lacks_as_zero(campaign):
    "An item rated on one criterion only, among items rated on all four, is listed with 0 on each missing criterion."
    r = campaign.ratings
    odd = r[(r.item != r.item.iloc[0]) | (r.criterion == 'usefulness')]
    kept, below = quorum_split(odd, quorum=3)
    assert below.item.tolist() == [r.item.iloc[0]] and below.min_ratings.tolist() == [0]
    assert below.reason[0] == 'fewer than 3 ratings on alignment (0), factuality (0), safety (0)'

def test_review_queue_range_and_std(campaign):
    r = campaign.ratings
    q = review_queue(r, 3)
    g = r.groupby(['item', 'criterion']).likert
    want = ((g.max() - g.min()) >= 3).sum()
    assert len(q) == want and (q.spread >= 3).all() and q.spread.is_monotonic_decreasing
    first = q.iloc[0]
    vals = r[(r.item == first['item']) & (r.criterion == first['criterion'])].likert
    assert sorted(int(x.split('=')[1]) for x in first.ratings.split('; ')) == sorted(vals)
    qs = review_queue(r, 1.2, 'std')
    assert len(qs) == (g.std(ddof=0) >= 1.2).sum()

# --- the stage ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('key, value, msg', [('level', 'cardinal', 'agreement.level: expected one of'), ('ci', 1.5, 'agreement.ci'),
                                             ('quorum', 0, 'agreement.quorum'), ('spread', 'iqr', 'agreement.spread'),
                                             ('n_boot', 0, 'agreement.n_boot'), ('qourum', 3, "unknown key 'qourum'")])
def test_config_errors_name_the_key(key, value, msg):
    with pytest.raises(ConfigError, match=msg): section(load_config(None, [f'agreement.{key}={value!r}'.replace("'", '"')]), 'agreement', AgreementConfig)

def test_stage_on_the_campaign_and_squality(tmp_path, campaign):
    run = Run(tmp_path, {}, run_id='r')
    ctx = dict(seed=0, ratings=campaign.ratings, prompts=campaign.prompts, squality=load_ratings('squality'), args=argparse.Namespace())
    STAGE(run, {'agreement': {'n_boot': 100}}, ctx)
    out = run.dir/'agreement'
    assert sorted(p.name for p in out.iterdir()) == ['agreement.csv', 'below_quorum.csv', 'review_queue.csv']
    table = pd.read_csv(out/'agreement.csv')
    assert set(table.dataset) == {'Annotation campaign', 'SQuALITY human evaluation'}
    sq = table.query("dataset == 'SQuALITY human evaluation'")
    assert sq.criterion.unique().tolist() == ['correctness', 'selection', 'overall'] and set(sq.statistic) == {'alpha', 'fleiss_kappa'}
    camp = table.query("dataset == 'Annotation campaign'")
    assert list(table.columns[:9]) == ['statistic', 'criterion', 'domain', 'n_units', 'estimate', 'ci_low', 'ci_high', 'band', 'passes']
    kappa = camp[camp.statistic == 'fleiss_kappa']
    assert len(kappa) == len(camp) // 2 and kappa.estimate.notna().all() and (kappa.ci_low < kappa.ci_high).all()
    assert set(camp.band) <= {'poor', 'slight', 'fair', 'moderate', 'substantial', 'almost perfect'}
    assert ctx['ratings_quorum'].equals(campaign.ratings) and len(ctx['below_quorum']) == 0
    assert pd.read_csv(out/'review_queue.csv').shape[0] == len(ctx['review_queue'])
    assert ctx['agreement'].table.estimate.notna().all()
    assert not list(out.glob('.*.tmp'))

def test_stage_reads_a_ratings_file(tmp_path):
    f = tmp_path/'ratings.csv'
    r = pd.DataFrame({'item': np.repeat([f'q{i}' for i in range(30)], 3), 'annotator': ['a', 'b', 'c'] * 30,
                      'criterion': 'safety', 'likert': np.random.default_rng(0).integers(1, 6, 90)})
    r.to_csv(f, index=False)
    run = Run(tmp_path/'runs', {}, run_id='r')
    ctx = dict(seed=0, args=argparse.Namespace(ratings=str(f)))
    STAGE(run, {'agreement': {'n_boot': 50}}, ctx)
    assert ctx['agreement'].table.criterion.tolist() == ['safety', 'safety'] and str(f) in run.inputs
    f.write_text(f.read_text().replace('q3,a,safety', 'q3,a,saftey', 1))
    with pytest.raises(DataError, match=r"ratings.csv:11: field 'criterion'"):
        STAGE(Run(tmp_path/'runs', {}, run_id='s'), {}, dict(seed=0, args=argparse.Namespace(ratings=str(f))))
    with pytest.raises(DataError, match='no ratings to measure agreement on'):
        STAGE(Run(tmp_path/'runs', {}, run_id='t'), {}, dict(seed=0, args=argparse.Namespace()))

def test_stage_same_seed_same_numbers(tmp_path, campaign):
    tables = []
    for rid in ('a', 'b'):
        ctx = dict(seed=7, ratings=campaign.ratings, prompts=campaign.prompts, args=argparse.Namespace())
        STAGE(Run(tmp_path, {}, run_id=rid), {'agreement': {'n_boot': 100}}, ctx)
        tables.append((tmp_path/rid/'agreement'/'agreement.csv').read_bytes())
    assert tables[0] == tables[1]

@pytest.mark.slow
def test_full_campaign_matches_the_oracle():
    camp = simulate_campaign(n_prompts=15000, seed=0, agreement=0.7)
    rep = agreement_report(camp.ratings, camp.prompts)
    for row in rep.table.query("domain == 'all' and statistic == 'alpha'").itertuples():
        m = reliability_matrix(camp.ratings, row.criterion).to_numpy()
        assert row.estimate == pytest.approx(oracle(m, 'interval'), abs=1e-9)
