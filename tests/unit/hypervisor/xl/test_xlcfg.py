"""xl.cfg files: parsed as xl parses them, rewritten without disturbing what was not edited, mapped to GuestConfig."""

from __future__ import annotations

import difflib
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unitkit import DATA

from dom0.errors import UsageError
from dom0.hypervisor.libvirt import domxml
from dom0.hypervisor.xl import config as xlcfg
from dom0.hypervisor.xl import spec as xlspec
from dom0.model import Boot, BootKind, Disk, DiskSource, GuestConfig, GuestType, Nic

CFG = DATA / "xen" / "cfg"
SAMPLES = sorted(p for p in CFG.iterdir() if p.suffix == ".cfg")


def load(name: str) -> xlcfg.XlConfig:
    return xlcfg.load(CFG / name)


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


# ---- the mapping, field by field --------------------------------------------------------------------------


def test_xen_tools_pv_guest_on_lvm_maps_every_field() -> None:
    config = xlcfg.guest_config(load("web.cfg"))
    assert config == GuestConfig(
        name="web.example.org",
        type=GuestType.PV,
        memory_mib=1024,  # written as the string '1024' by xen-tools; xl reads it as a number
        max_memory_mib=1024,
        vcpus=2,
        max_vcpus=2,
        boot=Boot(
            BootKind.KERNEL,
            kernel="/boot/vmlinuz-4.9.0-8-amd64",
            initrd="/boot/initrd.img-4.9.0-8-amd64",
            cmdline="root=/dev/xvda2 ro elevator=noop",  # built from root + extra, as xl does
        ),
        disks=(
            Disk("xvda2", DiskSource.BLOCK, "/dev/vg0/web-disk", bus="xen", format="raw"),
            Disk("xvda1", DiskSource.BLOCK, "/dev/vg0/web-swap", bus="xen", format="raw"),
        ),
        nics=(Nic("00:16:3e:5c:21:0a", "bridge", source="xenbr0"),),
        on_poweroff="destroy",
        on_reboot="restart",
        on_crash="restart",
    )


def test_pygrub_guest_maps_bootloader_balloon_files_and_vifs() -> None:
    config = xlcfg.guest_config(load("mail-pygrub.cfg"))
    assert config.uuid == "3b0e5a5e-7d2c-4a43-9f2a-1c0d6e8b7f41"
    assert (config.memory_mib, config.max_memory_mib, config.vcpus, config.max_vcpus) == (2048, 4096, 2, 4)
    assert config.boot == Boot(
        BootKind.BOOTLOADER, bootloader="pygrub", cmdline="--kernel=/vmlinuz --ramdisk=/initrd.img"
    )
    assert config.disks == (
        Disk("xvda", DiskSource.FILE, "/srv/xen/mail/disk.img", bus="xen", format="raw"),
        Disk("xvdb", DiskSource.FILE, "/srv/xen/mail/data.qcow2", bus="xen", format="qcow2"),
        # target= comes last and keeps its comma
        Disk("xvdc", DiskSource.FILE, "/srv/xen/shared/archive,2013.img", bus="xen", format="raw", readonly=True),
    )
    assert config.nics == (
        Nic("00:16:3e:4a:01:02", "bridge", source="xenbr1", target="vif-mail"),
        Nic("00:16:3e:4a:01:03", "bridge", source="xenbr0", model="rtl8139"),
    )
    assert config.on_crash == "coredump-restart"


def test_hvm_guest_with_old_builder_cdroms_and_boot_order() -> None:
    config = xlcfg.guest_config(load("winxp-hvm.cfg"))
    assert config.type == GuestType.HVM
    assert config.memory_mib == 1024  # 0x400
    assert config.boot == Boot(BootKind.FIRMWARE, devices=("cdrom", "hd"))
    assert config.disks == (
        Disk("hda", DiskSource.BLOCK, "/dev/vg0/winxp-c", bus="ide", format="raw"),
        Disk("hdb", DiskSource.BLOCK, "/dev/vg0/winxp-d", bus="ide", format="raw"),
        Disk("hdc", DiskSource.FILE, "/srv/iso/drivers.iso", device="cdrom", bus="ide", format="raw", readonly=True),
        Disk("hdd", DiskSource.NONE, "", device="cdrom", bus="ide", format="raw", readonly=True),
    )
    assert config.nics == (Nic("00:16:3e:11:22:33", "bridge", source="xenbr0", model="e1000"),)
    assert config.on_crash == "preserve"
    assert load("winxp-hvm.cfg").get("vncpasswd") == 's3cr"et\\'


