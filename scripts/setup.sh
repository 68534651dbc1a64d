#!/usr/bin/env bash
# Installs everything autointerp needs on a Debian 12 machine, and nothing twice.
#
#   build:      gcc make pkg-config and the -dev packages of the five libraries
#   tests:      cmocka; the independent references (PyTorch, numpy, scipy, h5py
#               for /usr/bin/python3; node + npm's gpt-3-encoder@1.1.4)
#   report:     librsvg2-bin (tests render the SVG plots to PNG) and chromium
#               (tests open the HTML report in a real headless browser)
#   fuzzing:    clang and libclang-rt-14-dev (libFuzzer) for `make fuzz`
#   demo data:  the `fortunes` package's English files (text for the tiny model)
#
# Safe to run again: packages already present are not reinstalled and the apt
# index is refreshed only when something is missing. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  gcc make pkg-config git
  libopenblas-dev libhdf5-dev libgsl-dev libcurl4-openssl-dev libcjson-dev
  libcmocka-dev hdf5-tools
  python3 python3-torch python3-numpy python3-scipy python3-h5py
  librsvg2-bin chromium
  clang libclang-rt-14-dev
  fortunes
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node: any working node + npm will do (the machine may carry a newer one than
# Debian's, whose npm package would conflict with it).
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: Debian packages present"
fi

# The JavaScript GPT-2 encoder used as the tokenizer oracle, in a git-ignored folder.
NPM_DIR=.deps/npm
if [ ! -f "$NPM_DIR/node_modules/gpt-3-encoder/package.json" ] ||
   ! grep -q '"version": "1.1.4"' "$NPM_DIR/node_modules/gpt-3-encoder/package.json"; then
  echo "setup: installing gpt-3-encoder@1.1.4 into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error gpt-3-encoder@1.1.4
else
  echo "setup: gpt-3-encoder@1.1.4 present"
fi
echo "setup: done"
