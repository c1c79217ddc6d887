"Curation on real shipped data, user files, the stage and CLI, faults, and accuracy at scale against the simulator's truth."
import argparse, contextlib, hashlib, io, json, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from rewardbench_nb.core import DOMAINS, Run, DataError, ConfigError
from rewardbench_nb.data import load_pairs, read_table
from rewardbench_nb.text import normalise_text, jaccard
from rewardbench_nb.curation import (STAGE, CurationConfig, curate, dedup, near_duplicates, pair_scores, stratified_split,
                                     true_clusters, write_splits)

ROOT = Path(__file__).resolve().parents[1]
PAIR_SETS = ('judgebench-gpt4o', 'judgebench-claude', 'mtbench-human', 'rmbench-code', 'llmbar-natural', 'rmbench-safety-refuse')

@pytest.fixture(scope='module')
def real_prompts():
    "A Prompts table from shipped pair sets: real prompts, with the repeats real benchmarks have."
    parts = [load_pairs(n)[['id', 'prompt', 'domain']].rename(columns={'prompt': 'text'}).assign(source='human', set=n) for n in PAIR_SETS]
    df = pd.concat(parts, ignore_index=True)
    return df.assign(id=df['set'] + ':' + df['id'].astype(str)).drop(columns='set')

def _stage_args(**kw): return argparse.Namespace(**kw)

def test_validation_split_keeps_clusters_whole_and_domains_stratified(real_prompts):
    "Train, validation and test of the real prompts: no cluster in two splits, each domain 70/10/20 within a few items."
    d = dedup(real_prompts)
    split = stratified_split(d.table, test_frac=0.2, seed=0, group='cluster', validation_frac=0.1)
    assert d.table.assign(split=split).groupby('cluster').split.nunique().max() == 1
    counts = pd.crosstab(d.table.domain, split)
    want = counts.sum(axis=1).to_numpy()[:, None] * [0.2, 0.1]
    assert (abs(counts[['test', 'validation']].to_numpy() - want) <= d.table.groupby('cluster').size().max() + 1).all()
    assert (split == 'test').equals(stratified_split(d.table, 0.2, 0, group='cluster') == 'test')  # test does not move

def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"curation.holdout_domains: expected a count >= 0 or a list"):
        CurationConfig(holdout_domains='two')
    with pytest.raises(ConfigError, match=r"curation.keep: expected 'first' or 'longest'"):
        CurationConfig(keep='newest')
    with pytest.raises(ConfigError, match=r"curation.validation_frac: expected a number in \[0, 1\) that leaves items for train"):
        CurationConfig(test_frac=0.5, validation_frac=0.6)

def test_real_repeats_are_found(real_prompts):
    "Every prompt repeated verbatim in the shipped benchmarks lands in one cluster with its copies."
    labels = np.array(near_duplicates(real_prompts.text))
    norm = real_prompts.text.map(normalise_text)
    for _, g in real_prompts.groupby(norm): assert len(set(labels[g.index])) == 1
    assert (pd.Series(labels).value_counts() > 1).sum() >= 50  # judgebench's two sets share their questions

def test_real_near_duplicates_are_linked(real_prompts):
    "Each near duplicate is within the threshold of some member of its cluster (templated LiveBench questions chain)."
    d = dedup(real_prompts); t = d.table
    near = t[t.kind == 'near']
    assert len(near) > 0
    for _, r in near.iterrows():
        others = t.text[(t.cluster == r.cluster) & (t.id != r.id)]
        assert max(jaccard(r.text, o) for o in others) >= 0.8

def test_engines_agree_on_real_data(real_prompts):
    "datasketch (MinHash.bulk + MinHashLSH) and the numpy engine give the same clusters on real prompts."
    a, b = dedup(real_prompts, engine='numpy'), dedup(real_prompts, engine='datasketch')
    pd.testing.assert_frame_equal(a.table, b.table)

def test_stage_on_a_prompts_file(tmp_path, real_prompts):
    f = tmp_path/'my_prompts.csv'; real_prompts.to_csv(f, index=False)
    run = Run(tmp_path/'runs', {}, run_id='r')
    ctx = dict(seed=3, args=_stage_args(prompts=str(f)))
    STAGE(run, {'curation': {'holdout_domains': ['math']}}, ctx)
    out = run.dir/'curation'
    assert {p.name for p in out.iterdir()} == {'clusters.csv', 'curated.parquet', 'splits.csv', 'splits.parquet', 'audit.json',
                                               'audit.md', 'audit_figure.json', 'provenance.csv', 'dataset_card.md'}
    splits = pd.read_csv(out/'splits.csv'); prov = pd.read_csv(out/'provenance.csv')
    assert set(splits.split) == {'train', 'validation', 'test', 'holdout'}
    assert len(prov) == len(real_prompts) and prov.groupby('cluster').split.nunique().max() == 1
    assert set(splits.id) == set(prov.id[prov.status == 'kept'])
    assert set(ctx['curated'].domain[ctx['curated'].split == 'holdout']) == {'math'}
    card = (out/'dataset_card.md').read_text()
    assert 'my_prompts.csv' in card and hashlib.sha256(f.read_bytes()).hexdigest() in card
    assert str(f) in run.inputs

