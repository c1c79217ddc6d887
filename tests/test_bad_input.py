"Bad user files, one case per test: each names file:line, the field and what was expected, or is set aside under quarantine."
import json, warnings
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from rewardbench_nb.core import DataError, RBError
from rewardbench_nb.data import read_table, quarantined, DataWarning, validate_preferences

RATINGS_HEAD = 'item,annotator,criterion,likert\n'

def write(path:Path, text:str)->Path:
    path.write_text(text, encoding='utf-8'); return path

def ratings_csv(tmp_path, *rows)->Path:
    return write(tmp_path/'ratings.csv', RATINGS_HEAD + ''.join(r + '\n' for r in rows))

def prompts_jsonl(tmp_path, *recs)->Path:
    return write(tmp_path/'prompts.jsonl', ''.join(json.dumps(r) + '\n' for r in recs))

def P(i, **kw): return dict(id=f'p{i}', text=f'prompt {i}', domain='coding', source='team', **kw)

def expect(path, kind, match, **kw):
    with pytest.raises(DataError, match=match) as e: read_table(path, kind, **kw)
    return e.value

# ---- file-level problems
def test_file_not_found(tmp_path):
    expect(tmp_path/'nope.csv', 'ratings', r'nope.csv: file not found')

def test_unsupported_extension(tmp_path):
    expect(write(tmp_path/'r.txt', 'x'), 'ratings', r"unsupported file type '.txt' \(expected one of: .csv, .jsonl, .json, .parquet\)")

def test_unknown_kind(tmp_path):
    with pytest.raises(RBError, match="unknown table kind 'rating'"): read_table(ratings_csv(tmp_path, 'p1,a,safety,3'), 'rating')

def test_empty_csv(tmp_path):
    expect(write(tmp_path/'r.csv', ''), 'ratings', r'r.csv:1: empty file: expected a header row')

def test_missing_column(tmp_path):
    e = expect(write(tmp_path/'r.csv', 'item,annotator,likert\np1,a1,3\n'), 'ratings',
               r"r.csv: field 'criterion': missing column\(s\) 'criterion': a ratings table needs columns item, annotator, criterion, likert")
    assert e.field == 'criterion' and e.line is None

def test_missing_column_in_jsonl(tmp_path):
    expect(write(tmp_path/'p.jsonl', json.dumps(dict(id='p1', text='hi', source='s')) + '\n'), 'prompts', r"missing column\(s\) 'domain'")

def test_repeated_header_name(tmp_path):
    expect(write(tmp_path/'r.csv', 'item,item,criterion,likert\n'), 'ratings', r'r.csv:1: repeated column name')

def test_ragged_csv_row(tmp_path):
    expect(ratings_csv(tmp_path, 'p1,a1,safety,3', 'p2,a1,safety'), 'ratings', r'ratings.csv:3: expected 4 fields \(as in the header\), got 3')

def test_corrupt_parquet(tmp_path):
    expect(write(tmp_path/'r.parquet', 'not parquet'), 'ratings', r'r.parquet: not a readable Parquet file')

# ---- JSON and JSONL syntax
def test_malformed_jsonl_line(tmp_path):
    p = write(tmp_path/'p.jsonl', json.dumps(P(1)) + '\n' + '{"id": "p2", "text": "hi",, }\n')
    e = expect(p, 'prompts', r'p.jsonl:2: not valid JSON: Expecting property name enclosed in double quotes at column 27')
    assert e.line == 2

def test_jsonl_line_not_an_object(tmp_path):
    expect(write(tmp_path/'p.jsonl', json.dumps(P(1)) + '\n[1, 2]\n'), 'prompts', r'p.jsonl:2: expected a JSON object on each line, got list')

def test_malformed_json_document(tmp_path):
    text = '[\n  {"id": "p1", "text": "a", "domain": "coding", "source": "s"},\n  {"id": "p2" "text": "b"}\n]'
    expect(write(tmp_path/'p.json', text), 'prompts', r"p.json:3: not valid JSON: Expecting ',' delimiter")

def test_json_not_an_array(tmp_path):
    expect(write(tmp_path/'p.json', json.dumps(P(1))), 'prompts', r'p.json:1: expected a JSON array of objects')

def test_json_array_reports_the_line_of_the_record(tmp_path):
    text = json.dumps([P(1), P(2), dict(P(3), domain='gardening')], indent=2)
    e = expect(write(tmp_path/'p.json', text), 'prompts', r"field 'domain': expected one of the 28 domains")
    assert text.splitlines()[e.line - 1].strip() == '{' and '"p3"' in text.splitlines()[e.line]

# ---- encodings
def test_non_utf8_csv(tmp_path):
    p = tmp_path/'r.csv'
    p.write_bytes((RATINGS_HEAD + 'p1,a1,safety,3\np2,Jos\xe9,safety,4\n').encode('latin-1'))
    offset = p.read_bytes().index(b'\xe9')
    expect(p, 'ratings', rf'r.csv:3: not UTF-8: byte 0xe9 at byte offset {offset}; save the file as UTF-8')

