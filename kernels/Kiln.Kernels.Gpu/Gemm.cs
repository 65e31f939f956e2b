using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>Shapes, strides and offsets of one batched GEMM C[b] = A[b] B[b] (A [M, K], B [K, N], C contiguous [M, N]).</summary>
public struct GemmArgs
{
    /// <summary>Problem size.</summary>
    public int M, N, K;
    /// <summary>A's offset, batch stride, row stride and column stride (transposes are strides; batch stride 0 broadcasts).</summary>
    public int AOff, ABs, ARs, ACs;
    /// <summary>B's offset, batch stride, row stride and column stride.</summary>
    public int BOff, BBs, BRs, BCs;
    /// <summary>C's offset (C is contiguous, batch stride M*N).</summary>
    public int COff;
}

/// <summary>
/// Tiled shared-memory GEMM: a group of (gx, gy) threads computes a (4 gy) x (4 gx) tile of C, each thread a 4x4 block
/// held in registers. K advances in steps of <see cref="BK"/> through two shared-memory buffers: the next A and B tiles
/// are loaded into one while the other is multiplied, so each step needs a single barrier.
/// Reference: <see cref="Reference.Gemm"/>.
/// </summary>
public static class Gemm
{
    /// <summary>K step of a tile.</summary>
    public const int BK = 16;
    /// <summary>Rows and columns of C per thread.</summary>
    public const int TM = 4, TN = 4;
    /// <summary>Largest tile extent (a 16 x 16 group).</summary>
    public const int MaxTile = 64;

    /// <summary>Grid (ceil(N / 4gx), ceil(M / 4gy), batch), group (gx, gy) with gx, gy &lt;= 16.</summary>
    public static void Tiled<T, TN2>(ArrayView<T> a, ArrayView<T> b, ArrayView<T> c, GemmArgs g)
        where T : unmanaged where TN2 : struct, INum<T> =>
        Tiles<T, TN2, T, Same<T>>(a, b, c, g);

    /// <summary>
    /// As <see cref="Tiled{T, TN2}"/> in float32 for a half-precision B stored as 16-bit patterns, widened exactly by
    /// <typeparamref name="TW"/> as its tiles are loaded, accumulated in float32.
    /// </summary>
    public static void TiledWide<TW>(ArrayView<float> a, ArrayView<ushort> b, ArrayView<float> c, GemmArgs g)
        where TW : struct, IOperand<ushort, float> =>
        Tiles<float, F32, ushort, TW>(a, b, c, g);

    // The tiled product with B's elements of TB read as T by TR.
    static void Tiles<T, TN2, TB, TR>(ArrayView<T> a, ArrayView<TB> b, ArrayView<T> c, GemmArgs g)
        where T : unmanaged where TN2 : struct, INum<T> where TB : unmanaged where TR : struct, IOperand<TB, T>
    {
        TN2 n = default;
        var sa = SharedMemory.Allocate<T>(2 * BK * MaxTile);
        var sb = SharedMemory.Allocate<T>(2 * BK * MaxTile);
        int tx = Group.IdxX, ty = Group.IdxY, gx = Group.DimX, gy = Group.DimY;
        int bm = gy * TM, bn = gx * TN, row0 = Grid.IdxY * bm, col0 = Grid.IdxX * bn, batch = Grid.IdxZ;
        int threads = gx * gy, tid = ty * gx + tx;
        int aBase = g.AOff + batch * g.ABs, bBase = g.BOff + batch * g.BBs;
        int tiles = (g.K + BK - 1) / BK;
        var acc = new Block4x4<T>();
        acc.Clear(n.Zero);
        if (tiles > 0) LoadTiles<T, TN2, TB, TR>(a, b, sa, sb, g, 0, 0, aBase, bBase, row0, col0, bm, bn, tid, threads);
        Group.Barrier();
        for (int t = 0; t < tiles; t++)
        {
            int cur = t & 1;
            if (t + 1 < tiles) LoadTiles<T, TN2, TB, TR>(a, b, sa, sb, g, t + 1, cur ^ 1, aBase, bBase, row0, col0, bm, bn, tid, threads);
            int ab = cur * BK * MaxTile + ty * TM, bb = cur * BK * MaxTile + tx * TN;
            for (int kk = 0; kk < BK; kk++)
            {
                int o = kk * MaxTile;
                acc.Fma<TN2>(sa[ab + o], sa[ab + o + 1], sa[ab + o + 2], sa[ab + o + 3], sb[bb + o], sb[bb + o + 1], sb[bb + o + 2], sb[bb + o + 3]);
            }
            Group.Barrier();
        }
        int r0 = row0 + ty * TM, c0 = col0 + tx * TN, cBase = g.COff + batch * g.M * g.N;
        for (int i = 0; i < TM; i++)
            for (int j = 0; j < TN; j++)
                if (r0 + i < g.M && c0 + j < g.N) c[cBase + (r0 + i) * g.N + c0 + j] = acc.Get(i, j);
    }

