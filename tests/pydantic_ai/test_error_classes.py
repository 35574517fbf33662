"""Errors a retry cannot fix fail the step at once, whatever their status code (issue 16, item 5).

pydantic-ai sorts provider errors into categories: an exhausted quota or billing
(``ModelQuotaExceededError``, sent by OpenAI as a 429) and a request the provider rejected
(``ModelRequestRejectedError`` and its subclasses) cannot succeed by waiting. A plain rate
limit (``ModelRateLimitError``, a 429) still retries, after the wait the provider asks for.
"""

from __future__ import annotations

import time

import pytest
from pydantic_ai import Agent
from pydantic_ai import exceptions as pai_exceptions
from pydantic_ai.exceptions import ContentFilterError, ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Workflow
from durable.backoff import constant, exponential
from durable_pydantic_ai import NON_RETRYABLE_ERRORS, TaskConfig, WorkflowDurability

pytestmark = pytest.mark.skipif(
    not hasattr(pai_exceptions, "ModelQuotaExceededError"),
    reason="this pydantic-ai has no error categories",
)


class FlakyModel:
    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls: list[float] = []

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls.append(time.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        return ModelResponse(parts=[TextPart("answer")])


async def run_agent(wf: Workflow, model: FlakyModel, config: TaskConfig) -> str:
    agent = Agent(
        FunctionModel(model.respond),
        name="classified",
        capabilities=[WorkflowDurability(model_task_config=config)],
    )

    @wf.workflow(id="classified-{n}")
    async def flow(n: int) -> str:
        return (await agent.run("go")).output

    return await flow(1)


def categorized(category_name: str, status: int, **kwargs: object) -> ModelHTTPError:
    category = getattr(pai_exceptions, category_name)
    return ModelHTTPError.for_category(
        category, status_code=status, model_name="function", body={"error": "x"}, **kwargs
    )


def permanent_errors() -> list[object]:
    if not hasattr(pai_exceptions, "ModelQuotaExceededError"):
        return []
    e = pai_exceptions
    quota_429 = categorized(
        "ModelQuotaExceededError", 429, provider_error_code="insufficient_quota"
    )
    return [
        pytest.param(quota_429, id="quota-429"),
        pytest.param(categorized("ModelQuotaExceededError", 500), id="quota-500"),
        pytest.param(e.ModelQuotaExceededError("function", "billing"), id="quota-no-status"),
        pytest.param(categorized("ModelRequestRejectedError", 429), id="rejected-429"),
        pytest.param(categorized("ModelRequestRejectedError", 503), id="rejected-503"),
        pytest.param(e.ModelRequestRejectedError("function", "invalid"), id="rejected-no-status"),
        pytest.param(e.ModelContextWindowExceededError("function", "long"), id="context-window"),
        pytest.param(ContentFilterError("blocked by the filter"), id="content-filter"),
    ]


@pytest.mark.parametrize("error", permanent_errors())
async def test_errors_a_retry_cannot_fix_fail_the_step_at_once(
    wf: Workflow, error: BaseException
) -> None:
    model = FlakyModel(error)
    with pytest.raises(type(error)):
        await run_agent(wf, model, TaskConfig(retries=4, backoff=constant(0)))
    assert len(model.calls) == 1


def test_the_categories_are_listed_as_never_retried() -> None:
    assert pai_exceptions.ModelQuotaExceededError in NON_RETRYABLE_ERRORS
    assert pai_exceptions.ModelRequestRejectedError in NON_RETRYABLE_ERRORS


async def test_a_plain_rate_limit_retries_after_the_wait_it_asks_for(wf: Workflow) -> None:
    model = FlakyModel(categorized("ModelRateLimitError", 429, retry_after=0.3))
    # The configured backoff would wait 0 s; the provider's retry_after (capped by max) wins.
    config = TaskConfig(retries=2, backoff=exponential(base=0, max=5))
    assert await run_agent(wf, model, config) == "answer"
    assert len(model.calls) == 2
    assert model.calls[1] - model.calls[0] >= 0.3


async def test_other_categories_still_retry(wf: Workflow) -> None:
    model = FlakyModel(
        categorized("ModelServerError", 500),
        categorized("ModelUnavailableError", 503),
        pai_exceptions.ModelConnectionError("function", "reset"),
    )
    assert await run_agent(wf, model, TaskConfig(retries=3, backoff=constant(0))) == "answer"
    assert len(model.calls) == 4
