"""What a request becomes before and after the engine: its prompt tokens (the same prompt `thinkc
infer` builds for a question), its row request (limits, sampling, thinking budget), and the stream
of events from the engine thread, watched for a client that goes away."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from thinkc.infer.live import RowRequest
from thinkc.serve.driver import EngineDriver, Job
from thinkc.serve.protocol import ChatCompletionRequest, CompletionRequest, OpenAIError


@dataclass
class Service:
    driver: EngineDriver
    tokenizer: object
    build_prompt: Callable[[dict], list[int]]  # thinkc.infer.run.prepare's: a record -> prompt ids
    model_name: str
    model_root: str
    temperature: float = 0.0  # for requests that do not set one
    top_p: float = 1.0

    # ---- prompts ---------------------------------------------------------------------------------
    def chat_prompt(self, req: ChatCompletionRequest) -> list[int]:
        """System + one user turn: exactly thinkc infer's prompt for that question. Longer
        conversations: the chat template over every turn, then the opening of the thinking."""
        msgs = req.messages
        system = [m.text() for m in msgs[:-1] if m.role in ("system", "developer")]
        question = msgs[-1].text()
        if not question.strip():
            raise OpenAIError("messages: the last user message is empty", 400, "messages")
        if len(system) == len(msgs) - 1 and len(system) <= 1:
            return self.build_prompt({"question": question, "system": system[0] if system else None})
        from thinkc.gist.layout import THINK_OPEN

        turns = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in msgs]
        if not getattr(self.tokenizer, "chat_template", None):
            raise OpenAIError("messages: this model has no chat template for a conversation of several turns", 400,
                              "messages")
        text = self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text + THINK_OPEN, add_special_tokens=False)

    def completion_prompt(self, req: CompletionRequest) -> list[int]:
        p = req.prompt
        if isinstance(p, str):
            ids = self.tokenizer.encode(p, add_special_tokens=False)
        else:
            vocab = len(self.tokenizer)
            if any(not isinstance(t, int) or t < 0 or t >= vocab for t in p):
                raise OpenAIError(f"prompt: token ids must be in [0, {vocab})", 400, "prompt")
            ids = list(p)
        if not ids:
            raise OpenAIError("prompt: empty after tokenisation", 400, "prompt")
        return ids

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise OpenAIError(f"The model `{name}` does not exist (this server serves `{self.model_name}`)", 404,
                              "model", code="model_not_found")

    def row_request(self, req, prompt_len: int) -> RowRequest:
        max_tokens = self.driver.check(prompt_len, req.limit())
        temperature = self.temperature if req.temperature is None else req.temperature
        top_p = self.top_p if req.top_p is None else req.top_p
        seed = req.seed if req.seed is not None else int.from_bytes(os.urandom(4), "little")
        return RowRequest(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                          thinking_budget=req.thinking_token_budget)

    # ---- the engine's events ---------------------------------------------------------------------
    def start(self, prompt: list[int], row: RowRequest) -> Job:
        job = Job(prompt, row, asyncio.get_running_loop())
        self.driver.submit(job)
        return job

    async def events(self, job: Job, is_disconnected) -> AsyncIterator[tuple]:
        """The job's events until "done". A client that disconnects frees the row at once: a stream's
        task is cancelled by the server (CancelledError here); a plain request polls
        `is_disconnected` every half second."""
        finished, loop = False, asyncio.get_running_loop()
        checked = loop.time()
        try:
            while True:
                try:
                    kind, value = await asyncio.wait_for(job.queue.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    kind = None
                if is_disconnected is not None and loop.time() - checked >= 0.5:
                    checked = loop.time()
                    if await is_disconnected():
                        return
                if kind is None:
                    continue
                if kind == "error":
                    finished = True
                    raise value
                finished = kind == "done"  # set before the yield: a caller that stops after "done" cancels nothing
                yield kind, value
                if finished:
                    return
        finally:
            if not finished:
                self.driver.cancel(job)
