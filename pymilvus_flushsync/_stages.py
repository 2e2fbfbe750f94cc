"""The stages a call can wait until, in one registry (docs/guarantees.md, "Beyond
persisted"). Each stage includes the ones before it.

A ``Stage`` holds all the package knows of it but its steps (``_steps``): its name
(``until=``, ``--until``, ``FlushSyncResponse.stage``), the word for a collection that
reached it, the ``CollectionFlushState`` field recording when one did, and its piece
of the tables: the phase its wait begins at, its moves, ending where the call goes
next, and a check before the call's first phase. ``_steps.staged`` chains the pieces
of the stages past the first, whose table is the call's own. A new stage is a
``Stage`` here, its steps in ``_steps``, and its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._state import Event, Moves, Phase

__all__ = [
    "INDEXED", "LOADED", "PERSISTED", "STAGES", "VISIBLE", "Stage", "stage_named", "stages_until",
]  # fmt: skip


@dataclass(frozen=True)
class Stage:
    """One stage (module docstring).

    ``entry(refresh)``: the phase its wait begins at; ``moves(then, refresh)``: its rows,
    ``then`` being where the call goes once every collection reached it; ``check``: a
    phase the call passes first (after its listing, if it lists), moving on
    ``LOADABLE``; ``refresh``: ``FlushPolicy.refresh_load``.
    """

    name: str
    done: str
    seconds: str
    entry: Callable[[bool], Phase] = lambda refresh: Phase.DONE
    moves: Callable[[Phase, bool], Moves] = lambda then, refresh: {}
    check: Phase | None = None


def _indexed_moves(then: Phase, refresh: bool) -> Moves:
    return {Phase.INDEX: {Event.NOT_YET: Phase.INDEX, Event.INDEXED: then}}


def _loaded_entry(refresh: bool) -> Phase:
    return Phase.REFRESH if refresh else Phase.STILL_LOADED


def _loaded_moves(then: Phase, refresh: bool) -> Moves:
    """The query coordinator asked to load the new segments at once (``refresh``, as
    pymilvus's ``refresh_load``), then the serving polls; every ``stage_recheck``
    GetLoadState again (released meanwhile fails) and the Flushed segments again."""
    return {
        Phase.REFRESH: {Event.REFRESHED: Phase.STILL_LOADED},
        Phase.STILL_LOADED: {Event.LOADABLE: Phase.SEGMENTS_NOW},
        Phase.SEGMENTS_NOW: {Event.FOUND: Phase.SERVING, Event.SERVED: then},
        Phase.SERVING: {
            Event.NOT_YET: Phase.SERVING,
            Event.RECHECK: Phase.STILL_LOADED,
            Event.SERVED: then,
        },
    }


#: Every reader that reads at the call's ticket sees every row written before the call:
#: no Flush; a table of its own (``_steps.staged``), which later stages do not pass.
VISIBLE = Stage("visible", done="visible", seconds="visible_seconds")
#: Every row written before the call is persisted: the call's own table.
PERSISTED = Stage("persisted", done="flushed", seconds="seconds")
#: Every index of each collection covers its rows (DescribeIndex's counts).
INDEXED = Stage(
    "indexed", done="indexed", seconds="indexed_seconds", entry=lambda refresh: Phase.INDEX,
    moves=_indexed_moves,
)  # fmt: skip
#: Indexed, and the query nodes serve every Flushed segment with its index.
LOADED = Stage(
    "loaded", done="loaded", seconds="loaded_seconds", entry=_loaded_entry,
    moves=_loaded_moves, check=Phase.LOAD_CHECK,
)  # fmt: skip
#: The stages, in order.
STAGES = (VISIBLE, PERSISTED, INDEXED, LOADED)


def stages_until(until: str) -> tuple[Stage, ...]:
    """The stages a call waiting ``until`` passes: ``visible`` alone, or persisted (the
    call's own table) and the later ones up to ``until``."""
    if until == VISIBLE.name:
        return (VISIBLE,)
    return STAGES[STAGES.index(PERSISTED) : STAGES.index(stage_named(until)) + 1]


def stage_named(name: str) -> Stage:
    """The stage called ``name`` (a ``KeyError`` for none)."""
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise KeyError(name)
