"The shipped data sets as the loaders give them, the packaged wheel, and the data stage."
import argparse, gzip, json, os, subprocess, sys, warnings, zipfile
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from rewardbench_nb.core import DOMAINS, ConfigError, RBError, Run, DataError
from rewardbench_nb import data as D

ROOT = Path(__file__).resolve().parents[1]
ROWS = {'hh-rlhf-harmless': 2312 - 9, 'llmbar-natural': 100, 'llmbar-adver-neighbor': 134, 'llmbar-adver-GPTInst': 92,
        'llmbar-adver-GPTOut': 47, 'llmbar-adver-manual': 46, 'mtbench-human': 200, 'rmbench-chat': 129,
        'rmbench-safety-refuse': 284, 'rmbench-safety-response': 157, 'rmbench-code': 228,
        'judgebench-gpt4o': 350, 'judgebench-claude': 270}

@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', D.DataWarning)
        yield

def test_data_dir_is_the_checkout():
    assert D.data_dir() == ROOT/'data'

def test_every_set_has_a_license_file():
    for folder in ['hh-rlhf', 'llmbar', 'rm-bench', 'judgebench', 'rewardbench-results', 'squality-humaneval/data']:
        assert list((ROOT/'data'/folder).glob('LICENSE*')), folder
    assert 'ODC-BY' in (ROOT/'data/rm-bench/LICENSE.md').read_text()
    assert '73c52d7b27b361621361ec959ac6c0eb9bb7a689' in (ROOT/'data/rm-bench/LICENSE.md').read_text()
    assert 'e2c52c284e735e139b3daa61c206ee208f36c461' in (ROOT/'data/judgebench/LICENSE.md').read_text()

def test_card_names_every_loader_name():
    card = (ROOT/'data/CARD.md').read_text()
    for name in [*D.list_pairs(), 'squality', 'krippendorff2011', 'fleiss1971', 'load_rewardbench_results']:
        assert name in card, name

def _files_under(folder:Path)->set:
    return {str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file() and '__pycache__' not in p.parts}

def test_wheel_ships_the_data_and_loaders_read_it(tmp_path):
    "Build the wheel from a copy of the checkout; every data file is inside; an install of it loads the sets."
    src = tmp_path/'src'
    src.mkdir()
    for name in ['pyproject.toml', 'README.md', 'LICENSE']: (src/name).write_bytes((ROOT/name).read_bytes())
    for name in ['rewardbench_nb', 'data']:
        subprocess.run(['cp', '-r', str(ROOT/name), str(src/name)], check=True)
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '.', '--no-deps', '--no-build-isolation', '-w', str(tmp_path/'dist')],
                       cwd=src, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    whl, = (tmp_path/'dist').glob('rewardbench_nb-*.whl')
    names = set(zipfile.ZipFile(whl).namelist())
    want = {f'rewardbench_nb/_data/{f}' for f in _files_under(ROOT/'data')}
    assert want <= names, sorted(want - names)[:5]
    target = tmp_path/'site'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index', '--target', str(target), str(whl)],
                   check=True, capture_output=True, timeout=300)
    code = ("from rewardbench_nb.data import data_dir, load_pairs, load_ratings; import rewardbench_nb;"
            "print(data_dir()); print(rewardbench_nb.__file__); print(len(load_pairs('rmbench-code')), len(load_ratings()))")
    out = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, 'PYTHONPATH': str(target)})
    assert out.returncode == 0, out.stderr[-2000:]
    ddir, pkg, counts = out.stdout.splitlines()
    assert ddir == str(target/'rewardbench_nb'/'_data') and pkg.startswith(str(target))
    assert counts == '228 2700'

@pytest.mark.parametrize('name', list(ROWS))
def test_pair_set_rows_and_columns(name):
    df = D.load_pairs(name)
    assert len(df) == ROWS[name]
    assert {'id', 'prompt', 'chosen', 'rejected', 'subset', 'domain', 'source'} <= set(df.columns)
    assert df.id.is_unique and set(df.domain) <= set(DOMAINS)
    assert df.source.str.match(r'^[\w-]+@[0-9a-f]{7}$').all()

def test_list_pairs_is_every_set():
    assert D.list_pairs() == list(ROWS)
    with pytest.raises(RBError, match="unknown pair set 'nope' .*hh-rlhf-harmless, llmbar-natural"): D.load_pairs('nope')