def test_non_utf8_jsonl(tmp_path):
    p = tmp_path/'p.jsonl'
    p.write_bytes(json.dumps(P(1)).encode() + b'\n' + b'{"id": "p2", "text": "caf\xe9", "domain": "coding", "source": "s"}\n')
    offset = p.read_bytes().index(b'\xe9')
    expect(p, 'prompts', rf'p.jsonl:2: not UTF-8: byte 0xe9 at byte offset {offset}')

def test_utf8_bom_is_fine(tmp_path):
    p = tmp_path/'r.csv'; p.write_bytes(b'\xef\xbb\xbf' + (RATINGS_HEAD + 'p1,a1,safety,3\n').encode())
    assert read_table(p, 'ratings').likert.tolist() == [3]

# ---- values
@pytest.mark.parametrize('bad,shown', [('3.5', '3.5'), ('0', '0'), ('6', '6'), ('', 'an empty string'), ('three', "'three'"), ('nan', "'nan'")])
def test_likert_out_of_range_in_csv(tmp_path, bad, shown):
    expect(ratings_csv(tmp_path, 'p1,a1,safety,3', f'p1,a2,safety,{bad}'), 'ratings',
           rf"ratings.csv:3: field 'likert': expected an integer Likert value 1-5, got {shown}$")

@pytest.mark.parametrize('bad', [3.5, 0, 6, None, True, 'x', [3]])
def test_likert_mistyped_in_jsonl(tmp_path, bad):
    p = write(tmp_path/'r.jsonl', json.dumps(dict(item='p1', annotator='a1', criterion='safety', likert=bad)) + '\n')
    expect(p, 'ratings', r"r.jsonl:1: field 'likert': expected an integer Likert value 1-5")

def test_likert_nan_in_parquet(tmp_path):
    pd.DataFrame(dict(item=['p1', 'p2'], annotator=['a', 'a'], criterion=['safety'] * 2, likert=[4.0, np.nan])).to_parquet(tmp_path/'r.parquet')
    expect(tmp_path/'r.parquet', 'ratings', r"r.parquet:2: field 'likert': expected an integer Likert value 1-5, got a missing value")

def test_integral_likert_values_are_ints(tmp_path):
    p = write(tmp_path/'r.jsonl', ''.join(json.dumps(dict(item=f'p{v}', annotator='a', criterion='safety', likert=v)) + '\n' for v in [1, 2.0, '3', 5]))
    df = read_table(p, 'ratings')
    assert df.likert.tolist() == [1, 2, 3, 5] and df.likert.dtype == np.int64

def test_unknown_criterion(tmp_path):
    expect(ratings_csv(tmp_path, 'p1,a1,helpfulness,3'), 'ratings', r"ratings.csv:2: field 'criterion': expected one of usefulness, factuality, safety, alignment, got 'helpfulness'")

def test_empty_text(tmp_path):
    expect(prompts_jsonl(tmp_path, P(1), dict(P(2), text='   ')), 'prompts', r"prompts.jsonl:2: field 'text': expected a non-empty string, got a blank string")

def test_mistyped_text(tmp_path):
    expect(prompts_jsonl(tmp_path, dict(P(1), text=42)), 'prompts', r"prompts.jsonl:1: field 'text': expected a non-empty string, got 42")

def test_missing_value_in_csv_cell(tmp_path):
    write(tmp_path/'p.csv', 'id,text,domain,source\np1,,coding,team\n')
    expect(tmp_path/'p.csv', 'prompts', r"p.csv:2: field 'text': expected a non-empty string, got an empty string")

def test_duplicate_ids(tmp_path):
    e = expect(prompts_jsonl(tmp_path, P(1), P(2), P(1)), 'prompts', r"prompts.jsonl:3: field 'id': duplicate id p1 \(first at line 1\)")
    assert e.field == 'id'

def test_duplicate_rating(tmp_path):
    expect(ratings_csv(tmp_path, 'p1,a1,safety,3', 'p1,a1,safety,4'), 'ratings', r"ratings.csv:3: field 'criterion': duplicate item / annotator / criterion p1 / a1 / safety \(first at line 2\)")

def test_unknown_domain(tmp_path):
    expect(prompts_jsonl(tmp_path, dict(P(1), domain='maths')), 'prompts',
           r"prompts.jsonl:1: field 'domain': expected one of the 28 domains of core.DOMAINS, got 'maths' \(did you mean 'math'\?\)")

def test_id_of_wrong_type(tmp_path):
    expect(prompts_jsonl(tmp_path, dict(P(1), id=1.5)), 'prompts', r"field 'id': expected a non-empty string or integer id, got 1.5")

def test_pairs_with_empty_variant(tmp_path):
    rec = dict(id='x1', prompt='q', chosen=['a', ''], rejected='b', subset='s', domain='coding', source='team')
    expect(write(tmp_path/'pairs.jsonl', json.dumps(rec) + '\n'), 'pairs', r"pairs.jsonl:1: field 'chosen': expected a non-empty string or a non-empty list of non-empty strings")

