"RewardModel on real data: folders that are not models, atomic saves, batch/order invariance, the text form of the encoding."
import json, os, platform, shutil, subprocess, sys
import numpy as np, pandas as pd, pytest, torch
from rewardbench_nb.core import DataError, ConfigError, RBError
from rewardbench_nb.data import load_pairs
from rewardbench_nb.reward_model import RewardModel, default_model_path, pair_accuracy, rmbench_margin_accuracy

pytestmark = pytest.mark.usefixtures('one_thread')

@pytest.fixture(scope='module')
def rm(): return RewardModel.load(max_length=128, dtype='float32')

@pytest.fixture(scope='module')
def mixed():
    "32 pairs of very different lengths: hh-rlhf dialogues, LLMBar instructions, JudgeBench questions."
    parts = [load_pairs('hh-rlhf-harmless', 'test').head(12), load_pairs('llmbar-natural').head(10), load_pairs('judgebench-gpt4o').head(10)]
    return pd.concat([p[['prompt', 'chosen', 'rejected', 'domain']] for p in parts], ignore_index=True)

# --- loading -------------------------------------------------------------------------------------

def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match='not a folder'): RewardModel.load(tmp_path/'nope')

def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path/'notes.txt').write_text('hello')
    with pytest.raises(DataError) as e: RewardModel.load(tmp_path)
    assert str(tmp_path) in str(e.value) and 'config.json' in str(e.value) and 'model.safetensors' in str(e.value)

def test_pickled_weights_are_refused(tmp_path):
    src = default_model_path()
    for f in ('config.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt'): shutil.copy(src/f, tmp_path/f)
    (tmp_path/'pytorch_model.bin').write_bytes(b'not even a pickle')
    with pytest.raises(DataError, match='pickled weights'): RewardModel.load(tmp_path)

def test_corrupt_weights_are_a_clear_error(tmp_path):
    src = default_model_path()
    for f in ('config.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt'): shutil.copy(src/f, tmp_path/f)
    (tmp_path/'model.safetensors').write_bytes(b'\x00' * 64)
    with pytest.raises(DataError, match='cannot load a 1-output sequence classifier'): RewardModel.load(tmp_path)

def test_bad_dtype_and_length():
    with pytest.raises(ConfigError, match="dtype 'fp16': expected one of auto, float32, bfloat16, int8"): RewardModel.load(dtype='fp16')
    with pytest.raises(ConfigError, match='max_length 3'): RewardModel.load(max_length=3)

def test_head_is_seeded(rm):
    torch.manual_seed(7)
    other = RewardModel.load(seed=0).model.classifier.weight.detach()
    assert torch.equal(other, rm.model.classifier.weight.detach())
    assert not torch.equal(RewardModel.load(seed=1).model.classifier.weight.detach(), other)

# --- saving --------------------------------------------------------------------------------------

def test_save_round_trip_and_replace(rm, mixed, tmp_path):
    dest = rm.save(tmp_path/'model')
    assert {'config.json', 'model.safetensors', 'tokenizer.json'} <= {p.name for p in dest.iterdir()}
    assert not list(dest.glob('*.bin'))
    back = RewardModel.load(dest, dtype='float32')
    assert back.max_length == 128
    np.testing.assert_array_equal(back.score(mixed.prompt, mixed.chosen), rm.score(mixed.prompt, mixed.chosen))
    rm.save(dest)  # over an existing model folder: replaced, nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model']

def test_save_refuses_to_replace_other_folders(rm, tmp_path):
    (tmp_path/'data').mkdir(); (tmp_path/'data'/'keep.csv').write_text('x\n1\n')
    with pytest.raises(RBError, match='not a model folder'): rm.save(tmp_path/'data')
    assert (tmp_path/'data'/'keep.csv').read_text() == 'x\n1\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data']

def test_interrupted_save_leaves_nothing(rm, tmp_path):
    "A save that fails half-way (the destination's parent is a file) leaves no folder and no temp files."
    (tmp_path/'file').write_text('x')
    from rewardbench_nb.core import RBError
    with pytest.raises(RBError, match=r"file/model: cannot write: "): rm.save(tmp_path/'file'/'model')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['file']

