using System.Numerics;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// General matrix multiply C = A B (+ C) with arbitrary row/column strides on A and B (transposes are strides).
/// Reference: <see cref="Reference.Gemm"/>.
/// </summary>
public static class Gemm
{
    /// <summary>
    /// C[m, n] (row-major, leading dimension <paramref name="ldc"/>) = A[m, k] B[k, n], plus C when <paramref name="accumulate"/>.
    /// A's element (i, p) is a[aOff + i*aRs + p*aCs]; B's element (p, j) is b[bOff + p*bRs + j*bCs].
    /// </summary>
    public static void Run<T>(int m, int n, int k, T[] a, int aOff, int aRs, int aCs, T[] b, int bOff, int bRs, int bCs,
        T[] c, int cOff, int ldc, bool accumulate) where T : unmanaged, INumber<T>
    {
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            if (!accumulate) for (int i = 0; i < m; i++) c.AsSpan(cOff + i * ldc, n).Clear();
            return;
        }
        // B as contiguous k-major rows so the inner loop is a vector multiply-add over a row of C.
        T[] bp; int bpOff;
        if (bCs == 1 && bRs == n) { bp = b; bpOff = bOff; }
        else
        {
            bp = new T[k * n]; bpOff = 0;
            for (int p = 0; p < k; p++) for (int j = 0; j < n; j++) bp[p * n + j] = b[bOff + p * bRs + j * bCs];
        }
        const int KB = 256;
        Strided.Parallel(m, 2L * m * n * k / 8, (s, e) =>
        {
            for (int i = s; i < e; i++)
            {
                var ci = c.AsSpan(cOff + i * ldc, n);
                if (!accumulate) ci.Clear();
                for (int p0 = 0; p0 < k; p0 += KB)
                {
                    int p1 = Math.Min(k, p0 + KB);
                    for (int p = p0; p < p1; p++)
                    {
                        T av = a[aOff + i * aRs + p * aCs];
                        TP.MultiplyAdd(new ReadOnlySpan<T>(bp, bpOff + p * n, n), av, ci, ci);
                    }
                }
            }
        });
    }
}
