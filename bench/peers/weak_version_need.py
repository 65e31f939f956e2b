#!/usr/bin/env python3
"""Marks one symbol-version need of an ELF shared object weak (VER_FLG_WEAK in its .gnu.version_r entry).

usage: weak_version_need.py LIB.so VERSION      prints how many entries it changed (0: none named VERSION)

ld.so refuses to load a library whose needed version (here GLIBCXX_3.4.32 from libstdc++.so.6) the named library lacks,
unless the need is weak; the symbols of that version then resolve from whatever object defines them (bench/peers/
glibcxx_3_4_32_shim.cpp, loaded first). Only 64-bit little-endian ELF files (x86-64, aarch64) are handled.
"""
import struct, sys

def main(path, version):
    data = bytearray(open(path, "rb").read())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit(f"{path}: not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    changed = 0
    for _, kind, _, _, offset, _, link, info, _, _ in sections:
        if kind != 0x6FFFFFFE:  # SHT_GNU_verneed: info = number of Verneed entries, link = their string table
            continue
        strings = sections[link][4]
        need = offset
        for _ in range(info):
            _, count, _, aux, next_need = struct.unpack_from("<HHIII", data, need)
            entry = need + aux
            for _ in range(count):
                _, flags, _, name, next_aux = struct.unpack_from("<IHHII", data, entry)
                end = data.index(b"\0", strings + name)
                if data[strings + name:end].decode() == version:
                    struct.pack_into("<H", data, entry + 4, flags | 0x2)  # VER_FLG_WEAK
                    changed += 1
                entry += next_aux
            need += next_need
    if changed:
        open(path, "wb").write(data)
    print(changed)

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
