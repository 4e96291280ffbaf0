#  -*- mode: python; -*-
#============================================================================
# Python configuration setup for 'xm create'.
# This script sets the parameters used when a domain is created using 'xm create'.
#============================================================================

kernel = "/boot/vmlinuz-2.6.18-6-xen-amd64"
ramdisk = "/boot/initrd.img-2.6.18-6-xen-amd64"
memory = 256
name = "legacy"
vcpus = 1

# Network: one interface on the DMZ bridge
vif = [ 'mac=00:16:3e:00:aa:01, bridge=xenbr1', ]

disk = [ 'phy:vg0/legacy-root,sda1,w',    # root
         'phy:vg0/legacy-swap,sda2,w',
         'file:/var/xen/legacy-data.img,sda3,w' ]

root = "/dev/sda1 ro"
extra = "xencons=tty " + "clocksource=jiffies"

on_poweroff = 'destroy'
on_reboot   = 'restart'
on_crash    = 'restart'

# xend-only knobs
localtime = False
serial = None
