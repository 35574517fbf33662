"""durable-pydantic-ai: pydantic-ai agents whose every model request and tool call is a checkpoint.

    from durable import Workflow
    from durable.pydantic_ai import DurableAgent      # or: from durable_pydantic_ai import ...

    wf = Workflow("support")
    agent = DurableAgent(Agent(model, name="support", tools=[...]), wf)
    result = await agent.run("Where is my order?", run_id="ticket-7")

Or attach the capability to any agent and run it inside your own workflow:

    agent = Agent(model, name="support", capabilities=[WorkflowDurability()])

    @wf.workflow(id="ticket-{ticket_id}")
    async def answer(ticket_id: str, question: str) -> str:
        return (await agent.run(question)).output
"""

from .agent import DurableAgent
from .backend import TOOL_METADATA_KEY, WorkflowOperationBackend
from .capability import WorkflowDurability
from .config import NON_RETRYABLE_ERRORS, TaskConfig
from .decorators import DurableTool, durable_pipeline, durable_tool
from .steps import StepNotRecordedError, StreamingNotSupportedError

__version__ = "0.3.0"

__all__ = [
    "NON_RETRYABLE_ERRORS",
    "TOOL_METADATA_KEY",
    "DurableAgent",
    "DurableTool",
    "StepNotRecordedError",
    "StreamingNotSupportedError",
    "TaskConfig",
    "WorkflowDurability",
    "WorkflowOperationBackend",
    "durable_pipeline",
    "durable_tool",
]
