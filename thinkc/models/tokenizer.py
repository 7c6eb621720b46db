"""An offline tokenizer for the tiny models: byte-level BPE trained in-process on the synthetic
reasoning task's vocabulary (a fixed sentence list plus a few synthetic records of both thought
styles), ChatML chat template. Digits are never merged with each other (" 652" -> " 6", "5", "2"),
so column arithmetic sees one token per digit. Deterministic; no files, no hub.

Real models (SmolLM2, local Qwen/Llama folders) bring their own tokenizer; this one exists so
tests and the tiny recipes never need a download."""
from __future__ import annotations

from functools import lru_cache

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "Tom has 12 apples. He buys 7 more and gives away 5. How many apples does he have now?",
    "Let me compute step by step. 12 + 7 = 19. Then 19 - 5 = 14. So the answer is \\boxed{14}.",
    "Hmm, let me double-check that. Wait, I should restate the problem first. Okay, so we know",
    "that the total is the sum of the parts. Multiply: 6 * 8 = 48. Divide: 48 / 4 = 12.",
    "The answer is \\boxed{42}. Therefore, the final result is correct. Let's verify again.",
    "A store sells pencils, books, coins, marbles, cookies, stickers and cards each day.",
    "She had 3 boxes with 9 items in each box. First, second, third, next, then, finally.",
    "Alright, I think that's right. Actually, yes. Let me re-read the question carefully.",
    "<think>\n\n</think> Question: Answer: Solve the problem. Please reason step by step.",
    "0123456789 + - * / = ( ) [ ] { } . , ; : ? ! ' \" % $ # @ & ^ _ ~ | < > \\",
]


# GPT-2's pre-tokenizer pattern with single digits (" ?\p{N}" instead of " ?\p{N}+")
_PRE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def _task_texts() -> list[str]:
    from thinkc.data.synth import synth_records

    recs = synth_records(40, seed=999) + synth_records(20, seed=999, style="short")
    return [t for r in recs for t in (r.question, r.thinking, r.answer)]


@lru_cache(maxsize=None)
def _trained(vocab_size: int) -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(_PRE), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 4 + _task_texts(), trainer=trainer)
    return tok.to_str()


def tiny_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A fresh PreTrainedTokenizerFast (callers may add tokens to it without affecting others)."""
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_trained(vocab_size)),
                                  bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML_TEMPLATE
    return tok