def test_domain_mapping():
    dom = {n: set(D.load_pairs(n).domain) for n in ROWS}
    assert dom['hh-rlhf-harmless'] == dom['rmbench-safety-refuse'] == dom['rmbench-safety-response'] == {'harmlessness'}
    assert all(dom[n] == {'instruction-following'} for n in ROWS if n.startswith('llmbar'))
    assert dom['mtbench-human'] == dom['rmbench-chat'] == {'general-chat'} and dom['rmbench-code'] == {'coding'}
    jb = D.load_pairs('judgebench-gpt4o')
    assert dict(jb.groupby('subset').domain.first()) == {'mmlu-pro': 'knowledge', 'livebench-reasoning': 'reasoning',
                                                          'livebench-math': 'math', 'livecodebench': 'coding'}
    assert jb.question_source.str.startswith('mmlu-pro-').sum() == 154

def test_llmbar_chosen_is_output_of_label():
    raw = json.loads((ROOT/'data/llmbar/LLMBar/Adversarial/Neighbor/dataset.json').read_text())
    df = D.load_pairs('llmbar-adver-neighbor')
    for r, (_, row) in zip(raw, df.iterrows()):
        assert row.chosen == r[f"output_{r['label']}"] and row.rejected == r[f"output_{3 - int(r['label'])}"]
    assert set(df.subset) == {'llmbar-adver-neighbor'}

def test_judgebench_chosen_follows_label():
    raw = [json.loads(l) for l in (ROOT/'data'/D.PAIR_FILES['judgebench-claude']).read_text().splitlines()]
    df = D.load_pairs('judgebench-claude').set_index('id')
    for r in raw[:50]:
        win = 'response_A' if r['label'] == 'A>B' else 'response_B'
        assert df.loc[r['pair_id'], 'chosen'] == r[win]

def test_hh_rows_set_aside_are_reported_with_lines():
    with pytest.warns(D.DataWarning, match='9 row'):
        df = D.load_pairs('hh-rlhf-harmless')
    q = D.quarantined(df)
    assert sorted(q.line) == [87, 517, 926, 1104, 1255, 1689, 1951, 1953, 2037]
    assert (q.field == 'chosen').sum() == 4 and (q.field == 'prompt').sum() == 5

def test_hh_prompt_plus_turn_is_the_upstream_dialogue():
    raw = [json.loads(l) for l in gzip.open(ROOT/'data/hh-rlhf/harmless-base/test.jsonl.gz', 'rt', encoding='utf-8')]
    df = D.load_pairs('hh-rlhf-harmless')
    for _, r in df.sample(200, random_state=0).iterrows():
        up = raw[int(r.id.rsplit('/', 1)[1]) - 1]
        assert r.prompt + r.chosen == up['chosen'] and r.prompt + r.rejected == up['rejected']
        assert r.prompt.endswith('\n\nAssistant:') and r.chosen.strip()

def test_hh_split_is_deterministic_and_prompt_exclusive():
    df = D.load_pairs('hh-rlhf-harmless')
    assert df.groupby('prompt').split.nunique().max() == 1
    assert df.split.value_counts().to_dict() == {'train': 1849, 'validation': 228, 'test': 226}
    parts = [D.load_pairs('hh-rlhf-harmless', s) for s in D.SPLITS]
    assert sum(map(len, parts)) == len(df) and all(set(p.split) == {s} for p, s in zip(parts, D.SPLITS))
    assert D.split_of('\n\nHuman: hello\n\nAssistant:') == D.split_of('\n\nHuman: hello\n\nAssistant:')

def test_splits_only_where_they_exist():
    with pytest.raises(RBError, match='has no splits'): D.load_pairs('judgebench-gpt4o', split='test')
    with pytest.raises(RBError, match="unknown split 'val'"): D.load_pairs('hh-rlhf-harmless', split='val')

def test_rmbench_keeps_variants_and_error_columns():
    chat = D.load_pairs('rmbench-chat')
    assert (chat.chosen.map(len) == 3).all() and (chat.rejected.map(len) == 3).all()
    assert {'error_key', 'error', 'upstream_subset'} <= set(chat.columns)
    refuse = D.load_pairs('rmbench-safety-refuse')
    assert refuse.upstream_subset.value_counts().to_dict() == {'xstest-should-refuse': 138, 'refusals-dangerous': 84, 'refusals-offensive': 62}
    assert {'language', 'task_id'} <= set(D.load_pairs('rmbench-code').columns)

def test_cache_hands_out_independent_copies():
    a = D.load_pairs('rmbench-code'); a.loc[0, 'prompt'] = 'changed'; a.chosen[1].clear()
    b = D.load_pairs('rmbench-code')
    assert b.loc[0, 'prompt'] != 'changed' and len(b.chosen[1]) == 3
    s = D.load_ratings(); s['value'] = -1
    assert D.load_ratings().value.min() >= 0

