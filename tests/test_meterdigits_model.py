"""The shipped model on real meter digits: a floor on the meter-digits eval split, and the rolling-drum rule.

Crops are read from the image files and given to ``DigitRecognizer.classify_batch`` as a
user would give them (any size, either polarity: the runtime normalises them). The eval
split is six whole meters the model was never trained on. Floors sit a little under the
figures in the conversion report (docs/conversion_report), so that a regression fails
here while the sampling of a few hundred crops does not.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from convert.meterdigits import DEFAULT_DIR, read_crop, rolling_safe

pytest.importorskip("cv2")

pytestmark = pytest.mark.skipif(
    not (DEFAULT_DIR / "manifest.csv").is_file(),
    reason=f"meter-digits not found at {DEFAULT_DIR} (../shared/datasets/meter-digits beside the checkout)",
)

#: every STEP-th crop of the eval split: a few hundred, so the test runs in seconds
STEP = 5
# The shipped model on this sample: 87.3% of digits right (lcd2 76.2%, powermeter 74.2%, watermeter 84.7%,
# gasmeter 98.4%), 84.0% of rolling drums safe; the handwriting-only model before it: 53.8% and 68.3% (whole split).
# The targets (97% and 99%) are not met yet: these floors guard what was reached.
DIGIT_FLOOR = 0.83  # share of digits read right (strict: "not a digit" is wrong)
TYPE_FLOOR = 0.68  # the same, for each meter type
ROLLING_FLOOR = 0.80  # share of drums between two digits answered as one of them or "not a digit"


@pytest.fixture(scope="module")
def eval_rows():
    with open(DEFAULT_DIR / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "eval"]
    return rows


@pytest.fixture(scope="module")
def shipped():
    from edge_infer import DigitRecognizer

    with DigitRecognizer(delegate="cpu") as rec:
        yield rec


def _answers(rec, rows):
    preds = rec.classify_batch([read_crop(DEFAULT_DIR / r["path"]) for r in rows])
    return np.array([p.digit if p.is_digit else 10 for p in preds])


def test_meter_digits_eval_floor(shipped, eval_rows):
    rows = [r for r in eval_rows if r["label"] != "N"][::STEP]
    assert len(rows) >= 250
    truth = np.array([int(r["label"]) for r in rows])
    right = _answers(shipped, rows) == truth
    assert right.mean() >= DIGIT_FLOOR, f"{right.mean():.1%} of {len(rows)} eval digits right, floor {DIGIT_FLOOR:.0%}"
    # no meter type far behind the others
    types = np.array([r["meter_type"] for r in rows])
    for t in set(types.tolist()):
        assert right[types == t].mean() >= TYPE_FLOOR, f"{t}: {right[types == t].mean():.1%}"


def test_rolling_drums_answered_safely(shipped, eval_rows):
    rows = [r for r in eval_rows if r["label"] == "N" and float(r["value"]) < 10][::STEP]
    assert len(rows) >= 250
    value = np.array([float(r["value"]) for r in rows])
    safe = rolling_safe(_answers(shipped, rows), value)
    assert safe.mean() >= ROLLING_FLOOR, (
        f"{safe.mean():.1%} of {len(rows)} rolling drums answered safely, floor {ROLLING_FLOOR:.0%}; "
        f"third digits at values {value[~safe][:10].tolist()}"
    )
