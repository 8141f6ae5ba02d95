"""The edge<->cloud wire protocol, sans-I/O: messages, facts, codes and the connection
state machine.

``docs/protocol.md`` is the specification. No sockets, tasks or clocks here (a test
enforces it): ``glasses_agent.transport`` moves the websocket messages for the edge
client and the gateway alike and passes ``now_s``.
"""

from glasses_agent.protocol import codes, connection, facts, messages
from glasses_agent.protocol.codes import *  # noqa: F403 - the package's facade
from glasses_agent.protocol.connection import *  # noqa: F403
from glasses_agent.protocol.facts import *  # noqa: F403
from glasses_agent.protocol.messages import *  # noqa: F403

__all__ = [*codes.__all__, *connection.__all__, *facts.__all__, *messages.__all__]