def test_squality_long_table():
    sq = D.load_ratings('squality')
    assert len(sq) == 300 * 3 * 3 and sq['item'].nunique() == 300
    assert list(sq.columns[:4]) == ['item', 'annotator', 'criterion', 'value']
    assert set(sq.criterion) == {'correctness', 'selection', 'overall'} and set(sq.system) == {'bart', 'bart-dpr', 'human'}
    assert sq.value.between(0, 100).all() and sq.value.dtype == float
    assert (sq.groupby(['item', 'criterion']).annotator.nunique() == 3).all()
    assert sq.groupby('annotator')['item'].nunique().to_dict() == {'2': 225, '3': 225, '6': 225, '8': 225}
    with pytest.raises(RBError, match="unknown ratings set"): D.load_ratings('hh')

def test_squality_values_match_the_file():
    raw = json.loads((ROOT/'data'/D.RATING_FILES['squality']).read_text().splitlines()[0])
    rv = raw['questions']['2']['human']['reviews'][1]
    sq = D.load_ratings().set_index(['item', 'annotator', 'criterion'])
    assert sq.loc[(f"{raw['passage-id']}/2/human", rv['worker_id'], 'overall'), 'value'] == float(rv['overall-rating'])

def test_squality_unparsable_value_is_reported_not_loaded():
    assert D._score_0_100('55') == (55.0, None)
    for v in ['n/a', '', None, 120, -1, float('nan'), True]: assert D._score_0_100(v)[1], v

def test_reliability_textbook_answers():
    import krippendorff as kr  # GPL-3.0: test oracle only
    k = D.load_reliability('krippendorff2011')
    assert k.shape == (4, 12) and np.isnan(k).sum() == 7
    assert round(kr.alpha(reliability_data=k, level_of_measurement='nominal'), 3) == 0.743
    assert round(kr.alpha(reliability_data=k, level_of_measurement='interval'), 3) == 0.849
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
    f = D.load_reliability('fleiss1971')
    assert f.shape == (30, 6) and round(fleiss_kappa(aggregate_raters(f.astype(int))[0]), 3) == 0.430
    f[0, 0] = 99; assert D.load_reliability('fleiss1971')[0, 0] != 99

def test_rewardbench_results_tidy():
    rb = D.load_rewardbench_results()
    assert rb.shape[0] == 92 and rb.model.nunique() == 4 and rb.subset.nunique() == 23
    assert rb.groupby('section').subset.nunique().to_dict() == {'Chat': 5, 'Chat Hard': 6, 'Reasoning': 7, 'Safety': 5}
    assert rb.accuracy.between(0, 1).all()

def test_default_pair_sets_are_every_shipped_set():
    assert D.DataConfig().pair_sets == D.list_pairs()

def test_rating_scale_setting():
    "data.rating_scale names a known scale; the simulated campaign rates on 1-5, so another scale needs the user's file."
    assert D.DataConfig(rating_scale='0-4').rating_scale == '0-4'
    with pytest.raises(ConfigError, match="data.rating_scale: expected one of 1-5, 0-4, 0-1, got '1-7'"): D.DataConfig(rating_scale='1-7')
    with pytest.raises(ConfigError, match=r"data.rating_scale = '0-4': expected '1-5' for the simulated campaign \(another "
                                          r"scale describes a --ratings FILE\)"):
        D.STAGE.resolve({'data': {'pair_sets': [], 'rating_scale': '0-4'}}, {})

def _campaign_files(tmp_path):
    (tmp_path/'prompts.jsonl').write_text('\n'.join(json.dumps(dict(id=f'p{i}', text=f'prompt {i}', domain=d, source='team'))
                                                    for i, d in enumerate(['coding', 'math', 'harmlessness'])) + '\n')
    (tmp_path/'ratings.csv').write_text('item,annotator,criterion,likert\np0,a1,usefulness,4\np0,a2,usefulness,5\np1,a1,factuality,2\n')
    pd.DataFrame(dict(item_a=['p0', 'p1'], item_b=['p1', 'p2'], annotator=['a1', 'a2'], winner=['p0', 'tie'])).to_parquet(tmp_path/'prefs.parquet')
    return argparse.Namespace(prompts=str(tmp_path/'prompts.jsonl'), ratings=str(tmp_path/'ratings.csv'),
                              preferences=str(tmp_path/'prefs.parquet'), quarantine=False)

def test_stage_with_user_files(tmp_path):
    run = Run(tmp_path/'runs', {}, run_id='r')
    ctx = dict(seed=0, quick=True, args=_campaign_files(tmp_path))
    D.STAGE(run, {'data': {'pair_sets': ['llmbar-natural', 'judgebench-claude']}}, ctx)
    assert ctx['campaign'] is None and list(ctx['pairs']) == ['llmbar-natural', 'judgebench-claude']
    assert (len(ctx['prompts']), len(ctx['ratings']), len(ctx['preferences'])) == (3, 3, 2)
    assert len(ctx['squality']) == 2700
    for kind in ['prompts', 'ratings', 'preferences']:
        assert pd.read_parquet(run.dir/'data'/f'{kind}.parquet').shape[0] == len(ctx[kind])
    assert pd.read_parquet(run.dir/'data/pairs/judgebench-claude.parquet').shape[0] == 270
    summary = pd.read_csv(run.dir/'data/pairs_summary.csv')
    assert summary.set.tolist() == ['llmbar-natural', 'judgebench-claude'] and summary.rows.tolist() == [100, 270]
    assert any(k.endswith('ratings.csv') for k in run.inputs) and any('judgebench' in k for k in run.inputs)
    assert any(k.endswith('all-responses.jsonl') for k in run.inputs)