def test_pvh_guest_cmdline_wins_over_root_and_keeps_backendtype() -> None:
    config = xlcfg.guest_config(load("build-pvh.cfg"))
    assert config.type == GuestType.PVH
    assert config.boot.cmdline == "console=hvc0 root=/dev/xvda ro"
    assert config.disks[0] == Disk("xvda", DiskSource.BLOCK, "/dev/vg0/build-root", bus="xen", format="raw")
    assert config.disks[1].format == "qcow2"


@pytest.mark.parametrize(("name", "kind"), [("xenlab-domu.cfg", GuestType.PV), ("xenlab-domu-pvh.cfg", GuestType.PVH)])
def test_the_configs_that_booted_on_real_xen(name: str, kind: GuestType) -> None:
    config = xlcfg.guest_config(load(name))
    assert config.type == kind
    assert (config.memory_mib, config.vcpus, config.on_crash) == (128, 1, "preserve")
    assert config.boot == Boot(
        BootKind.KERNEL,
        kernel="/boot/vmlinuz-6.1.0-56-amd64",
        initrd="/boot/domu-initrd.cpio.gz",
        cmdline="console=hvc0 loglevel=4",
    )


def test_defaults_are_xls() -> None:
    config = xlcfg.guest_config(xlcfg.parse('name = "bare"\n'))
    assert config == GuestConfig(name="bare", type=GuestType.PV, vcpus=1, max_vcpus=1)
    assert (config.on_poweroff, config.on_reboot, config.on_crash) == ("destroy", "restart", "destroy")
    hvm = xlcfg.guest_config(xlcfg.parse('name = "h"\ntype = "hvm"\n'))
    assert hvm.boot == Boot(BootKind.FIRMWARE, devices=("hd", "cdrom"))


def test_extra_alone_is_the_cmdline() -> None:
    doc = xlcfg.parse('name="a"\nkernel="/k"\nextra="quiet"\n')
    assert xlcfg.guest_config(doc).boot.cmdline == "quiet"


@pytest.mark.parametrize(
    ("spec", "disk"),
    [
        (
            "phy:/dev/vg0/web-disk,xvda2,w",
            Disk("xvda2", DiskSource.BLOCK, "/dev/vg0/web-disk", bus="xen", format="raw"),
        ),
        ("phy:vg0/lv,sda1,w", Disk("sda1", DiskSource.BLOCK, "/dev/vg0/lv", bus="scsi", format="raw")),
        ("file:/img,hda1,r", Disk("hda1", DiskSource.FILE, "/img", bus="ide", format="raw", readonly=True)),
        ("tap:aio:/srv/a.img,xvdb,w", Disk("xvdb", DiskSource.FILE, "/srv/a.img", bus="xen", format="raw")),
        ("tap:qcow2:/srv/a.qcow2,xvdb,w", Disk("xvdb", DiskSource.FILE, "/srv/a.qcow2", bus="xen", format="qcow2")),
        ("/dev/vg/guest-volume,,hda", Disk("hda", DiskSource.BLOCK, "/dev/vg/guest-volume", bus="ide", format="raw")),
        (
            "/dev/vg/guest-volume,raw,hda,rw",
            Disk("hda", DiskSource.BLOCK, "/dev/vg/guest-volume", bus="ide", format="raw"),
        ),
        ("raw:/dev/vg/gv,hda,w", Disk("hda", DiskSource.BLOCK, "/dev/vg/gv", bus="ide", format="raw")),
        (
            "format=raw, vdev=xvda, access=rw, target=/dev/vg/lv",
            Disk("xvda", DiskSource.BLOCK, "/dev/vg/lv", bus="xen", format="raw"),
        ),
        (
            "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
            Disk("hdc", DiskSource.FILE, "/root/image.iso", device="cdrom", bus="ide", format="raw", readonly=True),
        ),
        (
            "/root/image.iso,,hdc,cdrom",
            Disk("hdc", DiskSource.FILE, "/root/image.iso", device="cdrom", bus="ide", format="raw", readonly=True),
        ),
        (
            "raw:/root/image.iso,hdc:cdrom,ro",
            Disk("hdc", DiskSource.FILE, "/root/image.iso", device="cdrom", bus="ide", format="raw", readonly=True),
        ),
        (",hdc:cdrom,r", Disk("hdc", DiskSource.NONE, "", device="cdrom", bus="ide", format="raw", readonly=True)),
        (
            "vdev=xvdb, backendtype=phy, target=/srv/not-dev-but-phy",
            Disk("xvdb", DiskSource.BLOCK, "/srv/not-dev-but-phy", bus="xen", format="raw"),
        ),
        (
            "iscsi:iqn.2001-05.com.example:t,xvdc,w",
            Disk("xvdc", DiskSource.NETWORK, "iqn.2001-05.com.example:t", bus="xen", format="raw"),
        ),
    ],
)
def test_disk_specs_in_every_documented_form(spec: str, disk: Disk) -> None:
    assert xlspec.parse_disk(spec).to_disk() == disk


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("/dev/vg/lv", "no vdev"),
        ("/dev/vg/lv,raw,xvda,rw,extra", "too many positional"),
        ("vdev=xvda, colour=blue, target=/x", "unknown parameter 'colour'"),
        ("/x,,xvda,rx", "access 'rx'"),
        ("format=vmdk, vdev=xvda, target=/x", "format 'vmdk'"),
        ("nfs:/srv/x,xvda,w", "unknown prefix 'nfs'"),
        ("vdev=xvda, vdev=xvdb, target=/x", "vdev is given twice"),
        ("/x,xvda:floppy,w", "unknown device type 'floppy'"),
    ],
)
def test_bad_disk_specs_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match="disk spec") as e:
        xlspec.parse_disk(spec)
    assert words in e.value.message
    assert "xl-disk-configuration" in e.value.hint


