"""The `msm/mock` provider: a scripted, deterministic, fully offline model for tests and keyless CI.

Replies come from exactly one of these model args (see `msm_eval.models.script` for the format):

- `reply="text"` – the same text for every call (`-M reply="a, b"` is rejoined after inspect's comma split);
- `replies=[...]` – a list of strings or entry objects (on the CLI: `-M replies='[...]'`);
- `script=path.jsonl` – one entry object per line;
- `responder=callable(messages, tools) -> str | dict | ModelOutput` (Python only; may be async);

and `exhaust="repeat"` (default: the last unconditional entry repeats) or `"error"`; `calls_tools=false`
makes it declare that it cannot call tools (as `msm/smollm2` does, see `judge.resolve_judge_mode`). With none of
them every call answers `DEFAULT_REPLY`. Token usage is estimated as characters / 4, so nothing
(not even tiktoken) touches the network. With `GenerateConfig(logprobs=True)` the output carries
log-probabilities: the entry's `top_logprobs` for the first token, certainty for the rest.
"""

from __future__ import annotations

import inspect as pyinspect
import json
import re
from collections.abc import Callable
from typing import Any

from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    GenerateConfig,
    Logprob,
    Logprobs,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    TopLogprob,
)
from inspect_ai.model._model_call import ModelCall
from inspect_ai.tool import ToolCall, ToolChoice, ToolInfo

from msm_eval.errors import MsmEvalError
from msm_eval.models.script import (
    ScriptedModelError,
    ScriptEntry,
    ScriptPlayer,
    load_script,
    parse_entry,
    parse_replies,
)

__all__ = ["DEFAULT_REPLY", "MockModelAPI", "ScriptedModelError", "approx_tokens"]

DEFAULT_REPLY = "This is the default reply of msm/mock (give -M reply=..., replies=... or script=...)."
_TOKEN_PIECES = re.compile(r"\s*\S+|\s+")

Responder = Callable[[list[ChatMessage], list[ToolInfo]], Any]


def approx_tokens(text: str) -> int:
    """A network-free token estimate: one token per four characters, rounded up."""
    return (len(text) + 3) // 4


class MockModelAPI(ModelAPI):
    """Scripted model API behind `msm/mock`."""

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig = GenerateConfig(), *, reply: str | None = None,
                 replies: Any = None, script: str | None = None, responder: Responder | None = None,
                 exhaust: str = "repeat", calls_tools: bool | str = True, **model_args: Any) -> None:
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, api_key_vars=[], config=config)
        if model_args:
            raise MsmEvalError(f"msm/mock: unknown model arg(s) {', '.join(sorted(model_args))}",
                               field="model_args", hint="use reply, replies, script, responder, exhaust or calls_tools")
        given = [name for name, value in (("reply", reply), ("replies", replies), ("script", script),
                                          ("responder", responder)) if value is not None]
        if len(given) > 1:
            raise MsmEvalError(f"msm/mock: give only one of reply, replies, script, responder (got {', '.join(given)})",
                               field="model_args")
        if responder is not None and not callable(responder):
            raise MsmEvalError("msm/mock: responder must be callable(messages, tools)", field="responder")
        self.responder = responder
        self.calls_tools = str(calls_tools).strip().lower() not in ("false", "0", "no")
        self._call_counter = 0
        if script is not None:
            entries, source = load_script(script), f"script {script}"
        elif replies is not None:
            entries, source = parse_replies(replies), "replies"
        else:
            text = DEFAULT_REPLY if reply is None else _reply_text(reply)
            entries, source = [parse_entry({"text": text}, label="reply")], "reply"
        self.player = ScriptPlayer(entries, exhaust=exhaust, source=source)  # type: ignore[arg-type]

    async def count_text_tokens(self, text: str) -> int:
        """Offline token estimate (inspect would otherwise download a tiktoken encoding)."""
        return approx_tokens(text)

    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> tuple[ModelOutput, ModelCall]:
        """Answer from the responder or the script, with usage (and logprobs when asked) filled in."""
        request = {"model": self.model_name, "messages": [m.model_dump(exclude_none=True) for m in input],
                   "tools": [t.name for t in tools]}
        if self.responder is not None:
            result = self.responder(input, tools)
            if pyinspect.isawaitable(result):
                result = await result
            output = self._from_responder(result, config)
        else:
            last_text = input[-1].text if input else ""
            all_text = "\n".join(m.text for m in input)
            output = self._render(self.player.next_entry(last_text, all_text), config)
        if output.usage is None:
            input_tokens = sum(approx_tokens(m.text) for m in input)
            if tools:
                input_tokens += approx_tokens(json.dumps([t.model_dump(exclude_none=True) for t in tools]))
            output_tokens = max(1, approx_tokens(output.completion))
            output.usage = ModelUsage(input_tokens=input_tokens, output_tokens=output_tokens,
                                      total_tokens=input_tokens + output_tokens)
        return output, ModelCall.create(request, {"completion": output.completion,
                                                  "stop_reason": output.stop_reason})

    def _from_responder(self, result: Any, config: GenerateConfig) -> ModelOutput:
        if isinstance(result, ModelOutput):
            return result
        if isinstance(result, str | dict):
            return self._render(parse_entry(result, label="responder result", allow_conditions=False), config)
        raise ScriptedModelError(f"msm/mock: responder returned {type(result).__name__}; "
                                 "return a str, an entry dict or a ModelOutput")

    def _render(self, entry: ScriptEntry, config: GenerateConfig) -> ModelOutput:
        if entry.error is not None:
            raise ScriptedModelError(f"msm/mock scripted error ({entry.origin}): {entry.error}")
        if entry.refusal is not None:
            text, stop_reason = entry.refusal, "content_filter"
        else:
            text, stop_reason = entry.text or "", "stop"
        tool_calls = None
        if entry.tool_calls:
            tool_calls = []
            for call in entry.tool_calls:
                self._call_counter += 1
                tool_calls.append(ToolCall(id=call.id or f"msm_mock_call_{self._call_counter}",
                                           function=call.function, arguments=dict(call.arguments)))
            stop_reason = "tool_calls"
        message = ChatMessageAssistant(content=text, model=self.model_name, source="generate",
                                       tool_calls=tool_calls)
        logprobs = _logprobs(text, entry.top_logprobs, config.top_logprobs) if config.logprobs else None
        choice = ChatCompletionChoice(message=message, stop_reason=stop_reason, logprobs=logprobs)  # type: ignore[arg-type]
        return ModelOutput(model=self.model_name, choices=[choice])


