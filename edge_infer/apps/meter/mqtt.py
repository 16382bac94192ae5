"""Readings to an MQTT broker, with Home Assistant discovery (needs ``paho-mqtt>=2``, the [meter] extra).

Topics (``topic`` from the config, default ``edge-infer/meter/<name>``):

- ``{topic}/state``: one JSON message per published reading, QoS 1, in order:
  ``{"value": 1298.7, "time": "2026-12-08T03:15:00Z", "raw": "012987", "confidence": 0.99}``.
- ``{topic}/availability``: ``online`` (retained) while connected; the broker sends ``offline``
  (the will, retained) when the reader goes away, and the reader sends it when it stops.
- ``{discovery_prefix}/sensor/{client_id}/{name}/config``: the Home Assistant discovery message
  (retained): ``device_class`` water/gas/energy, ``state_class: total_increasing``, the unit,
  the availability topic, ``value_template`` for the JSON state.

While the broker is away, readings wait in order in paho's outgoing queue (at most ``buffer``;
beyond it new readings are dropped and counted in ``dropped``, and logged) and go out, in order,
when it is back; paho reconnects by itself (1 s doubling to 60 s).

Thread safety: :meth:`MqttPublisher.publish` may be called from any thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time as _time
from collections import deque
from typing import Any

from ...errors import BrokerUnreachableError, ConfigError
from .config import MeterConfig

__all__ = ["BrokerUnreachableError", "MqttPublisher", "discovery_message"]

log = logging.getLogger(__name__)


def _acknowledged(info: Any) -> bool:
    """Whether the broker acknowledged a QoS 1 message.

    paho queues a message published while the connection is down (and sends it after the
    reconnect), but its ``rc`` stays "not connected" and ``is_published()`` then raises; the
    acknowledgement still marks the info object, so read that.
    """
    try:
        return bool(info.is_published())
    except RuntimeError:
        return bool(getattr(info, "_published", False))


def discovery_message(cfg: MeterConfig) -> tuple[str, dict[str, Any]]:
    """The Home Assistant discovery ``(topic, payload)`` for a meter with MQTT configured.

    >>> from edge_infer.apps.meter.config import parse_config
    >>> cfg = parse_config({"name": "Water", "rois": [[0, 0, 9, 9]], "unit": "m3", "mqtt": {}})
    >>> topic, msg = discovery_message(cfg)
    >>> topic, msg["device_class"], msg["state_class"], msg["unit_of_measurement"]
    ('homeassistant/sensor/edge-infer-meter-water/water/config', 'water', 'total_increasing', 'm³')
    """
    m = cfg.mqtt
    if m is None:
        raise ConfigError("no [mqtt] table in the config")
    node = "".join(c if c.isalnum() or c in "_-" else "_" for c in m.client_id)
    topic = f"{m.discovery_prefix}/sensor/{node}/{cfg.slug}/config"
    payload = {
        "name": cfg.name,
        "unique_id": f"{node}_{cfg.slug}",
        "object_id": cfg.slug,
        "state_topic": f"{m.topic}/state",
        "value_template": "{{ value_json.value }}",
        "json_attributes_topic": f"{m.topic}/state",
        "unit_of_measurement": cfg.unit,
        "device_class": cfg.device_class,
        "state_class": "total_increasing",
        "suggested_display_precision": cfg.decimals,
        "availability_topic": f"{m.topic}/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [node],
            "name": f"{cfg.name} meter",
            "manufacturer": "edge-infer",
            "model": "camera meter reader",
        },
    }
    return topic, payload


class MqttPublisher:
    """Publishes a meter's readings (see the module docstring).

    Args:
        cfg: The meter config (with an ``[mqtt]`` table).
        connect_timeout: Seconds to wait for the broker in :meth:`start`.
    """

    def __init__(self, cfg: MeterConfig, *, connect_timeout: float = 10.0) -> None:
        if cfg.mqtt is None:
            raise ConfigError("no [mqtt] table in the config")
        try:
            import paho.mqtt.client as mqtt
        except ImportError as e:
            raise ConfigError("MQTT needs paho-mqtt: pip install 'edge-infer[meter]'") from e
        self.cfg = cfg
        self.m = cfg.mqtt
        self.connect_timeout = connect_timeout
        self.state_topic = f"{self.m.topic}/state"
        self.availability_topic = f"{self.m.topic}/availability"
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._pending: deque[Any] = deque()  # MQTTMessageInfo of messages not yet acknowledged
        self.dropped = 0
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.m.client_id, clean_session=False)
        c.max_queued_messages_set(self.m.buffer)
        c.max_inflight_messages_set(20)
        c.reconnect_delay_set(1, 60)
        c.will_set(self.availability_topic, "offline", qos=1, retain=True)
        if self.m.username:
            c.username_pw_set(self.m.username, os.environ.get(self.m.password_env))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self._client = c

    # -- callbacks (paho's network thread)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s:%d refused the connection: %s", self.m.host, self.m.port, reason)
            return
        log.info("connected to MQTT broker %s:%d", self.m.host, self.m.port)
        if self.m.discovery_prefix:
            topic, payload = discovery_message(self.cfg)
            client.publish(topic, json.dumps(payload), qos=1, retain=True)
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self._connected.is_set():
            log.warning("MQTT broker %s:%d went away (%s); buffering readings", self.m.host, self.m.port, reason)
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> MqttPublisher:
        """Connects and starts paho's network thread.

        Raises:
            BrokerUnreachableError: The broker did not accept a connection within ``connect_timeout``.
        """
        try:
            self._client.connect(self.m.host, self.m.port, keepalive=30)
        except OSError as e:
            raise BrokerUnreachableError(
                f"MQTT broker {self.m.host}:{self.m.port} is unreachable ({e}); start it or fix [mqtt] host/port"
            ) from None
        self._client.loop_start()
        if not self._connected.wait(self.connect_timeout):
            self._client.loop_stop()
            raise BrokerUnreachableError(
                f"MQTT broker {self.m.host}:{self.m.port} did not accept the connection within "
                f"{self.connect_timeout:g} s; check [mqtt] host, port and credentials"
            )
        return self

    def publish(self, value: float, *, when: float, raw: str = "", confidence: float = 1.0) -> None:
        """Queues one reading for ``{topic}/state`` (sent now, or when the broker is back)."""
        payload = json.dumps(
            {
                "value": value,
                "time": _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(when)),
                "raw": raw,
                "confidence": round(confidence, 4),
            }
        )
        import paho.mqtt.client as mqtt

        with self._lock:
            info = self._client.publish(self.state_topic, payload, qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                self.dropped += 1
                log.warning("MQTT buffer full (%d readings): reading %s dropped", self.m.buffer, value)
                return
            self._pending.append(info)
            while self._pending and _acknowledged(self._pending[0]):
                self._pending.popleft()

    def backlog(self) -> int:
        """Readings queued but not yet acknowledged by the broker."""
        with self._lock:
            while self._pending and _acknowledged(self._pending[0]):
                self._pending.popleft()
            return len(self._pending)

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until every queued reading is acknowledged (or ``timeout``); True when all were."""
        deadline = _time.monotonic() + timeout
        while self.backlog():
            if _time.monotonic() > deadline:
                return False
            _time.sleep(0.05)
        return True

    def close(self) -> None:
        """Says ``offline``, sends what is queued (briefly) and disconnects. Safe to call twice."""
        if self._client is None:
            return
        if self.connected:
            self.flush(5.0)
            try:
                self._client.publish(self.availability_topic, "offline", qos=1, retain=True).wait_for_publish(2.0)
            except (RuntimeError, ValueError):  # the connection dropped meanwhile; the will says offline
                pass
        self._client.disconnect()
        self._client.loop_stop()
        self._client = None  # type: ignore[assignment]
