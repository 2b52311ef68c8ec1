# Shell helpers shared by the benchmark scripts (sourced, not run). The caller defines die().

# A free loopback port: bind port 0, read what the kernel picked, release it.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# GET /health on 127.0.0.1:PORT answers 2xx.
healthy() { python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$1/health', timeout=1)" 2>/dev/null; }
# Waits up to 10 s for healthy PORT.
wait_healthy() { for _ in $(seq 200); do healthy "$1" && return 0; sleep 0.05; done; die "port $1 never became healthy"; }
# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
# Starts Debian's HAProxy in HTTP keep-alive mode in the background ($! is its pid), its config in
# $work/NAME.cfg: start_haproxy NAME PORT BACKEND_PORT THREADS [EXTRA_DEFAULTS_LINE]
start_haproxy() {
  cat >"$work/$1.cfg" <<EOF2
global
  maxconn 8192
  nbthread $4
defaults
  mode http
  option http-keep-alive
  ${5:-}
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:$2
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:$3 maxconn 1024
EOF2
  haproxy -f "$work/$1.cfg" -db >"$work/$1.log" 2>&1 &
}
