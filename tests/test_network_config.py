"""The [network] section: every field validated with a message naming it, and every field documented."""

import re
from dataclasses import fields
from pathlib import Path

import pytest

from experiments.config import ConfigError, NetworkConfig, parse_config
from ns3_scenarios.scenario import ScenarioConfig

README = Path(__file__).resolve().parents[1] / "ns3_scenarios" / "README.md"


@pytest.mark.parametrize("network, field, allowed", [
    ({"transport": "carrier-pigeon"}, "network.transport", "broadcast, unicast, tcp"),
    ({"transport": "unicast", "fanout": 20}, "network.fanout", "[0, devices - 1 = 19]"),
    ({"fanout": 3}, "network.fanout", "broadcast"),
    ({"rate_control": "arf"}, "network.rate_control", "constant, minstrel"),
    ({"mobility": "teleport"}, "network.mobility", "static, random_walk, random_waypoint"),
    ({"speed_mps": 0.0}, "network.speed_mps", "(0, 100]"),
    ({"pause_s": -1.0}, "network.pause_s", "[0, 3600]"),
    ({"fading": "rician"}, "network.fading", "none, nakagami"),
    ({"nakagami_m": 0.1}, "network.nakagami_m", "[0.5, 20]"),
    ({"idle_probes": 0}, "network.idle_probes", "[1, 100]"),
    ({"idle_probes": 2.5}, "network.idle_probes", "an integer"),
    ({"mode": "realtime"}, "network.mode", "offline, online"),
    ({"mode": "online", "link_model": "synthetic"}, "network.mode", "synthetic"),
    ({"worker_timeout_s": 0.5}, "network.worker_timeout_s", "[1, 86400]"),
])
def test_bad_network_fields_are_named_with_the_value_and_the_allowed_range(network, field, allowed):
    with pytest.raises(ConfigError) as error:
        parse_config({"devices": 20, "network": network})
    message = str(error.value)
    assert message.startswith(field) and allowed in message


def test_good_network_fields_reach_the_scenario():
    config = parse_config({"devices": 10, "network": {
        "mode": "online", "transport": "tcp", "fanout": 3, "rate_control": "minstrel", "mobility": "random_walk",
        "speed_mps": 2, "fading": "nakagami", "nakagami_m": 1.5}})
    assert config.network.mode == "online"
    assert (config.scenario.transport, config.scenario.fanout, config.scenario.speed_mps) == ("tcp", 3, 2.0)
    assert config.scenario.fading == "nakagami" and config.scenario.nakagami_m == 1.5


def test_readme_documents_every_network_field_with_unit_default_and_range():
    rows = {}
    for line in README.read_text().splitlines():
        match = re.match(r"\| `network\.(\w+)` \|(.*)\|\s*$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    names = {f.name for f in fields(ScenarioConfig)} - {"devices"} | {f.name for f in fields(NetworkConfig)}
    assert set(rows) == names
    for name, (unit, default, allowed, meaning) in rows.items():
        assert unit and default and allowed and meaning, name
        value = getattr(ScenarioConfig(), name, None) if name != "devices" else None
        if value is None:
            value = getattr(NetworkConfig(), name)
        assert default.strip("`\"") == str(list(value) if isinstance(value, tuple) else value), name  # TOML arrays