    static void LoadTiles<T, TN2, TB, TR>(ArrayView<T> a, ArrayView<TB> b, ArrayView<T> sa, ArrayView<T> sb, GemmArgs g, int t, int buf,
        int aBase, int bBase, int row0, int col0, int bm, int bn, int tid, int threads)
        where T : unmanaged where TN2 : struct, INum<T> where TB : unmanaged where TR : struct, IOperand<TB, T>
    {
        TN2 n = default;
        TR r = default;
        int k0 = t * BK, sOff = buf * BK * MaxTile;
        for (int e = tid; e < bm * BK; e += threads)
        {
            int mi = e / BK, kk = e % BK, gi = row0 + mi, gk = k0 + kk;
            sa[sOff + kk * MaxTile + mi] = gi < g.M && gk < g.K ? a[aBase + gi * g.ARs + gk * g.ACs] : n.Zero;
        }
        for (int e = tid; e < bn * BK; e += threads)
        {
            int kk = e / bn, nj = e % bn, gk = k0 + kk, gj = col0 + nj;
            sb[sOff + kk * MaxTile + nj] = gk < g.K && gj < g.N ? r.Read(b[bBase + gk * g.BRs + gj * g.BCs]) : n.Zero;
        }
    }
}

/// <summary>How a GEMM reads an operand element stored as <typeparamref name="TS"/> in its accumulation type <typeparamref name="T"/>.</summary>
public interface IOperand<TS, T> where TS : unmanaged where T : unmanaged
{
    /// <summary>The stored element as T.</summary>
    T Read(TS v);
}

/// <summary>An operand stored in the accumulation type.</summary>
public struct Same<T> : IOperand<T, T> where T : unmanaged
{
    /// <inheritdoc/>
    public readonly T Read(T v) => v;
}

/// <summary>bfloat16 bits widened to float32 (the top half of its bits).</summary>
public struct WidenBF16 : IOperand<ushort, float>
{
    /// <inheritdoc/>
    public readonly float Read(ushort v) => Interop.IntAsFloat((uint)v << 16);
}

/// <summary>
/// float16 bits widened exactly to float32 by integer operations alone (no float64, and no float arithmetic on
/// subnormals, which some devices flush): the exponent is rebiased, a subnormal's mantissa normalized.
/// </summary>
public struct WidenF16 : IOperand<ushort, float>
{
    /// <inheritdoc/>
    public readonly float Read(ushort v)
    {
        uint sign = (uint)(v & 0x8000) << 16, e = (uint)(v >> 10) & 0x1F, m = (uint)v & 0x3FF;
        if (e == 0x1F) return Interop.IntAsFloat(sign | 0x7F800000u | (m << 13));
        if (e != 0) return Interop.IntAsFloat(sign | ((e + 112) << 23) | (m << 13));
        if (m == 0) return Interop.IntAsFloat(sign);
        // m * 2^-24: shift m up to a leading 1 at bit 10, one binade down per shift from 2^-14.
        uint exp = 113;
        while ((m & 0x400) == 0) { m <<= 1; exp--; }
        return Interop.IntAsFloat(sign | (exp << 23) | ((m & 0x3FF) << 13));
    }
}

