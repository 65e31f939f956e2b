#!/usr/bin/env bash
# check.sh [APP]: packs Kiln's libraries into a local feed under a fresh version, copies the app (a folder under tests/;
# default PackageSample, the README's user-defined op) out of the repository, and builds and runs it against the
# packages, as an app would. Exit status: the app's. With KILN_FEED set, the feed is packed there once and reused by
# later calls (CI checks several apps against one pack).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
app=${1:-PackageSample}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
feed=${KILN_FEED:-$work/feed}
if [ ! -s "$feed/version" ]; then
  version="0.1.0-local.$(date +%s)"
  for p in kernels/Kiln.Kernels.Reference kernels/Kiln.Kernels.Cpu kernels/Kiln.Kernels.Gpu src/Kiln src/Kiln.Gpu src/Kiln.IO src/Kiln.NN; do
    dotnet pack "$root/$p" -c Release -o "$feed" -p:Version="$version" -v q -nologo >/dev/null
  done
  echo "$version" > "$feed/version"
fi
version=$(cat "$feed/version")
mkdir "$work/app"
cp "$root/tests/$app/Program.cs" "$root/tests/$app/$app.csproj" "$work/app/"
# The local feed is added to the machine's configured sources (ILGPU and the rest come from there).
printf '<configuration><packageSources><add key="kiln-local" value="%s" /></packageSources></configuration>\n' "$feed" > "$work/app/nuget.config"
dotnet run --project "$work/app" -c Release -p:KilnVersion="$version" -v q
