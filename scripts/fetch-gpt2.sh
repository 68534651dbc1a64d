#!/usr/bin/env bash
# Downloads GPT-2 small from Hugging Face (needs internet) and, optionally, turns an
# OpenWebText-style text sample into token datasets for configs/gpt2-small-layer6.json.
#
#   scripts/fetch-gpt2.sh [--dest models] [--revision REV] [--sample TEXT_OR_URL]
#
# Files: model.safetensors, config.json, vocab.json, merges.txt into DEST/gpt2.
# Verification: the script pins a revision of openai-community/gpt2, asks the Hub's
# API for that revision's file list, and checks every download against it: the
# LFS sha256 for model.safetensors, the git blob id (sha1 of "blob <size>\0" +
# content, what `git hash-object` prints) for the small files. A mismatch deletes
# the file and exits non-zero. Then `autointerp inspect` loads the model, which
# checks every tensor's name, shape and finiteness.
#
# The sample (a local file or an http(s) URL of plain text, documents separated by
# <|endoftext|> as in OpenWebText dumps) becomes DEST/openwebtext-sample/train.h5
# and eval.h5 (10% of documents held out).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models
revision=main
sample=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dest) dest=$2; shift 2 ;;
    --revision) revision=$2; shift 2 ;;
    --sample) sample=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "fetch-gpt2: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
repo=openai-community/gpt2
hub=${HF_ENDPOINT:-https://huggingface.co}   # HF_ENDPOINT: a mirror (or the test server)
out=$dest/gpt2
mkdir -p "$out"
bin=${AUTOINTERP_BIN:-bin/autointerp}
[ -x "$bin" ] || make -s

listing=$(mktemp)
trap 'rm -f "$listing"' EXIT
echo "fetch-gpt2: file list of $repo at revision $revision"
curl -fsSL "$hub/api/models/$repo/tree/$revision" -o "$listing"

# expected <file> -> "sha256 HEX" (LFS) or "blob HEX" (git blob id), read from the
# listing with node or python3, whichever the machine has (setup.sh installs both).
expected() {
  local file=$1
  if command -v node >/dev/null; then
    node -e '
      const l = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const e = l.find(x => x.path === process.argv[2]);
      if (!e) process.exit(3);
      console.log(e.lfs ? "sha256 " + e.lfs.oid : "blob " + e.oid);' "$listing" "$file"
  else
    python3 -c '
import json, sys
l = json.load(open(sys.argv[1]))
e = [x for x in l if x["path"] == sys.argv[2]]
if not e: sys.exit(3)
e = e[0]
print("sha256 " + e["lfs"]["oid"] if e.get("lfs") else "blob " + e["oid"])' "$listing" "$file"
  fi
}

for f in config.json vocab.json merges.txt model.safetensors; do
  want=$(expected "$f") || { echo "fetch-gpt2: $f is not in $repo@$revision" >&2; exit 1; }
  kind=${want%% *} hash=${want#* }
  have=""
  if [ -f "$out/$f" ]; then
    if [ "$kind" = sha256 ]; then have=$(sha256sum "$out/$f" | cut -d' ' -f1); else have=$(git hash-object "$out/$f"); fi
  fi
  if [ "$have" = "$hash" ]; then echo "fetch-gpt2: $f present and verified"; continue; fi
  echo "fetch-gpt2: downloading $f"
  curl -fL --retry 3 "$hub/$repo/resolve/$revision/$f" -o "$out/$f.part"
  if [ "$kind" = sha256 ]; then have=$(sha256sum "$out/$f.part" | cut -d' ' -f1); else have=$(git hash-object "$out/$f.part"); fi
  if [ "$have" != "$hash" ]; then
    rm -f "$out/$f.part"
    echo "fetch-gpt2: $f: $kind mismatch (got $have, expected $hash)" >&2
    exit 1
  fi
  mv "$out/$f.part" "$out/$f"
  echo "fetch-gpt2: $f verified ($kind $hash)"
done
"$bin" inspect "$out"

if [ -n "$sample" ]; then
  sdir=$dest/openwebtext-sample
  mkdir -p "$sdir"
  text=$sample
  case "$sample" in
    http://*|https://*) text=$sdir/sample.txt; curl -fL --retry 3 "$sample" -o "$text" ;;
  esac
  "$bin" tokenize -t "$out" -o "$sdir/train.h5" --eval-out "$sdir/eval.h5" --eval-fraction 0.1 "$text"
fi
echo "fetch-gpt2: done; configs/gpt2-small-layer6.json reads $out"