def test_vif_specs() -> None:
    spec = xlspec.parse_vif(" mac=00:16:3E:AA:bb:01 , bridge=xenbr0,model=e1000,vifname=web0,ip=10.0.0.2 10.0.0.3")
    assert spec.to_nic() == Nic("00:16:3e:aa:bb:01", "bridge", source="xenbr0", model="e1000", target="web0")
    assert spec.get("ip") == "10.0.0.2 10.0.0.3"
    assert xlspec.parse_vif("").to_nic() == Nic("", "bridge")
    with pytest.raises(UsageError, match="not a MAC address"):
        xlspec.parse_vif("mac=00:16:3e:zz:00:01")


def test_mapping_errors_name_the_line_and_the_entry() -> None:
    cases = {
        'name = "a"\n\nmemory = "lots"\n': "line 3: memory: 'lots' is not a number",
        'name = "a"\ntype = "kvm"\n': "line 2: type: 'kvm' is not one of pv, pvh, hvm",
        'name = "a"\non_crash = "explode"\n': "line 2: on_crash: 'explode' is not one of",
        'name = "a"\nuuid = "not-a-uuid"\n': "line 2: uuid: 'not-a-uuid' is not a UUID",
        'name = "a"\ndisk = ["phy:/dev/x,xvda,w",\n  "/dev/y"]\n': "line 2: disk: entry 2: disk spec '/dev/y': no vdev",
        'name = "a"\nvif = ["mac=1"]\n': "line 2: vif: entry 1: vif spec 'mac=1'",
        "memory = 5\n": "the guest has no name",
        'name = ["a", "b"]\n': "line 1: name: expected a single value",
    }
    for text, words in cases.items():
        with pytest.raises(UsageError) as e:
            xlcfg.guest_config(xlcfg.parse(text, "g.cfg"))
        assert words in str(e.value), text
        assert e.value.hint
        assert e.value.exit_code == 2


# ---- syntax: values as xl reads them ---------------------------------------------------------------------