def _reply_text(reply: Any) -> str:
    """The `reply` model arg as text, undoing the inspect CLI's parsing of `-M` values.

    `inspect eval -M reply=...` YAML-parses the value and splits it at every comma, so
    `-M reply="Paris, of course."` arrives as `["Paris", " of course."]`: rejoining with "," gives
    the original text back. YAML booleans (`yes`, `true`, `off`) cannot be recovered.
    """
    if isinstance(reply, bool):
        raise MsmEvalError("msm/mock: reply was read as a YAML boolean", field="reply",
                           hint="""use -M replies='["yes"]' or a --model-config file to give this text""")
    if isinstance(reply, list) and all(isinstance(part, str | int | float) for part in reply):
        return ",".join(str(part) for part in reply)
    if isinstance(reply, str | int | float):
        return str(reply)
    raise MsmEvalError(f"msm/mock: reply must be text, got {type(reply).__name__}", field="reply")


def _logprobs(text: str, top: dict[str, float] | None, k: int | None) -> Logprobs:
    """Log-probabilities for `text`: the scripted alternatives for the first token, certainty after."""
    pieces = _TOKEN_PIECES.findall(text) or [""]
    content: list[Logprob] = []
    for index, piece in enumerate(pieces):
        if index == 0 and top:
            ranked = sorted(top.items(), key=lambda item: -item[1])
            alternatives = [TopLogprob(token=t, logprob=v, bytes=list(t.encode())) for t, v in ranked]
            if k is not None:
                alternatives = alternatives[:max(1, k)]
            stripped = text.lstrip()
            prefixes = [t for t, _ in ranked if t.strip() and stripped.startswith(t.strip())]
            chosen = max(prefixes, key=lambda t: len(t.strip())) if prefixes else ranked[0][0]
            content.append(Logprob(token=chosen, logprob=top[chosen], bytes=list(chosen.encode()),
                                   top_logprobs=alternatives))
        else:
            content.append(Logprob(token=piece, logprob=0.0, bytes=list(piece.encode()),
                                   top_logprobs=[TopLogprob(token=piece, logprob=0.0, bytes=list(piece.encode()))]))
    return Logprobs(content=content)
