# Private, throwaway Redis and PostgreSQL for tests, benchmarks and dev shells.
# Source it, then:
#   docket_install_services      # apt-get install only what is missing
#   docket_stop_services_on_exit # before starting anything, so nothing leaks
#   docket_start_redis           # exports DOCKET_TEST_REDIS_URL
#   docket_start_postgres        # exports DATABASE_URL, DOCKET_TEST_DATABASE_URL
#   docket_start_smtp            # exports DOCKET_TEST_SMTP_ADDR, DOCKET_TEST_SMTP_DIR
# Everything lives in one temp dir and listens on 127.0.0.1 only, on ports found
# by probing upwards from 16379 / 15432 / 12525, so a Redis, PostgreSQL or mail
# server already on this machine is never used, and two runs side by side never
# collide.
# shellcheck shell=bash

DOCKET_REDIS_BASE_PORT=${DOCKET_REDIS_BASE_PORT:-16379}
DOCKET_PG_BASE_PORT=${DOCKET_PG_BASE_PORT:-15432}
DOCKET_SMTP_BASE_PORT=${DOCKET_SMTP_BASE_PORT:-12525}
DOCKET_START_TIMEOUT=${DOCKET_START_TIMEOUT:-60}

_docket_say() { echo "docket: $*" >&2; }
_docket_die() { _docket_say "error: $*"; exit 1; }

# PATH may not include sbin dirs or the package's dir, so look in the usual places too.
_docket_find() {
    local name=$1 dir
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
    for dir in /usr/bin /usr/sbin /usr/local/bin /usr/local/sbin /bin /sbin; do
        if [[ -x $dir/$name ]]; then echo "$dir/$name"; return; fi
    done
}

# /usr/local/bin/pg_ctl and /usr/bin/pg_isready may be wrappers or another
# version, so use one versioned bin dir for every tool, the newest one.
_docket_pg_bindir() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | while read -r d; do [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && echo "$d"; done |
        tail -n 1) || true
    if [[ -z $dir && -n $(_docket_find initdb) ]]; then dir=$(dirname "$(_docket_find initdb)"); fi
    echo "$dir"
}