def test_values_as_xl_reads_them() -> None:
    doc = xlcfg.parse(
        "a = 'single \"quoted\"'  # comment\n"
        'b = "tab\\there\\nnl \\x41 \\101 \\\\ \\" \\q"; c = 0x1f\n'
        "d = 017\n"
        "e = [ 1, 'two',\n   # a comment inside a list\n  \"three\",\n]\n"
        "f = []\n"
        "g = [[ 'nested' ], ['lists']]\n"
        "h = 9fa\n"
        "e += ['four']\n"
        'i = "con"\ni += "cat"\n'
        "j = 12"  # no newline at the end
    )
    assert doc.get("a") == 'single "quoted"'
    assert doc.get("b") == 'tab\there\nnl A A \\ " '  # xl drops unknown escapes such as \q
    assert doc.get("c") == 31
    assert doc.get("d") == 15  # a leading 0 means octal, as strtol reads it
    assert doc.get("e") == (1, "two", "three", "four")
    assert doc.get("f") == ()
    assert doc.get("g") == (("nested",), ("lists",))
    assert doc.get("h") == "9fa"  # xl keeps a malformed number as text; reading it as a number fails later
    assert doc.get("i") == "concat"
    assert doc.get("j") == 12
    assert doc.get("missing") is None
    assert doc.keys() == ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('name = "web"\nmemory = \n', 2, "expected a value"),
        ('name = "web"\n\nmemory 512\n', 3, "expected '=' after memory"),
        ('name = "web\nmemory = 5\n', 1, "has no closing"),
        ("disk = [ 'a',\n 'b'\n", 1, "has no closing ]"),
        ("disk = [\n", 1, "has no closing ]"),
        ("disk = [ 'a' 'b' ]\n", 1, "expected ',' or ']'"),
        ('name = "a" "b"\n', 1, "expected the end of the name setting"),
        ("Name = 'x'\n", 1, "unexpected 'N'"),
        ("x = 1\n\n\n= 5\n", 4, "expected a setting name"),
        ("a = 'x'\nb = 1 +\n", 2, "unexpected '+'"),
        ("a = 'bad \\x4 escape'\n", 1, "\\x needs two hex digits"),
    ],
)
def test_syntax_errors_are_one_line_with_the_line_number_and_a_hint(text: str, line: int, words: str) -> None:
    with pytest.raises(UsageError) as e:
        xlcfg.parse(text, "guest.cfg")
    message = str(e.value)
    assert message.startswith(f"guest.cfg line {line}: "), message
    assert words in message
    assert "\n" not in message
    assert e.value.hint


def test_python_looking_configs_get_the_xm_hint() -> None:
    with pytest.raises(UsageError) as e:
        xlcfg.parse("import os\nkernel = os.path.join('/boot', 'vmlinuz')\n")
    assert "line 2" in str(e.value)
    assert "xm" in e.value.hint


def test_lists_nested_too_deeply_are_refused() -> None:
    with pytest.raises(UsageError, match="nested too deeply"):
        xlcfg.parse("a = " + "[" * 100 + "]" * 100 + "\n")


# ---- fidelity: untouched documents render byte for byte, edits touch only their setting ---------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_render_exactly_as_read(path: Path) -> None:
    assert xlcfg.load(path).render() == path.read_text()


def test_bytes_that_are_not_utf8_survive_load_and_save(tmp_path: Path) -> None:
    data = b'# caf\xe9 in latin-1\nname = "a"\r\nextra = "x\xff"\n'
    src, dst = tmp_path / "in.cfg", tmp_path / "out.cfg"
    src.write_bytes(data)
    doc = xlcfg.load(src)
    xlcfg.save(doc, dst)
    assert dst.read_bytes() == data
    doc.set("memory", 256)
    xlcfg.save(doc, dst)
    assert dst.read_bytes() == data + b"memory = 256\n"


def test_set_rewrites_only_that_value_and_keeps_comments_and_spacing() -> None:
    doc = load("web.cfg")
    before = doc.render()
    doc.set("memory", 2048)
    doc.set("name", "web2.example.org")
    assert changed_lines(before, doc.render()) == [
        "-memory      = '1024'",
        "+memory      = 2048",
        "-name        = 'web.example.org'",
        '+name        = "web2.example.org"',
    ]
    assert xlcfg.guest_config(xlcfg.parse(doc.render())).memory_mib == 2048


def test_set_a_multiline_list_in_place() -> None:
    doc = load("web.cfg")
    doc.set("disk", ("format=raw, vdev=xvda2, access=rw, target=/dev/vg0/web2-disk",))
    text = doc.render()
    assert "'phy:/dev/vg0/web-swap,xvda1,w'" not in text
    assert "#  Disk device(s).\n#\nroot        = '/dev/xvda2 ro'\ndisk        = [\"format=raw" in text
    assert "#  Physical volumes" in text