# --- encoding ------------------------------------------------------------------------------------

def test_response_survives_truncation(rm, mixed):
    enc = rm.encode(mixed.prompt, mixed.chosen)
    assert enc.lengths.max() <= 128 and enc.prompt_cut.any()
    short = np.array([len(rm.tokenizer(r, add_special_tokens=False)['input_ids']) <= 80 for r in mixed.chosen])
    assert not enc.response_cut[short].any()   # a response that fits 3/4 of the room is never cut
    assert (enc.lengths[enc.prompt_cut] >= 120).all()  # a cut prompt fills the room up to a word boundary

def test_visible_text_reproduces_the_ids(rm, mixed):
    "The kept texts, tokenized as a plain pair, give exactly the model's ids (what the benchmark baseline relies on)."
    for col in ('chosen', 'rejected'):
        vis, enc = rm.visible(mixed.prompt, mixed[col]), rm.encode(mixed.prompt, mixed[col])
        assert rm.tokenizer(list(vis.prompt), list(vis.response))['input_ids'] == enc.ids
        assert all(p.endswith(v) for p, v in zip(mixed.prompt, vis.prompt))
        assert all(r.startswith(v) for r, v in zip(mixed[col], vis.response))

# --- scoring -------------------------------------------------------------------------------------

def test_scores_do_not_depend_on_batch_size_or_order(rm, mixed):
    ref = rm.score(mixed.prompt, mixed.chosen, batch_size=1)
    for bs in (8, 64): np.testing.assert_allclose(rm.score(mixed.prompt, mixed.chosen, batch_size=bs), ref, atol=1e-5, rtol=0)
    perm = np.random.default_rng(1).permutation(len(mixed))
    np.testing.assert_allclose(rm.score(mixed.prompt.iloc[perm], mixed.chosen.iloc[perm], batch_size=5), ref[perm], atol=1e-5, rtol=0)

def test_threaded_scoring(rm, mixed):
    "On CPU, batches run on torch's threads one batch per thread: same scores, thread count restored."
    ref = rm.score(mixed.prompt, mixed.chosen)
    torch.set_num_threads(2)
    try:
        np.testing.assert_allclose(rm.score(mixed.prompt, mixed.chosen, batch_size=4), ref, atol=1e-5, rtol=0)
        assert torch.get_num_threads() == 2
        with pytest.raises(DataError): rm.score(['a', None], ['x', 'y'])
        assert torch.get_num_threads() == 2
    finally: torch.set_num_threads(1)

def test_bf16_is_close_to_fp32(rm, mixed):
    r32 = rm.score(mixed.prompt, mixed.chosen)
    rm16 = RewardModel.load(dtype='bfloat16', max_length=128)
    r16 = rm16.score(mixed.prompt, mixed.chosen)
    assert r16.dtype == np.float32 and np.abs(r16 - r32).max() < 0.1 * r32.std()
    assert len(np.unique(r16)) == len(r16)   # the head runs in fp32: no ties from bf16 rounding

@pytest.mark.parametrize('prompts,responses,msg', [
    (['a', None], ['x', 'y'], "row 2: field 'prompt': expected text, got None"),
    (['a', 'b'], ['x', float('nan')], "row 2: field 'response': expected text, got nan"),
    (['a', 'b'], ['x'], '2 prompts but 1 responses'),
    ([], [], 'no inputs'),
    ('one prompt', 'one response', 'got a single string'),
    ([1], ['x'], "row 1: field 'prompt': expected text, got 1"),
])
def test_bad_inputs(rm, prompts, responses, msg):
    with pytest.raises(DataError) as e: rm.score(prompts, responses)
    assert msg in str(e.value)

def test_empty_response_is_scored(rm):
    assert np.isfinite(rm.score(['Say something.', ''], ['', 'Hi'])).all()

