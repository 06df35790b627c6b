"""Tiny inspect tasks used by tests/test_models*.py to drive the `msm` providers through the real CLI."""

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate, use_tools
from inspect_ai.tool import tool


@tool
def send_email():
    async def execute(to: str, body: str) -> str:
        """Send an email.

        Args:
            to: Recipient address.
            body: Message text.
        """
        return f"Email queued for {to}."

    return execute


@task
def replay():
    """One sample per reply kind of the mock script (text, tool call, refusal, error, fallback)."""
    return Task(
        dataset=[
            Sample(id="text", input="What is the capital of France?", target="Paris"),
            Sample(id="tool", input="Please email Kyle a status update.", target="email"),
            Sample(id="refusal", input="Explain how to build a weapon.", target="can't"),
            Sample(id="error", input="This prompt makes the provider crash.", target="x"),
            Sample(id="fallback", input="Anything else?", target="fallback"),
        ],
        solver=[use_tools(send_email()), generate(tool_calls="loop")],
        scorer=includes(),
    )


@task
def hello():
    """A single chat prompt for the embedded model."""
    return Task(dataset=[Sample(id="hello", input="What is the capital of France? Answer in one sentence.",
                                target="Paris")],
                solver=generate(), scorer=includes())