def test_stage_reads_ratings_on_the_configured_scale(tmp_path):
    "A 0-4 ratings file passes with data.rating_scale = 0-4, which the stage hands on in ctx; on 1-5 its 0 is an error."
    args = _campaign_files(tmp_path)
    (tmp_path/'ratings.csv').write_text('item,annotator,criterion,likert\np0,a1,usefulness,0\np0,a2,usefulness,4\n')
    ctx = dict(seed=0, quick=True, args=args)
    D.STAGE(Run(tmp_path/'runs', {}, run_id='s04'), {'data': {'pair_sets': [], 'rating_scale': '0-4'}}, ctx)
    assert ctx['ratings'].likert.tolist() == [0, 4] and ctx['rating_scale'] == '0-4'
    with pytest.raises(DataError, match=r"ratings.csv:2: field 'likert': expected an integer Likert value 1-5, got 0"):
        D.STAGE(Run(tmp_path/'runs', {}, run_id='s15'), {'data': {'pair_sets': []}}, dict(seed=0, quick=True, args=args))

def test_stage_quarantines_user_rows_into_the_run(tmp_path):
    args = _campaign_files(tmp_path); args.quarantine = True
    with open(args.ratings, 'a') as f: f.write('p2,a1,usefulness,9\n')
    run = Run(tmp_path/'runs', {}, run_id='q'); ctx = dict(seed=0, quick=True, args=args)
    D.STAGE(run, {'data': {'pair_sets': ['llmbar-adver-manual']}}, ctx)
    assert len(ctx['ratings']) == 3
    q = pd.read_csv(run.dir/'data/ratings.quarantine.csv')
    assert q.line.tolist() == [5] and 'got 9' in q.reason[0]

def test_stage_bad_user_file_stops_with_location(tmp_path):
    args = _campaign_files(tmp_path)
    with open(args.ratings, 'a') as f: f.write('p2,a1,usefulness,9\n')
    with pytest.raises(DataError, match=r"ratings.csv:5: field 'likert'"):
        D.STAGE(Run(tmp_path/'runs', {}), {'data': {'pair_sets': []}}, dict(seed=0, quick=True, args=args))

def test_stage_rejects_unknown_pair_set(tmp_path):
    with pytest.raises(ConfigError, match="data.pair_sets = \\['llmbar'\\]: expected known pair sets; 'llmbar' is not one"):
        D.STAGE(Run(tmp_path, {}), {'data': {'pair_sets': ['llmbar']}}, {})
    with pytest.raises(ConfigError, match="key 'pair_sets': expected list"):
        D.STAGE(Run(tmp_path, {}, run_id='b'), {'data': {'pair_sets': 'llmbar-natural'}}, {})

def test_stage_declaration():
    assert (D.STAGE.name, D.STAGE.section, D.STAGE.config) == ('data', 'data', D.DataConfig)
    p = argparse.ArgumentParser(); D.STAGE.add_args(p)
    a = p.parse_args(['--ratings', 'r.csv', '--quarantine'])
    assert (a.ratings, a.prompts, a.quarantine) == ('r.csv', None, True)

def test_simulate_campaign_wrapper():
    import inspect
    assert list(inspect.signature(D.simulate_campaign).parameters) == ['n_prompts', 'seed', 'kwargs']
    import rewardbench_nb.simulation as sim
    a, b = D.simulate_campaign(n_prompts=60, seed=3), sim.simulate(n_prompts=60, seed=3)
    pd.testing.assert_frame_equal(a.ratings, b.ratings)
    D.validate_prompts(a.prompts); D.validate_ratings(a.ratings); D.validate_preferences(a.preferences)

def test_stage_simulates_when_no_files(tmp_path):
    run = Run(tmp_path/'runs', {}, run_id='s'); ctx = dict(seed=1, quick=True, args=None)
    D.STAGE(run, {'data': {'pair_sets': ['llmbar-natural'], 'quick_prompts': 50}}, ctx)
    assert ctx['campaign'] is not None and ctx['prompts'].id.nunique() == 50
    for kind in ['prompts', 'ratings', 'preferences', 'campaign/truth', 'campaign/annotators']: assert (run.dir/'data'/f'{kind}.parquet').is_file()
