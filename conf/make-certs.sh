#!/usr/bin/env bash
# Creates a private CA plus one server and one client certificate for ptproxy's mutual TLS.
#
#   conf/make-certs.sh OUT_DIR SERVER_NAME CLIENT_NAME [DAYS]
#
# SERVER_NAME is what the client config's `peer.server_name` will check: a DNS name, or an IP
# address (both are written into the certificate's subjectAltName). CLIENT_NAME goes into the client
# certificate (CN and DNS subjectAltName) and is what the server's `tls.allowed_client_names` matches.
# The CA key is written to OUT_DIR/ca.key: keep it offline, it can mint certificates both sides trust.
set -euo pipefail
out=${1:?usage: make-certs.sh OUT_DIR SERVER_NAME CLIENT_NAME [DAYS]}
server=${2:?server name}
client=${3:?client name}
days=${4:-825}
mkdir -p "$out"
cd "$out"
for f in ca.pem server.pem server.key client.pem client.key; do
  [ -e "$f" ] && { echo "make-certs: $out/$f exists, refusing to overwrite" >&2; exit 1; }
done
umask 077
san_for() { if [[ $1 =~ ^[0-9.]+$ || $1 == *:* ]]; then echo "IP:$1"; else echo "DNS:$1"; fi; }
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=ptproxy CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
issue() { # name cn san eku
  openssl ecparam -name prime256v1 -genkey -noout -out "$1.key.tmp"
  openssl pkcs8 -topk8 -nocrypt -in "$1.key.tmp" -out "$1.key" && rm "$1.key.tmp"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days "$days" \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" "$4") -out "$1.pem" 2>/dev/null
  rm "$1.csr"
}
issue server "$server" "$(san_for "$server")" serverAuth
issue client "$client" "DNS:$client" clientAuth
rm -f ca.srl
chmod 644 ca.pem server.pem client.pem
echo "make-certs: wrote $out/{ca.pem,ca.key,server.pem,server.key,client.pem,client.key}"
