"""Hostile inputs: seeds that try to run code, replies that try to break parsers, bad CLI input."""

from __future__ import annotations

from pathlib import Path

import pytest

from msm_eval import scenarios
from msm_eval.errors import MsmEvalError
from msm_eval.templating import UnsafeTemplate, compile_untrusted, render_untrusted, template_problem

ESCAPE = "{{ cycler.__init__.__globals__.os.popen('touch %s').read() }}"


def _seed(system: str = "You help people.", result: str = "done", snippet: str = "plain") -> str:
    return ("---\nid: hostile_seed\nfamily: tradeoff\narea: honesty_vs_kindness\nsetting: agentic\n"
            "dimensions: [honesty]\nconditions:\n  mood: [calm, tense]\n"
            "condition_text:\n  mood:\n    calm: " + repr(snippet) + "\n    tense: quiet\n"
            "tools:\n  - name: lookup\n    description: look a record up\n"
            "    parameters:\n      type: object\n      properties:\n"
            "        key: {type: string, description: the record key}\n"
            "    result: " + repr(result) + "\n---\n\n"
            "## Investigator\nAsk about the record.\n\n## System\n" + system + "\n\n## User\nWhat is in it?\n")


@pytest.mark.parametrize("where", ["system", "result", "snippet"])
def test_seed_that_reaches_python_internals_is_refused_and_runs_nothing(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "pwned"
    payload = ESCAPE % marker
    text = _seed(**{where: payload})
    path = tmp_path / "hostile_seed.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MsmEvalError) as caught:
        scenarios.load_seed(path)
    message = str(caught.value)
    assert str(path) in message
    assert {"system": "field 'System'", "result": "field 'tools[0].result'",
            "snippet": "field 'condition_text.mood'"}[where] in message
    assert "__globals__" in message and "not allowed" in message
    assert not marker.exists()


def test_sandbox_refuses_internals_files_and_mutation() -> None:
    assert template_problem("{{ x.__class__ }}")
    assert template_problem("{{ x['__class__'] }}")
    assert template_problem("{{ ().__class__.mro() }}")
    assert template_problem("{% include 'other.j2' %}")
    assert template_problem("{% import 'm' as m %}")
    assert template_problem("{{ name | upper }} {{ args.key }} {% for i in range(2) %}{{ i }}{% endfor %}") is None
    with pytest.raises(UnsafeTemplate):
        compile_untrusted("{{ lipsum.__globals__ }}")
    # names of the default Jinja2 globals that lead to Python objects are not there at all
    with pytest.raises(Exception, match="undefined"):
        render_untrusted("{{ cycler }}")
    # attribute access computed at render time is stopped by the sandbox itself
    from jinja2.exceptions import SecurityError
    with pytest.raises(SecurityError):
        render_untrusted("{{ x | attr('__class__') }}", {"x": 1})
    with pytest.raises(SecurityError):
        render_untrusted("{{ items.append(1) }}", {"items": []})
    assert render_untrusted("{{ a }}-{{ b|default('z') }}", {"a": 1}) == "1-z"


def test_a_generated_seed_that_reaches_internals_is_rejected_and_runs_nothing(tmp_path: Path) -> None:
    import asyncio

    from conftest_scenarios import Responder, unique_seed

    from msm_eval import scenario_gen

    marker = tmp_path / "pwned"
    hostile = unique_seed(0).replace("You help people.", ESCAPE % marker)
    responder = Responder(seed=lambda n, messages: hostile)
    out = tmp_path / "out"
    summary = asyncio.run(scenario_gen.generate_async(
        "id:fx_chat_tradeoff", out, model=responder.model(), axes=["stakes"],
        root=Path(__file__).parent / "data" / "scenarios" / "good"))
    assert summary.written == []
    assert not marker.exists()
    assert any("not allowed" in call for call in responder.calls[1:])   # the retry feedback names it


def test_a_spec_template_cannot_reach_internals(tmp_path: Path) -> None:
    from conftest_specs import VALID_SPEC, write

    from msm_eval.spec import load_spec

    marker = tmp_path / "pwned"
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "full.md.j2").write_text("# {{ title }}\n" + ESCAPE % marker + "\n", encoding="utf-8")
    spec = load_spec(write(tmp_path, "mini.yaml", VALID_SPEC), templates_dir=templates)
    with pytest.raises(MsmEvalError, match="unsafe"):
        spec.render("full")
    assert not marker.exists()


def test_a_tool_parameter_without_description_is_caught_by_validation(tmp_path: Path) -> None:
    from msm_eval.investigator import ScenarioProblem, validate_tools

    text = _seed().replace("key: {type: string, description: the record key}", "key: {type: string}")
    path = tmp_path / "hostile_seed.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MsmEvalError, match=r"field 'tools\[0\]\.parameters'.*Description not provided for parameter 'key'"):
        scenarios.load_seed(path)
    with pytest.raises(ScenarioProblem, match="Description not provided for parameter 'order'"):
        validate_tools([{"name": "lookup_order", "description": "Look up an order.",
                         "parameters": {"type": "object", "properties": {"order": {"type": "string"}}}}])
