#!/bin/sh
# A tour of the lab: up, reach each kind of host, down. Run from the repository root as root:
#   sh examples/lab/tour.sh
set -eu
venv=${VENV:-.venv}
state=$(mktemp -d /tmp/sg-lab-tour.XXXXXX)
export SERVERGUARD_STATE_DIR="$state"
lab="$state/lab"
trap '"$venv/bin/serverguard" lab down; rmdir "$state" 2>/dev/null || true' EXIT

"$venv/bin/serverguard" lab up --hosts 2 --private 1 --deep 1 --loopback-hosts 3

echo "== ssh by name (the lab's ssh_config carries key, known_hosts and jump hosts)"
for host in host01 private01 deep01 lo002; do
    printf '%-10s -> ' "$host"
    ssh -F "$lab/ssh_config" "$host" 'echo "$(hostname) as $(id -un)"'
done

echo "== root inside a lab host logs in with /bin/sh (no sudo on these machines)"
ssh -F "$lab/ssh_config" -l root host01 'echo "root shell: $0"; nft list tables'

echo "== a private host is not reachable from the machine itself"
if timeout 3 sh -c "exec 3<>/dev/tcp/169.254.20.11/22" 2>/dev/null; then
    echo "reachable?!"
else
    echo "169.254.20.11:22 unreachable, as it should be"
fi

echo "== ansible, through the bastions"
ANSIBLE_DEPRECATION_WARNINGS=False "$venv/bin/ansible" -i "$lab/inventory.yml" \
    'public:private:deep:lo001' -m ping -o

echo "== serverguard"
"$venv/bin/serverguard" run -i "$lab/inventory.yml" 'private:deep' -- uptime || true
