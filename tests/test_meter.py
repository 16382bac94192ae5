"""The meter reader: config checks, the plausibility rules, and whole generated meter videos.

The videos (tests/meter_video.py) are read by the real reader: real OpenCV alignment, the real
shipped model through DigitRecognizer. What is asserted is the reader's logic, not the model's
accuracy: every published value is the truth (a drum between two digits may be given as either),
no implausible value is published, and at least 99% of frames give a value.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_infer.apps.meter import MeterReader, load_config, save_config
from edge_infer.apps.meter.config import PlausibilityConfig, parse_config
from edge_infer.apps.meter.crops import CropStore, labelled_crops, unlabelled_crops
from edge_infer.apps.meter.plausibility import Gate
from edge_infer.errors import ConfigError, EdgeInferError

from .meter_video import acceptable, make_drum_video, make_lcd_video

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 600


def _cfg(video, **extra):
    data: dict = {
        "name": "test",
        "source": "unused",
        "reference": "/nonexistent/reference.png",
        "rois": [list(r) for r in video.rois],
        "decimals": 1,
        "kind": video.kind,
        "plausibility": {"max_rate": 10.0},
    }
    data.update(extra)
    return parse_config({k: v for k, v in data.items() if v is not None})


@pytest.fixture(scope="module")
def drum_video():
    return make_drum_video(FRAMES)


@pytest.fixture(scope="module")
def lcd_video():
    return make_lcd_video(FRAMES)


def _play(reader, video, frames=None):
    """Reads the video; returns (readings, problems)."""
    readings, problems, last = [], [], None
    for i in frames if frames is not None else range(len(video.frames)):
        r = reader.read(video.frames[i], time=i * video.seconds)
        readings.append(r)
        if r.ok:
            count = round(r.value * 10)
            if count not in acceptable(video.truth[i] if video.truth[i] is not None else video_counter(video, i)):
                problems.append(f"frame {i}: published {r.value}, truth {video.truth[i]}")
            if last is not None and count < last:
                problems.append(f"frame {i}: published {r.value} below the last published {last / 10}")
            last = count
    return readings, problems


def video_counter(video, i):
    """The counter behind a frame with a hand in front (the truth the hand hides)."""
    j = i
    while video.truth[j] is None:
        j -= 1
    return video.truth[j]


# --------------------------------------------------------------------------- whole videos


@pytest.mark.parametrize("kind", ["drum", "lcd"])
def test_video_every_published_value_is_true(kind, drum_video, lcd_video, rec, tmp_path):
    video = drum_video if kind == "drum" else lcd_video
    crops = CropStore(tmp_path / "crops", max_bytes=200_000)
    with MeterReader(_cfg(video), recognizer=rec, reference=video.reference, history=":memory:", crops=crops) as r:
        readings, problems = _play(r, video)
    statuses = [x.status for x in readings]
    given = statuses.count("ok")
    print(
        f"\n{kind}: {given}/{len(readings)} frames give a value ({given / len(readings):.2%}); "
        f"statuses {sorted(set(statuses))}; implausible or untrue published: {len(problems)}"
    )
    assert problems == []
    assert given >= 0.99 * len(readings)
    # the frames with a hand in front are not read, and the first value waited for confirmation
    assert statuses[0] == "confirming"
    assert all(readings[i].status != "ok" or readings[i].value is not None for i in range(len(readings)))
    assert crops.used_bytes <= 200_000


def test_video_lcd_as_one_display_roi(rec):
    """``display = [x, y, w, h]``: the digits are found in the box each frame (the detect pipeline).

    Fewer frames give a value than with one ROI per digit (the pipeline finds all six digits in
    most frames, not all), but what is published is still the truth.
    """
    video = make_lcd_video(120)
    cfg = _cfg(video, rois=None, display=[142, 142, 330, 80], digits=6)
    with MeterReader(cfg, recognizer=rec, reference=video.reference, history=":memory:") as r:
        readings, problems = _play(r, video)
    given = sum(x.ok for x in readings)
    print(f"\nlcd display ROI: {given}/{len(readings)} frames give a value; untrue published: {len(problems)}")
    assert problems == []
    assert given >= 0.75 * len(readings)


def test_video_last_good_value_survives_a_restart(drum_video, rec, tmp_path):
    video = drum_video
    db = tmp_path / "history.sqlite"
    with MeterReader(_cfg(video), recognizer=rec, reference=video.reference, history=str(db)) as r:
        first, problems = _play(r, video, range(0, 100))
        last_value = [x.value for x in first if x.ok][-1]
    with MeterReader(_cfg(video), recognizer=rec, reference=video.reference, history=str(db)) as r:
        assert r.gate.last is not None and r.gate.last[0] == round(last_value * 10)
        more, problems2 = _play(r, video, range(100, 140))
    assert problems == [] and problems2 == []
    assert more[0].status == "ok"  # no new confirmation: the history gave the last value


def test_unaligned_frame_is_reported_not_read(drum_video, rec):
    video = drum_video
    with MeterReader(_cfg(video), recognizer=rec, reference=video.reference, history=":memory:") as r:
        moved = np.roll(video.frames[3], 120, axis=1)  # the camera knocked far off
        reading = r.read(moved, time=0)
    assert reading.status == "unaligned" and reading.value is None
    assert "moved" in reading.reason or "correlation" in reading.reason or "converge" in reading.reason


# --------------------------------------------------------------------------- plausibility rules


def _gate(**rules):
    base = {"max_rate": 6.0, "confirm": 2}
    base.update(rules)
    return Gate(PlausibilityConfig(**base), digits=6, decimals=1, last=(12987, 0.0))


def _d(text):
    return [None if c == "?" else int(c) for c in text]


def test_rolling_last_drum_is_taken_from_the_last_value():
    g = _gate()
    d = g.decide(_d("01298?"), [1.0] * 6, 30.0)
    assert (d.status, d.count) == ("ok", 12987)


def test_carry_over_several_drums_is_filled_in():
    g = Gate(PlausibilityConfig(max_rate=6.0), digits=6, decimals=1, last=(12999, 0.0))
    d = g.decide(_d("01????"), [1.0] * 6, 30.0)
    assert (d.status, d.count) == ("ok", 12999)


def test_lcd_unreadable_digit_is_uncertain():
    g = Gate(PlausibilityConfig(max_rate=6.0), digits=6, decimals=1, last=(12987, 0.0), rolling=False)
    assert g.decide(_d("01298?"), [1.0] * 6, 30.0).status == "uncertain"


def test_decrease_and_rate_are_withheld():
    g = _gate(max_rate=0.0, max_unknown=0)
    assert g.decide(_d("012980"), [1.0] * 6, 30.0).status == "decreasing"
    g = _gate(max_unknown=0)  # 6 m³/h: at most 60 counts (+1) in an hour
    assert g.decide(_d("013049"), [1.0] * 6, 3600.0).status == "rate"
    assert g.last == (12987, 0.0)
    assert g.decide(_d("013048"), [1.0] * 6, 3600.0).status == "ok"


def test_confusable_jump_is_held_then_confirmed_or_dropped():
    g = _gate(max_rate=0.0)  # no rate limit: only the confusable-digit rule stands in the way
    assert g.decide(_d("912987"), [1.0] * 6, 30.0).status == "held"  # 0 -> 9 in place 1
    g = _gate(max_rate=0.0)
    assert g.decide(_d("013987"), [1.0] * 6, 30.0).status == "ok"  # 2 -> 3 is no confusable pair
    g = _gate(max_rate=0.0, confusable=("17",))
    held = g.decide(_d("072987"), [1.0] * 6, 30.0)
    assert held.status == "held"
    assert g.decide(_d("012988"), [1.0] * 6, 60.0).status == "ok"  # back on track: the jump was a misread
    g = _gate(max_rate=0.0, confusable=("17",))
    g.decide(_d("072987"), [1.0] * 6, 30.0)
    assert g.decide(_d("072987"), [1.0] * 6, 60.0).status == "held"
    confirmed = g.decide(_d("072988"), [1.0] * 6, 90.0)
    assert (confirmed.status, confirmed.count) == ("ok", 72988)


def test_first_value_waits_for_agreement():
    g = Gate(PlausibilityConfig(max_rate=6.0, confirm=2), digits=6, decimals=1)
    assert g.decide(_d("012987"), [1.0] * 6, 0.0).status == "confirming"
    assert g.decide(_d("012987"), [1.0] * 6, 30.0).status == "confirming"
    assert g.decide(_d("012988"), [1.0] * 6, 60.0).status == "ok"


# --------------------------------------------------------------------------- config


def _write(tmp_path, text):
    p = tmp_path / "meter.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_config_round_trip_and_atomic_save(tmp_path):
    p = _write(
        tmp_path,
        'name = "Water"\nrois = [[1, 2, 30, 40], [40, 2, 30, 40]]\nunit = "m3"\ndecimals = 1\n[mqtt]\nport = 1884\n',
    )
    cfg = load_config(p)
    assert cfg.unit == "m³" and cfg.rois[1] == (40, 2, 30, 40) and cfg.mqtt.port == 1884
    save_config(dataclasses.replace(cfg, rois=((5, 5, 30, 40), (40, 5, 30, 40))))
    again = load_config(p)
    assert again.rois[0] == (5, 5, 30, 40) and again.mqtt.port == 1884
    assert sorted(x.name for x in tmp_path.iterdir()) == ["meter.toml"]  # no temporary file left


@pytest.mark.parametrize(
    "text, message",
    [
        ('name = "w"\n', "no ROI"),
        ("rois = [[1, 2, 3]]\n", r"rois\[0\] = \[1, 2, 3\]: must be \[x, y, w, h\]"),
        ('rois = [[1, 2, 30, 40]]\nunit = "kg"\n', "unit = 'kg' is not a water unit"),
        ("rois = [[1, 2, 30, 40]]\nspeed = 1\n", "unknown key 'speed'"),
        ("rois = [[1, 2, 30, 40]]\n[plausibility]\nmax_rate = -1\n", "max_rate = -1"),
        ("rois = [[1, 2, 30, 40]\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "edge_infer", "meter", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=120,
    )


def test_cli_bad_configs_exit_2_with_one_line(tmp_path, drum_video):
    import cv2

    cv2.imwrite(str(tmp_path / "reference.png"), drum_video.reference)
    cases = {
        "missing_roi.toml": ('name = "w"\n', "no ROI"),
        "outside.toml": ("rois = [[600, 300, 80, 80]]\n", "reaches outside the 640x360 reference frame"),
        "unit.toml": ('rois = [[10, 10, 40, 60]]\nunit = "furlong"\n', "unit = 'furlong'"),
        "broker.toml": (
            f'rois = [[10, 10, 40, 60]]\nsource = "{tmp_path / "reference.png"}"\n[mqtt]\nport = 9\n',
            "MQTT broker localhost:9 is unreachable",
        ),
    }
    for name, (text, message) in cases.items():
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        before = sorted(x.name for x in tmp_path.iterdir())
        res = _cli("--config", str(p), "--frames", "1")
        assert res.returncode == 2, (name, res.stderr)
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edge-infer meter:")]
        assert len(lines) == 1 and message in lines[0], (name, res.stderr)
        assert "Traceback" not in res.stderr
        after = sorted(x.name for x in tmp_path.iterdir())
        assert after == before  # nothing written: no history, no temporary file


def test_cli_reads_a_video_and_labels_crops(tmp_path):
    from .meter_video import write_video

    video = make_drum_video(40, hands=(20,))
    paths = write_video(video, tmp_path)
    cfg = paths["config"]
    cfg.write_text(cfg.read_text() + '\n[crops]\ndir = "crops"\n', encoding="utf-8")
    res = _cli("--config", str(cfg), "--no-mqtt", "--json")
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 40
    waiting = unlabelled_crops(tmp_path / "crops")
    assert waiting, "the readings that were not published saved no crops"
    answers = "7\nn\nx\nq\n"
    res = subprocess.run(
        [sys.executable, "-m", "edge_infer", "meter", "label", str(tmp_path / "crops")],
        input=answers,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    labelled = labelled_crops(tmp_path / "crops")
    assert sorted(c for _, c in labelled)[:3] == [7, 10, 10][: len(labelled)]


def test_errors_derive_from_edge_infer_error():
    from edge_infer.apps.meter.mqtt import BrokerUnreachableError

    assert issubclass(ConfigError, EdgeInferError) and issubclass(ConfigError, ValueError)
    assert issubclass(BrokerUnreachableError, EdgeInferError)


def test_crop_store_stays_within_its_budget_and_counts_labelled_crops_out(tmp_path):
    store = CropStore(tmp_path, max_bytes=20_000)
    crop = np.random.default_rng(0).integers(0, 255, (64, 44, 3), np.uint8)  # noise: ~8 KB as PNG
    for i in range(10):
        store.save([crop, crop], [1, None], "01?", 1_800_000_000 + i)
    files = unlabelled_crops(tmp_path)
    assert sum(f.stat().st_size for f in files) <= 20_000 and store.used_bytes <= 20_000
    assert files[-1].name.endswith("_p2_g?.png")  # the newest kept, the oldest deleted
    (tmp_path / "1").mkdir()
    files[0].rename(tmp_path / "1" / files[0].name)  # a person labelled one
    store.save([crop], [1], "01?", 1_800_000_100)
    assert labelled_crops(tmp_path)[0][1] == 1  # labelled crops are never deleted
