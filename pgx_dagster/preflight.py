"""What the code location checks when it loads, before anything is built or run (definitions.py):

- every PGX_ setting (settings.validate): a bad value stops the load with one line naming the setting, its
  value and the valid ones; no definition loads half-way, and no step fails on it later and is retried;
- the instance: a Dagster command that runs here (`dagster asset materialize`, `dagster job execute`)
  without DAGSTER_HOME would run on a throwaway instance (a temporary folder it deletes on exit) - refused;
  a code server without it (`dagster dev` without DAGSTER_HOME keeps its runs in a temporary folder it
  deletes on exit) - warned;
- `dagster asset materialize --partition KEY` (or `--partition-range A...B`): a key that no partitioned asset
  has is refused with the order of a claims key and a few valid keys, before anything runs.

In a Dagster command run from a shell, a refusal is one line on stderr and exit code 2 (Dagster's own
handling would print the traceback of the load). In a code server (`dagster dev`, the webserver, the
daemon's run workers) a bad setting is raised as a SettingError, which the UI shows as the code location's
load error and which fails a run at once, never retried.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pgx_dagster.settings import SettingError, validate

# Dagster commands that execute runs in their own process, on the instance DAGSTER_HOME names (else a
# throwaway one); and the commands that serve the code location to the webserver and daemon.
RUNS_HERE = {("asset", "materialize"), ("job", "execute")}
SERVERS = {"api", "code-server"}


def dagster_command(argv: Sequence[str] | None = None) -> tuple[str, ...] | None:
    """('asset', 'materialize', ...) when this process is the `dagster` command line, else None."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return None
    program = Path(argv[0])
    as_module = program.as_posix().split("/")[-2:] == ["dagster", "__main__.py"]
    if program.name not in ("dagster", "dagster.exe") and not as_module:
        return None
    return tuple(argv[1:])


def _option(args: Sequence[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def command_problems(command: Sequence[str], environ=None) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for this Dagster command: the instance, and the partition keys it names."""
    env = os.environ if environ is None else environ
    refusals, notes = [], []
    verb = tuple(command[:2])
    if verb in RUNS_HERE and not env.get("DAGSTER_HOME"):
        refusals.append(
            f"DAGSTER_HOME is not set: `dagster {' '.join(verb)}` would run on a throwaway instance, writing the "
            "lake while the run and its check verdicts are recorded nowhere you will look again (not in the UI, not "
            "in `pgx status`). Set DAGSTER_HOME to a folder with the repository's dagster.yaml (`make instance` makes "
            ".dagster_home) and run again."
        )
    if command[:1] and command[0] in SERVERS and not env.get("DAGSTER_HOME"):
        notes.append(
            "DAGSTER_HOME is not set: runs launched from this code server are recorded in the instance of the "
            "process that started it - with `dagster dev`, a temporary folder deleted when it exits. Set "
            "DAGSTER_HOME (`make dev` uses .dagster_home) to keep them."
        )
    if verb == ("asset", "materialize"):
        from pgx_dagster.partitions import unknown_key

        keys = [_option(command, "--partition")]
        ranged = _option(command, "--partition-range")
        keys += ranged.split("...", 1) if ranged else []
        refusals += [why for key in keys if key is not None and (why := unknown_key(key))]
    return refusals, notes


def say(line: str) -> None:
    print(f"pgx: {line}", file=sys.stderr, flush=True)


@contextmanager
def checked(argv: Sequence[str] | None = None) -> Iterator[None]:
    """Around the assembly of the definitions: settings, instance and partition key checked first. In a
    Dagster command run from a shell, a refusal is one line and exit 2; elsewhere a SettingError is raised."""
    command = dagster_command(argv)
    shell = command is not None and command[:1] != () and command[0] not in SERVERS
    try:
        for note in validate():
            say(f"warning: {note}")
        if command is not None:
            refusals, notes = command_problems(command)
            for note in notes:
                say(f"warning: {note}")
            if refusals:
                raise SettingError(refusals[0])
        yield
    except SettingError as error:
        if not shell:
            raise
        say(str(error))
        sys.exit(2)
