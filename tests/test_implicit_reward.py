"Implicit rewards of causal LMs (05b): the definition computed the plain way, the policy's own text form, bad folders."
import copy, shutil, warnings
from pathlib import Path
import numpy as np, pytest, torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from rewardbench_nb.core import ConfigError, DataError
from rewardbench_nb.data import data_dir, load_pairs
from rewardbench_nb.implicit_reward import (ImplicitReward, chat_texts, check_implicit, dialogue_prompt,
                                            dialogue_response, is_causal_lm, state_dict_sha256)
from rewardbench_nb.reward_model import TINY_CHAT_TEMPLATE, build_tiny_chat_rm, default_model_path, quiet_transformers

POLICY = data_dir()/'policy'

@pytest.fixture(scope='module')
def models(one_thread):
    "(policy, a reference with the same tokenizer: the policy moved by seeded noise, tokenizer)."
    tok = AutoTokenizer.from_pretrained(POLICY, local_files_only=True)
    policy = AutoModelForCausalLM.from_pretrained(POLICY, local_files_only=True, dtype=torch.float32).eval()
    ref = copy.deepcopy(policy)
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        for p in ref.parameters(): p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return policy, ref, tok

@pytest.fixture(scope='module')
def inputs():
    "Eighteen (prompt, response) inputs: hh-rlhf dialogues of one or more turns (chosen, rejected), and plain ones."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); hh = load_pairs('hh-rlhf-harmless', 'test')
    hh = hh[hh.prompt.str.len() < 600]
    turns = hh.prompt.str.count('Human:')
    multi, single = hh[turns >= 2].head(4), hh[turns == 1].head(3)
    rows = [*multi.itertuples(), *single.itertuples()]
    P = [r.prompt for r in rows] * 2 + ['How do I bake bread?', 'Say nothing.', 'A colour \u201cplease\u201d.', 'Hi']
    R = [r.chosen for r in rows] + [r.rejected for r in rows] + ['Use flour, water and yeast.', '', 'Blue.', ' Hello!']
    assert sum(p.count('Human:') >= 2 for p in P) >= 8
    return P, R

def token_logprobs(model, prompt_ids:list, response_ids:list)->torch.Tensor:
    "log p of each response token, the plain way: the whole model on one input, log_softmax, gathered."
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad(): lp = torch.log_softmax(model(ids).logits[0].double(), -1)
    n = len(prompt_ids)
    return lp[torch.arange(n - 1, n - 1 + len(response_ids)), ids[0, n:]]

def direct(policy, ref, texts:list, special:bool, tok)->dict:
    "The three variants' rewards of (prompt text, response text) pairs, one input at a time."
    out = dict(dpo=[], sum=[], mean=[])
    for p, r in texts:
        pi, ri = tok(p, add_special_tokens=special)['input_ids'], tok(r, add_special_tokens=False)['input_ids']
        a, b = token_logprobs(policy, pi, ri), token_logprobs(ref, pi, ri)
        out['dpo'].append((a - b).sum().item()); out['sum'].append(a.sum().item()); out['mean'].append(a.mean().item())
    return {k: np.array(v) for k, v in out.items()}

@pytest.mark.parametrize('variant', ['dpo', 'sum', 'mean'])
def test_dialogue_rewards_equal_the_direct_log_probs(models, inputs, variant):
    policy, ref, tok = models; P, R = inputs
    eos = tok.eos_token
    want = direct(policy, ref, [(dialogue_prompt(p, eos), dialogue_response(r, eos)) for p, r in zip(P, R)], True, tok)
    ir = ImplicitReward(policy, tok, ref if variant == 'dpo' else None, variant, dtype='float32')
    for bs in (1, 4, 32):
        np.testing.assert_allclose(ir.score(P, R, batch_size=bs), want[variant], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ir.score(P, R, max_tokens=256), want[variant], atol=1e-4, rtol=0)
    for seed in (0, 1):
        o = np.random.default_rng(seed).permutation(len(P))
        got = ir.score([P[i] for i in o], [R[i] for i in o], batch_size=5)
        np.testing.assert_allclose(got, want[variant][o], atol=1e-4, rtol=0)
    assert ir.score(P, R).dtype == np.float32 and ir.reused == 0

@pytest.mark.parametrize('variant', ['dpo', 'mean'])
def test_chat_template_rewards_equal_the_direct_log_probs(models, inputs, variant, tmp_path):
    policy, ref, tok = models; P, R = inputs
    chat_tok = copy.deepcopy(tok); chat_tok.chat_template = TINY_CHAT_TEMPLATE
    want = direct(policy, ref, [chat_texts(chat_tok, p, r) for p, r in zip(P, R)], False, tok)
    ir = ImplicitReward(policy, chat_tok, ref if variant == 'dpo' else None, variant, dtype='float32')
    assert ir.chat and ir.protocol['chat_template_sha256']
    for bs in (1, 6, 32): np.testing.assert_allclose(ir.score(P, R, batch_size=bs), want[variant], atol=1e-4, rtol=0)
    o = np.random.default_rng(2).permutation(len(P))
    np.testing.assert_allclose(ir.score([P[i] for i in o], [R[i] for i in o], batch_size=3), want[variant][o],
                               atol=1e-4, rtol=0)

