"""Old xm configs: read without running them, mapped like xl.cfg, and converted to xl.cfg with their comments."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unitkit import DATA

from dom0 import run
from dom0.cli.main import main
from dom0.errors import UsageError
from dom0.hypervisor.xl import config as xlcfg
from dom0.hypervisor.xl import xmconfig as xmcfg
from dom0.model import Boot, BootKind, Disk, DiskSource, GuestConfig, GuestType, Nic

CFG = DATA / "xen" / "cfg"


def test_legacy_pv_guest_maps_every_field() -> None:
    config = xmcfg.guest_config(xmcfg.load(CFG / "legacy.xm"))
    assert config == GuestConfig(
        name="legacy",
        type=GuestType.PV,
        memory_mib=256,
        max_memory_mib=256,
        vcpus=1,
        max_vcpus=1,
        boot=Boot(
            BootKind.KERNEL,
            kernel="/boot/vmlinuz-2.6.18-6-xen-amd64",
            initrd="/boot/initrd.img-2.6.18-6-xen-amd64",
            cmdline="root=/dev/sda1 ro xencons=tty clocksource=jiffies",  # extra was 'a' + 'b'
        ),
        disks=(
            Disk("sda1", DiskSource.BLOCK, "/dev/vg0/legacy-root", bus="scsi", format="raw"),
            Disk("sda2", DiskSource.BLOCK, "/dev/vg0/legacy-swap", bus="scsi", format="raw"),
            Disk("sda3", DiskSource.FILE, "/var/xen/legacy-data.img", bus="scsi", format="raw"),
        ),
        nics=(Nic("00:16:3e:00:aa:01", "bridge", source="xenbr1"),),
        on_poweroff="destroy",
        on_reboot="restart",
        on_crash="restart",
    )


def test_hvm_guest_ignores_hvmloader_and_device_model() -> None:
    config = xmcfg.guest_config(xmcfg.load(CFG / "oldhvm.xm"))
    assert config.type == GuestType.HVM
    assert config.boot == Boot(BootKind.FIRMWARE, devices=("cdrom", "hd"))
    assert config.disks[1] == Disk(
        "hdc", DiskSource.FILE, "/srv/iso/install.iso", device="cdrom", bus="ide", format="raw", readonly=True
    )
    assert config.nics == (Nic("", "bridge", source="xenbr0"),)


def test_values_python_allows() -> None:
    xm = xmcfg.parse(
        '"""A docstring."""\n'
        "name = 'a' 'b'\n"
        "memory = 128 + 128\n"
        "vcpus = +2\n"
        "disk = ('phy:/dev/x,xvda,w',) + ['file:/y,xvdb,r']\n"
        "acpi = True; pae = False; serial = None\n"
        "name = 'ab'  # the last setting wins\n"
        "bootargs = '--entry=xvda1:/boot/vmlinuz'\n"
        "bootloader = '/usr/bin/pygrub'\n"
    )
    assert xm.values() == {
        "name": "ab",
        "memory": 256,
        "vcpus": 2,
        "disk": ("phy:/dev/x,xvda,w", "file:/y,xvdb,r"),
        "acpi": True,
        "pae": False,
        "serial": None,
        "bootargs": "--entry=xvda1:/boot/vmlinuz",
        "bootloader": "/usr/bin/pygrub",
    }
    assert xm.lines()["name"] == 7
    config = xmcfg.guest_config(xm)
    assert config.boot == Boot(BootKind.BOOTLOADER, bootloader="/usr/bin/pygrub", cmdline="--entry=xvda1:/boot/vmlinuz")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("name = 'a'\nimport os\n", 2, "imports a module"),
        ("name = 'a'\n\nmemory = int('256')\n", 3, "calls a function"),
        ("base = '/boot'\nkernel = base + '/vmlinuz'\n", 2, "uses the name 'base'"),
        ("arch = os.uname()[4]\n", 1, "calls a function"),
        ("if True:\n    name = 'a'\n", 1, "If statement is not a setting"),
        ("name = f'{1}'\n", 1, "JoinedStr"),
        ("a = b = 1\n", 1, "only NAME = value"),
        ("vif = {'mac': 'x'}\n", 1, "Dict"),
        ("memory = 1 + 'a'\n", 1, "different kinds"),
        ("name = 'a'\nmemory = 256 +\n", 2, "not valid Python"),
        ("x[0] = 1\n", 1, "only NAME = value"),
        ("def f():\n    pass\n", 1, "FunctionDef"),
    ],
)
def test_anything_but_literal_settings_is_refused_naming_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(UsageError) as e:
        xmcfg.parse(text, "old.cfg")
    assert str(e.value).startswith(f"old.cfg line {line}: "), str(e.value)
    assert words in str(e.value)
    assert "without running" in e.value.hint
    assert e.value.exit_code == 2


def test_the_sample_with_imports_is_refused_at_its_import() -> None:
    with pytest.raises(UsageError, match=r"oldwin\.xm line 2: the config imports a module"):
        xmcfg.load(CFG / "oldwin.xm")


def test_nothing_in_the_config_is_ever_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"name = __import__('os').system('touch {marker}')\n"
    with pytest.raises(UsageError, match="calls a function"):
        xmcfg.parse(text)
    assert not marker.exists()


def test_xm_to_xl_keeps_comments_and_order_and_maps_the_same() -> None:
    text = (CFG / "legacy.xm").read_text()
    xl = xmcfg.xm_to_xl(text, "legacy.xm")
    assert xl.startswith("#  -*- mode: python; -*-\n#====")
    assert "# Network: one interface on the DMZ bridge\nvif = [" in xl
    assert 'extra = "xencons=tty clocksource=jiffies"\n' in xl
    assert "localtime = 0\n" in xl
    assert "# dom0: serial left out: None means unset\n" in xl
    assert '    "phy:vg0/legacy-root,sda1,w",\n' in xl
    assert "# root\n" in xl  # a comment inside the disk list survives, just before it
    doc = xlcfg.parse(xl)
    assert doc.keys().index("kernel") < doc.keys().index("name") < doc.keys().index("on_crash")
    assert xlcfg.guest_config(doc) == xmcfg.guest_config(xmcfg.parse(text))


def test_xm_to_xl_of_an_hvm_config() -> None:
    text = (CFG / "oldhvm.xm").read_text()
    xl = xmcfg.xm_to_xl(text)
    assert 'type = "hvm"\n' in xl
    assert "builder" not in xl
    assert "# dom0: kernel left out: xl loads hvmloader itself for HVM guests\n" in xl
    assert "# dom0: device_model left out: xl runs its own device model\n" in xl
    assert "pae = 1\nacpi = 1\napic = 1\n" in xl
    assert xlcfg.guest_config(xlcfg.parse(xl)) == xmcfg.guest_config(xmcfg.parse(text))


def test_xm_to_xl_trailing_comments_and_names_xl_cannot_take() -> None:
    xl = xmcfg.xm_to_xl("name = 'a'   # the guest\nVNC = 1\nbootargs = '-q'\nx = 1.5\ny = 2.0")
    assert xl == (
        'name = "a"  # the guest\n# dom0: VNC is not a valid xl.cfg name\nbootloader_args = "-q"\nx = "1.5"\ny = 2\n'
    )


_SAMPLES = [(CFG / n).read_text() for n in ("legacy.xm", "oldhvm.xm", "oldwin.xm")]


@st.composite
def _mutations(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_SAMPLES))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=4)) + text[at + draw(st.integers(0, 6)) :]
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_mutations(), st.binary(max_size=120).map(lambda b: b.decode("utf-8", "surrogateescape"))))
def test_fuzzed_xm_configs_give_a_config_or_a_usage_error(text: str) -> None:
    error: UsageError | None = None
    try:
        xm = xmcfg.parse(text)
        xmcfg.guest_config(xm)
        xmcfg.xm_to_xl(text)
    except UsageError as e:
        error = e
    if error is not None:
        assert "\n" not in error.message
        assert error.hint


# --- `dom0 create OLD.cfg` on xl:// ---------------------------------------------------------------------------

XEN = DATA / "xen"
# An xm config as xend read it: Python's True, a tuple, `+` and two settings on one line, none of which xl.cfg has.
OLD_XM = (
    "# web server, from the xend days\n"
    "kernel = '/boot/vmlinuz-xen'\n"
    "memory = 128\n"
    "name = 'dom' + 'u'\n"
    "disk = ('phy:/dev/vg0/domu,xvda,w',)\n"
    "pae = True; acpi = True\n"
)


class RecordedXl:
    """`xl` answering what it printed on a real Xen 4.17 dom0 before and after `xl create` of a guest named domu;
    the file `xl create` was given is kept as xl read it."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def output(self, cmd: Sequence[str], *, timeout: float | None = None) -> str:
        assert cmd[0] == "xl", cmd
        args = tuple(cmd[1:])
        if args[0] == "create":
            self.created.append(Path(args[1]).read_text())
            return ""
        after = "-after-create" if self.created else ""
        if args == ("list",):
            return (XEN / f"xl-list{after}.txt").read_text()
        if args == ("list", "-l"):
            return (XEN / f"xl-list-l{after}.txt").read_text()
        raise AssertionError(f"xl {' '.join(args)} was not expected")


