"""The xl backend for Xen hosts without libvirtd: xl's output parsed, xl.cfg and xm configs read and written."""
