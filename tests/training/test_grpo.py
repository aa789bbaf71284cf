"""GRPO: the advantage and loss arithmetic, gradient accumulation, the KL reference, sampling seeds,
reward checks, and short training runs of a tiny Llama on hand-made prompt rows."""

import json
import math

import pytest
import torch

from tunesmith.config.schema import GrpoConfig
from tunesmith.data.prompt_batches import PromptCollator
from tunesmith.errors import ConfigError, DataError, TrainingError
from tunesmith.evaluation.rewards import RewardFunction, build_rewards, check_rewards, register_reward
from tunesmith.training.grpo_trainer import GrpoTrainer, sampling_seed
from tunesmith.training.policy_gradient import (completion_logps, completion_mask, group_advantages, policy_loss,
                                                position_ids_for)
from tunesmith.training.reference import Reference

QUESTIONS = ["What is 2 + 3?", "What is 7 - 4?", "What is 6 * 2?", "What is 9 + 1?",
             "What is 8 / 2?", "What is 5 + 5?", "What is 3 * 3?", "What is 10 - 7?"]
ANSWERS = ["5", "3", "12", "10", "4", "10", "9", "3"]


def prompt_rows(tokenizer, n=8):
    """Rows shaped like the prompt data: the chat template up to the assistant's turn, and the answer."""
    return [{"prompt_ids": tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                                         tokenize=True, return_dict=False),
             "reference": a} for q, a in zip(QUESTIONS[:n], ANSWERS[:n])]


def load(model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def lora(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))


def args_for(tmp_path, **kw):
    from transformers import TrainingArguments

    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=1,
                learning_rate=1e-2, max_steps=2, logging_steps=1, save_strategy="no", report_to=[],
                remove_unused_columns=False, use_cpu=True, seed=3, lr_scheduler_type="constant",
                disable_tqdm=True, include_num_input_tokens_seen="non_padding")
    base.update(kw)
    return TrainingArguments(**base)


def make_trainer(model, tokenizer, tmp_path, rows, settings=None, rewards=None, eval_rows=None, **kw):
    from datasets import Dataset

    return GrpoTrainer(model=model, args=args_for(tmp_path, **kw), train_dataset=Dataset.from_list(rows),
                       eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
                       data_collator=PromptCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                       settings=settings or GrpoConfig(group_size=4, max_new_tokens=8),
                       rewards=rewards or build_rewards(GrpoConfig(rewards=["exact_match", "number_format"])))


# -- arithmetic ----------------------------------------------------------------------------------------
def test_advantages_are_relative_to_the_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    plain = group_advantages(rewards, 4, scale=False)
    assert torch.allclose(plain, torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]))
    scaled = group_advantages(rewards, 4, scale=True)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()
    assert torch.allclose(scaled[:4], plain[:4] / (std + 1e-4))
    assert torch.equal(scaled[4:], torch.zeros(4))  # equal rewards: no signal, no 0/0


def test_tokens_after_the_first_stop_token_are_masked():
    ids = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 0, 0, 0], [5, 6, 9, 2]])
    mask, stopped = completion_mask(ids, stop_ids=[2, 9])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]]
    assert stopped.tolist() == [True, False, True, True]


def test_positions_skip_left_padding():
    assert position_ids_for(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])).tolist() == \
        [[0, 0, 0, 1, 2], [0, 1, 2, 3, 3]]


def _rollout_batch(tokenizer, n=4):
    """Left-padded prompts with made-up completions of different lengths, some ending in EOS."""
    batch = PromptCollator(tokenizer.pad_token_id)(prompt_rows(tokenizer, n))
    eos = tokenizer.eos_token_id
    completions = torch.tensor([[100 + i, 200 + i, eos, 0][:4] if i % 2 == 0 else [300 + i, 301, 302, 303]
                                for i in range(n)])
    mask, _ = completion_mask(completions, [eos])
    input_ids = torch.cat([batch["prompt_ids"], completions], 1)
    attention = torch.cat([batch["prompt_attention_mask"], mask], 1)
    score = torch.cat([torch.zeros_like(batch["prompt_attention_mask"]), mask], 1)
    return input_ids, attention, score