def test_winner_not_in_pair(tmp_path):
    write(tmp_path/'prefs.csv', 'item_a,item_b,annotator,winner\nr1,r2,a1,r2\nr1,r2,a1,r3\n')
    expect(tmp_path/'prefs.csv', 'preferences', r"prefs.csv:3: field 'winner': expected the value of item_a \('r1'\), of item_b \('r2'\) or 'tie', got 'r3'")

def test_preference_of_an_item_with_itself(tmp_path):
    write(tmp_path/'prefs.csv', 'item_a,item_b,annotator,winner\nr1,r1,a1,r1\n')
    expect(tmp_path/'prefs.csv', 'preferences', r"prefs.csv:2: field 'item_b': item_a and item_b are the same item 'r1'")

def test_preference_naming_unknown_item(tmp_path):
    write(tmp_path/'prefs.csv', 'item_a,item_b,annotator,winner\nr1,r2,a1,tie\nr1,r9,a1,r9\n')
    expect(tmp_path/'prefs.csv', 'preferences', r"prefs.csv:3: field 'item_b': unknown item 'r9' \(not among the 2 known items\)", known_items=['r1', 'r2'])
    with pytest.raises(RBError, match='known_items applies to the item columns of preferences and ratings only'):
        read_table(prompts_jsonl(tmp_path, P(1)), 'prompts', known_items=['p1'])

def test_rating_naming_unknown_item(tmp_path):
    expect(ratings_csv(tmp_path, 'p1,a,safety,3', 'p7,a,safety,2'), 'ratings',
           r"ratings.csv:3: field 'item': unknown item 'p7' \(not among the 1 known items\)", known_items=['p1'])

def test_csv_line_numbers_follow_quoted_newlines(tmp_path):
    write(tmp_path/'p.csv', 'id,text,domain,source\np1,"line one\nline two\nline three",coding,team\np2,ok,cookin,team\n')
    expect(tmp_path/'p.csv', 'prompts', r"p.csv:5: field 'domain': .*got 'cookin' \(did you mean 'cooking'\?\)")

def test_more_problems_are_counted(tmp_path):
    expect(ratings_csv(tmp_path, 'p1,a1,safety,9', 'p2,a1,safety,0', 'p3,a1,safty,3'), 'ratings',
           r"ratings.csv:2: .*got 9 \(2 more problem\(s\); pass quarantine= to set bad rows aside")

# ---- quarantine
def quarantine_read(*args, **kw):
    with pytest.warns(DataWarning) as w: df = read_table(*args, **kw)
    return df, str(w[0].message)

def test_quarantine_csv_keeps_good_rows_and_writes_bad_ones(tmp_path):
    src = ratings_csv(tmp_path, 'p1,a1,safety,3', 'p1,a2,safety,3.5', 'p2,a1,usefulness,4', 'p2,a2,usefulnes,2', 'p3,a1,safety,5')
    out = tmp_path/'bad.csv'
    df, msg = quarantine_read(src, 'ratings', quarantine=out)
    assert df.item.tolist() == ['p1', 'p2', 'p3'] and df.likert.tolist() == [3, 4, 5]
    assert '2 bad row(s) set aside (2 problem(s)), 3 kept' in msg and str(out) in msg
    q = pd.read_csv(out, dtype=str)
    assert q.line.tolist() == ['3', '5'] and q.field.tolist() == ['likert', 'criterion']
    assert q.likert.tolist() == ['3.5', '2'] and q.criterion.tolist() == ['safety', 'usefulnes']
    assert len(df) + q.line.nunique() == 5  # nothing silently dropped
    assert quarantined(df).line.tolist() == [3, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.csv', 'ratings.csv']  # no temporary file left

def test_quarantine_jsonl_sets_aside_unreadable_lines(tmp_path):
    p = tmp_path/'p.jsonl'
    p.write_bytes(b'\n'.join([json.dumps(P(1)).encode(), b'{"id": "p2", broken', b'{"id": "p3", "text": "caf\xe9", "domain": "coding", "source": "s"}',
                              json.dumps(dict(P(4), domain='gardening')).encode(), json.dumps(P(5)).encode(), json.dumps(P(1)).encode()]) + b'\n')
    df, msg = quarantine_read(p, 'prompts', quarantine=tmp_path/'q.jsonl')
    assert df.id.tolist() == ['p1', 'p5']
    q = [json.loads(l) for l in (tmp_path/'q.jsonl').read_text().splitlines()]
    assert [r['line'] for r in q] == [2, 3, 4, 6]
    assert 'not valid JSON' in q[0]['reason'] and q[0]['raw'].startswith('{"id": "p2"')
    assert 'not UTF-8' in q[1]['reason'] and 'duplicate id p1 (first at line 1)' in q[3]['reason']
    assert q[2]['domain'] == 'gardening' and q[2]['field'] == 'domain'
    assert '4 bad row(s) set aside' in msg

def test_quarantine_true_writes_next_to_the_file(tmp_path):
    src = ratings_csv(tmp_path, 'p1,a1,safety,3', 'p1,a2,safety,7')
    df, msg = quarantine_read(src, 'ratings', quarantine=True)
    assert (tmp_path/'ratings.csv.quarantine.csv').is_file() and len(df) == 1

def test_quarantine_of_ragged_csv_row(tmp_path):
    src = ratings_csv(tmp_path, 'p1,a1,safety,3', 'p2,a1', 'p3,a1,safety,2')
    df, _ = quarantine_read(src, 'ratings', quarantine=tmp_path/'q.csv')
    assert df.item.tolist() == ['p1', 'p3']
    q = pd.read_csv(tmp_path/'q.csv')
    assert q.line.tolist() == [3] and q.raw.tolist() == ['p2,a1']

def test_quarantine_does_not_hide_a_missing_column(tmp_path):
    expect(write(tmp_path/'r.csv', 'item,annotator,likert\np1,a1,3\n'), 'ratings', r"missing column", quarantine=True)

def test_quarantine_of_a_dataframe_without_file():
    prefs = pd.DataFrame(dict(item_a=['r1', 'r1'], item_b=['r2', 'r2'], annotator=['a', 'b'], winner=['r2', 'r5']))
    with pytest.warns(DataWarning, match=r'table: 1 bad row\(s\) set aside .*see quarantined\(df\)'):
        df = validate_preferences(prefs, quarantine=True)
    assert len(df) == 1 and quarantined(df).to_dict('records') == [
        dict(file=None, line=2, field='winner', reason="expected the value of item_a ('r1'), of item_b ('r2') or 'tie', got 'r5'")]

def test_quarantine_attrs_survive_concat():
    prefs = pd.DataFrame(dict(item_a=['r1', 'r1'], item_b=['r2', 'r2'], annotator=['a', 'b'], winner=['r2', 'r5']))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DataWarning)
        a = validate_preferences(prefs, quarantine=True); b = validate_preferences(prefs.assign(winner='r2'), quarantine=True)
    assert len(pd.concat([a, b])) == 3 and len(pd.concat([a, a]).attrs['quarantine']) == 1

