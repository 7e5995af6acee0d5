# Reads guest-physical ranges from a dump with libkdumpfile (Debian's
# python3-libkdumpfile) and prints the sha256 of their bytes, then checks
# that each hole address is refused. Usage:
#   kdumpfile_sha.py FILE ADDR:SIZE[,ADDR:SIZE...] [HOLE,HOLE...]
import hashlib
import sys

import kdumpfile

k = kdumpfile.kdumpfile(sys.argv[1])
h = hashlib.sha256()
for r in sys.argv[2].split(","):
    addr, size = (int(x, 0) for x in r.split(":"))
    for off in range(0, size, 1 << 20):
        n = min(1 << 20, size - off)
        h.update(k.read(kdumpfile.KDUMP_MACHPHYSADDR, addr + off, n))
print(k.attr["file.format"], h.hexdigest())
if len(sys.argv) > 3 and sys.argv[3]:
    for a in sys.argv[3].split(","):
        try:
            k.read(kdumpfile.KDUMP_MACHPHYSADDR, int(a, 0), 1)
        except kdumpfile.exceptions.NoDataException:
            continue
        print("hole", a, "was readable")
        sys.exit(1)
