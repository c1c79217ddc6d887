"The scoring stage as a user meets it: files on disk, bad rows, config mistakes, reproducibility, the CLI."
import argparse, json, os, re, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
from rewardbench_nb.core import ConfigError, DataError, Run
from rewardbench_nb.data import simulate_campaign
from rewardbench_nb.scoring import STAGE, ScoringConfig, score_items, scoring_widget, rescore, DEFAULT_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def campaign():
    return simulate_campaign(n_prompts=300, seed=3)

@pytest.fixture
def files(tmp_path, campaign):
    "The campaign's ratings and preferences written as a user would hand them in."
    r, p = tmp_path/'ratings.csv', tmp_path/'preferences.jsonl'
    campaign.ratings.to_csv(r, index=False)
    campaign.preferences.to_json(p, orient='records', lines=True)
    return r, p

def run_stage(tmp_path, ctx, cfg=None, run_id='r'):
    run = Run(tmp_path/'runs', {}, run_id=run_id)
    STAGE(run, {'scoring': cfg or {}}, ctx)
    return run

def test_config_weights_are_the_default_weights():
    cfg = ScoringConfig()
    assert cfg.weights == DEFAULT_WEIGHTS and cfg.seed is None

def test_stage_scores_user_files(tmp_path, files, campaign):
    args = argparse.Namespace(ratings=str(files[0]), preferences=str(files[1]))
    ctx = dict(seed=0, quick=True, args=args)
    run = run_stage(tmp_path, ctx)
    scores = pd.read_csv(run.dir/'scoring'/'scores.csv')
    assert set(scores['item']) == set(campaign.ratings['item']) | set(campaign.preferences.item_a) | set(campaign.preferences.item_b)
    assert scores['rank'].dropna().tolist() == list(range(1, scores['rank'].notna().sum() + 1))
    assert str(files[0]) in run.inputs and str(files[1]) in run.inputs
    assert not (run.dir/'scoring'/'recovery.csv').exists()          # no truth for a user's campaign
    assert ctx['scores'].index.name == 'item'

def test_bad_preferences_file_names_file_line_and_field(tmp_path, files):
    prefs = pd.read_json(files[1], lines=True)
    prefs.loc[6, 'item_b'] = prefs.loc[6, 'item_a']
    bad = tmp_path/'bad.jsonl'; prefs.to_json(bad, orient='records', lines=True)
    ctx = dict(args=argparse.Namespace(ratings=str(files[0]), preferences=str(bad)))
    with pytest.raises(DataError) as e: run_stage(tmp_path, ctx)
    msg = str(e.value)
    assert 'bad.jsonl:7' in msg and 'item_b' in msg and 'same item' in msg

def test_bad_rows_in_tables_are_located(campaign):
    prefs = campaign.preferences.copy()
    prefs.loc[4, 'winner'] = 'nobody'
    with pytest.raises(DataError, match=r"row 5: field 'winner': expected the value of item_a .* or 'tie', got 'nobody'"):
        score_items(campaign.ratings, prefs)
    rt = campaign.ratings.copy(); rt.loc[10, 'likert'] = 6
    with pytest.raises(DataError, match=r"row 11: field 'likert': expected an integer Likert value 1-5, got 6"):
        score_items(rt, campaign.preferences)
    with pytest.raises(DataError, match="unknown item"):
        score_items(campaign.ratings, campaign.preferences, items=campaign.prompts.id[:100])
    with pytest.raises(DataError, match="missing column"):
        score_items(campaign.ratings.drop(columns='likert'), campaign.preferences)
    with pytest.raises(DataError, match=r"no rows: expected a preferences table \(item_a, item_b, winner\)"):
        score_items(campaign.ratings, campaign.preferences.iloc[:0])

def test_ratings_on_a_0_4_scale(campaign):
    "The same campaign on 0-4 scores exactly as on 1-5 once the scale is named; unnamed, the first 0 is an error."
    r = campaign.ratings
    a = score_items(r, campaign.preferences).table
    b = score_items(r.assign(likert=r.likert - 1), campaign.preferences, scale='0-4').table
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(DataError, match=r"field 'likert': expected an integer Likert value 1-5, got 0"):
        score_items(r.assign(likert=r.likert - 1), campaign.preferences)

def test_the_same_bad_preference_reads_the_same_in_data_and_scoring(campaign):
    "One mistake, one message: the data layer and the scoring stage describe a bad winner with the same words."
    from rewardbench_nb.data import validate_preferences
    prefs = campaign.preferences.copy(); prefs.loc[4, 'winner'] = 'nobody'
    with pytest.raises(DataError) as d: validate_preferences(prefs)
    with pytest.raises(DataError) as s: score_items(campaign.ratings, prefs)
    assert str(d.value) == str(s.value)

def test_stage_with_prompts_checks_items_and_uses_groups(tmp_path, campaign):
    ctx = dict(seed=0, quick=True, campaign=campaign, prompts=campaign.prompts, ratings=campaign.ratings,
               preferences=campaign.preferences)
    run = run_stage(tmp_path, ctx)
    t = ctx['scores']
    groups = campaign.prompts.set_index('id')['group']
    assert (t['group'].dropna() == groups.reindex(t['group'].dropna().index)).all()
    rec = pd.read_csv(run.dir/'scoring'/'recovery.csv')
    assert set(rec.method) == {'spearman', 'kendall'} and (rec.low <= rec.high).all()
    stray = campaign.ratings.assign(item=campaign.ratings['item'].where(campaign.ratings.index != 3, 'zzz'))
    with pytest.raises(DataError, match="row 4: field 'item': unknown item 'zzz'"):
        run_stage(tmp_path, {**ctx, 'ratings': stray}, run_id='r2')