def test_quarantine_when_every_line_is_unreadable(tmp_path):
    p = write(tmp_path/'p.jsonl', '{broken\n[1]\n')
    df, msg = quarantine_read(p, 'prompts', quarantine=tmp_path/'q.jsonl')
    assert len(df) == 0 and list(df.columns[:4]) == ['id', 'text', 'domain', 'source'] and '2 bad row(s)' in msg

def test_empty_jsonl(tmp_path):
    expect(write(tmp_path/'p.jsonl', '\n'), 'prompts', r'p.jsonl: no rows: expected a prompts table')

# ---- the other kinds the one validation layer checks
def test_pairs_file_mixing_style_variants(tmp_path):
    "RM-Bench-style rows hold k variants per side; a row with another number of them is located."
    recs = [dict(id=f'x{i}', prompt='q', chosen=ch, rejected=['r1', 'r2', 'r3'], subset='s', domain='coding', source='team')
            for i, ch in enumerate([['a', 'b', 'c'], ['a', 'b']])]
    expect(write(tmp_path/'pairs.jsonl', ''.join(json.dumps(r) + '\n' for r in recs)), 'pairs',
           r"pairs.jsonl:2: field 'chosen': expected a list of 3 texts \(like line 1\), got a list of 2")

def test_pairs_file_mixing_a_text_and_variants(tmp_path):
    recs = [dict(id='x1', prompt='q', chosen='a', rejected='b', subset='s', domain='coding', source='team'),
            dict(id='x2', prompt='q', chosen='a', rejected=['b', 'c'], subset='s', domain='coding', source='team')]
    expect(write(tmp_path/'pairs.jsonl', ''.join(json.dumps(r) + '\n' for r in recs)), 'pairs',
           r"pairs.jsonl:2: field 'rejected': expected one text \(like line 1\), got a list of 2 texts")

def test_scored_items_file_with_a_bad_score(tmp_path):
    p = write(tmp_path/'scored.csv', 'prompt,response,final\nq1,a1,0.5\nq2,a2,high\n')
    expect(p, 'scored', r"scored.csv:3: field 'final': expected a finite number, got 'high'",
           columns=('prompt', 'response'), extra={'final': 'number'})
    ok = write(tmp_path/'ok.csv', 'prompt,response,score\nq,a,1e-3\n')
    assert read_table(ok, 'scored').score.tolist() == [0.001]   # the default score column is `score`

def test_scored_items_file_without_a_response(tmp_path):
    expect(write(tmp_path/'scored.csv', 'prompt,response,score\nq1,,0.5\n'), 'scored',
           r"scored.csv:2: field 'response': expected a non-empty string, got an empty string")

