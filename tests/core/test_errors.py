"""Errors: all derive from DurableError; the seed's builtins are kept where promised."""

import inspect

import pytest

import durable
from durable import (
    DurableError,
    IdTemplateError,
    NotInWorkflowError,
    SerializationError,
    SyncFunctionError,
    Workflow,
)


def test_a_sync_task_is_refused_with_a_type_error_naming_it(wf: Workflow) -> None:
    def fetch_prices() -> int:
        return 1

    with pytest.raises(TypeError, match="fetch_prices") as info:
        wf.task(fetch_prices)
    assert isinstance(info.value, DurableError)
    assert isinstance(info.value, SyncFunctionError)


def test_a_sync_task_with_options_is_refused(wf: Workflow) -> None:
    with pytest.raises(SyncFunctionError, match="compute"):

        @wf.task(retries=2)
        def compute() -> int:
            return 1


def test_a_sync_workflow_is_refused_with_a_type_error_naming_it(wf: Workflow) -> None:
    def nightly_report() -> None:
        pass

    with pytest.raises(TypeError, match="nightly_report") as info:
        wf.workflow(nightly_report)
    assert isinstance(info.value, DurableError)

    with pytest.raises(SyncFunctionError, match="nightly_report"):
        wf.workflow(id="x")(nightly_report)


def test_an_async_generator_is_not_a_task(wf: Workflow) -> None:
    async def stream():
        yield 1

    with pytest.raises(SyncFunctionError, match="stream"):
        wf.task(stream)


def test_id_template_naming_a_missing_parameter_fails_at_decoration(wf: Workflow) -> None:
    with pytest.raises(IdTemplateError, match="customer_id") as info:

        @wf.workflow(id="order-{customer_id}")
        async def process(order_id: str) -> None:
            pass

    assert isinstance(info.value, DurableError)
    assert isinstance(info.value, ValueError)
    assert "order_id" in str(info.value)  # lists the parameters there are


def test_id_template_with_nested_field_of_a_missing_parameter_fails(wf: Workflow) -> None:
    with pytest.raises(IdTemplateError, match="customer"):

        @wf.workflow(id="order-{customer.id}")
        async def process(order_id: str) -> None:
            pass


@pytest.mark.parametrize("template", ["order-{}", "order-{0}", "order-{0.id}"])
def test_positional_id_templates_are_refused(wf: Workflow, template: str) -> None:
    with pytest.raises(IdTemplateError, match="positional"):

        @wf.workflow(id=template)
        async def process(order_id: str) -> None:
            pass


def test_malformed_id_template_is_refused(wf: Workflow) -> None:
    with pytest.raises(IdTemplateError):

        @wf.workflow(id="order-{order_id")
        async def process(order_id: str) -> None:
            pass


def test_id_template_may_use_var_keyword_arguments(wf: Workflow) -> None:
    @wf.workflow(id="job-{tenant}")
    async def job(**options: str) -> None:
        pass

    assert job.run_id_for(tenant="acme") == "job-acme"


def test_every_public_error_derives_from_durable_error() -> None:
    errors = [
        value
        for name in durable.__all__
        if inspect.isclass(value := getattr(durable, name))
        and issubclass(value, BaseException)
        and not issubclass(value, Warning)  # StoreGuaranteeWarning is not an error
    ]
    assert len(errors) >= 10
    for error in errors:
        assert issubclass(error, DurableError), error


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (SyncFunctionError, TypeError),
        (NotInWorkflowError, RuntimeError),
        (SerializationError, TypeError),
        (IdTemplateError, ValueError),
    ],
)
def test_errors_keep_the_builtin_the_seed_promised(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, DurableError)
    assert issubclass(error, builtin)


def test_an_unknown_store_scheme_names_the_installed_ones() -> None:
    with pytest.raises(DurableError, match="memory") as info:
        Workflow("app", db="nosuchstore://host/db")
    assert "nosuchstore" in str(info.value)