@pytest.mark.parametrize("head_only", [True, False])
def test_loss_gradient_is_the_policy_gradient(tiny_llama_dir, smol_tokenizer, head_only):
    model = load(tiny_llama_dir)
    input_ids, attention, score = _rollout_batch(smol_tokenizer)
    advantages = torch.tensor([1.0, -0.5, 0.25, -2.0])
    logps = completion_logps(model, input_ids, attention, score, head_only_at_completions=head_only)
    loss, _ = policy_loss(logps, advantages, score[:, 1:], divisor=score.sum())
    loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    # By hand: -(sum_i A_i sum_t log p(token t)) / completion tokens, from the full logits.
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids_for(attention)).logits
    token_logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(2, input_ids[:, 1:, None]).squeeze(2)
    keep = score[:, 1:].float()
    assert torch.allclose(logps, token_logp.detach() * keep, atol=1e-5)
    expected = -(advantages[:, None] * token_logp * keep).sum() / keep.sum()
    # The ratio is 1, so the loss's value is minus the mean advantage per token; its gradient is the PG's.
    assert torch.allclose(loss, -(advantages[:, None] * keep).sum() / keep.sum(), atol=1e-6)
    expected.backward()
    for name, param in model.named_parameters():
        assert torch.allclose(got[name], param.grad, atol=1e-6, rtol=1e-4), name


def test_scored_log_probs_are_the_sampler_s(chatty_llama_dir, smol_tokenizer):
    """The training forward (positions skipping the left padding) gives the log-probabilities the
    sampler drew each token with."""
    model = load(chatty_llama_dir).eval()
    batch = PromptCollator(smol_tokenizer.pad_token_id)(prompt_rows(smol_tokenizer, 3))
    torch.manual_seed(0)
    out = model.generate(input_ids=batch["prompt_ids"], attention_mask=batch["prompt_attention_mask"], do_sample=True,
                         top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=6, output_scores=True,
                         return_dict_in_generate=True, eos_token_id=[smol_tokenizer.eos_token_id],
                         pad_token_id=smol_tokenizer.pad_token_id)
    width = batch["prompt_ids"].shape[1]
    completions = out.sequences[:, width:]
    mask, _ = completion_mask(completions, [smol_tokenizer.eos_token_id])
    sampled = torch.stack([torch.log_softmax(s.float(), -1).gather(1, completions[:, i:i + 1]).squeeze(1)
                           for i, s in enumerate(out.scores)], 1)
    with torch.no_grad():
        logps = completion_logps(model, out.sequences, torch.cat([batch["prompt_attention_mask"], mask], 1),
                                 torch.cat([torch.zeros_like(batch["prompt_attention_mask"]), mask], 1))
    ours = logps[:, width - 1:]
    assert torch.allclose(ours * mask, sampled * mask, atol=1e-4)


# -- the KL reference ----------------------------------------------------------------------------------
def test_kl_is_zero_at_start_and_positive_after_a_change(tiny_llama_dir, smol_tokenizer):
    input_ids, attention, score = _rollout_batch(smol_tokenizer)
    for method in ("lora", "full"):
        model = load(tiny_llama_dir)
        model = lora(model) if method == "lora" else model
        reference = Reference(model, "adapter_off" if method == "lora" else "copy")
        assert (not reference.snapshot) == (method == "lora")  # a new adapter: switched off, nothing copied
        with reference.active(model) as ref:
            ref_logps = completion_logps(ref, input_ids, attention, score)
        logps = completion_logps(model, input_ids, attention, score)
        _, kl = policy_loss(logps, torch.zeros(4), score[:, 1:], 1, ref_logps, kl_weight=0.1)
        assert float(kl) == pytest.approx(0.0, abs=1e-6)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.requires_grad and ("lora_B" in name or method == "full"):
                    param.add_(0.05 * torch.randn_like(param))
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        with reference.active(model) as ref:
            again = completion_logps(ref, input_ids, attention, score)
        assert torch.allclose(again, ref_logps, atol=1e-6)  # the reference is still the start
        assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # weights put back
        loss, kl = policy_loss(completion_logps(model, input_ids, attention, score), torch.zeros(4), score[:, 1:], 1,
                               ref_logps, kl_weight=0.1)
        assert float(kl) > 1e-4 and float(loss.detach()) > 0


# -- rewards ---------------------------------------------------------------------------------------------
def test_builtin_rewards():
    completions = ["3 + 4 = 7.\n#### 7", "#### 8", "The answer is 7", "x" * 500]
    refs = ["7", "7", "7", "1"]
    rewards = {r.name: r(completions, refs, [""] * 4)
               for r in build_rewards(GrpoConfig(rewards=["exact_match", "number_format", "answer_length"]))}
    assert rewards["exact_match"] == [1.0, 0.0, 1.0, 0.0]
    assert rewards["number_format"] == [1.0, 1.0, 0.0, 0.0]
    assert rewards["answer_length"][:3] == [0.0, 0.0, 0.0] and rewards["answer_length"][3] == pytest.approx(-0.5)


