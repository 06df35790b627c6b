"""Tests of the scripted `msm/mock` provider: script validation, replay rules, outputs, and the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from inspect_ai import Task, eval
from inspect_ai.dataset import Sample
from inspect_ai.log import list_eval_logs, read_eval_log
from inspect_ai.model import ChatMessageUser, GenerateConfig, ModelOutput, get_model
from inspect_ai.scorer import includes
from inspect_ai.solver import generate

from msm_eval.errors import MsmEvalError
from msm_eval.models.mock import DEFAULT_REPLY, ScriptedModelError
from msm_eval.models.script import ScriptPlayer, load_script, parse_replies

DATA = Path(__file__).parent / "data" / "mock_scripts"
INSPECT = [sys.executable, "-m", "inspect_ai"]


def mock(**model_args):
    return get_model("msm/mock", memoize=False, **model_args)


def write_script(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "script.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- script validation ---------------------------------------------------------------------

@pytest.mark.parametrize(("line", "expected"), [
    ('{"text": "ok"', "malformed JSON"),
    ('{"txt": "typo"}', "unknown key(s) 'txt'"),
    ('{"when": "x"}', "the entry has no reply"),
    ('{"text": "a", "when": "(unclosed"}', "field 'when': bad regular expression"),
    ('{"text": "a", "times": 0}', "field 'times': must be a positive integer"),
    ('{"refusal": "no", "text": "yes"}', "'refusal' cannot be combined"),
    ('{"tool_calls": [{"arguments": {}}]}', "needs a non-empty string 'function'"),
    ('{"text": "+3", "top_logprobs": {"+3": 0.5}}', "must be a number <= 0"),
    ('["not", "an", "object"]', "must be a JSON object"),
])
def test_bad_script_line_names_file_and_line(tmp_path, line, expected):
    path = write_script(tmp_path, '{"text": "fine"}', "", line)
    with pytest.raises(MsmEvalError) as info:
        load_script(path)
    message = str(info.value)
    assert f"{path}:3" in message
    assert expected in message


def test_missing_and_empty_script_files(tmp_path):
    with pytest.raises(MsmEvalError, match="script file not found"):
        load_script(tmp_path / "absent.jsonl")
    empty = write_script(tmp_path, "# only a comment")
    with pytest.raises(MsmEvalError, match="script has no entries"):
        load_script(empty)


def test_model_arg_errors_are_clear(tmp_path):
    with pytest.raises(MsmEvalError, match=r"replies\[1\]: unknown key"):
        mock(replies=["fine", {"bogus": 1}])
    with pytest.raises(MsmEvalError, match="replies: not valid JSON"):
        mock(replies="[not json")
    with pytest.raises(MsmEvalError, match="give only one of reply, replies"):
        mock(reply="a", replies=["b"])
    with pytest.raises(MsmEvalError, match="unknown model arg"):
        mock(reply="a", temprature=0)
    with pytest.raises(MsmEvalError, match="exhaust: must be 'repeat' or 'error'"):
        mock(reply="a", exhaust="loop")
    with pytest.raises(MsmEvalError, match="reply was read as a YAML boolean"):
        mock(reply=True)
    with pytest.raises(MsmEvalError, match="unknown model 'msm/gpt'"):
        get_model("msm/gpt")


# --- replay rules ---------------------------------------------------------------------------

def play(entries, inputs, exhaust="repeat"):
    player = ScriptPlayer(parse_replies(entries), exhaust=exhaust)
    return [player.next_entry(text, text).text for text in inputs]


def test_unconditional_entries_play_in_order_then_last_repeats():
    assert play(["a", {"text": "b", "times": 2}, "c"], ["x"] * 6) == ["a", "b", "b", "c", "c", "c"]


def test_conditional_entries_win_and_respect_times():
    entries = [{"text": "judge", "when": "^Score"}, {"text": "once", "when": "hello", "times": 1}, "first", "second"]
    got = play(entries, ["hello there", "hello again", "Score this", "other", "Score that", "more"])
    assert got == ["once", "first", "judge", "second", "judge", "second"]


def test_when_matches_last_message_and_when_any_matches_all():
    player = ScriptPlayer(parse_replies([{"text": "last", "when": "tail"}, {"text": "any", "when_any": "head"},
                                         "default"]))
    assert player.next_entry("the tail", "the head\nthe tail").text == "last"
    assert player.next_entry("no match", "the head\nno match").text == "any"
    assert player.next_entry("no match", "nothing").text == "default"


def test_exhaust_error_and_unmatched_conditional_script():
    player = ScriptPlayer(parse_replies(["only"]), exhaust="error", source="replies")
    assert player.next_entry("x", "x").text == "only"
    with pytest.raises(ScriptedModelError, match="replies is exhausted after 1 replies"):
        player.next_entry("x", "x")
    conditional = ScriptPlayer(parse_replies([{"text": "a", "when": "yes"}]))
    with pytest.raises(ScriptedModelError, match="no entry of script matches"):
        conditional.next_entry("no", "no")


# --- generated outputs ----------------------------------------------------------------------

async def test_each_reply_kind_becomes_the_right_output():
    model = mock(replies=[
        "plain",
        {"tool_calls": [{"function": "send_email", "arguments": {"to": "a@b.c"}}, {"function": "log", "id": "c2"}]},
        {"refusal": "I won't do that."},
        {"error": "provider down"},
    ])
    text = await model.generate("hi")
    assert (text.completion, text.stop_reason) == ("plain", "stop")
    assert text.usage is not None and text.usage.output_tokens >= 1 and text.usage.input_tokens >= 1

    calls = await model.generate("hi")
    assert calls.stop_reason == "tool_calls"
    assert [(c.function, c.arguments) for c in calls.message.tool_calls] == [("send_email", {"to": "a@b.c"}),
                                                                              ("log", {})]
    assert calls.message.tool_calls[1].id == "c2" and calls.message.tool_calls[0].id

    refusal = await model.generate("hi")
    assert (refusal.completion, refusal.stop_reason) == ("I won't do that.", "content_filter")

    with pytest.raises(ScriptedModelError, match=r"replies\[3\].*provider down"):
        await model.generate("hi")


async def test_default_reply_and_per_instance_state():
    assert (await mock().generate("hi")).completion == DEFAULT_REPLY
    first, second = mock(replies=["a", "b"]), mock(replies=["a", "b"])
    assert (await first.generate("x")).completion == "a"
    assert (await first.generate("x")).completion == "b"
    assert (await second.generate("x")).completion == "a"


async def test_scripted_top_logprobs_are_returned_when_requested():
    model = mock(replies=[{"text": "+3", "top_logprobs": {"2": -1.5, "+3": -0.2, "3": -2.0}}])
    plain = await model.generate("rate it")
    assert plain.choices[0].logprobs is None
    out = await model.generate("rate it", config=GenerateConfig(logprobs=True, top_logprobs=2))
    first = out.choices[0].logprobs.content[0]
    assert (first.token, first.logprob) == ("+3", -0.2)
    assert [(t.token, t.logprob) for t in first.top_logprobs] == [("+3", -0.2), ("2", -1.5)]


async def test_text_logprobs_without_scripted_alternatives_are_certain():
    out = await mock(reply="all fine").generate("x", config=GenerateConfig(logprobs=True))
    tokens = out.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == "all fine"
    assert all(t.logprob == 0.0 for t in tokens)


async def test_responder_callables_sync_and_async():
    seen = []

    def responder(messages, tools):
        seen.append((messages[-1].text, [t.name for t in tools]))
        return {"text": f"echo: {messages[-1].text}"}

    out = await mock(responder=responder).generate([ChatMessageUser(content="ping")])
    assert out.completion == "echo: ping" and seen == [("ping", [])]

    async def async_responder(messages, tools):
        return ModelOutput.from_content("msm/mock", "from a ModelOutput")

    out = await mock(responder=async_responder).generate("x")
    assert out.completion == "from a ModelOutput" and out.usage is not None

    with pytest.raises(MsmEvalError, match="'when' is not allowed here"):
        await mock(responder=lambda m, t: {"text": "a", "when": "x"}).generate("x")


def test_eval_runs_without_network_token_counting(monkeypatch, tmp_path):
    import tiktoken

    def no_download(*args, **kwargs):
        raise AssertionError("msm/mock must not load a tiktoken encoding")

    monkeypatch.setattr(tiktoken, "get_encoding", no_download)
    task = Task(dataset=[Sample(id="a", input="Capital of France?", target="Paris"),
                         Sample(id="b", input="Capital of Italy?", target="Rome")],
                solver=generate(), scorer=includes())
    model = mock(replies=[{"text": "Rome", "when": "Italy"}, "Paris"])
    log = eval(task, model=model, display="none", log_dir=str(tmp_path))[0]
    assert log.status == "success"
    assert log.results.scores[0].metrics["accuracy"].value == 1.0
    assert log.stats.model_usage["msm/mock"].total_tokens > 0


# --- the real inspect CLI -------------------------------------------------------------------

def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*INSPECT, "eval", *args, "--log-dir", str(tmp_path), "--display", "none",
                           "--log-format", "json"], capture_output=True, text=True, timeout=120, cwd=tmp_path)


def single_log(tmp_path: Path):
    logs = list_eval_logs(str(tmp_path))
    assert len(logs) == 1
    return read_eval_log(logs[0])


def test_cli_reply_model_arg(tmp_path):
    result = run_cli(tmp_path, f"{DATA / 'tiny_tasks.py'}@hello", "--model", "msm/mock",
                     "-M", "reply=Paris, of course.")
    assert result.returncode == 0, result.stderr[-2000:]
    log = single_log(tmp_path)
    assert log.status == "success"
    assert log.eval.model == "msm/mock"
    assert log.samples[0].output.completion == "Paris, of course."
    assert log.results.scores[0].metrics["accuracy"].value == 1.0


def test_cli_script_replays_text_tool_call_refusal_and_error(tmp_path):
    result = run_cli(tmp_path, f"{DATA / 'tiny_tasks.py'}@replay", "--model", "msm/mock",
                     "-M", f"script={DATA / 'replay.jsonl'}", "--no-fail-on-error", "--max-connections", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    log = single_log(tmp_path)
    assert log.status == "success"
    samples = {s.id: s for s in log.samples}

    assert samples["text"].output.completion == "Paris is the capital of France."

    tool_messages = samples["tool"].messages
    assert [m.role for m in tool_messages] == ["user", "assistant", "tool", "assistant"]
    call = tool_messages[1].tool_calls[0]
    assert (call.id, call.function, call.arguments["to"]) == ("call_email_1", "send_email", "kyle@example.com")
    assert tool_messages[2].text == "Email queued for kyle@example.com."
    assert samples["tool"].output.completion == "Done: the email is on its way."

    assert samples["refusal"].output.stop_reason == "content_filter"
    assert samples["refusal"].output.completion == "I can't help with building a weapon."

    assert samples["error"].error is not None
    assert "simulated provider outage" in samples["error"].error.message
    assert "replay.jsonl:6" in samples["error"].error.message

    assert samples["fallback"].output.completion == "fallback reply"
    usage = log.stats.model_usage["msm/mock"]
    assert usage.input_tokens > 0 and usage.output_tokens > 0
