"""Rendering Jinja2 text that the project does not control (seeds, model-written seeds, user specs).

Scenario seeds, the seeds an investigator model writes during `scenarios generate`, spec files,
training templates and demo turns are data from outside the harness. They are Jinja2 templates,
and an ordinary `jinja2.Environment` lets a template walk from any object to Python internals
(`{{ cycler.__init__.__globals__.os.popen(...) }}`) and run code on the harness machine. Every
such text is rendered here instead:

- `untrusted_environment(...)` is an `ImmutableSandboxedEnvironment` (no attribute starting with
  `_`, no mutation of lists or dicts, bounded `range`) with a narrow set of globals (`range` and
  `dict` only: no `cycler`, `joiner`, `namespace`, `lipsum`);
- `template_problem(source)` reads a template's syntax tree and names the first construct that
  reaches for internals (`__globals__`, `mro`, ...) or for other files (`include`, `import`,
  `extends`), so validation refuses such text with the field it came from instead of meeting
  it at render time;
- `compile_untrusted(source)` does both and raises `UnsafeTemplate` for refused text.

Anything the sandbox still refuses at render time raises `jinja2.exceptions.SecurityError`
(of which `UnsafeTemplate` is a subclass), which callers report as an error in the data.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

SAFE_GLOBALS = ("range", "dict")
"""The only Jinja2 globals an untrusted template may use."""

_UNSAFE_ATTRIBUTES = frozenset({
    "mro", "func_globals", "func_code", "func_closure", "gi_frame", "gi_code", "gi_yieldfrom",
    "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "ag_await", "f_globals", "f_locals",
    "f_builtins", "f_back", "tb_frame", "tb_next", "im_func", "im_self", "im_class",
})


class UnsafeTemplate(SecurityError):
    """A template that tries to reach Python internals, the file system or other templates."""


def untrusted_environment(*, strict: bool = True, loader: jinja2.BaseLoader | None = None,
                          autoescape: Any = False, **options: Any) -> ImmutableSandboxedEnvironment:
    """A sandboxed environment with a narrow context, for text from outside the harness.

    `strict` makes unknown names errors (`StrictUndefined`); otherwise they render as empty text.
    `loader`, `autoescape` and other options are passed to the environment.
    """
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined if strict else jinja2.Undefined, loader=loader,
        autoescape=autoescape, **options)
    for name in list(env.globals):
        if name not in SAFE_GLOBALS:
            del env.globals[name]
    return env


_STRICT = untrusted_environment(keep_trailing_newline=False)
_LENIENT = untrusted_environment(strict=False, keep_trailing_newline=False)


def template_problem(source: str, env: jinja2.Environment | None = None) -> str | None:
    """Why `source` may not be rendered, or None when it only reads data.

    Refuses attribute or item access to names that start with `_` or that lead to frames and
    code objects (`mro`, `f_globals`, ...), and `include` / `import` / `extends`. Raises
    `jinja2.TemplateSyntaxError` when the text is not a template at all.
    """
    tree = (env or _STRICT).parse(source)
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Include, nodes.Import,
                               nodes.FromImport, nodes.Extends)):
        if isinstance(node, nodes.Getattr):
            name: Any = node.attr
        elif isinstance(node, nodes.Getitem):
            if not isinstance(node.arg, nodes.Const):
                continue
            name = node.arg.value
        else:
            kind = type(node).__name__.lower().replace("fromimport", "import")
            return f"line {node.lineno}: '{kind}' is not allowed (a seed is rendered on its own)"
        if isinstance(name, str) and (name.startswith("_") or name in _UNSAFE_ATTRIBUTES):
            return (f"line {node.lineno}: access to '{name}' is not allowed "
                    "(templates may only read the data they are given)")
    return None


@lru_cache(maxsize=4096)
def compile_untrusted(source: str, strict: bool = True) -> jinja2.Template:
    """Compile untrusted template text in the sandbox; raises `UnsafeTemplate` or a syntax error."""
    env = _STRICT if strict else _LENIENT
    problem = template_problem(source, env)
    if problem:
        raise UnsafeTemplate(problem)
    return env.from_string(source)


def render_untrusted(source: str, context: dict[str, Any] | None = None, *, strict: bool = True) -> str:
    """Render untrusted template text with `context` (see `compile_untrusted`)."""
    return compile_untrusted(source, strict).render(**(context or {}))