def test_the_dialogue_form_is_the_one_the_policy_was_trained_on(inputs):
    "08's dialogue_text (after 09's as_dialogue) and this module's form write the same text."
    from rewardbench_nb.policy import EOS, dialogue_text
    from rewardbench_nb.rlhf import as_dialogue
    P, R = inputs
    for p, r in zip(P, R):
        assert dialogue_prompt(p, EOS) == dialogue_text(as_dialogue(p))
        if r[:1].isspace() or not r:  # the policy's own replies start with a space (or are empty)
            assert dialogue_prompt(p, EOS) + dialogue_response(r, EOS) == dialogue_text(as_dialogue(p), r)

def test_cuts_keep_the_response_and_are_counted(models):
    policy, ref, tok = models
    talk = ''.join(f'\n\nHuman: question {i}?\n\nAssistant: answer {i}.' for i in range(30))
    talk += '\n\nHuman: And?\n\nAssistant:'
    long_reply = ' ' + ' '.join(['word'] * 80)
    ir = ImplicitReward(policy, tok, ref, dtype='float32', max_length=48)
    enc = ir.encode([talk, 'Hi', 'Hi'], ['Done.', long_reply, 'Short.'])
    assert enc.lengths.tolist()[:2] == [48, 48] and enc.prompt_cut.tolist() == [True, True, False]
    assert enc.response_cut.tolist() == [False, True, False] and enc.response_tokens[1] == 47
    assert tok.decode(enc.ids[0][enc.start[0]:]) == ' Done.<|endoftext|>'
    # the reward of a cut input is the definition's on the tokens kept
    for i in range(3):
        p, r = enc.ids[i][:enc.start[i]], enc.ids[i][enc.start[i]:]
        want = (token_logprobs(policy, p, r) - token_logprobs(ref, p, r)).sum().item()
        assert abs(ir.score([[talk, 'Hi', 'Hi'][i]], [['Done.', long_reply, 'Short.'][i]])[0] - want) < 1e-4

def saved(model, tok, path:Path)->Path:
    with quiet_transformers(): model.save_pretrained(path); tok.save_pretrained(path)
    return path

def one_line(e)->str:
    msg = str(e.value); assert '\n' not in msg; return msg

def test_a_folder_that_is_not_a_causal_lm_is_refused(tmp_path):
    for folder in (default_model_path(), build_tiny_chat_rm(tmp_path/'chat-rm')):
        assert not is_causal_lm(folder)
        with pytest.raises(DataError) as e: ImplicitReward.load(folder, variant='sum')
        assert one_line(e).startswith(f'{folder}: not a causal language model')
    with pytest.raises(DataError) as e: ImplicitReward.load(POLICY, default_model_path())
    assert one_line(e).startswith(f'{default_model_path()}: not a causal language model') and 'reference' in one_line(e)

def test_pickled_weights_are_refused(tmp_path):
    d = tmp_path/'pickled'; d.mkdir()
    for f in ('config.json', 'tokenizer.json', 'tokenizer_config.json'): shutil.copy(POLICY/f, d/f)
    torch.save({'w': torch.zeros(1)}, d/'pytorch_model.bin')
    for call in (lambda: ImplicitReward.load(d, variant='sum'), lambda: ImplicitReward.load(POLICY, d)):
        with pytest.raises(DataError) as e: call()
        assert one_line(e).startswith(f'{d}: missing model.safetensors (pickled weights such as pytorch_model.bin')

def test_a_reference_with_another_tokenizer_is_refused(models, tmp_path):
    policy, _, tok = models
    other = copy.deepcopy(tok); other.add_tokens(['<|extra|>'])
    d = saved(policy, other, tmp_path/'other-tokens')
    with pytest.raises(DataError) as e: ImplicitReward.load(POLICY, d)
    assert one_line(e).startswith(f"{d}: its tokenizer differs from the policy's ({POLICY})")
    assert check_implicit(POLICY, saved(policy, tok, tmp_path/'same')) == 'dpo'

def test_weights_that_do_not_fill_the_model_are_refused(models, tmp_path):
    policy, _, tok = models
    d = saved(policy, tok, tmp_path/'partial')
    sd = {k: v.contiguous() for k, v in policy.state_dict().items() if k != 'transformer.h.0.mlp.c_fc.weight'}
    sd.pop('lm_head.weight', None); save_file(sd, str(d/'model.safetensors'), metadata={'format': 'pt'})
    with pytest.raises(DataError) as e: ImplicitReward.load(d, variant='sum')
    assert one_line(e).startswith(f"{d}: its weights lack 1 of the model's parameters (e.g. transformer.h.0.mlp.c_fc")

def test_variant_and_reference_must_agree():
    for ref, v, msg in [(None, None, "needs a reference policy (DPO's reward) or variant 'sum' or 'mean'"),
                        (None, 'dpo', "variant 'dpo' needs a reference policy"),
                        (POLICY, 'sum', "variant 'sum' is reference-free: pass no reference"),
                        (None, 'avg', "variant 'avg': expected one of dpo, sum, mean")]:
        with pytest.raises(ConfigError, match=msg.replace('(', r'\(').replace(')', r'\)')):
            ImplicitReward.load(POLICY, ref, v)

def test_the_reference_is_identified_by_folder_and_weights(models, tmp_path):
    policy, ref, tok = models
    d = saved(ref, tok, tmp_path/'ref')
    ir = ImplicitReward.load(POLICY, d, dtype='float32')
    p = ir.protocol
    assert p['model_type'] == 'DPO' and p['variant'].startswith('dpo:') and p['reference']['folder'] == str(d)
    assert p['reference']['weights_sha256'] == state_dict_sha256(ref) == ImplicitReward(policy, tok, ref).reference_id[
        'weights_sha256']
    assert ImplicitReward.load(POLICY, variant='mean').protocol['model_type'] == 'DPO Ref. Free'
