#!/bin/sh
# PID 1 of one ServerGuard lab host (see docs/lab.md). Started by supervisor.sh as
#
#   [nsenter --net=/run/netns/sg-NAME] unshare --uts --ipc --mount --pid --fork \
#       --propagation private /bin/sh container_init.sh sg-lab-init NAME FSDIR HOSTDIR NET
#
# so it runs in the host's fresh UTS, IPC, mount and PID namespaces (and its network
# namespace when NET=own; NET=shared keeps the machine's). It sets the hostname, configures
# the network (HOSTDIR/ip.batch, HOSTDIR/nft.rules), mounts the copy-on-write root
# FSDIR/root (overlay: lower /, upper FSDIR/upper) with fresh /proc, /sys, /run, /tmp and a
# bind of /dev, records its pid as the machine sees it in HOSTDIR/init.pid, then chroots,
# starts sshd and stays as the host's init: it reaps orphans until it is killed.
set -eu
[ "$1" = sg-lab-init ] || { echo "usage: $0 sg-lab-init NAME FSDIR HOSTDIR own|shared" >&2; exit 2; }
name=$2 fs=$3 hostdir=$4 net=$5
root=$fs/root
trap 'echo "sg-lab-init: $name: set-up failed" >&2; : > "$hostdir/init.failed"' EXIT

echo "$name" > /proc/sys/kernel/hostname   # this UTS namespace only
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # room for many sessions (fan-out benchmarks)
umount -l /run/netns 2>/dev/null || true   # this mount namespace's copies of the lab's netns

if [ "$net" = own ]; then
    ip -batch "$hostdir/ip.batch"
    nft -f "$hostdir/nft.rules"
    echo 0 > /proc/sys/net/ipv4/ip_forward
fi

mount -t overlay "sg-$name" -o "lowerdir=/,upperdir=$fs/upper,workdir=$fs/work" "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
# Kernel-wide sysctls are shared with the machine: read-only, except net.* of an own netns.
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro,nosuid,nodev,noexec "$root/proc/sys"
if [ "$net" = own ]; then
    mount --bind "$root/proc/sys/net" "$root/proc/sys/net"
    mount -o remount,bind,rw,nosuid,nodev,noexec "$root/proc/sys/net"
fi
if [ -e "$root/proc/sysrq-trigger" ]; then
    mount --bind "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
    mount -o remount,bind,ro "$root/proc/sysrq-trigger"
fi
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs "$root/run"
mkdir -m 755 "$root/run/sshd" "$root/run/sglab"
mkdir -m 1777 "$root/run/lock"
mount --bind "$hostdir" "$root/run/sglab"          # sshd.log etc., readable from the machine
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$root/tmp"

read -r pid _ < /proc/self/stat                    # our pid in the machine's PID namespace
echo "$pid" > "$hostdir/init.pid.tmp"
mv "$hostdir/init.pid.tmp" "$hostdir/init.pid"

trap - EXIT
cd "$root"
exec chroot "$root" /bin/sh -c '
    /usr/sbin/sshd -f /etc/ssh/sshd_config -E /run/sglab/sshd.log ||
        { echo "sg-lab-init: sshd did not start" >&2; : > /run/sglab/sshd.failed; }
    trap "exit 0" TERM INT HUP
    while :; do sleep infinity & wait; done
'