def test_score_pairs_and_accuracy(rm, mixed):
    m = rm.score_pairs(mixed)
    np.testing.assert_allclose(m, rm.score(mixed.prompt, mixed.chosen) - rm.score(mixed.prompt, mixed.rejected), atol=1e-5)
    assert pair_accuracy(m) == np.mean(m > 0)
    with pytest.raises(DataError, match='no rows: expected a pairs table'): rm.score_pairs(mixed.head(0))
    with pytest.raises(DataError, match="row 2: field 'chosen'"): rm.score_pairs(mixed.head(3).assign(chosen=['a', None, 'c']))

def test_rmbench_three_by_three(rm):
    rmb = load_pairs('rmbench-safety-refuse').head(5)
    m = rm.score_pairs(rmb)
    assert m.shape == (5, 3, 3)
    r_c = rm.score(rmb.prompt, rmb.chosen.map(lambda v: v[1]))
    r_r = rm.score(rmb.prompt, rmb.rejected.map(lambda v: v[2]))
    np.testing.assert_allclose(m[:, 1, 2], r_c - r_r, atol=1e-5)
    acc = rmbench_margin_accuracy(m)
    assert set(acc) == {'hard', 'normal', 'easy', 'mean'} and abs(acc['mean'] - np.mean(m > 0)) < 1e-12
    with pytest.raises(DataError, match=r'expected \(n, k, k\)'): rmbench_margin_accuracy(m[:, 0])

AVX2 = {'ATEN_CPU_CAPABILITY': 'avx2', 'ONEDNN_MAX_CPU_ISA': 'AVX2', 'MKL_ENABLE_INSTRUCTIONS': 'AVX2'}
PROBE = '''
import json, warnings
from rewardbench_nb.precision import bf16_speedup, precision
from rewardbench_nb.reward_model import RewardModel
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter('always')
    auto, forced = RewardModel.load(max_length=32), RewardModel.load(dtype='bfloat16', max_length=32)
print(json.dumps(dict(auto=auto.dtype, forced=forced.dtype, speed=bf16_speedup('cpu'), precision=precision('cpu').as_dict(),
                      warnings=[f'{w.category.__name__}: {w.message}' for w in seen if 'Precision' in w.category.__name__])))
'''

