# xm HVM config in the style of /etc/xen/xmexample.hvm
import os, re
arch = os.uname()[4]
kernel = "/usr/lib/xen/boot/hvmloader"
builder = 'hvm'
device_model = '/usr/lib/xen/bin/qemu-dm'