/// <summary>
/// Exact integer GEMM for Int32 and Int64: one thread per element of C, accumulated in 64-bit integers (wrapping, as
/// PyTorch's; Int32 keeps the low 32 bits) so no backend's 32-bit overflow rules apply. Reference: <see cref="Reference.GemmInt64"/>.
/// </summary>
public static class IntegerGemm
{
    /// <summary>C[e] for e = (batch, i, j) over the batch x M x N elements of C.</summary>
    public static void Elements<T, TN>(Index1D e, ArrayView<T> a, ArrayView<T> b, ArrayView<T> c, GemmArgs g)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        int k = e, mn = g.M * g.N, t = k / mn, i = k % mn / g.N, j = k % g.N;
        int ai = g.AOff + t * g.ABs + i * g.ARs, bj = g.BOff + t * g.BBs + j * g.BCs;
        long acc = 0;
        for (int p = 0; p < g.K; p++) acc += n.ToLong(a[ai + p * g.ACs]) * n.ToLong(b[bj + p * g.BRs]);
        c[g.COff + k] = n.FromLong(acc);
    }
}

/// <summary>A 4x4 block of accumulators as sixteen fields, so the backend keeps them in registers.</summary>
public struct Block4x4<T> where T : unmanaged
{
    T c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33;

    /// <summary>Sets every accumulator to <paramref name="z"/>.</summary>
    public void Clear(T z)
    {
        c00 = c01 = c02 = c03 = z; c10 = c11 = c12 = c13 = z;
        c20 = c21 = c22 = c23 = z; c30 = c31 = c32 = c33 = z;
    }

    /// <summary>Adds the outer product of column (a0..a3) and row (b0..b3).</summary>
    public void Fma<TN>(T a0, T a1, T a2, T a3, T b0, T b1, T b2, T b3) where TN : struct, INum<T>
    {
        TN n = default;
        c00 = n.Add(c00, n.Mul(a0, b0)); c01 = n.Add(c01, n.Mul(a0, b1)); c02 = n.Add(c02, n.Mul(a0, b2)); c03 = n.Add(c03, n.Mul(a0, b3));
        c10 = n.Add(c10, n.Mul(a1, b0)); c11 = n.Add(c11, n.Mul(a1, b1)); c12 = n.Add(c12, n.Mul(a1, b2)); c13 = n.Add(c13, n.Mul(a1, b3));
        c20 = n.Add(c20, n.Mul(a2, b0)); c21 = n.Add(c21, n.Mul(a2, b1)); c22 = n.Add(c22, n.Mul(a2, b2)); c23 = n.Add(c23, n.Mul(a2, b3));
        c30 = n.Add(c30, n.Mul(a3, b0)); c31 = n.Add(c31, n.Mul(a3, b1)); c32 = n.Add(c32, n.Mul(a3, b2)); c33 = n.Add(c33, n.Mul(a3, b3));
    }

    /// <summary>Accumulator (i, j).</summary>
    public readonly T Get(int i, int j)
    {
        switch (i * 4 + j)
        {
            case 0: return c00; case 1: return c01; case 2: return c02; case 3: return c03;
            case 4: return c10; case 5: return c11; case 6: return c12; case 7: return c13;
            case 8: return c20; case 9: return c21; case 10: return c22; case 11: return c23;
            case 12: return c30; case 13: return c31; case 14: return c32; default: return c33;
        }
    }
}

/// <summary>The typed kernel of <see cref="Gemm"/> for one numeric dtype.</summary>
public static class GemmKernels<T, TN> where T : unmanaged where TN : struct, INum<T>
{
    /// <summary>gemm.tiled: batched C = A B, a 4x4 block of C per thread.</summary>
    public static readonly GroupKernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, GemmArgs> Tiled = new($"gemm.tiled.{Dt.Of<TN>()}", Gemm.Tiled<T, TN>);
    /// <summary>gemm.integer: exact integer C = A B, one element per thread with 64-bit accumulation.</summary>
    public static readonly Kernel<ArrayView<T>, ArrayView<T>, ArrayView<T>, GemmArgs> Integer = new($"gemm.integer.{Dt.Of<TN>()}", IntegerGemm.Elements<T, TN>);
}

/// <summary>The typed kernels of <see cref="Gemm.TiledWide{TW}"/>: float32 A times a half-precision B.</summary>
public static class HalfGemmKernels<TW> where TW : struct, IOperand<ushort, float>
{
    /// <summary>gemm.tiled_wide.bf16 / .f16: batched C = A B with B widened from its 16-bit storage, a 4x4 block of C per thread.</summary>
    public static readonly GroupKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, GemmArgs> Tiled =
        new($"gemm.tiled_wide.{(typeof(TW) == typeof(WidenBF16) ? "bf16" : "f16")}", Gemm.TiledWide<TW>);
}