@pytest.mark.skipif(platform.machine() not in ('x86_64', 'AMD64'), reason='emulates an AVX2-only x86 CPU')
def test_auto_is_float32_and_bf16_warns_on_a_cpu_without_native_bf16():
    "On a CPU limited to AVX2 (emulated with torch's and oneDNN's ISA caps), auto picks float32 and a forced bf16 warns how slow it is."
    r = subprocess.run([sys.executable, '-c', PROBE], env={**os.environ, **AVX2}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out['precision']['cpu_capability'] == 'AVX2' and out['auto'] == 'float32' and out['forced'] == 'bfloat16'
    bf16, fp32 = out['speed']
    if bf16 < fp32:  # emulated bf16 is slow: one warning, one line, saying how much slower
        assert len(out['warnings']) == 1 and '\n' not in out['warnings'][0], out['warnings']
        assert 'slower than float32 here' in out['warnings'][0] and "use dtype='auto' or 'float32'" in out['warnings'][0]

def test_int8_scores_follow_fp32(rm, mixed):
    "int8 (dynamic quantization, CPU) is an opt-in: close to float32 in order, float32 weights kept for saving."
    r32 = rm.score(mixed.prompt, mixed.chosen)
    r8 = RewardModel(rm.model, rm.tokenizer, 'int8', rm.max_length).score(mixed.prompt, mixed.chosen)
    assert np.corrcoef(r8, r32)[0, 1] > 0.9 and r8.dtype == np.float32
    assert all(type(m) is torch.nn.Linear for m in rm.model.modules() if isinstance(m, torch.nn.Linear))

# --- chat-template (decoder) reward models -------------------------------------------------------

from rewardbench_nb.reward_model import build_tiny_chat_rm, split_turns, template_sha256, CHAT_ENCODING

@pytest.fixture(scope='module')
def dialogues():
    "hh-rlhf prompts of one to several turns (short enough for the tiny model), plain prompts, and odd responses."
    hh = load_pairs('hh-rlhf-harmless', 'test')
    hh = hh[hh.prompt.str.len() < 600].head(16)
    plain = ['What is 2+2?', '  Spaces around  ', 'Human: a lone turn\n\nAssistant:']
    return list(hh.prompt) + plain, list(hh.chosen) + ['4', '', 'ok <|endoftext|> and more']

def card_recipe(path):
    "The reward a decoder reward model's card computes: apply_chat_template, then model(...).logits[0][0], one at a time."
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(path).eval()
    def reward(p, r):
        enc = tok.apply_chat_template([*split_turns(p), dict(role='assistant', content=r)], return_tensors='pt')
        with torch.no_grad(): return model(**enc).logits[0][0].item()
    return reward

@pytest.mark.parametrize('pad', [True, False])
def test_chat_template_rm_scores_as_its_card(tmp_path, dialogues, pad):
    "Single- and multi-turn conversations, any batch size and order, with or without a pad token: the card's rewards."
    path = build_tiny_chat_rm(tmp_path/'rm', pad=pad)
    rm = RewardModel.load(path, dtype='float32')
    P, R = dialogues
    assert rm.chat and rm.protocol['encoding'] == CHAT_ENCODING and sum('Human:' in p and p.count('Human:') > 1 for p in P) >= 3
    recipe = card_recipe(path)
    want = np.array([recipe(p, r) for p, r in zip(P, R)])
    assert want.std() > 0.5                                      # rewards that differ: a wrong token would show
    order = np.random.default_rng(1).permutation(len(P))
    for bs in (1, 4, len(P)):
        np.testing.assert_allclose(rm.score(P, R, batch_size=bs), want, atol=1e-4)
    np.testing.assert_allclose(rm.score([P[i] for i in order], [R[i] for i in order], batch_size=3), want[order], atol=1e-4)

def test_text_pair_would_mis_score_a_chat_model(tmp_path, dialogues):
    "The bug this fixes: the same decoder fed text pairs gives other rewards than its card."
    path = build_tiny_chat_rm(tmp_path/'rm')
    P, R = dialogues
    want = np.array([card_recipe(path)(p, r) for p, r in zip(P, R)])
    pair = RewardModel.load(path, dtype='float32', encoding='pair').score(P, R)
    assert np.abs(pair - want).max() > 0.1

def test_long_conversation_drops_oldest_turns_and_keeps_the_template(tmp_path):
    rm = RewardModel.load(build_tiny_chat_rm(tmp_path/'rm'), dtype='float32', max_length=64)
    talk = ''.join(f'\n\nHuman: question number {i} about tides?\n\nAssistant: answer number {i}.' for i in range(6))
    talk += '\n\nHuman: and the last question?\n\nAssistant:'
    e = rm.encode([talk, 'short'], ['The last answer.', 'x'])
    assert e.lengths.max() <= 64 and e.prompt_cut.tolist() == [True, False] and not e.response_cut.any()
    text = rm.tokenizer.decode(e.ids[0])
    assert text.startswith('### user:\n') and 'and the last question?' in text and 'number 0' not in text
    assert e.ids[0][-1] == rm.tokenizer.eos_token_id and text.endswith('The last answer.<|endoftext|>')
    long = rm.encode(['q ' * 200], ['word ' * 200])                  # one turn too long: cut, template kept
    assert long.lengths[0] <= 64 and long.prompt_cut[0] and long.response_cut[0]
    assert long.ids[0][-1] == rm.tokenizer.eos_token_id

def test_encoding_choice(tmp_path):
    path = build_tiny_chat_rm(tmp_path/'rm')
    assert not RewardModel.load(path, encoding='pair').chat and RewardModel.load(path).chat
    with pytest.raises(ConfigError, match="encoding 'chat': the tokenizer has no chat template"):
        RewardModel.load(max_length=64, encoding='chat')
    with pytest.raises(ConfigError, match="encoding 'tmpl': expected one of auto, chat, pair"):
        RewardModel.load(path, encoding='tmpl')
    assert template_sha256(RewardModel.load(path).tokenizer) == RewardModel.load(path).protocol['chat_template_sha256']

def test_hub_id_is_fetched_only_when_online(monkeypatch):
    with pytest.raises(DataError, match=r"Skywork/Skywork-Reward-V2: no such folder, and 'Skywork/Skywork-Reward-V2' is "
                                        r"fetched as a hub id only when online"):
        RewardModel.load('Skywork/Skywork-Reward-V2')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(ConfigError, match='asked to fetch it online, but HF_HUB_OFFLINE is set'):
        RewardModel.load('Skywork/Skywork-Reward-V2', online=True)

CUSTOM = '''from transformers import LlamaForSequenceClassification
class RM(LlamaForSequenceClassification):
    "A model class that lives in the model's own folder, as InternLM2-Reward's does."
'''

def test_model_code_runs_only_when_trusted(tmp_path):
    path = build_tiny_chat_rm(tmp_path/'coded')
    cfg = json.loads((path/'config.json').read_text())
    cfg['auto_map'] = {'AutoModelForSequenceClassification': 'modeling_custom.RM'}
    (path/'config.json').write_text(json.dumps(cfg)); (path/'modeling_custom.py').write_text(CUSTOM)
    with pytest.raises(ConfigError, match=r"coded: the model ships its own code \(modeling_custom.RM\); it runs only with "
                                          r"trust_remote_code=True \(--trust-remote-code\)"):
        RewardModel.load(path)
    rm = RewardModel.load(path, dtype='float32', trust_remote_code=True)
    assert type(rm.model).__name__ == 'RM' and rm.protocol['trust_remote_code'] is True
    plain = build_tiny_chat_rm(tmp_path/'plain')
    p, r = ['Hi'], ['Hello']
    np.testing.assert_allclose(rm.score(p, r), RewardModel.load(plain, dtype='float32').score(p, r), atol=1e-6)
    assert 'trust_remote_code' not in RewardModel.load(plain).protocol


def test_max_length_beyond_the_models_positions_is_refused():
    with pytest.raises(ConfigError, match="max_length 1024: expected at most the model's 512 positions"):
        RewardModel.load(max_length=1024)

def test_named_chat_templates_are_identified(tmp_path):
    "A tokenizer with several named templates (Mistral, Hermes, Command-R) still gets a hash that tells them apart."
    path = build_tiny_chat_rm(tmp_path/'rm')
    rm = RewardModel.load(path)
    tpl = rm.tokenizer.chat_template
    rm.tokenizer.chat_template = {'default': tpl, 'tool_use': tpl + '{# tools #}'}
    named = template_sha256(rm.tokenizer)
    rm.tokenizer.chat_template = {'default': tpl, 'tool_use': tpl + '{# other tools #}'}
    assert named and named != template_sha256(rm.tokenizer)

def test_only_what_was_cut_is_counted(tmp_path):
    rm = RewardModel.load(build_tiny_chat_rm(tmp_path/'rm'), dtype='float32', max_length=48)
    e = rm.encode(['short question'], ['y ' * 300])
    assert (bool(e.prompt_cut[0]), bool(e.response_cut[0]), int(e.prompt_start[0])) == (False, True, 0)

def test_a_dialogue_that_is_not_awaiting_a_response_is_refused_with_its_row(tmp_path):
    rm = RewardModel.load(build_tiny_chat_rm(tmp_path/'rm'), dtype='float32')
    with pytest.raises(DataError, match=r"row 2: field 'prompt': expected a dialogue that starts with a Human turn and "
                                        r"ends with one \(and the Assistant cue\), got one that ends with an Assistant turn"):
        rm.score(['\n\nHuman: q\n\nAssistant:', '\n\nHuman: q\n\nAssistant: partial'], ['a', 'b'])
