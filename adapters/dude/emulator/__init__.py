"""The DUDE emulator: the other side of the exchange, played faithfully on one machine (brief §1, §4).

``config`` (what it is set up with), ``registry`` (its jobseeker file), ``rules`` (business rules,
pure), ``ledger`` (what it received and applied), ``faults`` (misbehaviour on demand), ``core`` (the
plain handler), ``app`` (the same handler over ASGI, ``httpx.MockTransport`` and a port).
"""

from adapters.dude.emulator.config import EmulatorConfig
from adapters.dude.emulator.core import Emulator, EmulatorAnswer
from adapters.dude.emulator.faults import Faults

__all__ = ["Emulator", "EmulatorAnswer", "EmulatorConfig", "Faults"]
