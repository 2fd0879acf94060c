#!/usr/bin/env bash
# Prints the CMAKE_ARGS for building llama-cpp-python on this CPU.
# Why: a native (-march=native) build of llama.cpp segfaults in decode on CPUs that
# report AMX, so we never build native. We probe the CPU flags and turn on the
# fastest instruction sets that are present, and never AMX.
# AOTCC_PORTABLE=1 prints the plain AVX2 set, for a wheel that runs on most x86-64 edge devices.
set -eu
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { case " $flags " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# Only the libraries the Python bindings load (libllama, libggml*): no multimodal
# library (LLAVA_BUILD builds mtmd), tools, examples, tests, server or curl. The server
# is built on its own by scripts/build_server.sh (`make server`).
lib_only="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF"
args="$lib_only -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
if [ "$(uname -m)" != "x86_64" ]; then
  echo "$lib_only -DGGML_NATIVE=OFF"; exit 0
fi
if has avx && has avx2 && has fma && has f16c; then
  args="$args -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
fi
if [ "${AOTCC_PORTABLE:-0}" != "1" ]; then
  if has avx512f && has avx512bw && has avx512vl; then
    args="$args -DGGML_AVX512=ON"
    has avx512vbmi && args="$args -DGGML_AVX512_VBMI=ON"
    has avx512_vnni && args="$args -DGGML_AVX512_VNNI=ON"
    has avx512_bf16 && args="$args -DGGML_AVX512_BF16=ON"
  fi
  has avx_vnni && args="$args -DGGML_AVX_VNNI=ON"
fi
echo "$args"