def test_quorum_ratings_win_and_excluded_items_are_reported(tmp_path, campaign):
    below = set(campaign.preferences.item_a.unique()[:9])          # say the quorum excluded these compared items
    kept = campaign.ratings[~campaign.ratings['item'].isin(below)]
    ctx = dict(ratings=campaign.ratings, ratings_quorum=kept, preferences=campaign.preferences)
    run = run_stage(tmp_path, ctx)
    unscored = pd.read_csv(run.dir/'scoring'/'unscored.csv')
    assert below <= set(unscored['item'])
    assert unscored['reason'].str.contains('no ratings').any()

def test_config_mistakes_are_config_errors(tmp_path, campaign):
    ctx = dict(ratings=campaign.ratings, preferences=campaign.preferences)
    with pytest.raises(ConfigError, match='summing to 1'): run_stage(tmp_path, ctx, {'w_safety': 0.3})
    with pytest.raises(ConfigError, match=r'alpha: expected a number in \[0, 1\]'): run_stage(tmp_path, ctx, {'alpha': 1.5}, 'r2')
    with pytest.raises(ConfigError, match="unknown key 'weights'"): run_stage(tmp_path, ctx, {'weights': {}}, 'r3')
    with pytest.raises(ConfigError, match='scoring needs ratings'): run_stage(tmp_path, {'preferences': campaign.preferences}, run_id='r4')

def test_same_seed_same_bytes(tmp_path, campaign):
    ctx = lambda: dict(ratings=campaign.ratings, preferences=campaign.preferences)
    a, b = run_stage(tmp_path, ctx(), run_id='a'), run_stage(tmp_path, ctx(), run_id='b')
    assert (a.dir/'scoring'/'scores.csv').read_bytes() == (b.dir/'scoring'/'scores.csv').read_bytes()
    c = run_stage(tmp_path, ctx(), {'seed': 1}, run_id='c')
    ta, tc = (pd.read_csv(r.dir/'scoring'/'scores.csv', index_col='item') for r in (a, c))
    moved = ta.index[ta['rank'].notna() & (ta['rank'] != tc['rank'].reindex(ta.index))]
    assert (ta.loc[moved, 'tie_break'] == 'hash').all()               # the seed only reorders hash ties

def test_ratings_order_does_not_matter(campaign):
    s1 = score_items(campaign.ratings, campaign.preferences)
    s2 = score_items(campaign.ratings.sample(frac=1, random_state=1), campaign.preferences.sample(frac=1, random_state=2))
    pd.testing.assert_frame_equal(s1.table.drop(columns='group'), s2.table.drop(columns='group'), check_exact=False, rtol=1e-12)

def test_widget_without_kernel(campaign):
    s = score_items(campaign.ratings, campaign.preferences)
    w = scoring_widget(s, top_k=8)
    lines = lambda: {t.name: tuple(t.y) for t in w.fig.data}   # item -> (starting rank, current rank)
    table0, lines0 = w.table.value, lines()
    assert all(a == b for a, b in lines0.values())
    w.sliders['alignment'].value = 1.0; w.alpha.value = 1.0
    assert w.table.value != table0 and lines() != lines0
    expected = rescore(s, {'usefulness': .4/1.9, 'factuality': .3/1.9, 'safety': .2/1.9, 'alignment': 1/1.9}, 1.0)
    assert w.scores.table.index[:8].tolist() == expected.table.index[:8].tolist()
    assert 'alignment <b>0.53</b>' in w.shown.value
    now = w.scores.table['rank']
    assert {i for i, (_, b) in lines().items() if b <= 8} == set(now.index[:8])
    assert all(b == now[i] and a == s.table['rank'][i] for i, (a, b) in lines().items())

def test_widget_chart_one_labelled_line_per_item(campaign):
    "Every line is its own trace, with no gaps, and carries its id at both ends (labels survive plotly redraws)."
    w = scoring_widget(score_items(campaign.ratings, campaign.preferences), top_k=6)
    w.sliders['safety'].value = 1.0
    assert len({t.name for t in w.fig.data}) == len(w.fig.data) >= 6
    assert all(t.x == (0, 1) and None not in t.y and t.text == (t.name, t.name) for t in w.fig.data)
    assert list(w.fig.layout.yaxis.tickvals) == sorted({y for t in w.fig.data for y in t.y})   # whole ranks only

def test_widget_snapshot_for_pages_without_widgets(campaign):
    "Where no widget manager runs (docs site, nbconvert) the panel's HTML is a snapshot of its table and chart."
    w = scoring_widget(score_items(campaign.ratings, campaign.preferences), top_k=5)
    b1, b2 = w._repr_mimebundle_(), w._repr_mimebundle_()
    assert 'application/vnd.jupyter.widget-view+json' in b1 and b1['text/plain'].startswith('VBox(')
    html = b1['text/html']
    assert 'static snapshot' in html and 'JupyterLab' in html and w.table.value in html
    assert 'usefulness <b>0.40</b>' in html and 'alpha <b>0.60</b>' in html
    ids = [re.search(r'<div id="([^"]+)" class="plotly-graph-div"', b['text/html']).group(1) for b in (b1, b2)]
    assert ids[0] != ids[1], "two snapshots on one page need two chart ids"
    assert 'cdn.plot.ly' not in html and '<script src=' not in html

def test_cli_scores_files(tmp_path, files):
    rbnb = Path(sys.executable).parent/'rbnb'
    r = subprocess.run([str(rbnb), 'score', '--ratings', str(files[0]), '--preferences', str(files[1]), '--runs-dir',
                        str(tmp_path/'runs'), '--run-id', 'cli', '--set', 'scoring.alpha=0.5', '--quick'],
                       cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path/'runs'/'cli'/'scoring'/'summary.json').read_text())
    assert summary['alpha'] == 0.5
