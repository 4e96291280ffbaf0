"""Keeping the administrator's way in resident when the host pages: the files of a support session (sshd, a shell,
the tools to fix things) mapped and locked in RAM, as memlockd does and with its configuration format, but with
ELF dependencies read from the files themselves, replaced files followed, a budget, and a status anyone can read
(`dom0 memlock run|status|check`)."""
