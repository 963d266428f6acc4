"""Cohort definitions are data: one TOML file per cohort in cohorts/ (see cohorts/opioid_ed.toml).

A file that cannot be read is an error naming the file and the setting, with the closest known setting for
an unknown one. The code location does not load with a broken file (no cohort silently missing from the UI);
`pgx status` loads the others and reports the broken file (`skipping_broken`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pgx_dagster.contracts import EVENT_TYPES
from pgx_dagster.settings import cohort_dir, did_you_mean

DESIGNS = ("exclusive", "risk_set")


def other_design(design: str) -> str:
    """The design a cohort's sensitivity analysis matches again with: exclusive <-> risk_set."""
    return DESIGNS[1 - DESIGNS.index(design)]


@dataclass(frozen=True)
class CohortDefinition:
    name: str
    description: str
    target_event_types: tuple[str, ...]
    controls_per_target: int
    seed: int
    owners: tuple[str, ...]
    source: str
    # Continuous enrolment required before the index date, and the washout window: no washout event
    # in the lookback_days before the index date (an incident case; a control free of it too).
    lookback_days: int = 365
    washout_event_types: tuple[str, ...] = ()
    # exclusive: a person is in at most one matched set of the cohort (the legacy pipeline's standard);
    # risk_set: incidence-density sampling - controls at risk at the index date, reusable.
    design: str = "exclusive"
    # Days before the index date in which drug exposures count (the analysis stage).
    exposure_window_days: int = 365


KEYS = ("name", "description", "target_event_types", "controls_per_target", "seed", "owners", "lookback_days",
        "washout_event_types", "design", "exposure_window_days")  # fmt: skip


class CohortFileError(ValueError):
    """A cohort file that cannot be used: one line naming the file and what is wrong."""


def load(path: Path) -> CohortDefinition:
    try:
        return _load(path)
    except tomllib.TOMLDecodeError as error:
        raise CohortFileError(f"cohort definition {path}: not valid TOML: {error}") from None
    except CohortFileError:
        raise
    except ValueError as error:
        raise CohortFileError(str(error)) from None


def _load(path: Path) -> CohortDefinition:
    raw = tomllib.loads(path.read_text())
    where = f"cohort definition {path}"
    unknown_keys = sorted(set(raw) - set(KEYS))
    if unknown_keys:
        raise CohortFileError(
            f"{where}: unknown setting{'s' if len(unknown_keys) > 1 else ''} "
            + ", ".join(f"`{key}`{did_you_mean(key, KEYS).replace(chr(39), '`')}" for key in unknown_keys)
            + f" (the settings: {', '.join(KEYS)})"
        )
    name = raw.get("name", "")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"{where}: name must be lower_snake_case, got {name!r}")
    types = tuple(raw.get("target_event_types", ()))
    unknown = [t for t in types if t not in EVENT_TYPES]
    if not types or unknown:
        raise ValueError(f"{where}: target_event_types must be a non-empty subset of {EVENT_TYPES}, got {list(types)}")
    ratio = raw.get("controls_per_target", 5)
    if not isinstance(ratio, int) or ratio < 1:
        raise ValueError(f"{where}: controls_per_target must be a positive whole number, got {ratio!r}")
    seed = raw.get("seed")
    if not isinstance(seed, int):
        raise ValueError(f"{where}: seed must be a whole number, got {seed!r}")
    lookback = raw.get("lookback_days", 365)
    if not isinstance(lookback, int) or lookback < 0:
        raise ValueError(f"{where}: lookback_days must be a whole number of days >= 0, got {lookback!r}")
    washout = tuple(raw.get("washout_event_types", types))
    if [t for t in washout if t not in EVENT_TYPES]:
        raise ValueError(f"{where}: washout_event_types must be a subset of {EVENT_TYPES}, got {list(washout)}")
    window = raw.get("exposure_window_days", 365)
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"{where}: exposure_window_days must be a whole number of days >= 1, got {window!r}")
    design = raw.get("design", "exclusive")
    if design not in DESIGNS:
        raise ValueError(f"{where}: design must be one of {DESIGNS}, got {design!r}")
    return CohortDefinition(
        name=name,
        description=str(raw.get("description", "")),
        target_event_types=types,
        controls_per_target=ratio,
        seed=seed,
        owners=tuple(raw.get("owners", ["team:pgx-data-engineering"])),
        source=str(path),
        lookback_days=lookback,
        washout_event_types=washout,
        design=design,
        exposure_window_days=window,
    )


# `pgx status` reads the instance with the cohorts that load: a broken file is left out and recorded here.
_SKIP_BROKEN = False
BROKEN: dict[str, str] = {}  # file -> why it is broken


@contextmanager
def skipping_broken() -> Iterator[dict[str, str]]:
    """Within: load_all() leaves a broken cohort file out (recorded in the dict yielded) instead of failing."""
    global _SKIP_BROKEN
    _SKIP_BROKEN = True
    try:
        yield BROKEN
    finally:
        _SKIP_BROKEN = False


def load_all(folder: Path | None = None) -> list[CohortDefinition]:
    folder = folder or cohort_dir()
    defs = []
    for path in sorted(folder.glob("*.toml")):
        try:
            defs.append(load(path))
        except CohortFileError as error:
            if not _SKIP_BROKEN:
                raise
            BROKEN[str(path)] = str(error)
    names = [d.name for d in defs]
    if len(set(names)) != len(names):
        raise CohortFileError(f"duplicate cohort names in {folder}: {names}")
    return defs