@pytest.mark.parametrize('content,where', [
    ('id,text,source\np1,hello,human\n', 'domain'),
    ('id,text,domain,source\np1,hello,math,human\np1,bye,math,human\n', 'id'),
])
def test_bad_prompts_file_names_file_and_field(tmp_path, content, where):
    f = tmp_path/'bad.csv'; f.write_text(content)
    with pytest.raises(DataError) as e: read_table(f, 'prompts')
    assert 'bad.csv' in str(e.value) and where in str(e.value)

def test_unknown_file_type(tmp_path):
    f = tmp_path/'prompts.xlsx'; f.write_text('x')
    with pytest.raises(DataError, match='prompts.xlsx'): read_table(f, 'prompts')

def test_no_prompts_is_one_clear_error(tmp_path):
    with pytest.raises(Exception, match='no prompts: run the data stage first or pass --prompts FILE'):
        STAGE(Run(tmp_path, {}, run_id='x'), {}, {'seed': 0})

def test_failed_split_write_leaves_no_partial_file(tmp_path):
    "Parquet cannot store a column mixing ints and strings: the write fails and leaves neither file nor temporary."
    with pytest.raises(Exception): write_splits(tmp_path, [1, 'p2'], ['train', 'test'])
    assert not (tmp_path/'splits.parquet').exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]

SCRIPT = """
import sys, hashlib, pandas as pd
from rewardbench_nb.data import load_pairs
from rewardbench_nb.curation import curate
df = pd.concat([load_pairs(n)[['id','prompt','domain']].rename(columns={'prompt':'text'}).assign(source='human', id=lambda d: n + ':' + d.id.astype(str)) for n in %r], ignore_index=True)
c = curate(df, seed=5, timestamp='t')
print(hashlib.sha256(c.provenance.to_csv(index=False).encode()).hexdigest(), hashlib.sha256(c.card.encode()).hexdigest())
"""

def test_same_seed_same_files_across_processes():
    "Python's string-hash randomisation must not leak into clusters, splits or the card."
    outs = [subprocess.run([sys.executable, '-c', SCRIPT % (PAIR_SETS,)], capture_output=True, text=True, check=True,
                           env={**os.environ, 'PYTHONHASHSEED': s}).stdout for s in ('1', '2')]
    assert outs[0] == outs[1] and len(outs[0].split()) == 2

def _cli_stages():
    "The data and curate stages only, so these tests do not depend on later stages."
    from rewardbench_nb import data, curation
    return {'data': data.STAGE, 'curate': curation.STAGE}

def test_cli_curate_with_a_prompts_file(tmp_path, real_prompts):
    "`rbnb curate --prompts FILE`: the parser, the data stage it needs, then curation, into one run folder."
    import rewardbench_nb.cli as cli
    f = tmp_path/'p.jsonl'; real_prompts.to_json(f, orient='records', lines=True)
    stages = _cli_stages()
    args = cli.make_parser(stages).parse_args(['curate', '--prompts', str(f), '--set', 'curation.holdout_domains=1'])
    run, ctx = cli.run_pipeline(['curate'], ROOT/'configs', args.overrides, runs_dir=tmp_path/'runs', run_id='c',
                                args=args, stages=stages, progress=False)
    manifest = json.loads((run.dir/'manifest.json').read_text())
    assert manifest['status'] == 'complete' and 'curation/splits.parquet' in manifest['outputs']
    assert len(ctx['curation'].holdout) == 1 and len(ctx['curation'].provenance) == len(real_prompts)

def test_cli_bad_config_names_the_key(tmp_path):
    import rewardbench_nb.cli as cli
    with pytest.raises(ConfigError, match=r'curation.threshold: expected a number in \(0, 1\]'):
        cli.run_pipeline(['curate'], None, ['curation.threshold=1.5'], runs_dir=tmp_path, stages=_cli_stages(), progress=False)

def rbnb_here(*args)->tuple:
    "(exit code, stderr lines) of `rbnb ARGS` run in this process."
    import rewardbench_nb.cli as cli
    err = io.StringIO()
    with contextlib.redirect_stderr(err): rc = cli.main([str(a) for a in args])
    return rc, err.getvalue().splitlines()

ALL = ', '.join(sorted(DOMAINS))

