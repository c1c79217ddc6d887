"The run's seed reaches every stage: scoring follows --seed unless scoring.seed is set, and only seeded parts move."
import argparse, json
from pathlib import Path
import pandas as pd
import pytest
from rewardbench_nb.cli import run_pipeline
from rewardbench_nb.data import simulate_campaign

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    "A campaign's ratings and preferences as a user hands them in (so the data stage reads them, whatever the seed)."
    d, camp = tmp_path_factory.mktemp("files"), simulate_campaign(n_prompts=1500, seed=3)  # 8 items tie down to the hash
    camp.ratings.to_csv(d/'ratings.csv', index=False); camp.preferences.to_json(d/'preferences.jsonl', orient='records', lines=True)
    return d/'ratings.csv', d/'preferences.jsonl'

def score(tmp_path, files, seed, overrides=(), run_id=None):
    "Run `score` (and the data stage it needs) on the files; return its scores table and summary."
    args = argparse.Namespace(ratings=str(files[0]), preferences=str(files[1]))
    run, _ = run_pipeline(['score'], config_dir=ROOT/'configs', overrides=overrides, seed=seed, quick=True,
                          runs_dir=tmp_path, run_id=run_id or f'seed{seed}', args=args, progress=False)
    out = run.dir/'scoring'
    return pd.read_csv(out/'scores.csv', index_col='item'), json.loads((out/'summary.json').read_text()), run

def test_scoring_takes_the_run_seed_and_only_hash_ties_move(tmp_path, files):
    a, sa, ra = score(tmp_path, files, 0)
    b, sb, rb = score(tmp_path, files, 1)
    assert (sa['seed'], sa['seed_from'], sb['seed'], sb['seed_from']) == (0, 'run', 1, 'run')
    assert json.loads((rb.dir/'manifest.json').read_text())['seed'] == 1
    b = b.reindex(a.index)
    unseeded = [c for c in a.columns if c not in ('rank', 'tie_break')]
    pd.testing.assert_frame_equal(a[unseeded], b[unseeded])          # every score is the same
    moved = a.index[a['rank'].ne(b['rank']) & a['rank'].notna()]
    assert len(moved) and (a.loc[moved, 'tie_break'] == 'hash').all()  # the seeded tie hash reorders hash ties only

def test_an_explicit_scoring_seed_wins_over_the_run_seed(tmp_path, files):
    a, _, _ = score(tmp_path, files, 0)
    c, sc, _ = score(tmp_path, files, 1, ['scoring.seed=0'], run_id='fixed')
    assert (sc['seed'], sc['seed_from']) == (0, 'scoring.seed')
    pd.testing.assert_frame_equal(a, c.reindex(a.index))

def test_the_simulated_campaign_and_its_recovery_follow_the_seed(tmp_path):
    "On the simulated campaign the seed changes the campaign, so the recovery numbers; the same seed gives the same bytes."
    runs = {rid: run_pipeline(['score'], config_dir=ROOT/'configs', seed=s, quick=True, runs_dir=tmp_path, run_id=rid,
                              progress=False)[0] for rid, s in (('a', 0), ('b', 1), ('c', 1))}
    rec = {rid: (r.dir/'scoring'/'recovery.csv').read_bytes() for rid, r in runs.items()}
    summary = {rid: json.loads((r.dir/'scoring'/'summary.json').read_text()) for rid, r in runs.items()}
    assert rec['b'] == rec['c'] and rec['a'] != rec['b']
    assert [summary[r]['seed'] for r in 'abc'] == [0, 1, 1]
    assert summary['a']['weights'] == summary['b']['weights'] and summary['a']['alpha'] == summary['b']['alpha']
