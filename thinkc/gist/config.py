"""GistConfig: everything that shapes a LightThinker / AnLLM gist layout (design.md §2, seeds/004).

    cfg = GistConfig.load("qwen")            # configs/gist/qwen.json (n = 9)
    cfg = GistConfig.load("my_run.json")     # any file with a subset of the fields below
    cfg.flags                                # -> GistFlags for the attention rule
    cfg.special_tokens()                     # tokens to add to the tokenizer

Named configs live in the repository's configs/gist/*.json. An installed package has no configs/
folder, so the same presets are also kept here (`PRESETS`); a test checks the two never drift.
A name resolves to the JSON file when the repository is there, else to the preset.

Changed to follow the original LightThinker code (issue 10; mapping table in thinkc/gist/rule.py):
- prefill_compress now means what the original's flag means, and defaults to true (the original's
  default). true: the prompt is compressed during prefill (sentence-level rule in the prompt square);
  this is what an old config without the key, or with false, gave. false: plain lower-triangular
  prefill, flags cleared on the prompt's cache tokens, the sentences visible until the first thought
  (an old config with true gave nearly this, but kept the flags there).
- aug / recover prompt blocks are the sentence's n cache tokens only (no instruction, no [o]), and
  the system prompt's sentences are compressed too: models trained with the old aug / recover
  layout need retraining (or an old checkout) to be evaluated faithfully.
- recover: the recovery segment sees only the prompt and the gist blocks, rebuilds the thoughts with
  their trigger, restarts its positions after the last [o], and is fitted into max_length; hybrid
  is now a separate prompt-recovery sample (it used to prepend the question to the recovery text).
- over-long samples are trimmed to max_length (layout.build_samples(overlong="drop") keeps the old
  drop; `thinkc train` has data.overlong).
- the "anllm" preset is the original's AnLLM layout (anllm=true); anllm=false with
  use_output_token=false keeps thinkc's older variant (<w> emitted, anchor fed, not trained)."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from thinkc.errors import ThinkcError
from thinkc.gist.rule import GistFlags

MODES = ("normal", "aug", "aug-wo-pc", "recover")
LEVELS = ("thought", "token")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "gist"


@dataclass(frozen=True)
class GistConfig:
    # what is compressed
    mode: str = "aug-wo-pc"  # normal | aug (prompt too) | aug-wo-pc (thoughts only) | recover
    level: str = "thought"  # thought: split at blank lines; token: every `step` tokens
    n_cache: int = 9  # cache tokens per block (paper: 9 for Qwen, 7 for Llama)
    step: int = 6  # token level: thinking tokens per block
    use_output_token: bool = True  # False for AnLLM: continue from the last cache token
    anllm: bool = False  # AnLLM as the original: no trigger, S_i + "\n" + anchor(s), anchors trained
    compress_answer: bool = False  # also segment the answer's paragraphs (all but the last)
    # the new tokens
    trigger: str = "<w>"
    cache_token_format: str = "<|c_{i}|>"
    output_token: str = "[o]"
    recover_token: str = "<|recover|>"
    output_compress_instruction: str = ""  # text placed before each block's cache tokens
    init_text: str = "Summarize the reasoning above into a few compact memory tokens."
    # loss
    train_on_input: bool = False
    hybrid: bool = False  # aug / recover: one more sample per record rebuilds the prompt sentences
    # attention flags (design.md §3)
    see_current: bool = False
    bi_directional: bool = False
    diagonal: bool = False
    exclude_continue: bool = False
    prefill_compress: bool = True  # aug / recover: the prompt square keeps the sentence-level rule
    max_length: int = 4096  # longer samples are trimmed to it (recover: recovery fitted into it)

    def __post_init__(self):
        self._validate()

    # ------------------------------------------------------------ derived

    @property
    def flags(self) -> GistFlags:
        return GistFlags(see_current=self.see_current, bi_directional=self.bi_directional, diagonal=self.diagonal)

    @property
    def compresses(self) -> bool:
        return self.mode != "normal"

    @property
    def compresses_prompt(self) -> bool:
        return self.mode in ("aug", "recover")

    @property
    def uses_trigger(self) -> bool:
        return self.compresses and self.level == "thought" and not self.anllm

    def cache_tokens(self) -> list[str]:
        return [self.cache_token_format.format(i=i) for i in range(self.n_cache)]

    def special_tokens(self) -> list[str]:
        """The tokens this layout adds to the tokenizer, in a fixed order (none in normal mode)."""
        if not self.compresses:
            return []
        out = [self.trigger] if self.uses_trigger else []
        out += self.cache_tokens()
        if self.use_output_token:
            out.append(self.output_token)
        if self.mode == "recover" or self.hybrid:
            out.append(self.recover_token)
        return out

    # ------------------------------------------------------------ files

    @classmethod
    def from_dict(cls, d: dict, where: str = "gist config") -> "GistConfig":
        if not isinstance(d, dict):
            raise ThinkcError(f"{where}: expected a JSON object, got {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ThinkcError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"valid keys: {', '.join(known)}")
        for k, v in d.items():
            want = known[k].type
            ok = {"bool": isinstance(v, bool), "int": isinstance(v, int) and not isinstance(v, bool),
                  "str": isinstance(v, str)}[want]
            if not ok:
                raise ThinkcError(f"{where}: {k} must be a {want}, got {v!r}")
        try:
            return cls(**d)
        except ThinkcError as e:
            raise ThinkcError(f"{where}: {e}") from None

    @classmethod
    def load(cls, path_or_name: "str | os.PathLike | GistConfig") -> "GistConfig":
        """A config file path, or a preset name ("qwen", "llama", "anllm", "token_level", "tiny")."""
        if isinstance(path_or_name, GistConfig):
            return path_or_name
        s = str(path_or_name)
        path = Path(s)
        if not path.is_file() and "/" not in s and not s.endswith(".json"):
            path = CONFIG_DIR / f"{s}.json"
            if not path.is_file():
                if s in PRESETS:
                    return cls.from_dict(PRESETS[s], where=f"gist preset {s!r}")
                raise ThinkcError(f"gist config {s!r}: not a file and not a preset "
                                  f"(presets: {', '.join(sorted(PRESETS))})")
        if not path.is_file():
            raise ThinkcError(f"gist config {s}: no such file")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ThinkcError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
        return cls.from_dict(d, where=str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: "str | os.PathLike") -> None:
        from thinkc.io import write_json

        write_json(path, self.to_dict())

    def replace(self, **changes) -> "GistConfig":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ checks

    def _validate(self) -> None:
        if self.mode not in MODES:
            raise ThinkcError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.level not in LEVELS:
            raise ThinkcError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if not isinstance(self.n_cache, int) or self.n_cache < 1:
            raise ThinkcError(f"n_cache must be a positive integer, got {self.n_cache!r}")
        if not isinstance(self.step, int) or self.step < 1:
            raise ThinkcError(f"step must be a positive integer, got {self.step!r}")
        if not isinstance(self.max_length, int) or self.max_length < 1:
            raise ThinkcError(f"max_length must be a positive integer, got {self.max_length!r}")
        if "{i}" not in self.cache_token_format:
            raise ThinkcError(f"cache_token_format must contain {{i}}, got {self.cache_token_format!r}")
        try:
            tokens = [self.trigger, *self.cache_tokens(), self.output_token, self.recover_token]
        except (KeyError, IndexError, ValueError) as e:
            raise ThinkcError(f"cache_token_format {self.cache_token_format!r}: {e}") from None
        for t in tokens:
            # "\n\n" is the thought separator in the data; it must stay ordinary text
            if not isinstance(t, str) or not t.strip() or t != t.strip():
                raise ThinkcError(f"special tokens must be non-empty with no surrounding whitespace, got {t!r}")
        if len(set(tokens)) != len(tokens):
            raise ThinkcError(f"special tokens must be distinct, got {tokens}")
        if self.bi_directional and self.diagonal:
            raise ThinkcError("bi_directional and diagonal exclude each other; set one of them")
        if self.compress_answer and self.level != "thought":
            raise ThinkcError("compress_answer needs level=thought (answer paragraphs are blank-line separated)")
        if self.hybrid and not self.compresses_prompt:
            raise ThinkcError(f"hybrid needs mode aug or recover (a compressed prompt to rebuild), got {self.mode!r}")
        if self.anllm and self.use_output_token:
            raise ThinkcError("anllm=true has no output token: set use_output_token=false")
        if not self.init_text.strip():
            raise ThinkcError("init_text must not be empty (it initialises the new token embeddings)")


# The shipped presets (mirrors of configs/gist/*.json; tests/test_gist_layout.py keeps them equal).
PRESETS: dict[str, dict] = {
    "qwen": {"mode": "aug-wo-pc", "level": "thought", "n_cache": 9, "use_output_token": True},
    "llama": {"mode": "aug-wo-pc", "level": "thought", "n_cache": 7, "use_output_token": True},
    "anllm": {"mode": "aug-wo-pc", "level": "thought", "n_cache": 1, "use_output_token": False, "anllm": True,
              "cache_token_format": "<|anchor_{i}|>", "see_current": True},
    "token_level": {"mode": "aug-wo-pc", "level": "token", "step": 6, "n_cache": 2, "use_output_token": True},
    "tiny": {"mode": "aug-wo-pc", "level": "thought", "n_cache": 2, "use_output_token": True,
             "max_length": 1024},
}