def test_reward_errors_name_the_function():
    def raises(completions, references, prompts):
        return [1 / len(c) for c in completions]

    def word(completions, references, prompts):
        return ["high" for _ in completions]

    def nan(completions, references, prompts):
        return [math.nan for _ in completions]

    def short(completions, references, prompts):
        return [1.0]

    args = (["ok", "", "fine"], ["1", "2", "3"], ["p0", "p1", "p2"])
    with pytest.raises(TrainingError, match=r"'mine:raises' raised ZeroDivisionError.*completion 1.*'p1'"):
        RewardFunction("mine:raises", raises)(*args)
    with pytest.raises(TrainingError, match=r"'mine:word' returned 'high' for completion 0; expected a list of 3"):
        RewardFunction("mine:word", word)(*args)
    with pytest.raises(TrainingError, match=r"'mine:nan' returned nan.*finite numbers"):
        RewardFunction("mine:nan", nan)(*args)
    with pytest.raises(TrainingError, match=r"'mine:short' returned 1 values for 3 completions"):
        RewardFunction("mine:short", short)(*args)
    with pytest.raises(TrainingError, match=r"'exact_match' raised DataError: .*reference None"):
        build_rewards(GrpoConfig())[0](["#### 1"], [None], ["p"])


def test_reward_names_and_arguments_are_checked_before_loading():
    with pytest.raises(ConfigError, match=r"train.grpo.rewards: unknown reward function 'exact_mach'.*exact_match"):
        check_rewards(GrpoConfig(rewards=["exact_mach"]))
    with pytest.raises(ConfigError, match=r"train.grpo.reward_args.answer_length: 'max_tokens' is not a parameter"):
        check_rewards(GrpoConfig(rewards=["answer_length"], reward_args={"answer_length": {"max_tokens": 3}}))
    with pytest.raises(ConfigError, match=r"train.grpo.rewards: cannot import module 'no_such_pkg.rewards'"):
        check_rewards(GrpoConfig(rewards=["no_such_pkg.rewards:score"]))
    with pytest.raises(ConfigError, match="listed twice"):
        check_rewards(GrpoConfig(rewards=["exact_match", "exact_match"]))


def test_dotted_path_rewards_and_registration(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def polite(completions, references, prompts, word='please'):\n"
        "    return [float(word in c) for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    [fn] = build_rewards(GrpoConfig(rewards=["my_rewards:polite"], reward_weights=[0.5],
                                    reward_args={"my_rewards:polite": {"word": "thanks"}}))
    assert fn(["thanks", "no"], [None, None], ["", ""]) == [1.0, 0.0] and fn.weight == 0.5

    @register_reward("always_one_test")
    def always_one(completions, references, prompts):
        return [1.0] * len(completions)

    assert build_rewards(GrpoConfig(rewards=["always_one_test"]))[0](["a"], [None], [""]) == [1.0]


# -- the trainer -----------------------------------------------------------------------------------------
def fixed_sampler(tokenizer, group):
    """A stand-in for ``GrpoTrainer.sample``: each completion depends only on its prompt and its place in
    the group, so two batchings of the same prompts get the same samples."""
    eos = tokenizer.eos_token_id

    def sample(prompt_ids, prompt_mask, seed, greedy=False):
        rows = []
        for r, ids in enumerate(prompt_ids.tolist()):
            k = r % group
            length = 2 + (ids[-3] + k) % 5
            rows.append([(ids[-3] * 7 + 13 * k + 3 * t) % 2000 + 100 for t in range(length)] + [eos])
        width = max(len(r) for r in rows)
        return torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])

    return sample


def length_reward(completions, references, prompts):
    return [float(len(c) % 7) for c in completions]


