# Regenerates the NumPy-written fixtures that IoTests reads (run with /usr/bin/python3; numpy 1.24.2 made the committed ones).
import numpy as np

a = np.arange(6).reshape(2, 3)
np.save("f4.npy", (a / 4).astype("<f4"))
np.save("f8.npy", (a / 3).astype("<f8"))
np.save("i4.npy", (a - 3).astype("<i4"))
np.save("i8.npy", (a * 10**12).astype("<i8"))
np.save("b1.npy", (a % 2 == 0))
np.save("f2.npy", (a / 8).astype("<f2"))
np.save("scalar.npy", np.float64(2.5))
np.save("empty.npy", np.zeros((0, 3), "<f4"))
np.save("fortran.npy", np.asfortranarray((np.arange(24).reshape(2, 3, 4) / 2).astype("<f8")))
np.save("bigendian.npy", (a / 4).astype(">f4"))
with open("v2.npy", "wb") as f:
    np.lib.format.write_array(f, (a / 4).astype("<f4"), version=(2, 0))
np.savez_compressed("arrays.npz", x=(a / 4).astype("<f4"), y=np.array([1, 2, 3], "<i8"))