@pytest.mark.parametrize('scale,ok,bad', [('0-4', '0', '5'), ('0-1', '1', '2'), ('1-5', '5', '0')])
def test_likert_scales(tmp_path, scale, ok, bad):
    assert read_table(ratings_csv(tmp_path, f'p1,a1,safety,{ok}'), 'ratings', scale=scale).likert.tolist() == [int(ok)]
    lo, hi = scale.split('-')
    expect(ratings_csv(tmp_path, f'p1,a1,safety,{bad}'), 'ratings',
           rf"ratings.csv:2: field 'likert': expected an integer Likert value {lo}-{hi}, got {bad}$", scale=scale)

def test_unknown_scale_and_empty_table():
    from rewardbench_nb.core import ConfigError
    from rewardbench_nb.data import validate
    with pytest.raises(ConfigError, match="rating scale: expected one of 1-5, 0-4, 0-1, got '1-10'"):
        validate(pd.DataFrame(dict(item=['p'], annotator=['a'], criterion=['safety'], likert=[3])), 'ratings', scale='1-10')
    with pytest.raises(DataError, match=r"no rows: expected a ratings table \(item, annotator, criterion, likert\)"):
        validate(pd.DataFrame(columns=['item', 'annotator', 'criterion', 'likert']), 'ratings', empty_ok=False)

def test_repeated_preference_row(tmp_path):
    "The same annotator comparing the same two items twice (either order) would count twice in the Borda score."
    write(tmp_path/'prefs.csv', 'item_a,item_b,annotator,winner\nr1,r2,a1,r2\nr1,r3,a1,r1\nr2,r1,a1,r2\n')
    expect(tmp_path/'prefs.csv', 'preferences', r"prefs.csv:4: field 'annotator': annotator 'a1' compared 'r2' and "
                                                  r"'r1' already at line 2: a repeated preference would count twice$")

# ---- the command line: every mistake one line `rbnb: error: ...`, before any work where it can be, and never a
# run folder without a manifest or a half-written artifact
import contextlib, io, os, resource, shutil, signal, subprocess, sys
from rewardbench_nb.cli import main

ROOT = Path(__file__).resolve().parents[1]

def rbnb_in_process(*argv)->tuple:
    "(exit code, stderr lines) of `rbnb argv` run in this process."
    err = io.StringIO()
    with contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter('always')
        code = main([str(a) for a in argv])
    return code, err.getvalue().splitlines()

def one_line(code:int, lines:list)->str:
    "The error line of a failed command: exit 2, no traceback, exactly one `rbnb: error:` line."
    assert code == 2 and not any('Traceback' in l for l in lines), lines
    errors = [l for l in lines if l.startswith('rbnb: error: ')]
    assert len(errors) == 1, lines
    return errors[0].removeprefix('rbnb: error: ')

def campaign_files(tmp_path, repeat:bool)->tuple:
    "Ratings of three items by three annotators, and preferences among them (one row repeated when `repeat`)."
    rows = [f'p{i},a{j},{c},{1 + (i + j) % 5}' for i in range(1, 4) for j in range(1, 4) for c in
            ('usefulness', 'factuality', 'safety', 'alignment')]
    prefs = ['p1,p2,a1,p1', 'p2,p3,a1,p2', 'p1,p3,a2,p3', 'p2,p3,a2,p3', 'p1,p2,a3,p2']
    if repeat: prefs.insert(3, 'p3,p1,a2,p3')   # a2 compared p1 and p3 at line 4 already
    r = write(tmp_path/'ratings.csv', RATINGS_HEAD + '\n'.join(rows) + '\n')
    p = write(tmp_path/'prefs.csv', 'item_a,item_b,annotator,winner\n' + '\n'.join(prefs) + '\n')
    return r, p

def test_cli_repeated_preference_is_one_line_and_no_scores(tmp_path):
    r, p = campaign_files(tmp_path, repeat=True)
    msg = one_line(*rbnb_in_process('score', '--quick', '--quiet', '--ratings', r, '--preferences', p,
                                    '--runs-dir', tmp_path/'runs', '--run-id', 'x'))
    assert msg == (f"{p}:5: field 'annotator': annotator 'a2' compared 'p3' and 'p1' already at line 4: "
                   "a repeated preference would count twice"), msg
    m = json.loads((tmp_path/'runs'/'x'/'manifest.json').read_text())
    assert (m['status'], m['stage']) == ('failed', 'data') and not (tmp_path/'runs'/'x'/'scoring').exists()

def test_cli_quarantined_repeat_leaves_the_scores_of_the_clean_file(tmp_path):
    "--quarantine sets the repeated row aside with its line; the scores are those of the file without it."
    clean, dirty = tmp_path/'clean', tmp_path/'dirty'
    for d, rep in ((clean, False), (dirty, True)): d.mkdir(); campaign_files(d, rep)
    for d in (clean, dirty):
        code, lines = rbnb_in_process('score', '--quick', '--quiet', '--quarantine', '--ratings', d/'ratings.csv',
                                      '--preferences', d/'prefs.csv', '--runs-dir', d/'runs', '--run-id', 'x')
        assert code == 0, lines
    q = pd.read_csv(dirty/'runs'/'x'/'data'/'preferences.quarantine.csv')
    assert q.line.tolist() == [5] and 'already at line 4' in q.reason[0]
    scores = [pd.read_csv(d/'runs'/'x'/'scoring'/'scores.csv') for d in (clean, dirty)]
    pd.testing.assert_frame_equal(*scores)

