"""One call's I/O, written once: the steps both drivers carry out (``_io``).

``call`` drives one machine: it sleeps where the machine says, sends its RPCs
(through the client's group when they can be shared: ``_group``) and hands back
what came of them. ``flush_all`` runs ``flush_all_sync``'s stages
(``_call.AllDatabases``): its asks, then each stage's machines at once.
"""

from __future__ import annotations

from typing import Any

from ._call import AllDatabases
from ._core import Done, FlushMachine, SendRpc, Sleep
from ._group import Group, flush_shared, for_client, poll_shared
from ._heartbeat import watching
from ._io import Pause, RunAll, Steps, send
from ._response import FlushAllSyncResponse, FlushSyncResponse
from ._steps import Shared

__all__ = ["call", "flush_all"]


def call(machine: FlushMachine, client: Any) -> Steps[FlushSyncResponse]:
    """Drive ``machine`` to the end; with ``policy.group_commit``, its Flush and
    GetFlushState are shared with the client's other calls."""
    group = for_client(client, machine.work.db) if machine.policy.group_commit else None
    if group is not None:
        group.enter()
    try:
        with watching(machine):
            while not isinstance(action := machine.next_action(), Done):
                with machine.expect(action) as outcome:
                    if isinstance(action, Sleep):
                        yield Pause(action.seconds)
                    else:
                        outcome.reply = yield from _send(group, action, machine)
            return action.response
    finally:
        if group is not None:
            group.leave()


def _send(group: Group | None, action: SendRpc, machine: FlushMachine) -> Steps[list[Any]]:
    if group is None or action.shared is None:
        return (yield from send(action))
    if action.shared is Shared.FLUSH:
        return [(yield from flush_shared(group, action, machine.policy.gather, machine.clock))]
    return (yield from poll_shared(group, action, machine, machine.clock))


def flush_all(stages: AllDatabases) -> Steps[FlushAllSyncResponse]:
    """``flush_all_sync``: the asks (what each raised is a reply too), then the stages
    of machines, each driven at once (``RunAll``)."""
    try:
        replies: list[Any] = []
        for ask in stages.asks():
            try:
                replies.append((yield from send(ask))[0])
            except Exception as exc:
                replies.append(exc)
        machines = stages.machines(replies)
        while machines:
            machines = stages.then((yield RunAll(tuple(machines))))
    except BaseException as exc:
        raised = stages.failed(exc)
        if raised is exc:
            raise
        raise raised from raised.__cause__
    return stages.response()