def test_new_keys_go_at_the_end() -> None:
    doc = xlcfg.parse('# header\nname = "a"')  # no newline at the end
    doc.set("memory", 512)
    doc.set("vif", ("mac=00:16:3e:00:00:01,bridge=xenbr0",))
    assert doc.render() == '# header\nname = "a"\nmemory = 512\nvif = ["mac=00:16:3e:00:00:01,bridge=xenbr0"]\n'


def test_remove_takes_whole_lines_or_just_the_statement() -> None:
    doc = xlcfg.parse("# c1\na = 1  # about a\nb = 2; c = 3\nd = [\n  1,\n  2 ]\n# end\n")
    assert doc.remove("a")
    assert doc.remove("c")
    assert doc.remove("d")
    assert not doc.remove("zz")
    assert doc.render() == "# c1\nb = 2\n# end\n"
    doc = xlcfg.parse("a = 1; b = 2\n")
    doc.remove("a")
    assert doc.render() == "b = 2\n"


def test_set_on_a_key_given_several_times_keeps_one() -> None:
    doc = xlcfg.parse('extra = "a"\n# keep me\nextra += " b"\n')
    assert doc.get("extra") == "a b"
    doc.set("extra", "c")
    assert doc.render() == '# keep me\nextra = "c"\n'
    assert doc.get("extra") == "c"


def test_set_refuses_what_xl_could_not_read() -> None:
    doc = xlcfg.parse("")
    with pytest.raises(UsageError):
        doc.set("Memory", 5)
    with pytest.raises(UsageError):
        doc.set("extra", "nul\0")


def test_format_value() -> None:
    assert xlcfg.format_value('a "q" \\ \n') == '"a \\"q\\" \\\\ \\n"'
    assert xlcfg.format_value(("x", 1)) == '["x", 1]'
    long = tuple(f"format=raw, vdev=xvd{c}, access=rw, target=/dev/vg0/guest-{c}" for c in "ab")
    assert xlcfg.format_value(long).startswith('[\n    "format=raw, vdev=xvda')
    assert xlcfg.format_value(long).endswith('guest-b",\n]')


# Generated documents: every value form, spacing, comments, separators and line layouts xl accepts.
_keys = st.from_regex(r"[a-z][_0-9a-z]{0,8}", fullmatch=True)
_text = st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"]), max_size=12)
_ints = st.integers(0, 10**6)
_atoms = st.one_of(
    _text.map(lambda s: (s, xlcfg.format_value(s))),
    _text.filter(lambda s: not set(s) & set("'\\\n")).map(lambda s: (s, f"'{s}'")),
    _ints.map(lambda n: (n, str(n))),
    _ints.map(lambda n: (n, hex(n))),
)
_gap = st.sampled_from(["", " ", "  ", "\t", " \n ", "\n# c\n"])


@st.composite
def _values(draw: st.DrawFn) -> tuple[xlcfg.Value, str]:
    if draw(st.booleans()):
        return draw(_atoms)
    items = draw(st.lists(_atoms, max_size=4))
    gaps = [draw(_gap) for _ in range(len(items) + 1)]
    comma = draw(st.booleans())
    trailing = "," if items and comma else ""
    body = ",".join(g + raw for g, (_, raw) in zip(gaps, items, strict=False)) + trailing + gaps[-1]
    return tuple(v for v, _ in items), f"[{body}]"


@st.composite
def _documents(draw: st.DrawFn) -> tuple[str, dict[str, xlcfg.Value]]:
    parts: list[str] = []
    expected: dict[str, xlcfg.Value] = {}
    for _ in range(draw(st.integers(0, 6))):
        parts.append(draw(st.sampled_from(["", "\n", "# comment\n", "  \n", ";\n"])))
        key = draw(_keys)
        value, raw = draw(_values())
        sp1, sp2 = draw(st.sampled_from(["", " ", "\t"])), draw(st.sampled_from(["", " ", "   "]))
        end = draw(st.sampled_from(["\n", " # note\n", ";", "; ", "\r\n"]))
        parts.append(f"{key}{sp1}={sp2}{raw}{end}")
        expected[key] = value
    return "".join(parts), expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
