# shellcheck shell=bash
# Shell helpers the bench/*/run.sh scripts share. Source it after defining die().

# stop_pid PID: SIGTERM, up to 15 s to exit, then SIGKILL; reaps it when it is our child.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# wait_for SECONDS COMMAND...: runs COMMAND every 50 ms until it succeeds (0) or SECONDS pass (1).
wait_for() {
    local limit=$(($1 * 20))
    shift
    for _ in $(seq 1 "$limit"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}

# free_port: a loopback TCP port nothing listens on now (taken at once by the caller).
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free loopback port"
}

# nginx_www DIR: DIR/www/ok, the 2-byte file ("ok") the benchmarks' nginx serves, readable by
# nginx's worker user, and DIR/nginx-temp for its temp paths.
nginx_www() {
    mkdir -p "$1/www" "$1/nginx-temp"
    printf 'ok' >"$1/www/ok"
    chmod 755 "$1" "$1/www"
    chmod 644 "$1/www/ok"
}

# nginx_conf DIR NAME PORT SERVER_BODY [HTTP_EXTRA]: DIR/NAME.conf, one worker in the
# foreground on 127.0.0.1:PORT, no access log, keep-alive connections never closed for their
# request count (like aviary's; nginx's default closes after 1000), SERVER_BODY in its server
# block and HTTP_EXTRA (an upstream block, say) beside it. Run: nginx -p DIR -c DIR/NAME.conf
nginx_conf() {
    cat >"$1/$2.conf" <<EOF
worker_processes 1;
daemon off;
pid $1/$2.pid;
error_log $1/$2-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $1/nginx-temp/body;
    proxy_temp_path $1/nginx-temp/proxy;
    fastcgi_temp_path $1/nginx-temp/fastcgi;
    uwsgi_temp_path $1/nginx-temp/uwsgi;
    scgi_temp_path $1/nginx-temp/scgi;
    ${5:-}
    server {
        listen 127.0.0.1:$3;
        $4
    }
}
EOF
}
