"""Adapting a guest to the hypervisor it is moving to (P2V, Xen <-> KVM): its console, network driver, disk
names, SELinux labels and kernel, checked and edited from userspace before it first boots there
(`dom0 image adapt`), and the package-tool hints that tell a lost administrator which family a system is
(`dom0 image hints`)."""
