"""dom0: see, control, save, clone and inspect the guests of a Xen or KVM host."""

__version__ = "0.1.0"