def test_cli_unknown_config_section(tmp_path):
    msg = one_line(*rbnb_in_process('curate', '--set', 'scorng.alpha=1.5', '--runs-dir', tmp_path))
    assert msg == ("override 'scorng.alpha=1.5': unknown config section 'scorng' (expected one of: agreement, "
                   "calibration, curation, data, evaluation, gamma, policy, reward_model, rlhf, run, scoring)"), msg
    assert list(tmp_path.iterdir()) == []

def test_cli_stray_config_file(tmp_path):
    cfg = tmp_path/'configs'; shutil.copytree(ROOT/'configs', cfg); write(cfg/'scorng.toml', 'alpha = 1.5\n')
    msg = one_line(*rbnb_in_process('curate', '--config-dir', cfg, '--runs-dir', tmp_path/'runs'))
    assert msg.startswith(f"{cfg/'scorng.toml'}: unknown config section 'scorng' (expected one of: agreement,"), msg
    assert not (tmp_path/'runs').exists()

def test_cli_config_file_not_utf8(tmp_path):
    cfg = tmp_path/'configs'; shutil.copytree(ROOT/'configs', cfg)
    (cfg/'curation.toml').write_bytes(b'# r\xe9glages\nthreshold = 0.8\n')
    msg = one_line(*rbnb_in_process('curate', '--config-dir', cfg, '--runs-dir', tmp_path/'runs'))
    assert msg == f"{cfg/'curation.toml'}:1: not UTF-8: byte 0xe9 at byte offset 3; save the file as UTF-8", msg
    assert not (tmp_path/'runs').exists()

@pytest.mark.parametrize('seed', ['-5', '4294967296'])
def test_cli_seed_out_of_range(tmp_path, seed):
    msg = one_line(*rbnb_in_process('curate', '--seed', seed, '--runs-dir', tmp_path))
    assert msg == f"run.seed = {seed}: expected an integer from 0 to 4294967295 (--seed or configs/run.toml)", msg
    assert list(tmp_path.iterdir()) == []

@pytest.mark.parametrize('run_id', ['../x', '.x', 'a/b', '-x', ''])
def test_cli_run_id_stays_inside_the_runs_folder(tmp_path, run_id):
    runs = tmp_path/'runs'; runs.mkdir()
    msg = one_line(*rbnb_in_process('curate', f'--run-id={run_id}', '--runs-dir', runs))
    assert msg == (f"--run-id {run_id!r}: expected a folder name of letters, digits, '.', '_' and '-', starting "
                   "with a letter, digit or '_', at most 100 characters"), msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ['runs'] and list(runs.iterdir()) == []

def test_cli_set_of_a_section_no_stage_reads_is_reported(tmp_path):
    code, lines = rbnb_in_process('agree', '--quick', '--quiet', '--set', 'rlhf.batch_size=8', '--runs-dir', tmp_path)
    assert code == 0, lines
    assert ('rbnb: warning: --set rlhf.batch_size=8: no stage of this command reads [rlhf]; the value is not used'
            in lines), lines

def test_cli_quick_keeps_values_given_with_set_and_records_what_ran(tmp_path):
    for rid, extra in (('toy', ()), ('mine', ('--set', 'scoring.n_boot=50'))):
        code, lines = rbnb_in_process('score', '--quick', '--quiet', *extra, '--runs-dir', tmp_path, '--run-id', rid)
        assert code == 0, lines
    toy, mine = (json.loads((tmp_path/r/'manifest.json').read_text()) for r in ('toy', 'mine'))
    assert (toy['settings']['scoring']['n_boot'], toy['config']['scoring']['n_boot']) == (200, 1000)  # configs/: 1000
    assert (mine['settings']['scoring']['n_boot'], mine['config']['scoring']['n_boot']) == (50, 50)
    assert mine['settings']['data']['n_prompts'] == 1500

def test_cli_dtype_sets_every_stage_that_has_one(tmp_path):
    code, lines = rbnb_in_process('policy', '--quick', '--quiet', '--dtype', 'float32', '--runs-dir', tmp_path,
                                  '--run-id', 'x')
    assert code == 0, lines
    m = json.loads((tmp_path/'x'/'manifest.json').read_text())
    assert m['settings']['policy']['dtype'] == 'float32' and m['config']['policy']['dtype'] == 'float32'

# ---- the file system says no: unwritable folders, a full disk, a file-size limit
def mounted_tmpfs(path:Path, options:str):
    "Mount a tmpfs at `path` (root with mount rights only); skip the test otherwise."
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)], capture_output=True, text=True)
    if r.returncode: pytest.skip(f'cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})')
    stack = contextlib.ExitStack(); stack.callback(subprocess.run, ['umount', '-l', str(path)])
    return stack

