"""/etc/dom0/host.toml: defaults, per-guest exceptions, and a clear exit-2 error for each kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from unitkit import dom0

from dom0.errors import UsageError
from dom0.saves import hostconfig
from dom0.saves.codec import Compression
from dom0.saves.hostconfig import OnStop

REPO = Path(__file__).resolve().parents[3]


def test_the_shipped_example_is_valid_and_means_the_defaults() -> None:
    assert hostconfig.load(REPO / "contrib" / "host.toml") == hostconfig.HostConfig()


def test_settings_and_exceptions_are_read() -> None:
    config = hostconfig.parse(
        {
            "save": {"directory": "/srv/save", "compress": "lz4", "level": 1, "jobs": 3},
            "stop": {"shutdown_timeout": 45},
            "start": {"autostart": False},
            "guests": {"build": {"on_stop": "shutdown"}, "ha-node": {"on_stop": "leave"}},
        },
        "host.toml",
    )
    assert (config.directory, config.compression, config.level, config.jobs) == (
        Path("/srv/save"),
        Compression.LZ4,
        1,
        3,
    )
    assert (config.shutdown_timeout, config.autostart) == (45.0, False)
    assert [config.action(n) for n in ("build", "ha-node", "web")] == [OnStop.SHUTDOWN, OnStop.LEAVE, OnStop.SAVE]


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"sav": {}}, "unknown section [sav]"),
        ({"save": {"dir": "/x"}}, "unknown key save.dir"),
        ({"save": {"compress": "xz"}}, "save.compress is 'xz'"),
        ({"save": {"compress": "gzip", "level": 12}}, "save.level"),
        ({"save": {"directory": "relative/path"}}, "absolute path"),
        ({"save": {"jobs": -1}}, "save.jobs"),
        ({"stop": {"shutdown_timeout": 0}}, "shutdown_timeout"),
        ({"start": {"autostart": "yes"}}, "start.autostart"),
        ({"guests": {"web": {"on_stop": "destroy"}}}, "guests.web.on_stop is 'destroy'"),
        ({"guests": {"web": {"when": "now"}}}, "[guests.web] takes only on_stop"),
    ],
)
def test_each_mistake_names_its_key(doc: dict[str, object], words: str) -> None:
    with pytest.raises(UsageError) as err:
        hostconfig.parse(doc, "/etc/dom0/host.toml")
    assert words in err.value.message
    assert err.value.message.startswith("/etc/dom0/host.toml: ")


def test_a_broken_config_stops_host_stop_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "host.toml"
    bad.write_text("[save]\ncompress = zstd\n")  # unquoted: not TOML
    r = dom0("-c", "test:///default", "host", "stop", "--config", str(bad), "--dry-run")
    assert r.rc == 2
    assert "is not valid TOML" in r.err
    assert "Traceback" not in r.err
    missing = dom0("-c", "test:///default", "host", "start", "--config", str(tmp_path / "nope.toml"))
    assert missing.rc == 2
    assert "does not exist" in missing.err
