# xm HVM guest, from /etc/xen/xmexample.hvm
kernel = "/usr/lib/xen/boot/hvmloader"
builder = 'hvm'
memory = 512
name = "oldhvm"
vif = [ 'type=ioemu, bridge=xenbr0' ]
disk = [ 'phy:/dev/vg0/oldhvm,hda,w', 'file:/srv/iso/install.iso,hdc:cdrom,r' ]
device_model = '/usr/lib/xen/bin/qemu-dm'
boot = "dc"
sdl = 0
vnc = 1
stdvga = 0
serial = 'pty'
usbdevice = 'tablet'
pae = True; acpi = True; apic = True
