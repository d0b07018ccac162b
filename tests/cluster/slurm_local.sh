#!/usr/bin/env bash
# A private single-node SLURM cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd) with all its state, sockets and
# logs under DIR, listening on loopback only, on free ports. For the tests marked `slurm` (tests/cluster).
#
#   tests/cluster/slurm_local.sh start DIR   # prints the slurm.conf path: export SLURM_CONF=<it>
#   tests/cluster/slurm_local.sh stop DIR    # cancels every job, stops every daemon of DIR
#
# start returns once the node is idle, or fails (exit 1) within START_TIMEOUT seconds (default 60) printing the tail
# of the daemons' logs. Runs as root (the daemons run as the invoking user; SlurmUser is that user).
# Needs: apt-get install -y slurm-wlm munge slurmdbd slurm-wlm-mysql-plugin mariadb-server-core mariadb-client-core
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
START_TIMEOUT=${START_TIMEOUT:-60}
PY=${PYTHON:-python3}
DAEMONS="slurmd slurmctld slurmdbd mariadbd munged"   # stop order

log_tails() {
    for f in "$DIR"/log/*.log; do
        [ -f "$f" ] || continue
        echo "==== $f" >&2
        tail -n 20 "$f" >&2
    done
}

fail() {
    echo "slurm_local: $*" >&2
    log_tails
    [ "${STARTING:-0}" = 1 ] && { STARTING=0; stop >/dev/null 2>&1 || true; }   # a failed start leaves nothing running
    exit 1
}

pid_of() { cat "$DIR/run/$1.pid" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

free_ports() {  # N distinct free TCP ports on 127.0.0.1 (held together while chosen, so distinct)
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

stop_daemon() {  # SIGTERM, wait up to 10 s, then SIGKILL
    local name=$1 p i
    p=$(pid_of "$name")
    [ -n "$p" ] || return 0
    if kill -0 "$p" 2>/dev/null; then
        kill -TERM "$p" 2>/dev/null || true
        for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$p" 2>/dev/null; then
            echo "slurm_local: $name ($p) ignored SIGTERM, killing" >&2
            kill -KILL "$p" 2>/dev/null || true
            for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    rm -f "$DIR/run/$name.pid"
}

# Processes started by this cluster's jobs (their environment holds our SLURM_CONF): job steps outlive the daemons.
job_pids() {
    local f p
    for f in $(grep -lzxF "SLURM_CONF=$DIR/etc/slurm.conf" /proc/[0-9]*/environ 2>/dev/null); do
        p=${f#/proc/}; p=${p%/environ}
        [ "$p" != $$ ] && echo "$p"
    done
    return 0
}

start() {
    local name
    STARTING=0
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        command -v "$name" >/dev/null || [ -x "/usr/sbin/$name" ] || fail "$name not found; apt-get install -y slurm-wlm munge slurmdbd slurm-wlm-mysql-plugin mariadb-server-core mariadb-client-core"
        ! alive "$name" || fail "$name of $DIR is already running; stop it first"
    done
    export PATH="$PATH:/usr/sbin:/sbin"
    local host me uid
    host=$(hostname -s)
    me=$(id -un)
    STARTING=1
    getent ahostsv4 "$host" | grep -q '^127\.' || fail "host name $host does not resolve to 127.x (add '127.0.0.1 $host' to /etc/hosts)"
    rm -rf "$DIR/etc" "$DIR/run" "$DIR/log" "$DIR/state" "$DIR/spool" "$DIR/munge" "$DIR/mysql"
    mkdir -p "$DIR/etc" "$DIR/run" "$DIR/log" "$DIR/state" "$DIR/spool" "$DIR/munge" "$DIR/mysql"
    chmod 755 "$DIR" "$DIR/munge"   # munged refuses a socket folder others can write to; clients need to reach it
    chmod 700 "$DIR/state"
    read -r ctld_port slurmd_port dbd_port db_port <<<"$(free_ports 4)"

    # --- munge
    local sock="$DIR/munge/munge.socket.2"
    dd if=/dev/urandom of="$DIR/etc/munge.key" bs=1024 count=1 status=none
    chmod 600 "$DIR/etc/munge.key"
    munged --socket="$sock" --key-file="$DIR/etc/munge.key" --pid-file="$DIR/run/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/run/munged.seed" --force \
        || fail "munged did not start"

    # --- MariaDB (slurmdbd's store), loopback TCP on a free port
    mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user="$me" --auth-root-authentication-method=normal \
        --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed"
    mariadbd --no-defaults --datadir="$DIR/mysql" --socket="$DIR/run/mysql.sock" --port="$db_port" \
        --bind-address=127.0.0.1 --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadbd.log" \
        --user="$me" --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=64M \
        --innodb-log-file-size=16M --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
    local deadline=$((SECONDS + START_TIMEOUT))
    until mariadb --no-defaults --socket="$DIR/run/mysql.sock" -uroot -e "SELECT 1" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "MariaDB not ready within ${START_TIMEOUT}s"
        [ -s "$DIR/run/mariadbd.pid" ] && ! alive mariadbd && fail "mariadbd died"
        sleep 0.1
    done
    # root over TCP from 127.0.0.1 (skip-name-resolve: 'localhost' no longer matches), no password: loopback only
    mariadb --no-defaults --socket="$DIR/run/mysql.sock" -uroot -e \
        "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" \
        || fail "MariaDB grant failed"

    # --- slurmdbd
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$sock
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$dbd_port
CommunicationParameters=NoInAddrAny
SlurmUser=$me
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"

    # --- slurm.conf; the node line from slurmd -C
    local node
    node=$(slurmd -C | head -n 1)
    cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=evalkit
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
SlurmUser=$me
SlurmdUser=$me
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
EnforcePartLimits=ALL
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
AccountingStoragePass=$sock
JobCompType=jobcomp/none
MinJobAge=300
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$DIR/etc/slurm.conf"

    slurmdbd || fail "slurmdbd did not start"
    until ss -Htln "sport = :$dbd_port" | grep -q .; do
        [ $SECONDS -lt $deadline ] || fail "slurmdbd not listening within ${START_TIMEOUT}s"
        [ -s "$DIR/run/slurmdbd.pid" ] && ! alive slurmdbd && fail "slurmdbd died"
        sleep 0.1
    done
    slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
    slurmd -f "$SLURM_CONF" || fail "slurmd did not start"

    local state=""
    while :; do
        state=$(timeout 5 sinfo -h -N -o %T 2>/dev/null || true)
        [ "$state" = idle ] && break
        [ $SECONDS -lt $deadline ] || fail "node not idle within ${START_TIMEOUT}s (state: ${state:-no answer})"
        for name in munged mariadbd slurmdbd slurmctld slurmd; do
            alive "$name" || { sleep 0.2; alive "$name" || fail "$name is not running"; }
        done
        sleep 0.2
    done
    echo "$SLURM_CONF"
}

stop() {
    export PATH="$PATH:/usr/sbin:/sbin"
    local conf="$DIR/etc/slurm.conf" i p
    if [ -f "$conf" ] && alive slurmctld; then
        export SLURM_CONF="$conf"
        timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        for i in $(seq 150); do   # up to 30 s for the queue to empty (KillWait=5)
            [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    for name in $DAEMONS; do stop_daemon "$name"; done
    # anything the jobs left behind
    for p in $(job_pids); do kill -KILL "$p" 2>/dev/null || true; done
    pgrep -f -- "$DIR/" >/dev/null 2>&1 && for p in $(pgrep -f -- "$DIR/"); do
        [ "$p" != $$ ] && kill -KILL "$p" 2>/dev/null || true
    done
    return 0
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
