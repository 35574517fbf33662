"""The contract every :class:`~durable.Store` keeps, as a pytest base class.

See :mod:`durable.testing` for how to use it and which capability flags exist. The
checks are grouped by area, one module each; :class:`StoreContract` inherits them all.
"""

from __future__ import annotations

from ._attempts import AttemptChecks
from ._changes import ChangeChecks
from ._claims import ClaimChecks
from ._control import ControlChecks
from ._engine import EngineChecks
from ._engine_ops import EngineOperationChecks
from ._fencing import FencingChecks
from ._harness import Capability, store_test
from ._identity import IdentityChecks
from ._orphans import OrphanChecks
from ._persistence import PersistenceChecks
from ._progress import MarkProgressChecks, ProgressChecks
from ._runs import RunRecordChecks
from ._scans import ScanChecks
from ._signals import SignalChecks
from ._steps import StepChecks


class StoreContract(
    StepChecks,
    SignalChecks,
    ChangeChecks,
    ClaimChecks,
    IdentityChecks,
    FencingChecks,
    RunRecordChecks,
    ScanChecks,
    OrphanChecks,
    ControlChecks,
    ProgressChecks,
    MarkProgressChecks,
    AttemptChecks,
    PersistenceChecks,
    EngineChecks,
    EngineOperationChecks,
):
    """Subclass as ``Test<YourStore>`` and implement :meth:`make_store`.

    Each ``test_...`` method checks one promise of the store protocol; see
    :mod:`durable.testing` for the capability flags.
    """


__all__ = ["Capability", "StoreContract", "store_test"]
