"""The meter's MQTT output against a real broker: Debian's mosquitto, started here on a loopback port.

A real subscriber (paho) checks the Home Assistant discovery message, the state messages and
availability; the broker is stopped and started again while readings are published, and every
reading still arrives, in order. Skipped (visibly) when mosquitto or paho-mqtt is missing.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed: pip install 'edge-infer[meter]'")

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None
)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout=30.0, what="condition"):
    """Bounded wait (a deadline for a hung broker, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class Broker:
    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.dir = tmp
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {tmp}/\nlog_dest file {tmp}/mosquitto.log\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        _wait(listening, what="mosquitto to listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # mosquitto saves its persistence file on SIGTERM
            self.proc.wait(20)
            self.proc = None


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


class Subscriber:
    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-subscriber", clean_session=False)
        c.reconnect_delay_set(0.2, 1)
        c.on_connect = lambda cl, *a: cl.subscribe([("homeassistant/#", 1), ("edge-infer/#", 1)])
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def on(self, topic: str) -> list[str]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _config(port: int):
    from edge_infer.apps.meter.config import parse_config

    return parse_config(
        {
            "name": "Water",
            "rois": [[0, 0, 10, 10]] * 6,
            "decimals": 3,
            "unit": "m³",
            "device_class": "water",
            "mqtt": {"host": "127.0.0.1", "port": port, "client_id": "meter-test"},
        }
    )


def test_discovery_state_availability_and_no_reading_lost_across_a_broker_restart(broker):
    from edge_infer.apps.meter.mqtt import MqttPublisher

    cfg = _config(broker.port)
    sub = Subscriber(broker.port)
    try:
        _wait(lambda: sub.client.is_connected(), what="the subscriber")
        time.sleep(0.2)  # let the SUBACK land
        pub = MqttPublisher(cfg).start()
        base = "edge-infer/meter/water"
        disc = "homeassistant/sensor/meter-test/water/config"
        _wait(lambda: sub.on(disc) and sub.on(f"{base}/availability"), what="discovery and availability")
        d = json.loads(sub.on(disc)[0])
        assert d["device_class"] == "water" and d["state_class"] == "total_increasing"
        assert d["unit_of_measurement"] == "m³" and d["availability_topic"] == f"{base}/availability"
        assert d["state_topic"] == f"{base}/state" and d["value_template"] == "{{ value_json.value }}"
        assert sub.on(f"{base}/availability")[-1] == "online"

        values = [round(100 + i * 0.001, 3) for i in range(30)]
        for v in values[:10]:
            pub.publish(v, when=1_800_000_000 + v, raw=f"{v:.3f}")
        _wait(lambda: len(sub.on(f"{base}/state")) >= 10, what="the first 10 readings")

        broker.stop()  # the broker goes away...
        _wait(lambda: not pub.connected, what="the publisher to notice")
        for v in values[10:25]:  # ...readings go on meanwhile
            pub.publish(v, when=1_800_000_000 + v)
        assert pub.backlog() == 15
        broker.start()  # ...and comes back
        for v in values[25:]:
            pub.publish(v, when=1_800_000_000 + v)
        assert pub.flush(30.0), "the buffered readings were not acknowledged"

        def got() -> list[float]:
            seen = [json.loads(p)["value"] for p in sub.on(f"{base}/state")]
            return [v for i, v in enumerate(seen) if i == 0 or v != seen[i - 1]]  # a QoS 1 resend may repeat

        _wait(lambda: len(got()) >= len(values), what="every reading at the subscriber")
        assert got() == values  # none lost, in order
        assert pub.dropped == 0

        pub.close()
        _wait(lambda: sub.on(f"{base}/availability")[-1] == "offline", what="offline on close")
    finally:
        sub.close()


def test_unreachable_broker_at_start_is_one_clear_error():
    from edge_infer.apps.meter.mqtt import BrokerUnreachableError, MqttPublisher

    port = _free_port()
    with pytest.raises(BrokerUnreachableError, match=f"MQTT broker 127.0.0.1:{port} is unreachable"):
        MqttPublisher(_config(port)).start()


def test_meter_command_publishes_its_readings_end_to_end(broker, tmp_path):
    """``edge-infer meter`` on a generated video: what it publishes is what arrives, in order."""
    import sys

    from .meter_video import make_drum_video, write_video

    paths = write_video(make_drum_video(40, hands=(20,)), tmp_path / "meter")
    cfg = paths["config"]
    cfg.write_text(
        cfg.read_text(encoding="utf-8") + f'\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "e2e"\n',
        encoding="utf-8",
    )
    sub = Subscriber(broker.port)
    try:
        _wait(lambda: sub.client.is_connected(), what="the subscriber")
        time.sleep(0.2)
        res = subprocess.run(
            [sys.executable, "-m", "edge_infer", "meter", "--config", str(cfg), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert res.returncode == 0, res.stderr
        readings = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
        published = [r["value"] for r in readings if r["status"] == "ok"]
        assert len(readings) == 40 and len(published) >= 35
        topic = "edge-infer/meter/generated_drum_meter/state"
        _wait(lambda: len(sub.on(topic)) >= len(published), what="the readings at the subscriber")
        assert [json.loads(p)["value"] for p in sub.on(topic)] == published
        disc = json.loads(sub.on("homeassistant/sensor/e2e/generated_drum_meter/config")[0])
        assert disc["unit_of_measurement"] == "m³" and disc["device_class"] == "water"
        _wait(lambda: sub.on("edge-infer/meter/generated_drum_meter/availability")[-1:] == ["offline"], what="offline")
    finally:
        sub.close()