def test_generated_documents_round_trip_and_read_back(case: tuple[str, dict[str, xlcfg.Value]]) -> None:
    text, expected = case
    doc = xlcfg.parse(text)
    assert doc.render() == text
    assert doc.values() == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(), _keys, _values())
def test_generated_edits_change_only_the_edited_key(
    case: tuple[str, dict[str, xlcfg.Value]], key: str, new: tuple[xlcfg.Value, str]
) -> None:
    text, expected = case
    doc = xlcfg.parse(text)
    doc.set(key, new[0])
    again = xlcfg.parse(doc.render())
    assert again.values() == {**expected, key: new[0]}
    again.remove(key)
    assert xlcfg.parse(again.render()).values() == {k: v for k, v in expected.items() if k != key}


# ---- fuzz: anything in gives a document or a UsageError, quickly -----------------------------------------

_SAMPLE_TEXTS = [p.read_text() for p in SAMPLES]


@st.composite
def _mutations(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_SAMPLE_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 8))
        text = text[:at] + draw(st.text(max_size=4)) + text[at + cut :]
    return text


def _read_any(text: str) -> None:
    error: UsageError | None = None
    try:
        doc = xlcfg.parse(text)
        doc.render()
        xlcfg.guest_config(doc)
    except UsageError as e:
        error = e
    if error is not None:
        assert "\n" not in error.message
        assert error.hint


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_mutations(), st.binary(max_size=200).map(lambda b: b.decode("utf-8", "surrogateescape"))))
def test_fuzzed_input_gives_a_config_or_a_usage_error(text: str) -> None:
    started = time.monotonic()
    _read_any(text)
    assert time.monotonic() - started < 0.5


def test_a_large_document_parses_fast() -> None:
    text = "".join(f'key{n} = [ "value {n}", {n}, 0x{n:x} ] # note\n' for n in range(5000))
    started = time.monotonic()
    doc = xlcfg.parse(text)
    assert doc.render() == text
    assert doc.values()["key4999"] == ("value 4999", 4999, 4999)
    assert time.monotonic() - started < 2


# ---- writing a GuestConfig into a document (clone) and fresh documents -----------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_applying_a_documents_own_config_changes_nothing(path: Path) -> None:
    doc = xlcfg.load(path)
    xlcfg.apply_config(doc, xlcfg.guest_config(doc))
    assert doc.render() == path.read_text()


def test_clone_renames_and_gives_new_disks_and_macs_keeping_the_rest() -> None:
    doc = load("web.cfg")
    before = doc.render()
    old = xlcfg.guest_config(doc)
    clone = GuestConfig(
        **{
            **{f: getattr(old, f) for f in old.__dataclass_fields__},
            "name": "web2.example.org",
            "uuid": "5d2c1f7e-0b6a-4e8f-9c3d-2a1b0c9d8e7f",
            "disks": (
                Disk("xvda2", DiskSource.BLOCK, "/dev/vg0/web2-disk", format="raw"),
                Disk("xvda1", DiskSource.BLOCK, "/dev/vg0/web2-swap", format="raw"),
            ),
            "nics": (Nic("00:16:3e:5c:21:0b", "bridge", source="xenbr0"),),
        }
    )
    xlcfg.apply_config(doc, clone)
    text = doc.render()
    got = xlcfg.guest_config(xlcfg.parse(text))
    assert got == GuestConfig(
        **{
            **{f: getattr(clone, f) for f in clone.__dataclass_fields__},
            "disks": tuple(Disk(d.target, d.source_kind, d.source, bus="xen", format="raw") for d in clone.disks),
        }
    )
    # The vif keeps its ip= and is written in key=value form; the comments and other settings stay.
    assert 'vif         = ["mac=00:16:3e:5c:21:0b,bridge=xenbr0,ip=192.168.1.20"]' in text
    assert '"format=raw, vdev=xvda2, access=rw, target=/dev/vg0/web2-disk"' in text
    assert text.count("#") == before.count("#")
    assert "kernel      = '/boot/vmlinuz-4.9.0-8-amd64'" in text
    assert "root        = '/dev/xvda2 ro'" in text  # untouched: the boot did not change
    assert 'uuid = "5d2c1f7e-0b6a-4e8f-9c3d-2a1b0c9d8e7f"\n' in text


