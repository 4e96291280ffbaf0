"""The `dom0` command: argument parsing and dispatch. Handlers are imported only when their command runs."""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from dom0 import __version__
from dom0.errors import Dom0Error

Handler = Callable[[argparse.Namespace], int]

DESCRIPTION = """\
See and control the guests of a Xen or KVM host, in words a non-expert on call can follow.
Guests are named by name, UUID or ID everywhere."""

EPILOG = """\
hypervisor: -c URI, else $DOM0_CONNECT, else $LIBVIRT_DEFAULT_URI, else xen:///system on a Xen host
with libvirtd, xl:// (Xen's own xl toolstack) on one without, else qemu:///system.  Examples:
  dom0 list --long web1          what xm list --long showed, explained
  dom0 top                       live CPU, memory, disk and network per guest (xentop's keys: B, N, D, S, Q)
  dom0 explain 5696              a Xen VBD number decoded: 22:64 = hdd
  dom0 support-bundle            save everything the admin will want, before you reboot or destroy
  dom0 image inspect disk.img    partitions, filesystems, LVM and the OS inside, without mounting
  dom0 image extract disk.img --partition 1 -o root.img   a partition as a whole-disk image
  dom0 publish add 203.0.113.10:443 web   a public address:port forwarded to a guest (then: publish apply)
  dom0 net check                 bonds and bridges checked for what is known to fail, with the fix"""


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_wait_lock(p: argparse.ArgumentParser) -> None:
    """A command that changes a guest holds its lock for the whole run; another run's lock is waited for, or not."""
    p.add_argument(
        "--wait-lock",
        nargs="?",
        type=float,
        const=math.inf,
        default=None,
        metavar="SECONDS",
        help="when another dom0 run is changing the guest, wait for it (for ever, or SECONDS) instead of refusing",
    )