@pytest.fixture
def xl(monkeypatch: pytest.MonkeyPatch) -> RecordedXl:
    recorded = RecordedXl()
    monkeypatch.setattr(run, "output", recorded.output)
    monkeypatch.setattr(run, "available", lambda program: program == "xl")
    return recorded


def _create(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str, str]:
    rc = main(["-c", "xl://", "create", str(path)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_create_starts_a_guest_from_an_old_xm_config(
    xl: RecordedXl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "domu.cfg"
    old.write_text(OLD_XM)
    rc, out, err = _create(capsys, old)
    assert rc == 0, err
    assert "created domu (ID 1)" in out
    [given] = xl.created
    assert given.startswith("# web server, from the xend days\n")  # the admin's comments come along
    config = xlcfg.guest_config(xlcfg.parse(given))
    assert (config.name, config.memory_mib) == ("domu", 128)
    assert [d.source for d in config.disks] == ["/dev/vg0/domu"]
    assert old.read_text() == OLD_XM  # the file itself is left as it was


def test_create_gives_xl_an_xl_cfg_as_it_is(xl: RecordedXl, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = 'name = "domu"\nmemory = 128\nkernel = "/boot/vmlinuz-xen"  # xl reads this as xm did\n'
    cfg = tmp_path / "domu.cfg"
    cfg.write_text(text)
    rc, _, err = _create(capsys, cfg)
    assert rc == 0, err
    assert xl.created == [text]


def test_create_refuses_an_xm_config_that_runs_code(
    xl: RecordedXl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.cfg"
    old.write_text("import os\nname = os.uname()[1]\n")
    rc, _, err = _create(capsys, old)
    assert rc == 2
    assert err.splitlines()[0] == "dom0: error: xm config line 1: the config imports a module; dom0 does not run Python"
    assert "Traceback" not in err
    assert xl.created == []


def test_create_refuses_a_libvirt_xml_on_xl(xl: RecordedXl, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The one format check tells xl:// a libvirt domain XML apart before xl sees it, and says where it belongs."""
    xml = tmp_path / "web.xml"
    xml.write_text("<domain type='xen'><name>web</name></domain>\n")
    rc, _, err = _create(capsys, xml)
    assert rc == 1
    assert err.splitlines()[0] == "dom0: error: this is a libvirt domain XML: xl:// starts guests from an xl.cfg"
    assert "xen:///system" in err
    assert xl.created == []
