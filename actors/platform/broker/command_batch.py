"""Several Redis commands and Lua scripts sent in one round trip.

redis-py's pipelines ask ``SCRIPT EXISTS`` before every execution that holds a script: a
second round trip. A ``Batch`` sends scripts by their sha alone and loads one only when
Redis answers ``NOSCRIPT`` (after a restart), then runs again only the commands that failed
for that reason, so nothing that already ran (an enqueue, say) runs twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError

__all__ = ["Batch", "load_scripts", "register_script"]

# Every script a Batch may send, so that all of them can be loaded together after a
# restart: a transaction that finds some loaded and others not commits only part of itself.
_SCRIPTS: dict[str, Script] = {}


def register_script(client: Redis, text: str) -> Script:
    """Register a Lua script with ``client`` (as redis-py does) and with ``load_scripts``."""
    script = client.register_script(text)
    _SCRIPTS.setdefault(script.sha, script)
    return script


def load_scripts(client: Redis) -> int:
    """Load every registered script into Redis in one round trip (after it restarted); return how many."""
    pipe = client.pipeline(transaction=False)
    for script in _SCRIPTS.values():
        pipe.script_load(script.script)
    return len(pipe.execute())


class Batch:
    """Commands queued now and sent together by ``execute`` (``transaction``: in MULTI/EXEC)."""

    def __init__(self, client: Redis, *, transaction: bool = False) -> None:
        self.client = client
        self.transaction = transaction
        self._commands: list[tuple[Script | None, Callable[[Pipeline], Any]]] = []

    def __len__(self) -> int:
        return len(self._commands)

    def script(self, script: Script, keys: list[Any], args: list[Any]) -> None:
        """Queue a run of a registered Lua ``script``."""
        self._commands.append((script, lambda pipe: pipe.evalsha(script.sha, len(keys), *keys, *args)))

    def command(self, *args: Any) -> None:
        """Queue a plain command, e.g. ``batch.command("LPUSH", key, value)``."""
        self._commands.append((None, lambda pipe: pipe.execute_command(*args)))

    def execute(self) -> list[Any]:
        """Send every queued command; return their answers in order (the first error is raised)."""
        answers = self._run(self._commands)
        missing = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if missing:
            for script in {self._commands[i][0] for i in missing}:
                if script is not None:
                    script.sha = self.client.script_load(script.script)
            for i, answer in zip(missing, self._run([self._commands[i] for i in missing])):
                answers[i] = answer
        self._commands = []
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers

    def _run(self, commands: list[tuple[Script | None, Callable[[Pipeline], Any]]]) -> list[Any]:
        if not commands:
            return []
        pipe = self.client.pipeline(transaction=self.transaction)
        for _, queue in commands:
            queue(pipe)
        return pipe.execute(raise_on_error=False)