class _Unused:
    """Stands for the parser of a command that is not being run: whatever is added to it is dropped."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return lambda *args, **kwargs: self


def build_parser(only: str | None = None, verb: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; each subcommand names its handler as 'module:function'.

    With `only`, just that command gets its options: argparse formats and translates every option as it is added,
    about 20 ms for all of them, which `dom0 list` would pay on every run for commands it does not run. With `verb`
    too, `image` gives only that verb its options (its six verbs' options were ~6 ms of each `image inspect`).
    """
    parser = argparse.ArgumentParser(
        prog="dom0",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-c", "--connect", metavar="URI", help="hypervisor URI (see below)")
    parser.add_argument("--debug", action="store_true", help="log every hypervisor call and external command")
    parser.add_argument("--version", action="version", version=f"dom0 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: str, help: str) -> argparse.ArgumentParser:
        if only not in (None, name):
            return cast(argparse.ArgumentParser, _Unused())
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = command("list", "dom0.cli.see:cmd_list", "list guests like `xm list`, with states in words")
    p.add_argument("guests", nargs="*", metavar="GUEST", help="only these guests")
    p.add_argument("-a", "--all", action="store_true", help="include guests that are defined but not running")
    p.add_argument("-l", "--long", action="store_true", help="disks, NICs, boot method, autostart (xm list --long)")
    _add_json(p)

    p = command("top", "dom0.cli.top:cmd_top", "live CPU, memory, disk and network use per guest, like xentop")
    p.add_argument("-b", "--batch", action="store_true", help="print samples instead of a live screen")
    p.add_argument("-n", "--iterations", type=int, metavar="N", help="stop after N samples (batch default: 1)")
    p.add_argument("-d", "--delay", type=float, default=2.0, metavar="SECONDS", help="seconds between samples")
    p.add_argument("guests", nargs="*", metavar="GUEST", help="only these guests")
    _add_json(p)
    p.epilog = (
        "keys on the live screen, as in xentop (either case): B disks, N networks, D delay (asks for seconds), "
        "S sort by the next column, R repeat the header before each guest, Up/Down/PgUp/PgDn scroll, Q or Esc "
        "quit. xentop's V (per-VCPU times) is not here: dom0 measures each guest's CPU as a whole."
    )

    _add_memory(sub if only in (None, "mem") else cast(Any, _Unused()), command)

    p = command("explain", "dom0.cli.explain:cmd_explain", "explain a state letter, a Xen VBD number or a device")
    p.add_argument("word", metavar="WORD", help="r b p s c d, '-b----', 5696, 0x1640, 22:64, hdd, xvda1")
    _add_json(p)

    _add_control(command)

    p = command("console", "dom0.cli.console:cmd_console", "attach to a guest's serial console (Ctrl-] detaches)")
    p.add_argument("guest", metavar="GUEST")

    p = command("dmesg", "dom0.cli.support:cmd_dmesg", "the hypervisor's log, or a guest's console and libvirt log")
    p.add_argument("guest", nargs="?", metavar="GUEST", help="show this guest's logs instead")
    _add_json(p)

    p = command(
        "support-bundle",
        "dom0.cli.support:cmd_support_bundle",
        "save host facts, every guest's state, definitions and logs in one tar.gz (do this before a reboot)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="where to write it (default: dom0-support-HOST-TIME.tar.gz)")
    _add_json(p)

    _add_saves(command)
    _add_completion(command)

    _add_clone(command)
    _add_transfer(command)
    if only in (None, "host"):
        _add_host(sub)
    if only in (None, "image"):
        _add_image(sub, verb if only == "image" else None)
    if only in (None, "publish"):
        _add_publish(sub)
    if only in (None, "net"):
        _add_net(sub)
    if only in (None, "memlock"):
        _add_memlock(sub)
    return parser


def _add_memlock(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`dom0 memlock VERB`: the support login path locked in RAM (memlockd's configuration format)."""
    text = "keep sshd, a shell and the repair tools in RAM when the host pages (memlockd's config format)"
    memlock = sub.add_parser("memlock", help=text, description=text)
    verbs = memlock.add_subparsers(dest="memlock_command", metavar="VERB", required=True)
    config_help = "memlockd config file or directory of *.cfg (default: /etc/memlockd.cfg, else dom0's own)"
    p = verbs.add_parser("run", help="the daemon: map and lock the configured files, follow replaced ones")
    p.set_defaults(handler="dom0.cli.memlock:cmd_run")
    p.add_argument("-c", "--config", metavar="CONFIG", help=config_help)
    p.add_argument(
        "--max-share", type=float, default=0.05, metavar="FRACTION", help="lock at most this share of RAM (0.05)"
    )
    p.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help="how often replaced files are looked for")
    p.add_argument("--state", metavar="FILE", help="where status is published (default /run/dom0/memlock.json)")
    p = verbs.add_parser("status", help="what the running daemon holds: locked and resident bytes, stale mappings")
    p.set_defaults(handler="dom0.cli.memlock:cmd_status")
    p.add_argument("--state", metavar="FILE", help="the daemon's state file (default /run/dom0/memlock.json)")
    _add_json(p)
    p = verbs.add_parser("check", help="expand the config (includes, + libraries) and show what would be locked")
    p.set_defaults(handler="dom0.cli.memlock:cmd_check")
    p.add_argument("-c", "--config", metavar="CONFIG", help=config_help)
    _add_json(p)


def _add_publish(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`dom0 publish VERB`: private guests on the host's public addresses, through one nftables table of dom0's."""
    text = "publish guests' ports on the host's public addresses (DNAT in dom0's own nftables table)"
    publish = sub.add_parser("publish", help=text, description=text)
    verbs = publish.add_subparsers(dest="publish_command", metavar="VERB", required=True)

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        # editing the table (add, remove) and acting on it (list, apply, check, proxy) are two modules
        module = "publish" if name in ("add", "remove") else "publish_rules"
        p = verbs.add_parser(name, help=help, description=help)
        p.set_defaults(handler=f"dom0.cli.{module}:cmd_{name}")
        p.add_argument("-f", "--file", metavar="FILE", help="the publish table (default /etc/dom0/publish.toml)")
        return p

    p = verb("add", "add an entry: PUBLIC_IP:PORT[-PORT][/tcp|/udp] -> GUEST[:PORT]")
    p.add_argument("public", metavar="PUBLIC_IP:PORT[/PROTO]", help="e.g. 203.0.113.10:443/tcp or [2001:db8::1]:80")
    p.add_argument("guest", metavar="GUEST[:PORT]", help="the guest (name or UUID) and its port (default: the same)")
    p.add_argument("--to", metavar="GUEST_IP", help="the guest's address, instead of asking the hypervisor")
    _add_json(p)
    p = verb("remove", "remove entries: by PUBLIC_IP:PORT[/PROTO], or every entry of a GUEST")
    p.add_argument("what", nargs="+", metavar="PUBLIC_IP:PORT|GUEST")
    _add_json(p)
    p = verb("list", "the table, each entry's guest address now, and whether the applied rules are stale")
    _add_json(p)
    p = verb("apply", "make dom0's nftables table match publish.toml, in one transaction")
    p.add_argument("-n", "--dry-run", action="store_true", help="print the exact ruleset and what changes")
    _add_json(p)
    p = verb("check", "connect to each entry's guest port from the host, and say which do not answer")
    p.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS", help="per entry (2)")
    _add_json(p)
    p = verb("proxy", "print reverse-proxy configuration for the table instead of DNAT (haproxy or squid)")
    p.add_argument("--format", dest="proxy_format", choices=("haproxy", "squid"), default="haproxy")


def _add_net(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`dom0 net VERB`: the host's bridges and bonds, checked and planned."""
    text = "the host's bridges and bonds: check for combinations known to fail, plan a working one"
    net = sub.add_parser("net", help=text, description=text)
    verbs = net.add_subparsers(dest="net_command", metavar="VERB", required=True)
    p = verbs.add_parser("check", help="flag bond/bridge settings known to fail, with why and the fix")
    p.set_defaults(handler="dom0.cli.net:cmd_check")
    p.add_argument("--root", metavar="DIR", default="/", help="read the configuration files under DIR (default /)")
    p.add_argument("--no-live", action="store_true", help="only the configuration files, not the running state")
    _add_json(p)
    p = verbs.add_parser("plan", help="print a bridge (over a bond when several NICs) in the host's format")
    p.set_defaults(handler="dom0.cli.net:cmd_plan")
    p.add_argument("--bridge", required=True, metavar="NAME", help="the bridge guests attach to, e.g. xenbr0")
    p.add_argument("--uplink", required=True, metavar="NIC[,NIC...]", help="the physical NICs (two or more: a bond)")
    p.add_argument(
        "--bond-mode",
        default="active-backup",
        choices=("active-backup", "balance-rr", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"),
        help="bonding mode (active-backup: needs nothing from the switch; 802.3ad: LACP on the switch)",
    )
    p.add_argument("--bond", default="bond0", metavar="NAME", help="the bond's name (bond0)")
    p.add_argument(
        "--format", dest="net_format", choices=("ifupdown", "networkd", "netplan"), help="default: what the host uses"
    )
    p.add_argument("--address", metavar="ADDR/PREFIX", help="the host's address on the bridge (default: DHCP)")
    p.add_argument("--gateway", metavar="IP", help="default gateway (with --address)")
    p.add_argument("--root", metavar="DIR", default="/", help="the host's files are under DIR (default /)")
    p.add_argument("--write", action="store_true", help="install it, keeping a backup of each file it replaces")
    _add_json(p)


def _add_memory(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[[str, str, str], argparse.ArgumentParser],
) -> None:
    text = "each guest's memory as it uses it (balloon statistics), the host's, and a verdict in words"
    mem = sub.add_parser("mem", help=text, description=text + "; `dom0 mem set GUEST SIZE` moves a balloon")
    mem.set_defaults(handler="dom0.cli.memory:cmd_mem")
    mem.add_argument("guests", nargs="*", metavar="GUEST", help="only these guests")
    mem.add_argument("-w", "--watch", type=float, metavar="SECONDS", help="read again every SECONDS until Ctrl-C")
    mem.add_argument(
        "--sample", type=float, default=1.0, metavar="SECONDS", help="time between the two readings rates come from"
    )
    mem.add_argument("--force", action="store_true", help="mem set: go below what the guest reports as used")
    mem.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="mem set: how long to wait for the balloon (30)"
    )
    _add_wait_lock(mem)
    _add_json(mem)

    p = command(
        "plan", "dom0.cli.memory:cmd_plan", "how many more guests fit, who can give memory back, who needs more"
    )
    p.add_argument(
        "--guest-memory", metavar="SIZE", help="size of one more guest (default: the median guest's maximum)"
    )
    p.add_argument("--reserve", metavar="SIZE", help="memory kept for dom0 (default: its measured use + 25%%, >= 256M)")
    _add_json(p)

    p = command("doctor", "dom0.cli.doctor:cmd_doctor", "find what is wrong (or about to be): OOM kills, paging, ...")
    p.add_argument("guests", nargs="*", metavar="GUEST", help="only these guests (the host is always checked)")
    p.add_argument(
        "--save-dir", metavar="DIR", help="the save directory to check (default: host.toml's, else /var/lib/dom0/save)"
    )
    p.add_argument("--config", metavar="FILE", help="host settings naming the guests to run (/etc/dom0/host.toml)")
    _add_json(p)


def _add_host(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "host shutdown and boot: save every guest in parallel, restore them all (a systemd unit runs these)"
    host = sub.add_parser("host", help=text, description=text)
    verbs = host.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, help in (
        ("stop", "save every running guest (orderly shutdown if it cannot be saved; never destroy)"),
        ("start", "restore every saved guest, then start the guests marked to start at boot"),
    ):
        p = verbs.add_parser(verb, help=help, description=help)
        p.set_defaults(handler=f"dom0.cli.host:cmd_host_{verb}")
        p.add_argument("guests", nargs="*", metavar="GUEST", help="only these guests (default: all)")
        p.add_argument("--config", metavar="FILE", help="settings and per-guest exceptions (/etc/dom0/host.toml)")
        p.add_argument("-d", "--dir", metavar="DIR", help="image directory (overrides the config's save.directory)")
        p.add_argument("-n", "--dry-run", action="store_true", help="show what would happen, change nothing")
        _add_wait_lock(p)
        _add_json(p)


def _add_control(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    p = command("create", "dom0.cli.control:cmd_create", "start a guest from a libvirt XML file (not kept defined)")
    p.add_argument("file", metavar="FILE", help="libvirt domain XML; on Xen also an xl.cfg or old xm config")
    p.add_argument("--console", action="store_true", help="attach to its console once started (like xm create -c)")
    _add_json(p)

    for verb, text in (
        ("start", "start a defined guest"),
        ("reboot", "ask a guest to reboot"),
        ("pause", "pause a guest: it keeps its memory but gets no CPU"),
        ("resume", "let a paused guest run again"),
    ):
        p = command(verb, "dom0.cli.control:cmd_simple", text)
        p.add_argument("guest", metavar="GUEST")
        _add_wait_lock(p)
        _add_json(p)

    p = command("shutdown", "dom0.cli.control:cmd_shutdown", "ask a guest for an orderly shutdown")
    p.add_argument("guest", metavar="GUEST")
    p.add_argument("-w", "--wait", action="store_true", help="wait until it has stopped")
    p.add_argument("-t", "--timeout", type=float, default=300.0, metavar="S", help="how long --wait waits (300)")
    _add_wait_lock(p)
    _add_json(p)

    p = command("destroy", "dom0.cli.control:cmd_destroy", "stop a guest at once, like pulling its power cord")
    p.add_argument("guest", metavar="GUEST")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask (needed when not on a terminal)")
    _add_wait_lock(p)
    _add_json(p)


def _add_completion(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    p = command(
        "completion",
        "dom0.cli.completion:cmd_completion",
        "print the bash or zsh completion script (commands, options, guest names), generated from these options",
    )
    p.add_argument("shell", choices=("bash", "zsh"), metavar="bash|zsh")
    p.set_defaults(parser_factory=build_parser)  # cli modules do not import main: the script's source is passed


def _add_clone(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    p = command(
        "clone", "dom0.cli.clone:cmd_clone", "copy a guest, running or not, with its own name, MACs and identity"
    )
    p.add_argument("source", metavar="SOURCE", help="the guest to copy")
    p.add_argument("new", metavar="NEW", help="the clone's name")
    p.add_argument("--hostname", metavar="H", help="the clone's hostname (written inside its filesystem)")
    p.add_argument("--ip", metavar="ADDR/PREFIX", help="the clone's static IPv4 address, in the guest's own format")
    p.add_argument("--gateway", metavar="GW", help="its default gateway (with --ip)")
    p.add_argument("--mac", action="append", metavar="auto|MAC", help="MAC per NIC, in order (default: new ones)")
    p.add_argument("--memory", type=int, metavar="MIB", help="the clone's memory")
    p.add_argument("--vcpus", type=int, metavar="N", help="the clone's virtual CPUs")
    p.add_argument(
        "--mode",
        choices=("auto", "snapshot", "reflink", "overlay", "copy"),
        default="auto",
        help="how disks are copied (auto: LV snapshot, reflink, or a copy when the source is stopped or paused)",
    )
    p.add_argument("--pause", action="store_true", help="pause the source while its disks are copied")
    p.add_argument("--offline", action="store_true", help="require the source to be shut off")
    p.add_argument("-n", "--dry-run", action="store_true", help="print the plan, change nothing")
    _add_wait_lock(p)
    _add_json(p)


def _add_transfer(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    p = command("export", "dom0.cli.transfer:cmd_export", "write a guest (definition, compressed disks) to DIR/NAME")
    p.add_argument("guest", metavar="GUEST")
    p.add_argument("dir", metavar="DIR", help="where DIR/NAME/ is written (it must not exist)")
    p.add_argument("--pause", action="store_true", help="export a running guest, paused while its disks are read")
    _add_wait_lock(p)
    _add_json(p)
    p = command("import", "dom0.cli.transfer:cmd_import", "define a guest from a `dom0 export` directory")
    p.add_argument("dir", metavar="DIR", help="the exported DIR/NAME directory")
    p.add_argument("--name", metavar="N", help="a new name (then also a new UUID and MACs)")
    p.add_argument("--storage", metavar="DIR|VG", help="where the disks go (default /var/lib/libvirt/images)")
    p.add_argument(
        "--boot-dir",
        metavar="DIR",
        action="append",
        default=[],
        help="keep a kernel/initrd the definition names when it is a file of this host in DIR (repeatable)",
    )
    p.add_argument("-n", "--dry-run", action="store_true", help="check the export and show the plan")
    _add_wait_lock(p)
    _add_json(p)


def _add_saves(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    from dom0.saves import DEFAULT_DIRECTORY

    p = command("save", "dom0.cli.saves:cmd_save", "save guests' memory to compressed images, in parallel")
    p.add_argument("guests", nargs="*", metavar="GUEST", help="guests to save")
    p.add_argument("-a", "--all", action="store_true", help="every running or paused guest")
    p.add_argument(
        "-d", "--dir", default=str(DEFAULT_DIRECTORY), metavar="DIR", help=f"where (default {DEFAULT_DIRECTORY})"
    )
    p.add_argument("--compress", choices=("zstd", "lz4", "gzip", "none"), default="zstd", help="compressor (zstd)")
    p.add_argument("--level", type=int, metavar="N", help="compression level (zstd 2, gzip 3, lz4 0)")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="guests saved at once (default: two per core)")
    p.add_argument("--replace", action="store_true", help="replace a guest's older image once the new one is complete")
    p.add_argument("-n", "--dry-run", action="store_true", help="show what would be saved, change nothing")
    _add_wait_lock(p)
    _add_json(p)

    p = command("restore", "dom0.cli.saves:cmd_restore", "restore saved guests, checking each image first")
    p.add_argument("files", nargs="*", metavar="FILE", help="NAME.manifest.json or the image beside it")
    p.add_argument("-a", "--all", metavar="DIR", help="every image in DIR")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="guests restored at once (default: two per core)")
    p.add_argument("-p", "--paused", action="store_true", help="leave the guests paused")
    p.add_argument("-k", "--keep", action="store_true", help="keep the images after the guests run again")
    p.add_argument("-n", "--dry-run", action="store_true", help="check the images and show what would happen")
    _add_wait_lock(p)
    _add_json(p)


def _add_image(sub: argparse._SubParsersAction[argparse.ArgumentParser], only: str | None = None) -> None:
    """`dom0 image VERB`: disk images read as bytes (no mounts, no helper VM, no root for image files); with `only`,
    the other verbs are listed without their options."""
    text = "inspect, cut out, wrap and copy kernels from disk images, without mounting them"
    image = sub.add_parser("image", help=text, description=text)
    verbs = image.add_subparsers(dest="image_command", metavar="VERB", required=True)

    def verb(name: str, handler: str, help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        if only not in (None, name):
            return cast(argparse.ArgumentParser, _Unused())
        # What an image's own header may not decide: its format, and which host directories hold its bases.
        p.add_argument(
            "--format", dest="image_format", choices=("raw", "qcow2"), help="what the image is (default: detect)"
        )
        p.add_argument(
            "--backing-dir",
            dest="backing_dirs",
            action="append",
            default=[],
            metavar="DIR",
            help="qcow2 base images may also be read from DIR (default: only the image's own directory)",
        )
        return p

    p = verb(
        "inspect",
        "dom0.cli.image:cmd_inspect",
        "partition table, partitions, filesystems, LVM and operating systems of an image, device, directory or "
        "guest; several (or --all) as one table, a row per guest",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="raw or qcow2 image, block device (an LV), directory tree, or guest name/UUID; several: one table",
    )
    p.add_argument("-a", "--all", action="store_true", help="every guest of the host (running ones read as they are)")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="images read at once (default: one per idle CPU)")
    p.add_argument(
        "--applications",
        action="store_true",
        help="also list the installed packages (name, version, release, epoch, arch, source, summary) from the "
        "guest's own dpkg, rpm, apk or pacman database; one image or directory",
    )
    p.add_argument(
        "--diff",
        action="store_true",
        help="two targets A B (images, directories or guests): packages added, removed and changed from A to B",
    )
    _add_json(p)

    p = verb("extract", "dom0.cli.image:cmd_extract", "write one partition's or LV's filesystem as a whole-disk image")
    p.add_argument("image", metavar="IMAGE", help="partitioned raw or qcow2 image, or block device")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--partition", type=int, metavar="N", help="partition number (logical ones from 5)")
    which.add_argument("--lv", metavar="VG/LV", help="LVM logical volume")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="new file to write (never overwritten)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (source range, target, size) only")
    _add_json(p)

    p = verb("wrap", "dom0.cli.image:cmd_wrap", "put a whole-disk filesystem into partition 1 of a new disk image")
    p.add_argument("filesystem", metavar="FS", help="whole-disk filesystem image")
    p.add_argument("-o", "--output", required=True, metavar="DISK", help="new disk image to write (never overwritten)")
    p.add_argument("--table", choices=("mbr", "gpt"), default="mbr", help="partition table (default mbr)")
    p.add_argument("--start-sector", type=int, default=2048, metavar="N", help="where partition 1 starts (2048)")
    p.add_argument("--dry-run", action="store_true", help="print the plan only")
    _add_json(p)

    p = verb(
        "adapt",
        "dom0.cli.adapt:cmd_adapt",
        "fit a guest to the hypervisor it moves to: console, NIC driver, disk names, SELinux, kernel (P2V)",
    )
    p.add_argument("target", metavar="TARGET", help="image (raw, qcow2), block device (an LV), or a shut-off guest")
    p.add_argument(
        "--for",
        dest="hypervisor",
        required=True,
        choices=("xen-pv", "xen-pvh", "xen-hvm", "kvm"),
        help="where it boots",
    )
    p.add_argument("-n", "--dry-run", action="store_true", help="print the plan (each file, before -> after, why)")
    _add_wait_lock(p)
    _add_json(p)

    p = verb(
        "hints",
        "dom0.cli.adapt:cmd_hints",
        "stubs for other families' package tools (apt-get on Fedora says: use yum), only where the real one is absent",
    )
    p.add_argument("target", metavar="TARGET", help="image (raw, qcow2), block device (an LV), or a shut-off guest")
    p.add_argument("--remove", action="store_true", help="take out exactly the stubs dom0 installed")
    p.add_argument("-n", "--dry-run", action="store_true", help="print what would be written or removed")
    _add_json(p)

    p = verb(
        "kernel",
        "dom0.cli.image_kernel:cmd_kernel",
        "copy the guest's newest kernel and initrd out of its /boot, and print the boot lines for it",
    )
    p.add_argument("image", metavar="IMAGE", help="raw or qcow2 image, block device, or directory tree")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to copy them into")
    p.add_argument("--sync", action="store_true", help="copy only when they changed (for after each guest upgrade)")
    p.add_argument("--version", dest="kernel_version", metavar="VERSION", help="this kernel version, not the newest")
    _add_json(p)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return cast(dict[str, argparse.ArgumentParser], action.choices)
    return {}


def _resolve(spec: str) -> Handler:
    module, _, func = spec.partition(":")
    handler: Handler = getattr(importlib.import_module(module), func)
    return handler


def _backend_errors() -> tuple[type[Exception], ...]:
    """libvirt's error class once a command has loaded it (the hypervisor layer is imported only then)."""
    if "dom0.hypervisor" not in sys.modules:
        return ()
    from dom0.hypervisor import backend_errors

    return backend_errors()


def _command_word(argv: Sequence[str]) -> str | None:
    """The command a command line runs when only -c URI and --debug, spelt out, come before it; None for any
    other start (--help, an abbreviated option, a URI that looks like an option), which the whole parser reads."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-c", "--connect"):
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None
            i += 2
        elif word == "--debug" or word.startswith("--connect=") or (word.startswith("-c") and word[2:3] != "-"):
            i += 1
        else:
            return None if word.startswith("-") else word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dom0` console script."""
    words = sys.argv[1:] if argv is None else argv
    command = _command_word(words)
    after = words[words.index(command) + 1 :] if command is not None else []
    if command == "__complete-guests":  # a Tab asking for guest names: no parser to build, answered at once
        return _resolve("dom0.cli.completion:cmd_complete_guests")(argparse.Namespace(words=list(after)))
    verb = after[0] if after else None
    parser = build_parser(command, verb)
    commands = _subcommands(parser)
    verbs = _subcommands(commands[command]) if command in commands else {}
    if command is not None and (command not in commands or (verbs and verb not in verbs)):
        parser = build_parser()  # not a command (or verb): the whole parser says so and lists them
    args = parser.parse_args(words)
    # After parsing, so `dom0 --help` loads no more than the parser.
    from dom0.cli.session import print_error

    if args.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(message)s", stream=sys.stderr)
    # Without --debug nothing is set up: a record of WARNING or above then reaches Python's last-resort handler,
    # which prints its message alone on stderr, as logging.basicConfig(format="%(message)s") would. Importing
    # logging costs ~10 ms that `dom0 list` would pay on every run; commands that log load it (dom0.run does).
    try:
        return _resolve(args.handler)(args)
    except Dom0Error as exc:
        print_error(exc.message, exc.hint)
        return exc.exit_code
    except _backend_errors() as exc:
        if args.debug:
            raise  # --debug shows where it came from
        reason = (str(exc).strip().splitlines() or ["no reason given"])[0]
        print_error(
            f"the hypervisor failed unexpectedly: {reason}",
            "run again with --debug for the details, and report it if it persists",
        )
        return 1
    except KeyboardInterrupt:
        print_error("interrupted", failed=False)
        return 130
    except BrokenPipeError:
        return 0
