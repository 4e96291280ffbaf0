"""`dom0 export` of a guest on xl:// and `dom0 import` of it back, through the real xl backend.

There is no Xen here, so `xl` answers what it printed on a real Xen 4.17 dom0 (tests/data/xen/: `xl list`, and
`xl list -l` of a guest with one disk and one NIC), its disk pointing at a file this test writes; /etc/xen is a
directory of the test's own. Everything else (export, import, the xl.cfg handling) runs as users run it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from exportkit import DISK
from unitkit import DATA

from dom0 import run
from dom0.cli.main import main
from dom0.hypervisor.xl import backend
from dom0.hypervisor.xl import config as xlcfg

XEN = DATA / "xen"
UUID = "e9fac9cb-0908-49e7-94da-ff5155aff49d"  # domuio's, as `xl list -l` recorded it
MAC = "00:16:3e:12:34:56"


class RecordedXl:
    """`xl` commands answered with recorded outputs; every other command runs for real."""

    def __init__(self, disk: Path) -> None:
        # the recorded `xl list` came from the same dom0 with the guest named domu; the -l run named it domuio
        self.list = (XEN / "xl-list-after-create.txt").read_text().replace("domu  ", "domuio")
        doc = json.loads((XEN / "xl-list-l-io.txt").read_text())
        doc[1]["config"]["disks"][0]["pdev_path"] = str(disk)
        self.list_l = json.dumps(doc, indent=4)
        self.ran: list[tuple[str, ...]] = []
        self.real = run.output

    def shut_down(self) -> None:
        """The guest stopped: xl lists Domain-0 alone, and knows nothing more of it."""
        self.list = "\n".join(self.list.splitlines()[:2]) + "\n"
        self.list_l = json.dumps(json.loads(self.list_l)[:1], indent=4)

    def output(self, cmd: Sequence[str], *, timeout: float | None = None) -> str:
        if cmd[0] != "xl":
            return self.real(cmd, timeout=timeout)
        args = tuple(cmd[1:])
        self.ran.append(args)
        answers = {("list",): self.list, ("list", "-l"): self.list_l, ("pause", "1"): "", ("unpause", "1"): ""}
        if args not in answers:
            raise AssertionError(f"xl {' '.join(args)} was not expected")
        return answers[args]


@pytest.fixture
def xl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RecordedXl:
    disk = tmp_path / "images" / "domuio.img"
    disk.parent.mkdir()
    disk.write_bytes(DISK)
    etc_xen = tmp_path / "etc-xen"
    etc_xen.mkdir()
    # A pygrub guest's xl.cfg whose first setting is neither name nor type (as many hand-written ones are).
    (etc_xen / "domuio.cfg").write_text(
        'bootloader = "pygrub"\n'
        'name = "domuio"\n'
        f'uuid = "{UUID}"\n'
        "memory = 128\n"
        "vcpus = 1\n"
        f'disk = [ "format=raw, vdev=xvda, access=rw, target={disk}" ]\n'
        f'vif = [ "mac={MAC},bridge=xenbr0" ]\n'
        'on_crash = "preserve"\n'
    )
    recorded = RecordedXl(disk)
    monkeypatch.setattr(run, "output", recorded.output)
    real_available = run.available
    monkeypatch.setattr(run, "available", lambda program: program == "xl" or real_available(program))
    monkeypatch.setattr(backend, "CONFIG_DIR", etc_xen)
    return recorded


def _dom0(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["-c", "xl://", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_an_xl_guest_exported_imports_back_under_a_new_name(
    xl: RecordedXl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media, store, etc_xen = tmp_path / "media", tmp_path / "store", tmp_path / "etc-xen"
    store.mkdir()
    rc, _, err = _dom0(capsys, "export", "--pause", "domuio", str(media))
    assert rc == 0, err
    assert ("pause", "1") in xl.ran
    export = media / "domuio"
    assert (export / "definition.cfg").read_text() == (etc_xen / "domuio.cfg").read_text()
    assert not (export / "definition.xml").exists()

    rc, out, err = _dom0(capsys, "import", str(export), "--name", "domuio2", "--storage", str(store))
    assert rc == 0, err
    assert "imported domuio2" in out
    disk = store / "domuio2-xvda.img"
    assert disk.read_bytes() == DISK
    cfg = xlcfg.guest_config(xlcfg.load(etc_xen / "domuio2.cfg"))
    assert cfg.name == "domuio2"
    assert [d.source for d in cfg.disks] == [str(disk)]
    assert cfg.uuid != UUID
    assert len(cfg.nics) == 1
    assert cfg.nics[0].mac != MAC
    assert cfg.nics[0].mac.startswith("00:16:3e:")
    assert (etc_xen / "domuio.cfg").exists()  # the source's own file is left as it was


def test_a_failed_xl_import_leaves_no_xl_cfg_behind(
    xl: RecordedXl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, etc_xen = tmp_path / "store", tmp_path / "etc-xen"
    store.mkdir()
    export = _exported(capsys, tmp_path)
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["disks"][0]["raw_sha256"] = "0" * 64  # found out only once the disk is written, after the define
    (export / "manifest.json").write_text(json.dumps(manifest))
    rc, _, err = _dom0(capsys, "import", str(export), "--name", "domuio2", "--storage", str(store))
    assert rc == 1
    assert "removed what it had created" in err
    assert sorted(p.name for p in etc_xen.iterdir()) == ["domuio.cfg"]
    assert list(store.iterdir()) == []


def test_an_xl_guest_shut_down_exports_from_its_xl_cfg(
    xl: RecordedXl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # what export itself tells an administrator: shut it down first, then export
    xl.shut_down()
    rc, out, err = _dom0(capsys, "list", "--long", "domuio")
    assert rc == 0, err
    assert "shut off" in out
    rc, _, err = _dom0(capsys, "export", "domuio", str(tmp_path / "media"))
    assert rc == 0, err
    assert not [a for a in xl.ran if a[0] in ("pause", "unpause")]  # nothing to pause: it does not run
    export = tmp_path / "media" / "domuio"
    assert (export / "definition.cfg").read_text() == (tmp_path / "etc-xen" / "domuio.cfg").read_text()
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["uuid"] == UUID
    assert [(d["target"], d["size_bytes"]) for d in manifest["disks"]] == [("xvda", len(DISK))]


def test_pause_of_an_xl_guest_that_is_shut_down_says_it_is_not_running(
    xl: RecordedXl, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = _dom0(capsys, "shutdown", "domuio-other")
    assert rc == 1
    assert "no guest named 'domuio-other'" in err
    xl.shut_down()
    rc, _, err = _dom0(capsys, "pause", "domuio")
    assert rc == 1
    assert "it is not running" in err


def _exported(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    rc, _, err = _dom0(capsys, "export", "--pause", "domuio", str(tmp_path / "media"))
    assert rc == 0, err
    return tmp_path / "media" / "domuio"


def test_an_xl_cfg_an_older_export_named_definition_xml_still_imports(
    xl: RecordedXl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = _exported(capsys, tmp_path)
    (export / "definition.cfg").rename(export / "definition.xml")
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["definition"] = "definition.xml"
    (export / "manifest.json").write_text(json.dumps(manifest))
    store = tmp_path / "store"
    store.mkdir()
    rc, out, err = _dom0(capsys, "import", str(export), "--name", "domuio2", "--storage", str(store))
    assert rc == 0, err
    assert "definition.xml holds an xl.cfg: read as such" in out
    assert (store / "domuio2-xvda.img").read_bytes() == DISK


def test_an_xl_cfg_export_on_a_libvirt_host_is_refused_before_writing(
    xl: RecordedXl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = _exported(capsys, tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    rc = main(["-c", "test:///default", "import", str(export), "--name", "domuio2", "--storage", str(store)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "is an xl.cfg, and test:///default defines guests from a libvirt domain XML" in err
    assert "hint:" in err
    assert list(store.iterdir()) == []
