"""The manual pages: generated from the parser dom0 itself uses, rendered by man(1) without a warning, listing
every command and option; the hand-written section-5 pages name every key their file's reader accepts."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dom0.cli.main import build_parser
from dom0.cli.manpage import Page, pages, references
from dom0.memlock import config as memlock_config
from dom0.publish import table as publish_table
from dom0.saves import hostconfig
from dom0.saves.codec import Compression

REPO = Path(__file__).resolve().parents[3]
MAN5 = REPO / "man"


def _render(path: Path) -> str:
    """The page as `man -l` shows it on an 80-column terminal; fails on any warning man or groff gives."""
    env = {**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(
        ["man", "--warnings", "-l", str(path)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"{path.name}: {proc.stderr}"
    groff = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert groff.stderr == "", f"{path.name}: {groff.stderr}"
    # man pipes through col -b when not on a terminal; drop any overstrike left, and undo line-end hyphenation.
    text = re.sub(r".\x08", "", proc.stdout)
    return re.sub(r"\u2010\n\s*", "", text).replace("\u2010", "-")


def _written(tmp_path: Path, parser: argparse.ArgumentParser | None = None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for page in pages(parser or build_parser(), date="2026-01-01", version="0.0"):
        path = tmp_path / page.name
        path.write_text(page.text)
        out[page.name] = path
    return out


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("man")
    return {name: _render(path) for name, path in _written(directory).items()}


def test_dom0_1_lists_every_command_and_verb_with_its_help(rendered: dict[str, str]) -> None:
    page = _flat(rendered["dom0.1"])
    for name, sub in _commands(build_parser()).items():
        assert f"dom0 {name}" in page
        assert f"dom0-{name}(1)" in page
        assert f"dom0-{name}.1" in rendered
        for verb in _commands(sub):
            assert f" {verb} " in page
    for section in ("SYNOPSIS", "OPTIONS", "COMMANDS", "ENVIRONMENT", "EXIT STATUS", "FILES", "SEE ALSO"):
        assert f"\n{section}\n" in rendered["dom0.1"]
    for variable in ("DOM0_CONNECT", "LIBVIRT_DEFAULT_URI", "DOM0_LOCK_DIR"):
        assert variable in page
    assert "--connect URI" in page


def test_every_option_of_every_command_is_on_its_page(rendered: dict[str, str]) -> None:
    def walk(parser: argparse.ArgumentParser, page: str) -> None:
        for action in parser._actions:
            for option in action.option_strings:
                assert option in page, f"{option} of {parser.prog} is not on its page"
        for sub in _commands(parser).values():
            assert sub.prog in page
            walk(sub, page)

    for name, sub in _commands(build_parser()).items():
        walk(sub, _flat(rendered[f"dom0-{name}.1"]))


def test_top_page_says_xentops_keys(rendered: dict[str, str]) -> None:
    page = _flat(rendered["dom0-top.1"])
    assert "B disks, N networks, D delay" in page


def test_a_new_command_gets_its_page_without_touching_the_generator(tmp_path: Path) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    new = sub.add_parser("frobnicate", help="frobnicate every guest at once")
    new.add_argument("--gently", action="store_true", help="one at a time")
    verbs = new.add_subparsers(dest="verb", metavar="VERB")
    verbs.add_parser("twice", help="and again").add_argument("--count", type=int, metavar="N", help="how often")
    written = _written(tmp_path, parser)
    main = _flat(_render(written["dom0.1"]))
    assert "dom0 frobnicate frobnicate every guest at once" in main
    assert "dom0-frobnicate(1)" in main
    page = _flat(_render(written["dom0-frobnicate.1"]))
    assert "--gently one at a time" in page
    assert "dom0 frobnicate twice" in page
    assert "--count N how often" in page


def test_hostile_help_text_cannot_inject_roff(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="dom0", description="d")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("odd", help=".TH EVIL 1\n'br \\fBbold\\fR \u00e9t\u00e9")
    p.add_argument("--x", help=".SH INJECTED")
    written = _written(tmp_path, parser)
    page = _render(written["dom0-odd.1"])
    assert "INJECTED" in page
    assert "\nINJECTED" not in page  # text, not a section heading
    assert "\\fBbold\\fR" in page
    assert "\u00e9t\u00e9" in page


def test_make_man_writes_every_page(tmp_path: Path) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1767225600"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "manpages.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert {"dom0.1", "dom0-top.1", "dom0-image.1", "dom0-host.toml.5", "dom0-publish.toml.5"} <= names
    assert "dom0-memlock.conf.5" in names
    assert '"2026-01-01"' in (tmp_path / "dom0.1").read_text()
    # every dom0 page a page refers to is there
    for path in tmp_path.iterdir():
        page = Page(path.name, path.read_text())
        for ref in references(page):
            name, section = ref[:-1].split("(")
            if name.startswith("dom0"):
                assert f"{name}.{section}" in names, f"{path.name} refers to {ref}, which is not written"


@pytest.mark.parametrize("path", sorted(MAN5.glob("*.5")), ids=lambda p: p.name)
def test_config_pages_render_without_warnings(path: Path) -> None:
    _render(path)


def test_host_toml_page_names_every_section_key_and_choice() -> None:
    page = _flat(_render(MAN5 / "dom0-host.toml.5"))
    for section, keys in hostconfig._KEYS.items():
        assert f"[{section}" in page
        for key in keys or ():
            assert f"{key} = " in page, key
    assert "on_stop = " in page
    for choice in [*hostconfig.OnStop, *Compression]:
        assert choice.value in page


def test_publish_toml_page_names_every_key() -> None:
    page = _flat(_render(MAN5 / "dom0-publish.toml.5"))
    assert "[[publish]]" in page
    for key in publish_table._KEYS:
        assert f"{key} = " in page, key


def test_memlock_page_names_every_line_prefix() -> None:
    page = _render(MAN5 / "dom0-memlock.conf.5")
    # the prefixes config.py's reader takes: + ? ! before a path, % include, # comment
    for prefix in ("+", "?", "!", "%path", "#"):
        assert re.search(rf"^ {{7}}{re.escape(prefix)}\s", page, re.M), prefix
    assert f"at most {memlock_config.INCLUDE_DEPTH} deep" in _flat(page)
