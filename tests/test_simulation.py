"Simulator checks a notebook cannot show: other processes, edge settings, the alpha oracle, real scale."
import os, re, subprocess, sys, time
import numpy as np, pytest
from rewardbench_nb.core import CRITERIA, ConfigError
from rewardbench_nb.simulation import simulate, noise_budget, max_jaccard
from rewardbench_nb.text import jaccard, normalise_text

FINGERPRINT = "from rewardbench_nb.simulation import simulate; print(simulate(400, seed=7).fingerprint())"

def _fingerprint_in_subprocess(hashseed:str)->str:
    env = {**os.environ, 'PYTHONHASHSEED': hashseed}
    return subprocess.run([sys.executable, '-c', FINGERPRINT], env=env, capture_output=True, text=True, check=True).stdout.strip()

def test_same_seed_same_tables_across_processes():
    "Python's string-hash randomisation must not leak into the tables."
    fps = {_fingerprint_in_subprocess(h) for h in ('1', '2')}
    assert fps == {simulate(400, seed=7).fingerprint()}

@pytest.mark.parametrize('kwargs,message', [
    (dict(n_prompts=1), 'n_prompts: expected an integer >= 2'),
    (dict(n_prompts=10, exact_dup_rate=-0.1), 'exact_dup_rate: expected a share in [0, 1]'),
    (dict(n_prompts=10, judges_per_pair=6), 'judges_per_pair: expected 1..raters_per_item (5)'),
    (dict(n_prompts=10, group_size=0), 'group_size: expected an integer >= 1'),
    (dict(n_prompts=10, n_domains=3), 'n_domains: expected 4..28'),
    (dict(n_prompts=10, human_share=1.5), 'human_share: expected a share in [0, 1]'),
])
def test_bad_settings_name_the_setting(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        simulate(**kwargs)

def test_edge_settings():
    solo = simulate(30, group_size=1)
    assert len(solo.ratings) == 30 * 5 * 4 and len(solo.preferences) == 0
    none = simulate(30, response_share=0.0)
    assert len(none.ratings) == len(none.preferences) == 0 and none.prompts.group.isna().all()
    assert list(none.ratings.columns) == ['item', 'annotator', 'criterion', 'likert']
    small = simulate(60, n_annotators=3, raters_per_item=3, judges_per_pair=3, group_size=6)
    assert small.ratings.groupby('item').annotator.nunique().eq(3).all()
    assert small.prompts.groupby('group').size().max() == 6

def test_no_duplicates_when_rates_are_zero():
    c = simulate(500, exact_dup_rate=0, near_dup_rate=0, ratings=False, preferences=False)
    assert c.truth.dup_kind.isna().all()
    assert c.prompts.text.map(normalise_text).is_unique
    assert max_jaccard(c.prompts.text.tolist()).max() < 0.45

def test_near_duplicates_at_least_threshold_and_not_exact():
    c = simulate(3000, seed=11, ratings=False, preferences=False)
    text = c.prompts.set_index('id').text
    near = c.truth[c.truth.dup_kind == 'near']
    assert len(near) == 150
    for a, b in zip(near.id, near.dup_of):
        assert jaccard(text[a], text[b]) >= 0.85 and normalise_text(text[a]) != normalise_text(text[b])

def test_noise_budget_is_monotone():
    d = [noise_budget(a) for a in np.linspace(0, 1, 41)]
    assert all(x >= y for x, y in zip(d, d[1:])) and d[-1] == 0

def _alpha(c, criterion):
    import krippendorff  # GPL-3.0: a test oracle only, never imported by the package
    m = c.ratings[c.ratings.criterion == criterion].pivot(index='annotator', columns='item', values='likert')
    return krippendorff.alpha(reliability_data=m.to_numpy(float), level_of_measurement='interval')

def test_alpha_follows_the_agreement_knob():
    knobs = (0.2, 0.5, 0.8, 0.95)
    alphas = [np.mean([_alpha(simulate(500, seed=5, agreement=a, preferences=False), cr) for cr in CRITERIA]) for a in knobs]
    assert all(x < y for x, y in zip(alphas, alphas[1:])), alphas
    assert max(abs(a - k) for a, k in zip(alphas, knobs)) < 0.06, alphas

def test_wrapper_in_data_module():
    import rewardbench_nb.data as data
    c = data.simulate_campaign(n_prompts=200, seed=3)
    assert c.fingerprint() == simulate(200, seed=3).fingerprint()
    data.validate_prompts(c.prompts); data.validate_ratings(c.ratings)
    data.validate_preferences(c.preferences, known_items=c.prompts.id)

@pytest.mark.slow
def test_full_scale_speed_and_alpha():
    t0 = time.process_time(); full = simulate(); t_full = time.process_time() - t0
    t0 = time.process_time(); huge = simulate(200_000, ratings=False, preferences=False); t_huge = time.process_time() - t0
    assert (len(full.prompts), len(full.ratings)) == (15_000, 300_000)
    assert len(huge.prompts) == 200_000 and huge.prompts.id.is_unique
    assert t_full < 5 and t_huge < 15, (t_full, t_huge)
    for cr in CRITERIA: assert abs(_alpha(full, cr) - 0.7) < 0.04

@pytest.mark.slow
def test_rewardbench_preset_full():
    rb = simulate(preset='rewardbench')
    assert (len(rb.prompts), rb.prompts.response.notna().sum(), rb.prompts.domain.nunique()) == (12_000, 9_000, 28)
    assert rb.ratings.item.nunique() == 9_000 and len(rb.ratings) == 9_000 * 5 * 4
