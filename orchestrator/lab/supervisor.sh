#!/bin/sh
# Parent of every container of one ServerGuard lab (see docs/lab.md):
#
#   supervisor.sh sg-lab-supervisor INIT_SCRIPT  NAME NETNS FSDIR HOSTDIR NET  [NAME ...]
#
# starts one container per group of five arguments (NETNS "-" = share the machine's
# network namespace), all at once, and waits for them, so that their exits are reaped
# (PID 1 of the machine may not reap orphans). It exits by itself once every container is gone.
set -u
[ "$1" = sg-lab-supervisor ] || { echo "usage: $0 sg-lab-supervisor INIT NAME NETNS FSDIR HOSTDIR NET ..." >&2; exit 2; }
init=$2
shift 2
cd /
while [ $# -ge 5 ]; do
    name=$1 netns=$2 fs=$3 hostdir=$4 net=$5
    shift 5
    if [ "$netns" = - ]; then
        unshare --uts --ipc --mount --pid --fork --propagation private \
            /bin/sh "$init" sg-lab-init "$name" "$fs" "$hostdir" "$net" \
            </dev/null >>"$hostdir/init.log" 2>&1 &
    else
        nsenter "--net=/run/netns/$netns" \
            unshare --uts --ipc --mount --pid --fork --propagation private \
            /bin/sh "$init" sg-lab-init "$name" "$fs" "$hostdir" "$net" \
            </dev/null >>"$hostdir/init.log" 2>&1 &
    fi
done
wait
