#!/usr/bin/env bash
# Sets up the peers of `kiln bench` (see bench/README.md):
#  - numpy/OpenBLAS and PyTorch 1.13 (../shared/peers/peer_bench.py): Debian's python3-numpy, python3-torch and
#    libopenblas0-pthread (without it numpy runs the reference BLAS at ~2 GFLOP/s, which `kiln bench` refuses).
#  - ONNX Runtime (Microsoft.ML.OnnxRuntime from NuGet, pinned in Directory.Packages.props): builds bench/Kiln.Bench.Onnx.
#  - libtorch 2 (TorchSharp from NuGet, versions pinned in Directory.Packages.props): builds bench/Kiln.Bench.Torch and,
#    where the system's libstdc++ lacks GLIBCXX_3.4.32 (Debian 12), fixes up that build output only.
# Run from anywhere; needs dotnet, and g++ for the fix-up. Pass --no-apt to skip the Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--no-apt" ]; then
  need=()
  for p in python3-numpy python3-torch libopenblas0-pthread; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup-peers: installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  fi
fi

# ONNX Runtime first: it needs no fix-up, so it is ready even where the libtorch step below stops.
echo "setup-peers: building bench/Kiln.Bench.Onnx (downloads Microsoft.ML.OnnxRuntime, ~480 MB, once)"
dotnet build bench/Kiln.Bench.Onnx -c Release -nologo -v q
echo quit | dotnet bench/Kiln.Bench.Onnx/bin/Release/net10.0/Kiln.Bench.Onnx.dll --threads 1; echo

echo "setup-peers: building bench/Kiln.Bench.Torch (downloads TorchSharp and libtorch-cpu-linux-x64, ~600 MB, once)"
dotnet build bench/Kiln.Bench.Torch -c Release -nologo -v q
out=bench/Kiln.Bench.Torch/bin/Release/net10.0
native=$out/runtimes/linux-x64/native

# TorchSharp's libLibTorchSharp.so is built with GCC 13 and needs GLIBCXX_3.4.32 for one symbol,
# std::ios_base_library_init(). Debian 12 has no newer libstdc++ than GCC 12's (3.4.30): mark that version need weak
# and build a shim that defines the symbol; the runner loads the shim before libtorch.
# (awk reads to the end: an early exit would kill ldconfig with SIGPIPE, which pipefail turns into a silent stop)
libstdcxx=$(/sbin/ldconfig -p | awk '/libstdc\+\+\.so\.6 .*x86-64/ && !found {print $NF; found = 1}')
if grep -q GLIBCXX_3.4.32 "$libstdcxx"; then
  echo "setup-peers: $libstdcxx has GLIBCXX_3.4.32, no fix-up needed"
  rm -f "$native/libglibcxx_3_4_32_shim.so"
else
  missing=$(objdump -T "$native/libLibTorchSharp.so" | awk '/GLIBCXX_3\.4\.32/ {print $NF}')
  [ "$missing" = "_ZSt21ios_base_library_initv" ] || { echo "setup-peers: libLibTorchSharp.so needs other GLIBCXX_3.4.32 symbols than the shim has: $missing" >&2; exit 1; }
  g++ -O2 -shared -fPIC -Wl,--version-script=bench/peers/glibcxx_3_4_32_shim.map -o "$native/libglibcxx_3_4_32_shim.so" bench/peers/glibcxx_3_4_32_shim.cpp
  python3 bench/peers/weak_version_need.py "$native/libLibTorchSharp.so" GLIBCXX_3.4.32 >/dev/null
  echo "setup-peers: $libstdcxx lacks GLIBCXX_3.4.32; built the shim and marked libLibTorchSharp.so's need weak"
fi

# The check `kiln bench` does: the runner says hello with its version and configuration.
hello=$(echo quit | dotnet "$out/Kiln.Bench.Torch.dll" --threads 1)
echo "${hello:0:200}"
