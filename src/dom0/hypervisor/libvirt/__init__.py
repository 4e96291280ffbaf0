"""The libvirt backend (QEMU/KVM, Xen's libxl driver, the test driver): the only code that imports libvirt."""
