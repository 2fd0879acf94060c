#!/usr/bin/env bash
# Builds (once per flag set) and installs llama-cpp-python into the current Python.
# The wheel is cached under ~/.cache/aotcc/wheels/<version>-<hash of CMAKE_ARGS>, so a
# rebuild with the same flags is a copy, and a wheel built with other flags is never
# picked up by mistake (pip's own cache ignores CMAKE_ARGS).
set -eu
PY=${PY:-python}
VERSION=${LLAMA_CPP_VERSION:-0.3.36}
here=$(cd "$(dirname "$0")" && pwd)
CMAKE_ARGS=${CMAKE_ARGS:-$("$here/llama_flags.sh")}
key=$(printf '%s %s' "$VERSION" "$CMAKE_ARGS" | sha256sum | cut -c1-16)
cache=${AOTCC_WHEEL_CACHE:-$HOME/.cache/aotcc/wheels}/$VERSION-$key
if "$PY" -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.__version__ == '$VERSION' else 1)" 2>/dev/null \
   && [ "$(cat "$("$PY" -c "import sys; print(sys.prefix)")/.aotcc-llama-flags" 2>/dev/null)" = "$CMAKE_ARGS" ]; then
  echo "llama-cpp-python $VERSION already installed ($CMAKE_ARGS)"; exit 0
fi
if ! ls "$cache"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $VERSION from source, once (about 4 minutes on 2 cores; cached after)"
  echo "  CMAKE_ARGS=$CMAKE_ARGS"
  rm -rf "$cache.tmp"; mkdir -p "$cache.tmp"
  log="$cache.tmp/build.log"
  # pip -v streams the compiler's [step/total] lines: show one in ten as progress, keep
  # the whole log for a failure
  set +e
  CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip wheel -v --no-deps --no-cache-dir --no-binary llama-cpp-python \
    "llama-cpp-python==$VERSION" -w "$cache.tmp" 2>&1 | tee "$log" | awk '
      match($0, /\[ *[0-9]+\/[0-9]+\]/) {
        split(substr($0, RSTART + 1, RLENGTH - 2), p, "/"); n = p[1] + 0; t = p[2] + 0
        if (n == t || n % 10 == 0) { printf "  llama.cpp: %d/%d compiled (%d%%)\n", n, t, 100 * n / t; fflush() }
      }'
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" != 0 ]; then
    echo "llama-cpp-python build failed (exit $rc); the last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit "$rc"
  fi
  rm -f "$log"
  rm -rf "$cache"; mv "$cache.tmp" "$cache"
fi
"$PY" -m pip install --no-deps --force-reinstall "$cache"/llama_cpp_python-*.whl
"$PY" -m pip install "typing-extensions>=4.5" "numpy>=1.20" "diskcache>=5.6.1" "jinja2>=2.11.3"
printf "%s" "$CMAKE_ARGS" > "$("$PY" -c "import sys; print(sys.prefix)")/.aotcc-llama-flags"