docket_install_services() {
    local pkgs=()
    [[ -n $(_docket_find redis-server) && -n $(_docket_find redis-cli) ]] || pkgs+=(redis-server)
    [[ -n $(_docket_pg_bindir) ]] || pkgs+=(postgresql)
    [[ -n $(_docket_smtp_python) ]] || pkgs+=(python3-aiosmtpd)
    # The chaos suite's skewed-clock workers (tests/src/chaos/mod.rs).
    compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || pkgs+=(libfaketime)
    if ((${#pkgs[@]} == 0)); then return 0; fi
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || _docket_die "missing ${pkgs[*]}: install them as root (apt-get install ${pkgs[*]})"
        sudo=(sudo)
    fi
    _docket_say "installing ${pkgs[*]} from Debian packages"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
}

# Only a first guess: another run may take the port before our server binds
# it, which the start functions handle by moving on to the next port.
_docket_free_port() {
    local port=$1
    while (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    echo "$port"
}

_docket_dir() {
    if [[ -z ${DOCKET_SERVICES_DIR:-} ]]; then
        DOCKET_SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/docket-services.XXXXXX")
        # When root, PostgreSQL runs as `postgres` and must get through to its subdir.
        chmod 0711 "$DOCKET_SERVICES_DIR"
    fi
}

_docket_tail_log() {
    _docket_say "last lines of $1:"
    tail -n 30 "$1" >&2 2>/dev/null || true
}

docket_start_redis() {
    local bin cli port pid log attempt
    bin=$(_docket_find redis-server)
    cli=$(_docket_find redis-cli)
    [[ -n $bin && -n $cli ]] || _docket_die "redis-server or redis-cli not found (run docket_install_services)"
    _docket_dir
    mkdir -p "$DOCKET_SERVICES_DIR/redis"
    log=$DOCKET_SERVICES_DIR/redis/redis.log
    port=$DOCKET_REDIS_BASE_PORT
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        port=$(_docket_free_port "$port")
        : >"$log"
        "$bin" --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
            --dir "$DOCKET_SERVICES_DIR/redis" --logfile "$log" --daemonize no </dev/null >/dev/null 2>&1 &
        pid=$!
        DOCKET_REDIS_PID=$pid
        local waited=0
        while ((waited < DOCKET_START_TIMEOUT * 10)); do
            # Answering is not enough: the process id proves it is ours and
            # not another run's server that won the race for this port.
            if "$cli" -h 127.0.0.1 -p "$port" info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"; then
                export DOCKET_REDIS_PORT=$port DOCKET_TEST_REDIS_URL="redis://127.0.0.1:$port"
                _docket_say "redis on 127.0.0.1:$port ($DOCKET_TEST_REDIS_URL)"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
            waited=$((waited + 1))
        done
        if ! kill -0 "$pid" 2>/dev/null && grep -q "Address already in use" "$log"; then
            _docket_say "redis: port $port was taken meanwhile (attempt $attempt), trying the next one"
            port=$((port + 1))
            continue
        fi
        _docket_tail_log "$log"
        if kill -0 "$pid" 2>/dev/null; then
            _docket_die "Redis did not answer on 127.0.0.1:$port within ${DOCKET_START_TIMEOUT}s"
        fi
        _docket_die "Redis exited while starting on 127.0.0.1:$port (its log is above)"
    done
    _docket_die "Redis did not start: no free port found from $DOCKET_REDIS_BASE_PORT"
}

# PostgreSQL refuses to run as root.
_docket_as_pg() {
    if ((EUID == 0)); then (cd / && "$(_docket_find runuser)" -u postgres -- "$@"); else "$@"; fi
}

docket_start_postgres() {
    local bindir dir port attempt
    bindir=$(_docket_pg_bindir)
    [[ -n $bindir ]] || _docket_die "PostgreSQL not found under /usr/lib/postgresql (run docket_install_services)"
    _docket_dir
    dir=$DOCKET_SERVICES_DIR/postgres
    mkdir -p "$dir"
    if ((EUID == 0)); then
        getent passwd postgres >/dev/null || _docket_die "running as root needs the 'postgres' system user (from the postgresql package)"
        [[ -n $(_docket_find runuser) ]] || _docket_die "running as root needs runuser (util-linux) to start PostgreSQL as user postgres"
        chown postgres: "$dir"
        _docket_as_pg test -w "$dir" || _docket_die "user postgres cannot write $dir; set TMPDIR to a directory others can enter"
    fi
    # -U postgres: the URL names that superuser whoever runs this.
    _docket_as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
        --no-sync --no-instructions >"$dir/initdb.log" 2>&1 ||
        { _docket_tail_log "$dir/initdb.log"; _docket_die "PostgreSQL initdb failed in $dir/data"; }
    port=$DOCKET_PG_BASE_PORT
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        port=$(_docket_free_port "$port")
        # The socket lives in our dir, never /var/run/postgresql. fsync and
        # friends are off: the data is thrown away.
        if _docket_as_pg "$bindir/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t "$DOCKET_START_TIMEOUT" \
            -o "-c listen_addresses=127.0.0.1 -p $port -k '$dir' -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            >/dev/null 2>&1 &&
            "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -t 10; then
            DOCKET_PG_BINDIR=$bindir
            export DOCKET_PG_PORT=$port
            export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
            export DOCKET_TEST_DATABASE_URL=$DATABASE_URL
            _docket_say "postgres on 127.0.0.1:$port ($DATABASE_URL)"
            return 0
        fi
        if [[ ! -f $dir/data/postmaster.pid ]] && grep -q "Address already in use" "$dir/postgres.log" 2>/dev/null; then
            _docket_say "postgres: port $port was taken meanwhile (attempt $attempt), trying the next one"
            : >"$dir/postgres.log"
            port=$((port + 1))
            continue
        fi
        _docket_tail_log "$dir/postgres.log"
        _docket_die "PostgreSQL did not start on 127.0.0.1:$port (its log is above)"
    done
    _docket_die "PostgreSQL did not start: no free port found from $DOCKET_PG_BASE_PORT"
}

# The test mail server is aiosmtpd (Debian's python3-aiosmtpd, for Debian's
# python3; a python3 on PATH that has it from PyPI will do too). Python 3.11's
# own smtpd module would need no install, but it is deprecated and gone from
# 3.12 on (Debian 13 has 3.13), so the next Debian would break it.
_docket_smtp_python() {
    local py
    for py in "$(_docket_find python3)" /usr/bin/python3; do
        if [[ -n $py ]] && "$py" -c 'import aiosmtpd' >/dev/null 2>&1; then echo "$py"; return; fi
    done
}

# The mail server, run as `sink.py HOST PORT MAILDIR`: stores each message,
# byte for byte as received, in the Maildir MAILDIR (a file in new/ per
# message, written before the server answers 250), headed by the envelope as
# X-Peer, X-MailFrom and X-RcptTo. Recipients at refused.invalid get a
# permanent 550 5.1.1, those at busy.invalid a transient 451 4.3.2, so tests
# can see both refusals from a real server. Its banner names its process id,
# which is how docket_start_smtp knows the server answering is this one.
_DOCKET_SMTP_SINK='
import asyncio, mailbox, os, signal, sys
from aiosmtpd.smtp import SMTP

host, port, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
box = mailbox.Maildir(folder, create=True)

class Sink:
    async def handle_RCPT(self, server, session, envelope, address, options):
        domain = address.rpartition("@")[2].lower()
        if domain == "refused.invalid":
            return "550 5.1.1 mailbox unavailable"
        if domain == "busy.invalid":
            return "451 4.3.2 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        head = "X-Peer: %s:%s\r\nX-MailFrom: %s\r\nX-RcptTo: %s\r\n" % (
            session.peer[0], session.peer[1], envelope.mail_from, ", ".join(envelope.rcpt_tos))
        box.add(head.encode() + envelope.original_content)
        return "250 OK"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Sink(), hostname="docket-test-smtp", ident="pid=%d" % os.getpid(),
                     enable_SMTPUTF8=True, decode_data=False),
        host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()

asyncio.run(main())
'

# The first line the server on 127.0.0.1:$1 sends, if it answers within 2 s.
_docket_smtp_banner() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        IFS= read -r -t 2 line <&3 || exit 1
        printf 'QUIT\r\n' >&3
        echo "${line%$'\r'}"
    ) 2>/dev/null
}

