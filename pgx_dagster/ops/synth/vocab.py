"""Code vocabularies of the synthetic extract and the helpers that turn integer codes into Arrow
dictionary columns (no Python loop per row)."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pgx_dagster.settings import SQL_DIR

BAND_LOWER = np.array([0, 18, 35, 45, 55, 65, 75])
PAYERS = ["PAYER_A", "PAYER_B", "PAYER_C", "PAYER_D"]
ZIP3S = ["021", "100", "191", "200", "303", "331", "372", "441", "462", "481", "532", "554", "606",
         "631", "701", "731", "752", "802", "841", "852", "891", "900", "941", "972", "981"]  # fmt: skip
ICD10_START = np.datetime64("2015-10-01")
FUTURE_DATE = np.datetime64("2099-01-01")  # after any extract date: an impossible service date

BG_DX10 = ["I10", "E119", "J069", "M545", "Z0000", "K219", "E785", "F329", "J449", "N390", "R509", "Z23"]
BG_DX9 = ["4019", "25000", "4659", "7242", "V700", "53081", "2724", "311", "496", "5990"]
POISON10 = ["T400X1A", "T401X1A", "T402X1A", "T403X4A", "T404X1A", "T40411A", "T40601A", "T402X2A"]
POISON9 = ["96500", "96501", "96509", "E8500", "E8502"]
OUD10 = ["F1120", "F1110", "F1190", "F1123"]
OUD9 = ["30400", "30550"]
NEAR_MISS10, NEAR_MISS9 = "T402X1D", "E8508"  # subsequent encounter / other analgesic: not qualifying
NON_ED_POISON10, NON_ED_POISON9 = "T401X1A", "96501"
DX = BG_DX10 + BG_DX9 + POISON10 + POISON9 + OUD10 + OUD9 + [NEAR_MISS10, NEAR_MISS9]
DX_AT = {c: i for i, c in enumerate(DX)}

BG_REV = ["0300", "0250", "0636", "0510", "0270", "0320", "0730"]
ED_REV = ["0450", "0451", "0456", "0459", "0981"]
REV = BG_REV + ED_REV
BG_POS = ["11", "22", "21", "81", "12"]
POS = BG_POS + ["23"]
BG_CPT = ["99213", "99214", "80053", "85025", "71046", "93000", "36415"]
ED_CPT = ["99281", "99282", "99283", "99284", "99285"]
CPT = BG_CPT + ED_CPT
# Non-opioid, non-PGx NDCs (labeler and product starting with 0) so every dashed form can be written: in no
# reference of sql/codesets/ (background_ndcs checks; one of the earlier list, 00603388821, is an opioid on
# CDC's list, and three had products not starting with 0, so their 5-3-2 form named another NDC).
BG_NDC = ["00093021401", "00378018001", "00071015523", "00172049660", "00603088821", "00054017325",
          "00781017001", "00143028201"]  # fmt: skip
SEX_SPELLINGS = ["F", "M", "f", "m"]


def _rows(name: str) -> list[dict]:
    with open(SQL_DIR / "codesets" / name, newline="") as f:
        return list(csv.DictReader(f))


def background_ndcs() -> list[str]:
    """BG_NDC, refused where an NDC is in a drug reference or cannot be written in every dashed form: a
    background fill must be neither an opioid nor a PGx drug, whatever form it is written in."""
    referenced = {r["ndc"] for name in ("opioid_ndc.csv", "ndc_ingredient.csv") for r in _rows(name)}
    bad = [n for n in BG_NDC if n in referenced or n[0] != "0" or n[5] != "0"]
    if bad:
        raise ValueError(f"background NDCs {bad} are in a drug reference of sql/codesets/ or have a labeler or "
                         "product not starting with 0: choose others for BG_NDC")  # fmt: skip
    return BG_NDC


def opioid_ndcs() -> list[dict]:
    """The opioid NDC list the pipeline classifies fills with (sql/codesets/opioid_ndc.csv)."""
    return _rows("opioid_ndc.csv")


def ndcs_of(ingredients: list[str]) -> dict[str, list[str]]:
    """Placeholder NDCs per ingredient (sql/codesets/ndc_ingredient.csv)."""
    out: dict[str, list[str]] = {i: [] for i in ingredients}
    for r in _rows("ndc_ingredient.csv"):
        if r["ingredient"] in out:
            out[r["ingredient"]].append(r["ndc"])
    missing = [i for i, n in out.items() if not n]
    if missing:
        raise ValueError(f"sql/codesets/ndc_ingredient.csv has no NDC for {missing}")
    return out


def dx_forms(code: str) -> list[str]:
    """As written in extracts: plain, dotted, lower case, dotted lower case."""
    dotted = f"{code[:3]}.{code[3:]}" if len(code) > 3 else code
    return [code, dotted, code.lower(), dotted.lower()]


def ndc_forms(ndc: str) -> list[str]:
    """11-digit, 5-4-2, 4-4-2, 5-3-2 and the ambiguous undashed 10-digit form."""
    lab, prod, pkg = ndc[:5], ndc[5:9], ndc[9:]
    return [ndc, f"{lab}-{prod}-{pkg}", f"{lab[1:]}-{prod}-{pkg}", f"{lab}-{prod[1:]}-{pkg}", f"{lab[1:]}{prod}{pkg}"]


DX_VOCAB = [f for c in DX for f in dx_forms(c)]
REV_VOCAB = [f for c in REV for f in (c, c[1:])]
ZIP_VOCAB = [z + f"{t:02d}" for z in ZIP3S for t in range(100)]
NDC_FORM_PLAIN, NDC_FORM_542, NDC_FORM_442, NDC_FORM_532, NDC_FORM_10 = range(5)


def cat(vocab: list[str], idx: np.ndarray, null: np.ndarray | None = None) -> pa.DictionaryArray:
    """A dictionary column: `idx` into `vocab`, NULL where `null`."""
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32), mask=null), pa.array(vocab, pa.string()))


def fmt_int(prefix: str, values: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def band_index(age: np.ndarray) -> np.ndarray:
    return np.searchsorted(BAND_LOWER, age, side="right") - 1


def random_dates(rng: np.random.Generator, years: np.ndarray) -> np.ndarray:
    start = (years - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    return start + rng.integers(0, 365, len(years)).astype("timedelta64[D]")


def year_start(years: np.ndarray) -> np.ndarray:
    return (np.asarray(years) - 1970).astype("datetime64[Y]").astype("datetime64[D]")
