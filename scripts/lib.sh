# shellcheck shell=bash
# Shared by scripts/setup and scripts/test: install Debian packages, make the virtualenv,
# start (or reuse) Docker, Redis and MariaDB. Every function is idempotent.

GITPAAS_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${GITPAAS_VENV:-$GITPAAS_SRC/.venv}
RUN_DIR=${GITPAAS_RUN_DIR:-/var/lib/gitpaas-services}
DEB_PACKAGES=(docker.io redis-server mariadb-server mariadb-client git openssh-client busybox-static
              mmdebstrap curl ca-certificates python3-venv wrk procps iproute2
              nginx libnginx-mod-http-lua lua-resty-core  # the edge (gitpaas runs its own nginx)
              openssh-server postgresql postgresql-client gcc libc6-dev restic systemd
              chromium chromium-driver
              docker-registry  # runtime swarm: gitpaas runs its own registry for the nodes
              pebble)  # pebble: Let's Encrypt's ACME test server (tests of automatic HTTPS)
# openssh-server: bench/run receive starts a throwaway sshd; gcc, libc6-dev: the storage
# race test builds a static renameat2 racer; restic: backups; systemd: the units' tests
# run systemd-analyze verify (even where it is not PID 1); chromium + chromium-driver:
# the WordPress smoke test drives a real browser (tests/e2e/test_wordpress_browser.py).

log() { printf '=====> %s\n' "$*" >&2; }
die() { printf ' !     %s\n' "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run this as root (it installs packages and starts services)"; }

install_packages() {
    local missing=()
    for p in "${DEB_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
        if printf '%s\n' "${missing[@]}" | grep -qx nginx; then
            # Debian starts its own nginx (default site, port 80); gitpaas runs its own
            # instance under <data_dir>/edge, so the system one is stopped and disabled.
            { systemctl disable --now nginx || service nginx stop; } >/dev/null 2>&1 || true
        fi
        if printf '%s\n' "${missing[@]}" | grep -qx docker-registry; then
            # Likewise the system registry (port 5000): `gitpaas serve` runs its own, with
            # TLS, on registry_listen, only when runtime is swarm.
            { systemctl disable --now docker-registry || service docker-registry stop; } \
                >/dev/null 2>&1 || true
        fi
    fi
}

make_venv() {
    local extras=${1:-}
    local python=${GITPAAS_PYTHON:-python3}
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating virtualenv $VENV"
        "$python" -m venv "$VENV" >&2 || { rm -rf "$VENV"; die "cannot create a virtualenv"; }
    fi
    local stamp="$VENV/.gitpaas-installed$extras"
    if [ ! -f "$stamp" ] || [ "$GITPAAS_SRC/pyproject.toml" -nt "$stamp" ]; then
        log "installing gitpaas$extras into $VENV"
        "$VENV/bin/pip" install -q --upgrade pip >&2 || true
        "$VENV/bin/pip" install -q -e "$GITPAAS_SRC$extras" >&2
        touch "$stamp"
    fi
}

