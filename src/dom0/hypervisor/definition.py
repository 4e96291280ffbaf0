"""A guest definition's format: libvirt's domain XML or xl's own config file, told apart in this one place."""

from __future__ import annotations

from enum import StrEnum

from dom0.hypervisor.protocol import Hypervisor


def is_xl_uri(uri: str) -> bool:
    """Whether the URI names Xen's native xl toolstack (xl://, xl:///) rather than a libvirt driver."""
    return uri == "xl" or uri.startswith("xl:")


class DefinitionFormat(StrEnum):
    """The two kinds of guest definition dom0 copies; the value is the file extension an export gives it."""

    LIBVIRT_XML = "xml"  # libvirt's domain XML (QEMU/KVM, Xen's libxl driver, test://)
    XL_CFG = "cfg"  # xl's own config file, on xl://

    @property
    def file_name(self) -> str:
        """The definition's file name in an export directory."""
        return f"definition.{self.value}"

    @classmethod
    def named(cls, file_name: str) -> DefinitionFormat:
        """The format an export's definition file declares by its name; ValueError for a name export never writes."""
        for fmt in cls:
            if fmt.file_name == file_name:
                return fmt
        raise ValueError(file_name)

    @property
    def words(self) -> str:
        """How messages name the format."""
        return "a libvirt domain XML" if self is DefinitionFormat.LIBVIRT_XML else "an xl.cfg"


def definition_format(text: str) -> DefinitionFormat:
    """Which format `text` is in: an XML document starts with '<' (its declaration, a comment or <domain>), which
    no xl.cfg can (its lines are settings and # comments), so the first character past blanks decides."""
    if text.lstrip("\ufeff \t\r\n").startswith("<"):
        return DefinitionFormat.LIBVIRT_XML
    return DefinitionFormat.XL_CFG


def host_format(hv: Hypervisor) -> DefinitionFormat:
    """The format `hv` defines guests from and hands out as editable definitions: xl.cfg on xl://, else XML."""
    return DefinitionFormat.XL_CFG if is_xl_uri(hv.uri) else DefinitionFormat.LIBVIRT_XML
