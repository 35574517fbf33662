"""Every error durable raises derives from :class:`DurableError`.

Where the seed promised a builtin (``TypeError`` for a sync function, ``RuntimeError``
for ``signal()`` outside a workflow), the error subclasses both, so old ``except``
clauses keep working.
"""

from __future__ import annotations


class DurableError(Exception):
    """Base class of every error raised by durable."""


class SyncFunctionError(DurableError, TypeError):
    """``@wf.task`` or ``@wf.workflow`` was given a function that is not ``async def``."""


class IdTemplateError(DurableError, ValueError):
    """A workflow's ``id=`` template names an argument the function does not have."""


class NotInWorkflowError(DurableError, RuntimeError):
    """An operation that needs a running workflow (``wf.signal``) was called outside one."""


class SerializationError(DurableError, TypeError):
    """A value could not be stored as JSON (or rebuilt from it)."""


class RunConflictError(DurableError):
    """The run id is on record for another workflow: nothing ran, nothing was written."""


class InputsConflictError(RunConflictError):
    """The run id is on record with other inputs than this call's: nothing ran."""


class StepIdConflictError(DurableError):
    """Two steps of one run would share a step id, or one uses the engine's reserved ids."""


class NonDeterminismError(DurableError):
    """A step's id would depend on timing, so a resumed run could replay it into another call."""


class RecursiveRunError(DurableError):
    """A workflow awaited its own run (directly or through runs it awaits): it never ends."""


class RunFailedError(DurableError):
    """The run failed in another caller this call waited on, or was dead-lettered."""


class RetriesExhaustedError(DurableError):
    """A step had used all its attempts when its process restarted."""


class RunCancelledError(DurableError):
    """The run was cancelled (``Workflow.cancel``); ``Workflow.resume`` runs it again."""


class SignalTimeoutError(DurableError, TimeoutError):
    """``wf.signal(name, timeout=...)`` gave up waiting; the outcome is durable."""


class LeaseLostError(DurableError):
    """Another owner took over a run while this process was executing it."""


class StoreError(DurableError):
    """A store cannot do what was asked (unreachable, corrupt, read-only, full ...)."""


class UnsupportedOperation(StoreError, NotImplementedError):
    """The store does not implement an optional capability of the store protocol."""


class PluginError(DurableError):
    """A store or integration plugin is missing, broken or ambiguous."""


class UnknownStoreError(PluginError, ValueError):
    """No installed plugin handles the URL scheme given as ``db=``."""


class PluginConflictError(PluginError):
    """Two installed distributions claim the same store scheme."""


class PluginLoadError(PluginError, ImportError):
    """A plugin is installed but failed to import."""


class MissingPluginError(PluginError, ImportError):
    """A name of a plugin package was imported from durable, but the plugin is not installed."""


class StoreGuaranteeWarning(UserWarning):
    """The store lacks a guarantee the engine would otherwise give (it declares no
    ``records_runs`` or ``fences_writes``); warned once per store class and process."""
