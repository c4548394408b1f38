"""Where this checkout's running local stack is, for the commands that join it.

``manage.py dev`` writes ``.local-stacks/PID.json`` (git ignores the folder)
when it is ready and removes it when it stops; ``manage.py backfill --stage
local`` and ``manage.py pump --stage local`` read it, so they reach the
emulator with its endpoint and credentials without being told. A file left
by a killed stack is recognised as stale (its process is gone, or its
emulator does not answer) and removed. One file per process, because a
checkout may run more than one stack at once. ``LOCAL_STACKS_DIR`` moves the
folder: the end-to-end tests keep their stacks apart from a developer's.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devtools.stages import PROJECT_DIR

STATE_DIR = ".local-stacks"
LOCAL_STAGES = ("local", "local-mysql")


class NoLocalStack(SystemExit):
    pass


@dataclass(frozen=True)
class RunningStack:
    pid: int
    stage: str
    endpoint: str  # the emulator
    api: str  # the gallery and REST API
    environment: dict[str, str] = field(default_factory=dict)  # what a client process needs


def state_dir() -> Path:
    """``LOCAL_STACKS_DIR``, or ``.local-stacks`` in this checkout."""
    return Path(os.environ.get("LOCAL_STACKS_DIR") or PROJECT_DIR / STATE_DIR)


def announce(stack: RunningStack, folder: Path | None = None) -> Path:
    """Record ``stack`` for this checkout (atomically: a reader never sees half)."""
    folder = folder or state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stack.pid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(stack), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def withdraw(pid: int, folder: Path | None = None) -> None:
    ((folder or state_dir()) / f"{pid}.json").unlink(missing_ok=True)


def _read(path: Path) -> RunningStack | None:
    try:
        return RunningStack(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _answers(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
    except OSError:
        return False
    return True


def running(folder: Path | None = None) -> list[RunningStack]:
    """This checkout's running stacks, oldest process first; stale records are removed."""
    folder = folder or state_dir()
    stacks = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        stack = _read(path)
        if stack is None or not _alive(stack.pid) or not _answers(stack.endpoint):
            path.unlink(missing_ok=True)
            continue
        stacks.append(stack)
    return sorted(stacks, key=lambda s: s.pid)


def join(
    stage: str, environ: MutableMapping[str, str], folder: Path | None = None
) -> RunningStack | None:
    """For a local stage, point ``environ`` at the running stack; None for other stages.

    An explicit ``AWS_ENDPOINT_URL`` wins (the stack is then not looked for).
    """
    if stage not in LOCAL_STAGES or environ.get("AWS_ENDPOINT_URL"):
        return None
    stacks = running(folder)
    mine = [s for s in stacks if s.stage == stage]
    if not stacks:
        raise NoLocalStack(
            f"error: stage {stage} is the local stack, and none is running for this "
            "checkout: start it with `make dev` (in another terminal), or set "
            "AWS_ENDPOINT_URL to an emulator"
        )
    if not mine:
        others = ", ".join(sorted({s.stage for s in stacks}))
        raise NoLocalStack(f"error: no local stack of stage {stage} is running (running: {others})")
    if len(mine) > 1:
        endpoints = ", ".join(s.endpoint for s in mine)
        raise NoLocalStack(
            f"error: {len(mine)} local stacks of stage {stage} are running ({endpoints}): "
            "set AWS_ENDPOINT_URL to the one to use"
        )
    stack = mine[0]
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        environ.pop(name, None)
    environ.update(stack.environment)
    return stack
