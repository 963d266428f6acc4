"""Control selection for one cohort partition: which candidates become each target's controls.

SQL prepares everything (sql/cohort/: targets in their order, the stratum's persons with their
observation periods, washout dates and sampling keys) and builds the matched sets afterwards; this
module only makes the assignment, which is sequential by nature (whether a candidate is free depends
on the targets before) and so does not fit one SQL statement.

A candidate may serve a target when, at the target's index date, the candidate
- is under observation with at least `lookback_days` of continuous enrolment before it,
- has no washout event in the look-back window or on the index date,
- (risk_set) has no qualifying event on or before it, and is not the target.

exclusive  Targets in order (index date, then their sampling key) take the first `k` free candidates
           in the stratum's sampling order (control_key ascending): without replacement, a person
           serves one set at most. The order is a uniformly random permutation of the candidates,
           so each set's controls are a simple random sample of the candidates free at its turn.
risk_set   Each target independently takes the `k` eligible candidates with the smallest
           control_key XOR target_key: for a fixed target that is a uniformly random order of the
           candidates (XOR with a constant is a bijection of the keys), so each set is a simple random
           sample of its risk set; candidates may serve several sets and later become targets.
Every key is sha256-based (sql/common/macros.sql `sample_key`), so anyone can recompute the sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgx_dagster.forksafe import OnFirstUse

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
else:  # their import starts threads (OpenBLAS's, jemalloc's): imported at first use (forksafe.OnFirstUse)
    np = OnFirstUse("numpy", globals())
    pa = OnFirstUse("pyarrow", globals())

DESIGNS = ("exclusive", "risk_set")
_BLOCK = 512  # candidates looked at per step of the exclusive scan


@dataclass
class Targets:
    """One row per target, in matching order. Dates are days since 1970-01-01."""

    person: np.ndarray  # person ids (object)
    sex: np.ndarray
    index_day: np.ndarray  # int64
    key: np.ndarray  # uint64 target_key


@dataclass
class Pool:
    """One row per (eligible person, observation period), sorted by (sex, control_key, person)."""

    person: np.ndarray
    sex: np.ndarray
    key: np.ndarray  # uint64 control_key
    candidate: np.ndarray  # bool: may be drawn here (exclusive: home year here)
    start: np.ndarray  # int64 observation period start
    end: np.ndarray  # int64 observation period end
    first_qualifying: np.ndarray  # int64; a day after every index date when there is none
    washout: dict[str, np.ndarray]  # person -> sorted washout days (only persons with any)


@dataclass
class Assignment:
    target: list[str]
    control: list[str]
    # Sets with fewer than k controls: how many persons of the whole eligible stratum, and how many
    # candidates, were eligible at the set's index date (used or not).
    short_target: list[str]
    short_sex: list[str]
    short_eligible: list[int]
    short_candidates: list[int]

    def tables(self) -> tuple[pa.Table, pa.Table]:
        assignment = pa.table({"target_id": pa.array(self.target, pa.string()),
                               "control_id": pa.array(self.control, pa.string())})  # fmt: skip
        short = pa.table(
            {
                "target_id": pa.array(self.short_target, pa.string()),
                "sex": pa.array(self.short_sex, pa.string()),
                "eligible_at_index": pa.array(self.short_eligible, pa.int64()),
                "candidates_at_index": pa.array(self.short_candidates, pa.int64()),
            }
        )
        return assignment, short


def _eligible(pool: Pool, rows: np.ndarray, index_day: int, lookback: int, design: str) -> np.ndarray:
    """Which of `rows` may serve a target with this index date (see module docstring)."""
    ok = (pool.start[rows] <= index_day - lookback) & (pool.end[rows] >= index_day)
    if design == "risk_set":
        ok &= pool.first_qualifying[rows] > index_day
    if pool.washout:
        for i in np.flatnonzero(ok):
            days = pool.washout.get(pool.person[rows[i]])
            if days is not None:
                lo = np.searchsorted(days, index_day - lookback, side="left")
                if lo < len(days) and days[lo] <= index_day:
                    ok[i] = False
    return ok


def assign(targets: Targets, pool: Pool, k: int, lookback: int, design: str) -> Assignment:
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    out = Assignment([], [], [], [], [], [])
    for sex in np.unique(targets.sex):
        in_sex = np.flatnonzero(pool.sex == sex)
        candidates = in_sex[pool.candidate[in_sex]]
        codes = np.unique(pool.person[in_sex], return_inverse=True)[1]
        person_code = np.empty(len(pool.person), np.int64)
        person_code[in_sex] = codes
        used = np.zeros(codes.max() + 1 if len(codes) else 0, bool)
        first_free = 0
        for t in np.flatnonzero(targets.sex == sex):
            day, me = int(targets.index_day[t]), targets.person[t]
            if design == "exclusive":
                chosen = []
                i = first_free
                while len(chosen) < k and i < len(candidates):
                    block = candidates[i : i + _BLOCK]
                    free = ~used[person_code[block]] & _eligible(pool, block, day, lookback, design)
                    hits = block[free][: k - len(chosen)]
                    used[person_code[hits]] = True
                    chosen += hits.tolist()
                    i += _BLOCK
                while first_free < len(candidates) and used[person_code[candidates[first_free]]]:
                    first_free += 1
            else:
                ok = _eligible(pool, candidates, day, lookback, design) & (pool.person[candidates] != me)
                rows = candidates[ok]
                order = np.argsort(pool.key[rows] ^ targets.key[t], kind="stable")[:k]
                chosen = rows[order].tolist()
            out.target += [me] * len(chosen)
            out.control += pool.person[chosen].tolist()
            if len(chosen) < k:
                everyone = in_sex[_eligible(pool, in_sex, day, lookback, design) & (pool.person[in_sex] != me)]
                out.short_target.append(me)
                out.short_sex.append(sex)
                out.short_eligible.append(len(everyone))
                out.short_candidates.append(int(pool.candidate[everyone].sum()))
    return out


def targets_from(rows: dict[str, np.ndarray]) -> Targets:
    """Targets from the columns of sql/cohort/matching_inputs.sql's target query."""
    return Targets(
        person=np.asarray(rows["person_id"], object),
        sex=np.asarray(rows["sex"], object),
        index_day=np.asarray(rows["index_day"], np.int64),
        key=np.asarray(rows["target_key"], np.uint64),
    )


def pool_from(rows: dict[str, np.ndarray], washout: dict[str, np.ndarray]) -> Pool:
    """A Pool from the columns of sql/cohort/pool_periods.sql (fetchnumpy)."""
    return Pool(
        person=np.asarray(rows["person_id"], object),
        sex=np.asarray(rows["sex"], object),
        key=np.asarray(rows["control_key"], np.uint64),
        candidate=np.asarray(rows["candidate"], bool),
        start=np.asarray(rows["period_start_day"], np.int64),
        end=np.asarray(rows["period_end_day"], np.int64),
        first_qualifying=np.asarray(rows["first_qualifying_day"], np.int64),
        washout=washout,
    )