def _step_gradients(model_dir, tokenizer, tmp_path, batch_size, accum, kl_weight):
    model = lora(load(model_dir))
    settings = GrpoConfig(group_size=4, max_new_tokens=8, kl_weight=kl_weight)
    trainer = make_trainer(model, tokenizer, tmp_path, prompt_rows(tokenizer, 4), settings=settings,
                           rewards=[RewardFunction("length", length_reward)], per_device_train_batch_size=batch_size,
                           gradient_accumulation_steps=accum)
    trainer.sample = fixed_sampler(tokenizer, 4)
    with torch.no_grad():  # a moved adapter, so the KL term has a gradient
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.02 * torch.randn_like(param))
    collate = trainer.data_collator
    rows = prompt_rows(tokenizer, 4)
    batches = iter([collate(rows[i:i + batch_size]) for i in range(0, 4, batch_size)])
    samples, count = trainer.get_batch_samples(batches, accum, trainer.args.device)
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    model.zero_grad()
    total = sum(float(trainer.training_step(model, inputs, count)) for inputs in samples)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, total, float(count)


@pytest.mark.parametrize("kl_weight", [0.0, 0.5])
def test_accumulated_gradients_equal_one_big_batch(tiny_llama_dir, smol_tokenizer, tmp_path, kl_weight):
    torch.manual_seed(1)
    one, loss_one, count_one = _step_gradients(tiny_llama_dir, smol_tokenizer, tmp_path, 4, 1, kl_weight)
    torch.manual_seed(1)
    two, loss_two, count_two = _step_gradients(tiny_llama_dir, smol_tokenizer, tmp_path, 2, 2, kl_weight)
    assert count_one == count_two > 0
    assert loss_one == pytest.approx(loss_two, rel=1e-5, abs=1e-7)
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-7, rtol=1e-4), name
    assert any(float(g.abs().sum()) > 0 for g in one.values())


def test_sampling_is_seeded_by_step_and_micro_batch(chatty_llama_dir, smol_tokenizer, tmp_path):
    trainer = make_trainer(lora(load(chatty_llama_dir)), smol_tokenizer, tmp_path, prompt_rows(smol_tokenizer, 2))
    batch = trainer.data_collator(prompt_rows(smol_tokenizer, 2))
    ids, mask = batch["prompt_ids"].repeat_interleave(4, 0), batch["prompt_attention_mask"].repeat_interleave(4, 0)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = trainer.sample(ids, mask, sampling_seed(3, 5, 0))
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    torch.manual_seed(999)
    assert torch.equal(trainer.sample(ids, mask, sampling_seed(3, 5, 0)), first)
    assert not torch.equal(trainer.sample(ids, mask, sampling_seed(3, 6, 0)), first)
    assert not torch.equal(trainer.sample(ids, mask, sampling_seed(3, 5, 1)), first)
    assert trainer.model.training  # back in train mode after sampling


def test_training_updates_the_adapter_and_logs_rewards(chatty_llama_dir, smol_tokenizer, tmp_path):
    model = lora(load(chatty_llama_dir))
    settings = GrpoConfig(group_size=4, max_new_tokens=6, kl_weight=0.1, temperature=1.0, top_k=50)
    rewards = [*build_rewards(GrpoConfig(rewards=["exact_match", "number_format"])),
               RewardFunction("length", length_reward, 0.5)]
    trainer = make_trainer(model, smol_tokenizer, tmp_path, prompt_rows(smol_tokenizer, 8), settings=settings,
                           rewards=rewards, eval_rows=prompt_rows(smol_tokenizer, 3), eval_strategy="steps",
                           eval_steps=2, max_steps=2, gradient_accumulation_steps=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert changed and all("lora_" in n for n in changed)
    logs = trainer.state.log_history
    step_logs = [r for r in logs if "loss" in r]
    assert len(step_logs) == 2
    for key in ("reward", "reward_std", "reward/exact_match", "reward/number_format", "reward/length", "kl",
                "completion_length", "clipped_ratio"):
        assert key in step_logs[0], (key, step_logs[0])
    assert 0 < step_logs[0]["completion_length"] <= 6 and 0 <= step_logs[0]["clipped_ratio"] <= 1
    evals = [r for r in logs if "eval_reward" in r]
    assert evals and evals[0]["eval_loss"] == -evals[0]["eval_reward"] and "eval_reward/length" in evals[0]
    json.dumps(logs)  # every logged value is plain JSON (metrics.jsonl)


def test_prompt_collator_pads_on_the_left():
    batch = PromptCollator(0)([{"prompt_ids": [5, 6, 7], "reference": "3"}, {"prompt_ids": [8], "reference": None}])
    assert batch["prompt_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["prompt_attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["references"] == ["3", None]
    with pytest.raises(DataError, match="no 'prompt_ids'"):
        PromptCollator(0)([{"input_ids": [1]}])
