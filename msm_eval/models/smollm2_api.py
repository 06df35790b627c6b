"""The `msm/smollm2` provider: inspect's Hugging Face provider serving the converted embedded model.

Differences from plain `hf/<dir>`: the folder is prepared on first use (`smollm2.prepare()`),
decoding is greedy unless `-M do_sample=true` (so runs are reproducible), computation is in
float32 unless `-M dtype=bfloat16`, the default
`max_tokens` is `DEFAULT_MAX_TOKENS`, sampling settings (temperature, top_p, top_k) are dropped
while decoding greedily, tokens are counted with the model's own tokenizer (never tiktoken), and
log-probability tokens are given as text (`" 3"`) instead of byte-level BPE symbols (`"Ġ3"`).
Other `-M` args (`device`, `batch_size`, `dtype`, ...) pass through to inspect's `hf` provider.

Log-probabilities: `GenerateConfig(logprobs=True, top_logprobs=k)` gives one entry per generated
token with the k most likely tokens. SmolLM2's tokenizer splits signs from digits (`"+3"` is `"+"`,
`"3"`), so a score like `-2` spans two tokens. inspect's `hf` provider reports the most likely
token at each step as `Logprob.token`, which is the generated token only under greedy decoding.
Importing this module imports torch and transformers.
"""

from __future__ import annotations

from typing import Any

from inspect_ai.model import GenerateConfig, Logprob, Logprobs, ModelOutput, TopLogprob
from inspect_ai.model._providers.hf import HuggingFaceAPI
from inspect_ai.tool import ToolChoice, ToolInfo

from msm_eval.errors import MsmEvalError
from msm_eval.models.smollm2 import prepare

DEFAULT_MAX_TOKENS = 256
SERVE_DTYPE = "float32"  # weights are stored in bf16; fp32 compute matched the GGUF's greedy output


class SmolLM2API(HuggingFaceAPI):
    """inspect `hf` provider bound to the embedded SmolLM2-135M-Instruct folder."""

    calls_tools = False
    """A 135M model does not follow a tool schema: `judge_mode=auto` judges it by log-probabilities."""

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig = GenerateConfig(), **model_args: Any) -> None:
        for reserved in ("model_path", "tokenizer", "tokenizer_path", "gguf_file"):
            if reserved in model_args:
                raise MsmEvalError(f"msm/smollm2 does not take -M {reserved}", field=reserved,
                                   hint="for another checkpoint use --model hf/<folder>")
        folder = prepare()
        model_args.setdefault("dtype", SERVE_DTYPE)
        do_sample = model_args.pop("do_sample", False)
        if isinstance(do_sample, str):
            do_sample = do_sample.strip().lower() in ("1", "true", "yes")
        super().__init__(model_name, base_url, api_key, config, model_path=str(folder),
                         do_sample=bool(do_sample), **model_args)
        self.model_folder = folder

    def max_tokens(self) -> int | None:
        """Default generation length when the eval sets no `max_tokens`."""
        return DEFAULT_MAX_TOKENS

    async def count_text_tokens(self, text: str) -> int:
        """Exact count with the model's tokenizer (offline)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    async def generate(self, input: list[Any], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> ModelOutput:
        """Generate with inspect's hf provider; greedy decoding ignores sampling settings."""
        if not self.do_sample:
            config = config.model_copy(update={"temperature": None, "top_p": None, "top_k": None})
        output = await super().generate(input, tools, tool_choice, config)
        for choice in output.choices:
            if choice.logprobs is not None:
                choice.logprobs = self._readable_logprobs(choice.logprobs)
        return output

    def _readable_logprobs(self, logprobs: Logprobs) -> Logprobs:
        def text(token: str) -> str:
            return str(self.tokenizer.convert_tokens_to_string([token]))

        content = []
        for item in logprobs.content:
            tops = [TopLogprob(token=text(t.token), logprob=float(t.logprob), bytes=list(text(t.token).encode()))
                    for t in item.top_logprobs or []]
            token = text(item.token)
            content.append(Logprob(token=token, logprob=float(item.logprob), bytes=list(token.encode()),
                                   top_logprobs=tops))
        return Logprobs(content=content)
