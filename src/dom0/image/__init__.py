"""Disk images read as bytes: partition tables, LVM, filesystems and the guests' operating systems.

Nothing here mounts, boots a helper VM or needs root for an image file: see source (ImageSource, open_image),
layout (scan), probe (superblock identification), extract (partition ⇄ whole-disk images).
"""