def test_replacing_a_disk_keeps_its_unmodelled_parameters() -> None:
    doc = load("build-pvh.cfg")
    old = xlcfg.guest_config(doc)
    cache = Disk("xvdb", DiskSource.FILE, "/var/lib/xen/images/clone-cache.qcow2", format="qcow2")
    xlcfg.apply_config(
        doc,
        GuestConfig(
            **{
                **{f: getattr(old, f) for f in old.__dataclass_fields__},
                "disks": (old.disks[0], cache),
            }
        ),
    )
    disks = doc.get("disk")
    assert isinstance(disks, tuple)
    assert disks[0] == "format=raw, vdev=xvda, access=rw, target=/dev/vg0/build-root"
    assert (
        disks[1]
        == "format=qcow2, vdev=xvdb, access=rw, backendtype=qdisk, target=/var/lib/xen/images/clone-cache.qcow2"
    )


def test_changing_memory_vcpus_type_and_boot() -> None:
    doc = load("winxp-hvm.cfg")
    old = xlcfg.guest_config(doc)
    new = GuestConfig(
        **{
            **{f: getattr(old, f) for f in old.__dataclass_fields__},
            "type": GuestType.PVH,
            "memory_mib": 512,
            "max_memory_mib": 1024,
            "vcpus": 2,
            "max_vcpus": 2,
            "boot": Boot(BootKind.KERNEL, kernel="/boot/vmlinuz", initrd="/boot/initrd", cmdline="console=hvc0"),
            "on_crash": "destroy",
        }
    )
    xlcfg.apply_config(doc, new)
    text = doc.render()
    assert xlcfg.guest_config(xlcfg.parse(text)) == new
    assert "builder =" not in text
    assert "\nboot =" not in text
    assert 'vncpasswd = "s3cr\\"et\\\\"' in text  # unknown keys untouched


def test_new_document_from_libvirt_xml_maps_back_to_the_same_config() -> None:
    xml = """<domain type='xen'>
      <name>web1</name><uuid>0f3c2b1a-9e8d-4c7b-a6f5-e4d3c2b1a098</uuid>
      <memory unit='MiB'>1024</memory><currentMemory unit='KiB'>524288</currentMemory>
      <vcpu placement='static' current='1'>2</vcpu>
      <os><type arch='x86_64' machine='xenpv'>linux</type><kernel>/boot/vmlinuz</kernel>
        <initrd>/boot/initrd</initrd><cmdline>root=/dev/xvda1 ro</cmdline></os>
      <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>preserve</on_crash>
      <devices>
        <disk type='block' device='disk'><driver name='phy' type='raw'/><source dev='/dev/vg0/web1'/>
          <target dev='xvda' bus='xen'/></disk>
        <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/srv/boot.iso'/>
          <target dev='xvdc' bus='xen'/><readonly/></disk>
        <interface type='bridge'><mac address='00:16:3e:01:02:03'/><source bridge='xenbr0'/>
          <target dev='vif1.0'/></interface>
      </devices></domain>"""
    config = domxml.config_from_xml(xml)
    assert (config.name, config.type, config.memory_mib, config.max_memory_mib) == ("web1", GuestType.PV, 512, 1024)
    assert (config.vcpus, config.max_vcpus, config.on_crash) == (1, 2, "preserve")
    doc = xlcfg.new_document(config, header="web1, converted by dom0")
    text = doc.render()
    assert text.startswith('# web1, converted by dom0\nname = "web1"\n')
    assert xlcfg.guest_config(xlcfg.parse(text)) == config


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_new_document_of_each_sample_config_maps_back(path: Path) -> None:
    config = xlcfg.guest_config(xlcfg.load(path))
    assert xlcfg.guest_config(xlcfg.parse(xlcfg.new_document(config).render())) == config


def test_kvm_xml_is_hvm() -> None:
    xml = "<domain type='qemu'><name>k</name><memory>1048576</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    config = domxml.config_from_xml(xml)
    assert (config.type, config.memory_mib, config.max_memory_mib) == (GuestType.HVM, 1024, 1024)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ('name = "web1"\nmemory = 128\n', "web1"),
        ("# name = 'old'\n  name='db'\n", "db"),
        ("memory = 128\n", ""),
    ],
)
def test_cfg_name(text: str, name: str) -> None:
    assert (xlcfg.parse(text).get("name") or "") == name
