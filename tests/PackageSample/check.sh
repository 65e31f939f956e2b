#!/usr/bin/env bash
# Packs Kiln's libraries into a local feed under a fresh version, copies this sample (the README's user-defined op) out of
# the repository, and builds and runs it against the packages, as an app would. Exit 0 when the op validates everywhere.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
version="0.1.0-local.$(date +%s)"
for p in kernels/Kiln.Kernels.Reference kernels/Kiln.Kernels.Cpu kernels/Kiln.Kernels.Gpu src/Kiln src/Kiln.Gpu; do
  dotnet pack "$root/$p" -c Release -o "$work/feed" -p:Version="$version" -v q -nologo >/dev/null
done
mkdir "$work/app"
cp "$root/tests/PackageSample/Program.cs" "$root/tests/PackageSample/PackageSample.csproj" "$work/app/"
# The local feed is added to the machine's configured sources (ILGPU and the rest come from there).
printf '<configuration><packageSources><add key="kiln-local" value="%s" /></packageSources></configuration>\n' "$work/feed" > "$work/app/nuget.config"
dotnet run --project "$work/app" -c Release -p:KilnVersion="$version" -v q
