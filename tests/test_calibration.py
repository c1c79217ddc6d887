"Calibration: ECE/MCE against torchmetrics (test-only oracle), bad input, the `calibrate` stage on real data."
import argparse, json
import numpy as np, pandas as pd, pytest, torch
from rewardbench_nb.core import DataError, ConfigError, RBError, Run
from rewardbench_nb.data import load_pairs
from rewardbench_nb.calibration import (STAGE, brier, calibrate, ece, fit_isotonic, fit_temperature, flip_pairs,
                                        mce, nll, reliability_bins)

pytestmark = pytest.mark.usefixtures('one_thread')

def cases():
    rng = np.random.default_rng(0)
    for n in (1, 7, 100, 5000):
        p = rng.random(n); y = (rng.random(n) < p ** 1.5).astype(int)
        yield p, y
    p = np.r_[0., 1., 1., 0.5, 0.5, 1/3, 0.999999, rng.random(50)]  # edges and ties: exact 0 and 1, a bin edge
    yield p, (rng.random(len(p)) < 0.5).astype(int)
    yield np.ones(10), np.r_[np.ones(7), np.zeros(3)].astype(int)  # all in the p == 1 bin

# --- against torchmetrics ------------------------------------------------------------------------

@pytest.mark.parametrize('i', range(6))
def test_ece_and_mce_match_torchmetrics(i):
    import torchmetrics.classification as tm  # test-only oracle (dev extra)
    p, y = list(cases())[i]
    want_ece = tm.BinaryCalibrationError(n_bins=15, norm='l1')(torch.tensor(p), torch.tensor(y)).item()
    want_mce = tm.BinaryCalibrationError(n_bins=15, norm='max')(torch.tensor(p), torch.tensor(y)).item()
    assert abs(ece(p, y) - want_ece) < 1e-12
    assert abs(mce(p, y) - want_mce) < 1e-12

def test_ece_matches_torchmetrics_in_float32():
    "torchmetrics users often pass float32 tensors: agreement to float32 precision."
    import torchmetrics.classification as tm  # test-only oracle (dev extra)
    p, y = list(cases())[3]
    want = tm.BinaryCalibrationError(n_bins=15)(torch.tensor(p, dtype=torch.float32), torch.tensor(y)).item()
    assert abs(ece(p, y) - want) < 1e-6

def test_ece_by_hand():
    "Two bins used: [0.0667, 0.1333) holds 0.1, 0.1 (accuracy 0); [0.8667, 0.9333) holds 0.9, 0.9 (accuracy 1/2)."
    p, y = [0.1, 0.1, 0.9, 0.9], [0, 0, 1, 0]
    assert abs(ece(p, y) - (0.5 * 0.1 + 0.5 * 0.4)) < 1e-12
    assert abs(mce(p, y) - 0.4) < 1e-12
    b = reliability_bins(p, y)
    assert b['count'].sum() == 4 and len(b) == 15
    assert abs(brier(p, y) - (0.01 + 0.01 + 0.01 + 0.81) / 4) < 1e-12
    assert abs(nll(p, y) - -(2 * np.log(0.9) + np.log(0.9) + np.log(0.1)) / 4) < 1e-12

# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize('fn,args,msg', [
    (ece, ([], []), 'no probs'),
    (ece, ([0.2, float('nan')], [0, 1]), "row 2: field 'probs': expected a finite number, got nan"),
    (ece, ([0.2, 0.7], [0, 2]), "row 2: field 'labels': expected 0 or 1, got 2"),
    (ece, ([0.2, 0.7], [1]), '1 labels for 2 pairs'),
    (ece, ([0.2, -0.1], [0, 1]), 'expected a probability in [0, 1], got -0.1'),
    (fit_temperature, ([], []), 'no margins'),
    (fit_temperature, ([0.3, np.inf], [1, 0]), "row 2: field 'margins': expected a finite number, got inf"),
    (fit_temperature, ([0.3, 0.1], [1, 0.5]), "row 2: field 'labels': expected 0 or 1, got 0.5"),
    (fit_temperature, ([0.3, 0.1, 0.2], [1, 0]), '2 labels for 3 pairs'),
    (fit_isotonic, ([0.3, None], [1, 0]), "row 2: field 'margins': expected a number, got None"),
    (flip_pairs, ('0.3',), 'got a single string'),
    (calibrate, ([0.1, 0.2], [1, 0], [], []), 'no margins'),
])
def test_bad_input_is_a_clear_error(fn, args, msg):
    with pytest.raises(DataError) as e: fn(*args)
    assert msg in str(e.value)

