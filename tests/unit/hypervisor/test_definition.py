"""A guest definition's format, told from its text: libvirt domain XML or xl.cfg."""

from __future__ import annotations

import pytest

from dom0.hypervisor.definition import DefinitionFormat, definition_format


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("<domain type='kvm'><name>web</name></domain>", DefinitionFormat.LIBVIRT_XML),
        ("\n  <?xml version='1.0'?>\n<domain/>", DefinitionFormat.LIBVIRT_XML),
        ("<!-- edited by hand -->\n<domain/>", DefinitionFormat.LIBVIRT_XML),
        ('name = "web"\n', DefinitionFormat.XL_CFG),
        ('kernel = "/boot/vmlinuz"\nname = "web"\n', DefinitionFormat.XL_CFG),
        ('\nmemory = 512\nname = "web"\n', DefinitionFormat.XL_CFG),
        ("# web\nname = 'web'\n", DefinitionFormat.XL_CFG),
    ],
)
def test_the_definition_format_is_told_from_the_text(text: str, fmt: DefinitionFormat) -> None:
    assert definition_format(text) is fmt