def test_cli_unwritable_runs_dir(tmp_path):
    ro = tmp_path/'ro'
    if os.geteuid() == 0: stack = mounted_tmpfs(ro, 'ro,size=1m')
    else: ro.mkdir(); ro.chmod(0o555); stack = contextlib.ExitStack()
    with stack:
        msg = one_line(*rbnb_in_process('curate', '--runs-dir', ro/'runs', '--run-id', 'x'))
        assert msg.startswith(f"{ro/'runs'}: cannot create the run folder 'x': ") and msg.endswith(
            ('Read-only file system', 'Permission denied')), msg
        assert not (ro/'runs').exists()

def test_cli_disk_too_full_to_start(tmp_path):
    with mounted_tmpfs(tmp_path/'full', 'size=4k'):
        msg = one_line(*rbnb_in_process('curate', '--runs-dir', tmp_path/'full', '--run-id', 'x'))
        assert msg == f"{tmp_path/'full'/'x'}: cannot start the run: No space left on device", msg
        assert list((tmp_path/'full').iterdir()) == []

def test_cli_disk_full_mid_run_keeps_a_failed_manifest(tmp_path):
    "2 MB: the run starts (1 MB set aside for the last manifest), the first large table does not fit."
    with mounted_tmpfs(tmp_path/'disk', 'size=2m'):
        msg = one_line(*rbnb_in_process('curate', '--quick', '--quiet', '--runs-dir', tmp_path/'disk', '--run-id', 'x'))
        assert msg.endswith(': cannot write: No space left on device') and '/data/pairs/' in msg, msg
        run = tmp_path/'disk'/'x'
        m = json.loads((run/'manifest.json').read_text())
        assert (m['status'], m['stage']) == ('failed', 'data') and 'No space left on device' in m['error']
        assert not [p for p in run.rglob('*') if p.name.endswith('.tmp')]      # no half-written file
        assert all((run/f).is_file() for f in m['outputs'])

def test_cli_file_size_limit_mid_run(tmp_path):
    "The same without root: a 1.1 MB file-size limit (ulimit -f) stops the first large table, never the manifest."
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_100_000, 1_100_000))
    r = subprocess.run([str(Path(sys.executable).parent/'rbnb'), 'curate', '--quick', '--quiet', '--runs-dir',
                        str(tmp_path), '--run-id', 'x'], capture_output=True, text=True, preexec_fn=limit, cwd=ROOT,
                       env={**os.environ, 'HF_HUB_OFFLINE': '1'}, timeout=600)
    msg = one_line(r.returncode, r.stderr.splitlines())
    assert msg == f"{tmp_path/'x'/'data'/'pairs'/'hh-rlhf-harmless.parquet'}: cannot write: File too large", msg
    m = json.loads((tmp_path/'x'/'manifest.json').read_text())
    assert (m['status'], m['stage']) == ('failed', 'data')
    assert not (tmp_path/'x'/'data'/'pairs'/'hh-rlhf-harmless.parquet').exists()

# ---- values every check must catch, whichever stage owns them
@pytest.mark.parametrize('argv,msg', [
    (('agree', '--set', 'agreement.target=nan'), "agreement.target = nan: expected a finite number"),
    (('agree', '--set', 'agreement.spread_threshold=inf'), "agreement.spread_threshold = inf: expected a finite number"),
    (('train-rm', '--weight-decay', 'nan'), "reward_model.weight_decay = nan: expected a finite number"),
    (('train-rm', '--epochs', 'inf'), "reward_model.epochs = inf: expected a finite number"),
    (('train-rm', '--set', 'reward_model.seed=-1'), "reward_model.seed = -1: expected an integer from 0 to 4294967295, "
                                                     "or unset (the run's seed)"),
    (('agree', '--set', 'agreement.n_boot=1.5'), "--set agreement.n_boot=1.5: key 'n_boot': expected int, got 1.5"),
    (('curate', '--seed', '1.5'), "argument --seed: invalid int value: '1.5' (see `rbnb curate --help`)"),
    (('curate', '--dtype', 'float16'), "argument --dtype: invalid choice: 'float16' (choose from 'auto', "
                                        "'float32', 'bfloat16') (see `rbnb curate --help`)"),
    (('curate', '--bogus'), "unrecognized arguments: --bogus (see `rbnb --help`)"),
    (('curate', '--runs-dir', ''), "run.runs_dir = '': expected a folder (--runs-dir or configs/run.toml)"),
])
def test_cli_bad_value_is_one_line_before_any_work(tmp_path, argv, msg):
    "NaN passes every `x < 0` check and then wrecks a run silently; each bad value stops the command before a run folder."
    got = one_line(*rbnb_in_process(*argv, '--quick', '--quiet', '--runs-dir', tmp_path) if '--runs-dir' not in argv
                   else rbnb_in_process(*argv, '--quick', '--quiet'))
    assert got == msg, got
    assert list(tmp_path.iterdir()) == []

