"""inspect_ai entry point: importing this module registers the project's model provider `msm`.

`pyproject.toml` declares `[project.entry-points.inspect_ai] msm_eval = "msm_eval.models.registry"`,
so `inspect eval ... --model msm/mock` and `get_model("msm/smollm2")` work anywhere the package is
installed. One provider name, `msm`, dispatches on the model name:

- `msm/mock` -> `msm_eval.models.mock.MockModelAPI` (scripted, offline);
- `msm/smollm2` -> `msm_eval.models.smollm2_api.SmolLM2API` (the embedded SmolLM2-135M-Instruct).

Importing this module also registers the project's tasks (`msm_eval.tasks`), so
`inspect eval msm_eval/constitution_adherence` (and the other `@task`s) resolves from any folder:
inspect loads the entry point named `msm_eval` when it looks up a name in that namespace. inspect
loads entry points for every command, so this module stays light: the task module costs about as
much as inspect's own imports, and the provider classes (and torch, for smollm2) are imported only
when a model is created.
"""

from __future__ import annotations

from typing import Any

from inspect_ai.model import GenerateConfig, ModelAPI, modelapi

from msm_eval.errors import MsmEvalError

MODEL_NAMES = ("mock", "smollm2")


def create_model_api(model_name: str, base_url: str | None = None, api_key: str | None = None,
                     config: GenerateConfig = GenerateConfig(), **model_args: Any) -> ModelAPI:
    """Build the provider for `msm/<model_name>`; unknown names raise an error listing the choices."""
    if model_name == "mock":
        from msm_eval.models.mock import MockModelAPI

        return MockModelAPI(model_name, base_url, api_key, config, **model_args)
    if model_name == "smollm2":
        from msm_eval.models.smollm2_api import SmolLM2API

        return SmolLM2API(model_name, base_url, api_key, config, **model_args)
    raise MsmEvalError(f"unknown model 'msm/{model_name}'", field="model",
                       hint=f"use one of {', '.join('msm/' + n for n in MODEL_NAMES)}")


@modelapi(name="msm")
def msm() -> Any:
    """The `msm` model API: a factory choosing the provider class by model name."""
    return create_model_api


# Registers the @task functions under the `msm_eval/` namespace (imported last: the tasks module
# imports the rest of the package, which must not need this module half-initialised).
import msm_eval.tasks  # noqa: E402,F401