wait_for() {  # wait_for SECONDS CMD...
    local n=$1; shift
    for _ in $(seq 1 "$((n * 5))"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}

start_docker() {
    if docker info >/dev/null 2>&1; then return 0; fi
    log "starting dockerd"
    mkdir -p "$RUN_DIR"
    nohup dockerd >"$RUN_DIR/dockerd.log" 2>&1 &
    wait_for 60 docker info || { tail -20 "$RUN_DIR/dockerd.log" >&2; die "dockerd did not start"; }
}

start_redis() {
    if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return 0; fi
    log "starting redis-server on 127.0.0.1:6379"
    mkdir -p "$RUN_DIR/redis"
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --dir "$RUN_DIR/redis" \
        --logfile "$RUN_DIR/redis.log" --save "" --appendonly no >&2
    wait_for 20 redis-cli -h 127.0.0.1 -p 6379 ping || die "redis-server did not start"
}

# The Docker bridge's gateway: the address app containers reach the host (MariaDB) at.
docker_gateway() {
    ip -4 -o addr show dev docker0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1
}

# Loopback for gitpaas, plus the Docker bridge's gateway so app containers reach their
# databases; nothing else.
mysql_bind() {
    local gw
    gw=$(docker_gateway)
    printf '127.0.0.1%s' "${gw:+,$gw}"
}

# A host firewall whose INPUT policy is not ACCEPT would drop containers' connections to
# MariaDB and PostgreSQL on the docker0 gateway: let the bridges in, on 3306 and 5432 only
# (idempotent).
allow_containers_to_mariadb() {
    command -v iptables >/dev/null 2>&1 || return 0
    local policy
    policy=$(iptables -S INPUT 2>/dev/null | awk '$1 == "-P" {print $3}')
    if [ -z "$policy" ] || [ "$policy" = "ACCEPT" ]; then return 0; fi
    local bridge port
    # docker0, and the per-app bridges (gpa...: runtime/network.py); never builds' (gpb...)
    for bridge in docker0 gpa+; do
        for port in 3306 5432; do
            iptables -C INPUT -i "$bridge" -p tcp --dport "$port" -j ACCEPT 2>/dev/null \
                || { log "allowing $bridge -> tcp $port in the INPUT chain"
                     iptables -I INPUT -i "$bridge" -p tcp --dport "$port" -j ACCEPT; }
        done
    done
}

mariadb_ping() { mysqladmin --protocol=socket ping >/dev/null 2>&1; }

# The bind addresses live in a config file too, so a MariaDB started by the system (the
# Debian package starts it on loopback only) listens where app containers can reach it.
configure_mariadb_bind() {
    local bind; bind=${GITPAAS_MYSQL_BIND:-$(mysql_bind)}
    local conf=/etc/mysql/mariadb.conf.d/99-gitpaas.cnf
    local want; want=$(printf '[mysqld]\nbind-address = %s\n' "$bind")
    if [ -d /etc/mysql/mariadb.conf.d ] && [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
        printf '%s\n' "$want" >"$conf"
    fi
    if mariadb_ping; then
        local addr
        for addr in ${bind//,/ }; do
            if ! ss -ltnH "sport = :3306" | grep -q " $addr:3306 "; then
                log "restarting mariadb to listen on $bind"
                if [ -d /run/systemd/system ]; then
                    systemctl restart mariadb
                else
                    mysqladmin --protocol=socket shutdown
                    wait_for 30 bash -c '! mysqladmin --protocol=socket ping' || true
                fi
                break
            fi
        done
    fi
}

start_mariadb() {
    configure_mariadb_bind
    if ! mariadb_ping; then
        log "starting mariadb"
        mkdir -p /run/mysqld "$RUN_DIR" && chown mysql:mysql /run/mysqld
        if [ ! -d /var/lib/mysql/mysql ]; then
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql >&2
        fi
        # The docker0 bridge address lets app containers reach their databases;
        # loopback serves gitpaas itself. Nothing else is listened on.
        nohup mysqld_safe --user=mysql --bind-address="${GITPAAS_MYSQL_BIND:-$(mysql_bind)}" \
            >"$RUN_DIR/mariadb.log" 2>&1 &
        wait_for 60 mariadb_ping || { tail -20 "$RUN_DIR/mariadb.log" >&2; die "mariadb did not start"; }
    fi
}

# mysql_admin_url USER: make (or reuse) an admin account with a password kept in $RUN_DIR
# and print its URL.
mysql_admin_url() {
    local user=$1 pwfile="$RUN_DIR/mysql-$1.password"
    mkdir -p "$RUN_DIR"
    if [ ! -s "$pwfile" ]; then
        (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$pwfile")
    fi
    local pw; pw=$(cat "$pwfile")
    # On stdin, not in the argument list: `ps` would show the password.
    mysql --protocol=socket >&2 <<SQL
CREATE USER IF NOT EXISTS '$user'@'localhost' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER '$user'@'localhost' IDENTIFIED BY '$pw';
ALTER USER '$user'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON *.* TO '$user'@'localhost' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$user'@'127.0.0.1' WITH GRANT OPTION;
SQL
    printf 'mysql://%s:%s@127.0.0.1:3306/' "$user" "$pw"
}

postgres_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -1; }
postgres_ping() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

# Like MariaDB: loopback for gitpaas, the Docker bridge's gateway for app containers;
# password (scram) logins from any address that reaches those.
configure_postgres() {
    local ver; ver=$(postgres_version)
    [ -n "$ver" ] || die "PostgreSQL is not installed (Debian package postgresql)"
    local dir=/etc/postgresql/$ver/main
    local want; want=$(printf "listen_addresses = '%s'\n" "${GITPAAS_POSTGRES_BIND:-$(mysql_bind)}")
    mkdir -p "$dir/conf.d"
    if [ "$(cat "$dir/conf.d/99-gitpaas.conf" 2>/dev/null)" != "$want" ]; then
        printf '%s\n' "$want" >"$dir/conf.d/99-gitpaas.conf"
        POSTGRES_RESTART=1
    fi
    local hba="host all all 0.0.0.0/0 scram-sha-256  # gitpaas: app containers"
    if ! grep -qF "$hba" "$dir/pg_hba.conf"; then
        printf '%s\n' "$hba" >>"$dir/pg_hba.conf"
        POSTGRES_RESTART=1
    fi
}

start_postgres() {
    POSTGRES_RESTART=0
    configure_postgres
    local ver; ver=$(postgres_version)
    if [ ! -d "/var/lib/postgresql/$ver/main" ]; then
        log "creating the PostgreSQL $ver cluster"
        pg_createcluster "$ver" main >&2
    fi
    if postgres_ping && [ "$POSTGRES_RESTART" = 1 ]; then
        log "restarting postgresql to listen on ${GITPAAS_POSTGRES_BIND:-$(mysql_bind)}"
        pg_ctlcluster "$ver" main restart >&2
    elif ! postgres_ping; then
        log "starting postgresql $ver"
        pg_ctlcluster "$ver" main start >&2
    fi
    wait_for 60 postgres_ping || die "postgresql did not start"
}

# postgres_admin_url USER: make (or reuse) a role that may create databases and roles
# (not a superuser), with a password kept in $RUN_DIR, and print its URL.
postgres_admin_url() {
    local user=$1 pwfile="$RUN_DIR/postgres-$1.password"
    mkdir -p "$RUN_DIR"
    if [ ! -s "$pwfile" ]; then
        (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$pwfile")
    fi
    local pw; pw=$(cat "$pwfile")
    # On stdin, not in the argument list: `ps` would show the password.
    runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres >&2 <<SQL
SELECT 'CREATE ROLE $user' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user')\gexec
ALTER ROLE $user LOGIN CREATEDB CREATEROLE PASSWORD '$pw';
SQL
    printf 'postgresql://%s:%s@127.0.0.1:5432/postgres' "$user" "$pw"
}

has_systemd() { [ -d /run/systemd/system ]; }

# Install scripts/systemd/*.service (ExecStart: /usr/local/bin/gitpaas, linked to the
# virtualenv by setup), enable them and (re)start them.
install_units_files() {
    local unit changed=0
    for unit in "$GITPAAS_SRC"/scripts/systemd/*.service; do
        if ! cmp -s "$unit" "/etc/systemd/system/$(basename "$unit")"; then
            install -m 0644 "$unit" /etc/systemd/system/ && changed=1
        fi
    done
    [ "$changed" = 0 ] || systemctl daemon-reload
}

install_units() {
    install_units_files
    # A serve left by an earlier, pre-systemd setup would hold the ports.
    stop_serve_nohup "${GITPAAS_DATA_DIR:-/var/lib/gitpaas}"
    log "enabling and starting gitpaas-router.service and gitpaas.service"
    systemctl enable gitpaas-router.service gitpaas.service >&2
    systemctl restart gitpaas-router.service gitpaas.service
}

# A process that runs (a zombie, dead but not reaped yet by its parent, does not).
running() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; }
stopped() { ! running "$1"; }

# Without systemd: `gitpaas serve` in the background (pid in <data dir>/serve.pid), its log
# rotated in <data dir>/serve.log (access lines in access.log), anything else in serve.out.
start_serve_nohup() {
    local data_dir=$1 pidfile="$1/serve.pid"
    if [ -s "$pidfile" ] && running "$(cat "$pidfile")"; then
        log "gitpaas serve is running already (pid $(cat "$pidfile"))"
        return 0
    fi
    log "starting gitpaas serve (log: $data_dir/serve.log)"
    GITPAAS_LOG_FILE=${GITPAAS_LOG_FILE:-$data_dir/serve.log} \
        nohup "$VENV/bin/gitpaas" serve >>"$data_dir/serve.out" 2>&1 &
    echo $! >"$pidfile"
    local ssh_port
    ssh_port=$(printf '%s' "${GITPAAS_SSH_LISTEN:-0.0.0.0:2222}" | sed 's/.*://')
    wait_for 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$ssh_port" \
        || { tail -20 "$data_dir/serve.out" "$data_dir/serve.log" >&2; die "gitpaas serve did not start"; }
}

# Stop the nohup-started `gitpaas serve` of <data dir> (SIGTERM, then wait).
stop_serve_nohup() {
    local pidfile="$1/serve.pid" pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if running "$pid"; then
        log "stopping gitpaas serve (pid $pid)"
        kill "$pid"
        wait_for 60 stopped "$pid" || die "gitpaas serve (pid $pid) did not stop"
    fi
    rm -f "$pidfile"
}

start_services() {
    start_docker
    start_redis
    start_mariadb
    allow_containers_to_mariadb
    start_postgres
}