docket_start_smtp() {
    local py port pid log attempt dir
    py=$(_docket_smtp_python)
    [[ -n $py ]] || _docket_die "python3 with aiosmtpd not found (run docket_install_services)"
    _docket_dir
    dir=$DOCKET_SERVICES_DIR/smtp
    mkdir -p "$dir"
    printf '%s' "$_DOCKET_SMTP_SINK" >"$dir/sink.py"
    log=$dir/smtp.log
    port=$DOCKET_SMTP_BASE_PORT
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        port=$(_docket_free_port "$port")
        : >"$log"
        "$py" "$dir/sink.py" 127.0.0.1 "$port" "$dir/mail" </dev/null >"$log" 2>&1 &
        pid=$!
        DOCKET_SMTP_PID=$pid
        local waited=0
        while ((waited < DOCKET_START_TIMEOUT * 10)); do
            if [[ $(_docket_smtp_banner "$port") == "220 docket-test-smtp pid=$pid" ]]; then
                export DOCKET_SMTP_PORT=$port DOCKET_TEST_SMTP_ADDR="127.0.0.1:$port" DOCKET_TEST_SMTP_DIR=$dir/mail
                _docket_say "smtp on $DOCKET_TEST_SMTP_ADDR (messages in $DOCKET_TEST_SMTP_DIR/new)"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
            waited=$((waited + 1))
        done
        if ! kill -0 "$pid" 2>/dev/null && grep -q "Address already in use" "$log"; then
            _docket_say "smtp: port $port was taken meanwhile (attempt $attempt), trying the next one"
            port=$((port + 1))
            continue
        fi
        _docket_tail_log "$log"
        if kill -0 "$pid" 2>/dev/null; then
            _docket_die "the SMTP server did not answer on 127.0.0.1:$port within ${DOCKET_START_TIMEOUT}s"
        fi
        _docket_die "the SMTP server exited while starting on 127.0.0.1:$port (its log is above)"
    done
    _docket_die "the SMTP server did not start: no free port found from $DOCKET_SMTP_BASE_PORT"
}

# Safe to call twice and after a partial start; never fails, so it cannot
# change the exit status of the script whose EXIT trap runs it.
docket_stop_services() {
    local dir=${DOCKET_SERVICES_DIR:-} pid i
    [[ -n $dir ]] || return 0
    if [[ -n ${DOCKET_REDIS_PID:-} ]]; then
        kill "$DOCKET_REDIS_PID" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do kill -0 "$DOCKET_REDIS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$DOCKET_REDIS_PID" 2>/dev/null || true
    fi
    if [[ -n ${DOCKET_SMTP_PID:-} ]]; then
        kill "$DOCKET_SMTP_PID" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do kill -0 "$DOCKET_SMTP_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$DOCKET_SMTP_PID" 2>/dev/null || true
    fi
    if [[ -f $dir/postgres/data/postmaster.pid ]]; then
        pid=$(head -n 1 "$dir/postgres/data/postmaster.pid" 2>/dev/null) || true
        _docket_as_pg "$(_docket_pg_bindir)/pg_ctl" stop -D "$dir/postgres/data" -m immediate -w -t 20 >/dev/null 2>&1 ||
            { [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null; } || true
    fi
    rm -rf "$dir" || true
    unset DOCKET_SERVICES_DIR DOCKET_REDIS_PID DOCKET_SMTP_PID
    return 0
}

# Ctrl-C and kill become a normal exit, so the EXIT trap cleans up in every case.
docket_stop_services_on_exit() {
    trap docket_stop_services EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}