@pytest.mark.parametrize('sets,msg', [
    (['holdout_domains=["mathx"]'], f"curation.holdout_domains: ['mathx'] not among the domains ({ALL})"),
    (['holdout_domains=40'], "curation.holdout_domains: expected a count from 0 to 27 (one of the 28 domains must "
                             "stay for train/test), got 40"),
    (['holdout_domains=["math", "coding", "math"]'], "curation.holdout_domains: ['math'] listed more than once"),
    ([f'holdout_domains={json.dumps(sorted(DOMAINS))}'],
     "curation.holdout_domains: all 28 domains held out, none left for train/test"),
    (['holdout_domains=-1'], "curation.holdout_domains: expected a count >= 0 or a list of domain names, got -1"),
    (['holdout_domains=2.5'], "curation.holdout_domains: expected a count >= 0 or a list of domain names, got 2.5"),
    (['threshold=0.1', 'num_perm=4'], "curation.num_perm: 4 permutations are too few for threshold 0.1 (LSH would "
                                      "miss more than 5% of the pairs at it); raise num_perm or the threshold"),
    (['num_perm=5000'], "curation.num_perm: expected an integer from 2 to 4096, got 5000"),
    (['shingle=0'], "curation.shingle: expected an integer from 1 to 64, got 0"),
    (['shingle=1000'], "curation.shingle: expected an integer from 1 to 64, got 1000"),
    (['test_frac=-0.1'], "curation.test_frac: expected a number in (0, 1), got -0.1"),
    (['validation_frac=-0.1'], "curation.validation_frac: expected a number in [0, 1) that leaves items for train "
                               "(test_frac + validation_frac < 1), got -0.1"),
    (['validation_frac=0.8'], "curation.validation_frac: expected a number in [0, 1) that leaves items for train "
                              "(test_frac + validation_frac < 1), got 0.8")])
def test_cli_bad_curation_settings_stop_before_any_stage(tmp_path, sets, msg):
    "Each mistake that needs no data is one line, before the run folder is made or the data stage runs."
    opts = [a for s in sets for a in ('--set', f'curation.{s}')]
    rc, err = rbnb_here('curate', '--quick', '--quiet', *opts, '--runs-dir', tmp_path)
    assert (rc, [l for l in err if l.startswith('rbnb:') or 'Traceback' in l]) == (2, [f'rbnb: error: {msg}'])
    assert not any(tmp_path.iterdir())

def test_cli_a_known_domain_missing_from_the_data_fails_in_the_stage(tmp_path, real_prompts):
    "Whether a named domain is present depends on the prompts: the stage says which are, in one line."
    f = tmp_path/'p.csv'; real_prompts.to_csv(f, index=False)
    rc, err = rbnb_here('curate', '--quick', '--quiet', '--prompts', f, '--set', 'curation.holdout_domains=["travel"]',
                        '--runs-dir', tmp_path/'runs', '--run-id', 'r')
    present = ', '.join(sorted(real_prompts.domain.unique()))
    assert (rc, [l for l in err if l.startswith('rbnb:')]) == \
           (2, [f"rbnb: error: holdout_domains: ['travel'] not among the domains present ({present})"])
    assert json.loads((tmp_path/'runs'/'r'/'manifest.json').read_text())['status'] == 'failed'

def test_long_signatures_find_their_bands():
    "At 4096 permutations threshold**rows underflows for long bands; lsh_params still answers (it once overflowed)."
    from rewardbench_nb.curation import lsh_params
    for t in (0.01, 0.8, 0.99, 1.0):
        b, r = lsh_params(t, 4096)
        assert b >= 2 and b * r <= 4096

@pytest.fixture(scope='module')
def campaign15k():
    import rewardbench_nb.simulation as sim
    return sim.simulate(n_prompts=15000, seed=0)

@pytest.mark.slow
def test_accuracy_and_splits_at_15k(campaign15k):
    c = campaign15k
    cur = curate(c.prompts, seed=0, ratings=c.ratings, annotators=c.annotators, target_shares=c.params['domain_shares'], timestamp='t')
    s = pair_scores(cur.dedup.table.cluster, true_clusters(c.truth, c.prompts.id))
    assert s['recall'] >= 0.95 and s['precision'] >= 0.95, s
    tt = cur.curated[cur.curated.split != 'holdout']
    for split in ('train', 'validation', 'test'):
        gap = (tt.domain.value_counts(normalize=True) - tt.domain[tt.split == split].value_counts(normalize=True)).abs().max()
        assert gap <= 0.01, (split, gap)
    assert tt.split.value_counts(normalize=True).round(2).to_dict() == {'train': 0.7, 'test': 0.2, 'validation': 0.1}
    assert cur.provenance.groupby('cluster').split.nunique().max() == 1
    assert not set(cur.curated.domain[cur.curated.split == 'train']) & set(cur.holdout)
    again = curate(c.prompts, seed=0, ratings=c.ratings, annotators=c.annotators, target_shares=c.params['domain_shares'], timestamp='t')
    pd.testing.assert_frame_equal(cur.provenance, again.provenance)
