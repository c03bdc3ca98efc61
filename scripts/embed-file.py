#!/usr/bin/env python3
"""embed-file.py SYMBOL INPUT OUTPUT: write a C file defining
`const char SYMBOL[]` with INPUT's bytes (used at build time)."""
import sys

symbol, src, dst = sys.argv[1:4]
data = open(src, "rb").read()
with open(dst, "w") as out:
    out.write("/* generated from %s by scripts/embed-file.py; do not edit */\n" % src.split("/")[-1])
    out.write("const char %s[] = {\n" % symbol)
    for i in range(0, len(data), 16):
        out.write("\t" + ", ".join("0x%02x" % b for b in data[i:i + 16]) + ",\n")
    out.write("\t0x00\n};\n")