def test_cli_config_file_with_upper_case_extension(tmp_path):
    cfg = tmp_path/'configs'; shutil.copytree(ROOT/'configs', cfg); write(cfg/'curation.TOML', 'threshold = 2.0\n')
    msg = one_line(*rbnb_in_process('curate', '--config-dir', cfg, '--runs-dir', tmp_path/'runs'))
    assert msg == f"{cfg/'curation.TOML'}: expected the extension .toml (lower case) for a config file", msg

def test_cli_config_error_names_the_file_it_is_in(tmp_path):
    cfg = tmp_path/'configs'; shutil.copytree(ROOT/'configs', cfg); write(cfg/'run.toml', 'seed = 1.0\n')
    msg = one_line(*rbnb_in_process('curate', '--config-dir', cfg, '--runs-dir', tmp_path/'runs'))
    assert msg == f"{cfg/'run.toml'}: key 'seed': expected int, got 1.0", msg

@pytest.mark.parametrize('row,msg', [
    ('p1,p2,a1 ,p1', "field 'annotator': expected an id without spaces at either end, got 'a1 '"),
    ('p1 ,p2,a1,p2', "field 'item_a': expected an id without spaces at either end, got 'p1 '"),
    ('p1,p9,a1,p9', "field 'item_b': unknown item 'p9' (not among the 3 known items)"),
])
def test_cli_preference_on_an_item_that_is_not_there(tmp_path, row, msg):
    "A stray space makes a second annotator or item, and an unrated item enters every item's Borda normalisation."
    r, p = campaign_files(tmp_path, repeat=False)
    p.write_text(p.read_text() + row + '\n')
    got = one_line(*rbnb_in_process('score', '--quick', '--quiet', '--ratings', r, '--preferences', p,
                                    '--runs-dir', tmp_path/'runs'))
    assert got == f"{p}:7: {msg}", got

def test_interrupt_while_the_run_folder_is_made_leaves_nothing(tmp_path, monkeypatch):
    "A signal before the first manifest is written leaves no folder at all (the folder appears with its manifest)."
    from rewardbench_nb.core import Run
    def stopped(self, status='complete', error=None): raise KeyboardInterrupt
    monkeypatch.setattr(Run, 'finish', stopped)
    with pytest.raises(KeyboardInterrupt): Run(tmp_path, {}, run_id='x')
    assert list(tmp_path.iterdir()) == []

def test_cli_library_write_failure_is_one_line(tmp_path):
    "safetensors reports a failed write in an exception of its own: still one line with the stage and the reason."
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))
    r = subprocess.run([str(Path(sys.executable).parent/'rbnb'), 'ppo', '--quick', '--quiet', '--set', 'rlhf.reward=length',
                        '--runs-dir', str(tmp_path), '--run-id', 'x'], capture_output=True, text=True, preexec_fn=limit,
                       cwd=ROOT, env={**os.environ, 'HF_HUB_OFFLINE': '1'}, timeout=600)
    msg = one_line(r.returncode, r.stderr.splitlines())
    assert msg.startswith('ppo: File too large (') or msg.endswith(': cannot write: File too large'), msg
    m = json.loads((tmp_path/'x'/'manifest.json').read_text())
    assert (m['status'], m['stage']) == ('failed', 'ppo')

# ---- models a user names: hub ids only online, a model's own code only when trusted, a policy is not a reward model
def test_cli_hub_id_offline_is_one_line_before_any_work(tmp_path):
    msg = one_line(*rbnb_in_process('eval', '--quick', '--model', 'Skywork/Skywork-Reward-V2', '--runs-dir', tmp_path))
    assert msg == ("Skywork/Skywork-Reward-V2: no such folder, and 'Skywork/Skywork-Reward-V2' is fetched as a hub id "
                   "only when online (online=True, or --online): offline is the default"), msg
    assert list(tmp_path.iterdir()) == []

def test_cli_model_code_needs_trust(tmp_path):
    from rewardbench_nb.reward_model import build_tiny_chat_rm
    path = build_tiny_chat_rm(tmp_path/'coded')
    cfg = json.loads((path/'config.json').read_text()); cfg['auto_map'] = {'AutoModelForSequenceClassification': 'x.RM'}
    (path/'config.json').write_text(json.dumps(cfg))
    msg = one_line(*rbnb_in_process('eval', '--quick', '--quiet', '--model', path, '--runs-dir', tmp_path/'runs'))
    assert msg == (f"{path}: the model ships its own code (x.RM); it runs only with trust_remote_code=True "
                   "(--trust-remote-code)"), msg

def test_cli_a_policy_is_not_a_reward_model_for_ppo(tmp_path):
    from rewardbench_nb.data import data_dir
    policy = data_dir()/'policy'
    msg = one_line(*rbnb_in_process('ppo', '--quick', '--quiet', '--ppo-reward-model', policy, '--runs-dir', tmp_path))
    assert msg.startswith(f"ppo-reward-model: {policy} holds a causal language model, not a reward model"), msg
