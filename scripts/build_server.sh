#!/usr/bin/env bash
# Builds (once per flag set) llama.cpp's `llama-server` from the same source as the
# installed llama-cpp-python: the PyPI sdist of that version, whose vendor/llama.cpp
# holds the server. cmake and ninja come from PyPI; the CPU flags are
# scripts/llama_flags.sh's. The binary is cached under
# ~/.cache/aotcc/server/<version>-<hash of flags>/llama-server, so a rebuild is a copy.
# Prints the binary's path on its last line.
#
#   PY=.venv/bin/python scripts/build_server.sh          # the x86-64 server for this machine
#   TARGET=aarch64 scripts/build_server.sh               # cross-built for aarch64 (make edge-check)
set -eu
PY=${PY:-python}
VERSION=${LLAMA_CPP_VERSION:-0.3.36}
TARGET=${TARGET:-native}
here=$(cd "$(dirname "$0")" && pwd)
if [ "$TARGET" = "aarch64" ]; then
  # the generic armv8.2-a+fp16+dotprod profile most 64-bit ARM boards run
  FLAGS="-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8.2-a+fp16+dotprod -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DGGML_OPENMP=OFF"
else
  FLAGS=$("$here/llama_flags.sh" | sed -e 's/-DLLAVA_BUILD=OFF//' -e 's/-DLLAMA_BUILD_[A-Z]*=OFF//g' -e 's/-DLLAMA_CURL=OFF//')
fi
key=$(printf '%s %s %s' "$VERSION" "$TARGET" "$FLAGS" | sha256sum | cut -c1-16)
cache=${AOTCC_SERVER_CACHE:-$HOME/.cache/aotcc/server}/$VERSION-$TARGET-$key
if [ -x "$cache/llama-server" ]; then
  echo "llama-server $VERSION ($TARGET) already built"
  echo "$cache/llama-server"
  exit 0
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/aotcc-server.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "building llama-server $VERSION ($TARGET) from the llama-cpp-python sdist, once (about 8 minutes on 2 cores; cached after)"
"$PY" -m pip install -q "cmake>=3.28" ninja
bin=$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")
# the sdist itself, checked against PyPI's sha256 (pip download would build its build deps)
"$PY" - "$VERSION" "$work" <<'PYEOF'
import hashlib, json, sys, urllib.parse, urllib.request
version, out = sys.argv[1], sys.argv[2]
index = urllib.request.urlopen("https://pypi.org/pypi/llama-cpp-python/json", timeout=60)
meta = json.load(index)
sdist = next(u for u in meta["releases"][version] if u["packagetype"] == "sdist")
data = urllib.request.urlopen(urllib.parse.urljoin(index.geturl(), sdist["url"]), timeout=600).read()
if hashlib.sha256(data).hexdigest() != sdist["digests"]["sha256"]:
    sys.exit(f"{sdist['filename']}: sha256 does not match PyPI's")
open(f"{out}/{sdist['filename']}", "wb").write(data)
PYEOF
tar -xzf "$work"/llama_cpp_python-"$VERSION".tar.gz -C "$work"
src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
# shellcheck disable=SC2086
"$bin/cmake" -S "$src" -B "$work/build" -G Ninja -DCMAKE_MAKE_PROGRAM="$bin/ninja" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
  $FLAGS > "$work/configure.log" 2>&1 || { tail -n 30 "$work/configure.log" >&2; exit 1; }
log="$work/build.log"
set +e
"$bin/cmake" --build "$work/build" --target llama-server -j "$(nproc)" 2>&1 | tee "$log" | awk '
  match($0, /\[ *[0-9]+\/[0-9]+\]/) {
    split(substr($0, RSTART + 1, RLENGTH - 2), p, "/"); n = p[1] + 0; t = p[2] + 0
    if (n == t || n % 10 == 0) { printf "  llama-server: %d/%d compiled (%d%%)\n", n, t, 100 * n / t; fflush() }
  }'
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
  echo "llama-server build failed (exit $rc); the last lines:" >&2
  tail -n 40 "$log" >&2
  exit "$rc"
fi
mkdir -p "$cache.tmp"
cp "$work/build/bin/llama-server" "$cache.tmp/llama-server"
rm -rf "$cache"; mv "$cache.tmp" "$cache"
echo "$cache/llama-server"