def test_bad_settings():
    with pytest.raises(ConfigError, match='n_bins 0'): ece([0.5], [1], n_bins=0)
    with pytest.raises(ConfigError, match='temperature bounds'): fit_temperature([0.1, 0.2], [1, 0], bounds=(2, 1))

def test_temperature_is_order_free_and_recovers_truth():
    rng = np.random.default_rng(5)
    cr = np.abs(rng.normal(0, 3, 4000)) * np.where(rng.random(4000) < 0.8, 1, -1)  # chosen-minus-rejected margins
    m, y = flip_pairs(cr, seed=0)
    assert abs(fit_temperature(m, y) - fit_temperature(cr, np.ones(len(cr)))) < 1e-6
    truth = (rng.random(4000) < 1 / (1 + np.exp(-m / 2.0))).astype(int)
    assert abs(fit_temperature(m, truth) - 2.0) < 0.25

# --- the stage -----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def rm():
    from rewardbench_nb.reward_model import RewardModel
    return RewardModel.load(max_length=64)

def test_stage_quick(rm, tmp_path):
    run = Run(tmp_path, {}, seed=3, run_id='q')
    ctx = dict(reward_model=rm, quick=True, seed=3)
    STAGE(run, {'calibration': {'quick_pairs': 12}}, ctx)
    out = run.dir/'calibration'
    assert sorted(p.name for p in out.iterdir()) == ['bins.csv', 'metrics.csv', 'pairs.csv', 'per_domain.csv', 'reliability.json', 'report.json']
    rep = json.loads((out/'report.json').read_text())
    assert rep['n_fit'] == 12 and rep['n_test'] == 12 and rep['temperature'] > 0
    pairs = pd.read_csv(out/'pairs.csv')
    assert len(pairs) == 48 and set(pairs.role) == {'fit', 'test', 'transfer'}
    assert set(pairs.first_is_chosen) <= {0, 1} and pairs[['p_uncalibrated', 'p_temperature', 'p_isotonic']].apply(lambda c: c.between(0, 1).all()).all()
    doms = pd.read_csv(out/'per_domain.csv').domain.tolist()
    assert 'harmlessness' in doms and 'general-chat' in doms and doms[-1] == 'all'
    assert {'knowledge', 'math', 'reasoning', 'coding'} & set(doms)
    assert ctx['calibration'].n_test == 12
    assert any('hh-rlhf' in k for k in run.inputs)
    # same seed, same numbers
    run2 = Run(tmp_path, {}, seed=3, run_id='q2'); ctx2 = dict(reward_model=rm, quick=True, seed=3)
    STAGE(run2, {'calibration': {'quick_pairs': 12}}, ctx2)
    assert (run2.dir/'calibration'/'report.json').read_text() == (out/'report.json').read_text()

def test_stage_on_user_files(rm, tmp_path):
    "--calib-model DIR and --calib-pairs FILE: a saved model and the user's own pairs."
    model = rm.save(tmp_path/'model')
    hh = load_pairs('hh-rlhf-harmless')
    mine = pd.concat([hh[hh.split == 'validation'].head(10), hh[hh.split == 'test'].head(10)])
    mine[['id', 'prompt', 'chosen', 'rejected', 'subset', 'domain', 'source', 'split']].to_json(tmp_path/'mine.jsonl', orient='records', lines=True)
    run = Run(tmp_path/'runs', {}, seed=0, run_id='u')
    ctx = dict(quick=False, seed=0, args=argparse.Namespace(calib_model=str(model), calib_pairs=str(tmp_path/'mine.jsonl')))
    STAGE(run, {'calibration': {'transfer_sets': []}}, ctx)
    assert ctx['calibration'].n_fit == 10 and ctx['calibration'].n_test == 10
    assert str(tmp_path/'mine.jsonl') in run.inputs and any(k.endswith('model.safetensors') for k in run.inputs)

def test_stage_errors(rm, tmp_path):
    run = Run(tmp_path, {}, run_id='e')
    with pytest.raises(RBError, match='no reward model'): STAGE(run, {}, dict(quick=True))
    with pytest.raises(ConfigError, match='style variants'):
        STAGE(run, {'calibration': {'transfer_sets': ['rmbench-chat']}}, dict(reward_model=rm, quick=True))
    with pytest.raises(DataError, match="no pairs in split 'dev'"):
        STAGE(run, {'calibration': {'fit_split': 'dev'}}, dict(reward_model=rm, quick=True))
    with pytest.raises(ConfigError, match="unknown key 'bins'"): STAGE(run, {'calibration': {'bins': 10}}, dict(reward_model=rm))
