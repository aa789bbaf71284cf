"""ReplyStream: streamed text equals batch generation, exact token counts, errors reach the reader."""

import pytest
import torch

from tunesmith.data.examples import Message
from tunesmith.data.templates import model_prompt
from tunesmith.inference.streaming import ReplyStream
from tunesmith.models.generation import GenerationSettings, generate_texts


@pytest.fixture(scope="module")
def lm(chatty_llama_dir):
    from transformers import AutoModelForCausalLM

    from tunesmith.models.loading import load_tokenizer

    return AutoModelForCausalLM.from_pretrained(chatty_llama_dir).eval(), load_tokenizer(str(chatty_llama_dir))


def test_streamed_reply_equals_generation_and_counts_tokens(lm):
    model, tok = lm
    prompt = model_prompt(tok, [Message("user", "Add 1 and 2.")])
    reply = ReplyStream(model, tok, prompt, GenerationSettings(max_new_tokens=9))
    pieces = list(reply)
    assert len(pieces) > 1 and "".join(pieces).strip() == generate_texts(model, tok, [prompt], GenerationSettings(9))[0]
    assert reply.new_tokens == 9 and not reply.hit_eos  # the chatty model never ends by itself
    assert reply.prompt_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert list(reply) == []  # one pass: iterating again ends at once


class EndsWith:
    """The tokenizer with another end-of-sequence token id."""

    def __init__(self, tok, eos):
        self._tok, self.eos_token_id = tok, eos

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, *args, **kwargs):
        return self._tok(*args, **kwargs)


def test_an_end_of_sequence_token_is_seen(lm):
    model, tok = lm
    prompt = model_prompt(tok, [Message("user", "Hi")])
    greedy = model.generate(**tok([prompt], return_tensors="pt", add_special_tokens=False), max_new_tokens=4,
                            do_sample=False, pad_token_id=tok.pad_token_id)
    third = int(greedy[0, -2])  # make the third generated token count as end of sequence
    reply = ReplyStream(model, EndsWith(tok, third), prompt, GenerationSettings(max_new_tokens=8))
    list(reply)
    assert reply.hit_eos and reply.new_tokens == 3


def test_encoder_decoder_replies_stream_too():
    from transformers import T5Config, T5ForConditionalGeneration

    from tunesmith.models.loading import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2, initializer_factor=2.0,
        decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id)).eval()
    settings = GenerationSettings(max_new_tokens=6)
    reply = ReplyStream(model, tok, "Summarise: the cat sat on the mat.", settings)
    text = "".join(reply).strip()
    assert text == generate_texts(model, tok, ["Summarise: the cat sat on the mat."], settings)[0]
    assert reply.new_tokens == 6  # the decoder start token is not counted


def test_a_failing_generation_raises_in_the_reader(lm, monkeypatch):
    model, tok = lm

    def broken(**kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(model, "generate", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        list(ReplyStream(model, tok, "x", GenerationSettings(4)))
