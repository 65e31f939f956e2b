using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// Row and column reductions, arg-reductions, prefix sums and any/all over contiguous [rows, len] or [len, cols] data.
/// Row kernels run one thread group per row (grid = rows). Reference: <see cref="Reference.Reduce"/>.
/// </summary>
public static class Reduce
{
    /// <summary>y[r] = op(x[r, :]) with a shared-memory tree (portable: OpenCL without subgroups).</summary>
    public static void Rows<T, TN>(ArrayView<T> x, int xOff, int len, ArrayView<T> y, int yOff, int op)
        where T : unmanaged where TN : struct, INum<T>
    {
        var sh = SharedMemory.Allocate<T>(GroupOps.MaxGroup);
        int r = Grid.IdxX, b = xOff + r * len;
        T acc = GroupOps.Identity<T, TN>(op);
        for (int j = Group.IdxX; j < len; j += Group.DimX) acc = GroupOps.Combine<T, TN>(op, acc, x[b + j]);
        acc = GroupOps.Reduce<T, TN>(acc, op, sh);
        if (Group.IdxX == 0) y[yOff + r] = acc;
    }

    /// <summary>y[r] = op(x[r, :]) with warp shuffles (CUDA, ILGPU's CPU accelerator).</summary>
    public static void RowsWarp<T, TN>(ArrayView<T> x, int xOff, int len, ArrayView<T> y, int yOff, int op)
        where T : unmanaged where TN : struct, INum<T>
    {
        var sh = SharedMemory.Allocate<T>(GroupOps.MaxGroup);
        int r = Grid.IdxX, b = xOff + r * len;
        T acc = GroupOps.Identity<T, TN>(op);
        for (int j = Group.IdxX; j < len; j += Group.DimX) acc = GroupOps.Combine<T, TN>(op, acc, x[b + j]);
        acc = GroupOps.ReduceWarp<T, TN>(acc, op, sh);
        if (Group.IdxX == 0) y[yOff + r] = acc;
    }

    /// <summary>y[c] = op(x[0, c], x[1, c], ...) for [len, cols]: one thread per column, rows in order (coalesced loads).</summary>
    public static void Cols<T, TN>(Index1D c, ArrayView<T> x, int xOff, int len, int cols, ArrayView<T> y, int yOff, int op)
        where T : unmanaged where TN : struct, INum<T>
    {
        T acc = GroupOps.Identity<T, TN>(op);
        for (int r = 0; r < len; r++) acc = GroupOps.Combine<T, TN>(op, acc, x[xOff + r * cols + c]);
        y[yOff + c] = acc;
    }

    /// <summary>
    /// y[r] = prod(x[r, :]) for a floating dtype, as <see cref="Reference.Reduce"/> defines it: each thread's running
    /// product and the tree keep the binary exponent apart (<see cref="ScaledProduct{T}"/>), so no partial product
    /// overflows or underflows and partial products never meet as infinity times zero; only the result rounds.
    /// </summary>
    public static void ProdRows<T, TF>(ArrayView<T> x, int xOff, int len, ArrayView<T> y, int yOff)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        var sm = SharedMemory.Allocate<T>(GroupOps.MaxGroup);
        var se = SharedMemory.Allocate<int>(GroupOps.MaxGroup);
        var sf = SharedMemory.Allocate<int>(GroupOps.MaxGroup);
        int r = Grid.IdxX, tid = Group.IdxX, b = xOff + r * len;
        var p = ScaledProduct<T>.One<TF>();
        for (int j = tid; j < len; j += Group.DimX) p = p.Times<TF>(x[b + j]);
        sm[tid] = p.M; se[tid] = p.E; sf[tid] = p.Flags;
        Group.Barrier();
        for (int s = Group.DimX / 2; s > 0; s >>= 1)
        {
            if (tid < s)
            {
                var q = new ScaledProduct<T>(sm[tid], se[tid], sf[tid]).Times<TF>(new ScaledProduct<T>(sm[tid + s], se[tid + s], sf[tid + s]));
                sm[tid] = q.M; se[tid] = q.E; sf[tid] = q.Flags;
            }
            Group.Barrier();
        }
        if (tid == 0) y[yOff + r] = new ScaledProduct<T>(sm[0], se[0], sf[0]).Value<TF>();
    }

    /// <summary>y[c] = prod(x[0, c], x[1, c], ...) for a floating dtype, the exponent kept apart as in <see cref="ProdRows{T, TF}"/>.</summary>
    public static void ProdCols<T, TF>(Index1D c, ArrayView<T> x, int xOff, int len, int cols, ArrayView<T> y, int yOff)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        var p = ScaledProduct<T>.One<TF>();
        for (int r = 0; r < len; r++) p = p.Times<TF>(x[xOff + r * cols + c]);
        y[yOff + c] = p.Value<TF>();
    }

    /// <summary>Value and Int64 index of the first maximum (max != 0) or minimum of each row; NaN counts as the extreme.</summary>
    public static void ArgRows<T, TN>(ArrayView<T> x, int xOff, int len, int max, ArrayView<T> values, ArrayView<long> indices)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        var sv = SharedMemory.Allocate<T>(GroupOps.MaxGroup);
        var si = SharedMemory.Allocate<int>(GroupOps.MaxGroup);
        int r = Grid.IdxX, tid = Group.IdxX, b = xOff + r * len;
        T best = n.Zero; int bi = -1;
        for (int j = tid; j < len; j += Group.DimX)
        {
            T v = x[b + j];
            if (bi < 0 || Better<T, TN>(v, j, best, bi, max != 0)) { best = v; bi = j; }
        }
        sv[tid] = best; si[tid] = bi;
        Group.Barrier();
        for (int s = Group.DimX / 2; s > 0; s >>= 1)
        {
            if (tid < s)
            {
                int oi = si[tid + s];
                if (oi >= 0 && (si[tid] < 0 || Better<T, TN>(sv[tid + s], oi, sv[tid], si[tid], max != 0))) { sv[tid] = sv[tid + s]; si[tid] = oi; }
            }
            Group.Barrier();
        }
        if (tid == 0) { values[r] = sv[0]; indices[r] = si[0]; }
    }

    // (v, i) beats (w, k): NaN first (lowest index among NaNs), then the larger (smaller) value, ties to the lower index.
    static bool Better<T, TN>(T v, int i, T w, int k, bool max) where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        bool vn = n.IsNaN(v), wn = n.IsNaN(w);
        if (vn || wn) return vn && (!wn || i < k);
        if (n.Eq(v, w)) return i < k;
        return max ? n.Lt(w, v) : n.Lt(v, w);
    }

    /// <summary>
    /// Inclusive prefix sums of each row (from the end when reverse != 0): each thread scans a chunk, the chunk totals are
    /// scanned in shared memory, and each chunk is rescanned with its offset. y is contiguous [rows, len].
    /// </summary>
    public static void CumsumRows<T, TN>(ArrayView<T> x, int xOff, int len, int reverse, ArrayView<T> y)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        var sh = SharedMemory.Allocate<T>(GroupOps.MaxGroup);
        int r = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        int chunk = (len + g - 1) / g, s = tid * chunk, e = s + chunk < len ? s + chunk : len;
        T acc = n.Zero;
        for (int p = s; p < e; p++) acc = n.Add(acc, x[xOff + r * len + (reverse != 0 ? len - 1 - p : p)]);
        sh[tid] = acc;
        Group.Barrier();
        if (tid == 0)
        {
            T run = n.Zero;
            for (int t = 0; t < g; t++) { T v = sh[t]; sh[t] = run; run = n.Add(run, v); }
        }
        Group.Barrier();
        acc = sh[tid];
        for (int p = s; p < e; p++)
        {
            int q = r * len + (reverse != 0 ? len - 1 - p : p);
            acc = n.Add(acc, x[xOff + q]);
            y[q] = acc;
        }
    }

    /// <summary>
    /// Inclusive running products of each row (from the end when reverse != 0), chunked as <see cref="CumsumRows{T, TN}"/>:
    /// each thread multiplies its chunk, thread 0 scans the chunk products, and each chunk is rescanned from its prefix.
    /// </summary>
    public static void CumprodRows<T, TN>(ArrayView<T> x, int xOff, int len, int reverse, ArrayView<T> y)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        var sh = SharedMemory.Allocate<T>(GroupOps.MaxGroup);
        int r = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        int chunk = (len + g - 1) / g, s = tid * chunk, e = s + chunk < len ? s + chunk : len;
        T acc = n.One;
        for (int p = s; p < e; p++) acc = n.Mul(acc, x[xOff + r * len + (reverse != 0 ? len - 1 - p : p)]);
        sh[tid] = acc;
        Group.Barrier();
        if (tid == 0)
        {
            T run = n.One;
            for (int t = 0; t < g; t++) { T v = sh[t]; sh[t] = run; run = n.Mul(run, v); }
        }
        Group.Barrier();
        acc = sh[tid];
        for (int p = s; p < e; p++)
        {
            int q = r * len + (reverse != 0 ? len - 1 - p : p);
            acc = n.Mul(acc, x[xOff + q]);
            y[q] = acc;
        }
    }

    // (w, k) after (v, i) in scan order replaces it as the running maximum (minimum): a NaN always does, and a tie does.
    static bool Replaces<T, TN>(T v, T w, bool max) where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        return n.IsNaN(w) || (!n.IsNaN(v) && (max ? n.Le(v, w) : n.Le(w, v)));
    }

    /// <summary>
    /// Running maximum (max != 0) or minimum of each row with the Int64 index of the running extreme (the later one on
    /// ties; NaN propagates and the last NaN's index wins), from the end when reverse != 0. The chunk extremes are
    /// combined in order, so the result is that of the sequential scan. Index -1 marks an empty chunk.
    /// </summary>
    public static void ArgScanRows<T, TN>(ArrayView<T> x, int xOff, int len, int max, int reverse, ArrayView<T> y, ArrayView<long> indices)
        where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        var sv = SharedMemory.Allocate<T>(GroupOps.MaxGroup);
        var si = SharedMemory.Allocate<long>(GroupOps.MaxGroup);
        int r = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        int chunk = (len + g - 1) / g, s = tid * chunk, e = s + chunk < len ? s + chunk : len;
        T acc = n.Zero; long at = -1;
        for (int p = s; p < e; p++)
        {
            int q = reverse != 0 ? len - 1 - p : p;
            T v = x[xOff + r * len + q];
            if (at < 0 || Replaces<T, TN>(acc, v, max != 0)) { acc = v; at = q; }
        }
        sv[tid] = acc; si[tid] = at;
        Group.Barrier();
        if (tid == 0)
        {
            T run = n.Zero; long runAt = -1;
            for (int t = 0; t < g; t++)
            {
                T v = sv[t]; long i = si[t];
                sv[t] = run; si[t] = runAt;
                if (i >= 0 && (runAt < 0 || Replaces<T, TN>(run, v, max != 0))) { run = v; runAt = i; }
            }
        }
        Group.Barrier();
        acc = sv[tid]; at = si[tid];
        for (int p = s; p < e; p++)
        {
            int q = reverse != 0 ? len - 1 - p : p;
            T v = x[xOff + r * len + q];
            if (at < 0 || Replaces<T, TN>(acc, v, max != 0)) { acc = v; at = q; }
            y[r * len + q] = acc;
            indices[r * len + q] = at;
        }
    }

    /// <summary>log(exp(a) + exp(b)) as <see cref="Reference.LogAddExp"/>: NaN propagates, equal infinities give themselves.</summary>
    public static T LogAddExp<T, TF>(T a, T b) where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        if (f.IsNaN(a) || f.IsNaN(b)) return f.Add(a, b);
        bool lt = f.Lt(a, b);
        T lo = lt ? a : b, hi = lt ? b : a;
        // Equal infinities: their difference is NaN, and log1p(exp(NaN)) would be too.
        if (f.Eq(lo, hi) && f.IsNaN(f.Sub(lo, hi))) return lo;
        T t = f.Exp(f.Sub(lo, hi)), u = f.Add(f.One, t);
        // log1p(t) by Goldberg's formula: the rounding of 1 + t cancels in log(u) t / (u - 1).
        return f.Add(hi, f.Eq(u, f.One) ? t : f.Div(f.Mul(f.Log(u), t), f.Sub(u, f.One)));
    }

    /// <summary>Inclusive log(sum(exp)) of each row (from the end when reverse != 0), chunked as <see cref="CumsumRows{T, TN}"/>.</summary>
    public static void LogCumSumExpRows<T, TF>(ArrayView<T> x, int xOff, int len, int reverse, ArrayView<T> y)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        var sh = SharedMemory.Allocate<T>(GroupOps.MaxGroup);
        int r = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        int chunk = (len + g - 1) / g, s = tid * chunk, e = s + chunk < len ? s + chunk : len;
        T acc = f.Lowest;
        for (int p = s; p < e; p++) acc = LogAddExp<T, TF>(acc, x[xOff + r * len + (reverse != 0 ? len - 1 - p : p)]);
        sh[tid] = acc;
        Group.Barrier();
        if (tid == 0)
        {
            T run = f.Lowest;
            for (int t = 0; t < g; t++) { T v = sh[t]; sh[t] = run; run = LogAddExp<T, TF>(run, v); }
        }
        Group.Barrier();
        acc = sh[tid];
        for (int p = s; p < e; p++)
        {
            int q = r * len + (reverse != 0 ? len - 1 - p : p);
            acc = LogAddExp<T, TF>(acc, x[xOff + q]);
            y[q] = acc;
        }
    }

    /// <summary>any (all != 0: all) of each row of 0/1 bytes; one thread per row.</summary>
    public static void AnyAllRows(Index1D r, ArrayView<byte> x, int xOff, int len, int all, ArrayView<byte> y)
    {
        bool res = all != 0;
        for (int j = 0; j < len; j++)
        {
            bool v = x[xOff + r * len + j] != 0;
            if (all != 0 && !v) { res = false; break; }
            if (all == 0 && v) { res = true; break; }
        }
        y[r] = res ? (byte)1 : (byte)0;
    }
}

/// <summary>The typed kernels of <see cref="Reduce"/> for one numeric dtype.</summary>
public static class ReduceKernels<T, TN> where T : unmanaged where TN : struct, INum<T>
{
    /// <summary>reduce.rows: one group per row, shared-memory tree.</summary>
    public static readonly GroupKernel<ArrayView<T>, int, int, ArrayView<T>, int, int> Rows = new($"reduce.rows.{Dt.Of<TN>()}", Reduce.Rows<T, TN>);
    /// <summary>reduce.rows_warp: one group per row, warp shuffles.</summary>
    public static readonly GroupKernel<ArrayView<T>, int, int, ArrayView<T>, int, int> RowsWarp = new($"reduce.rows_warp.{Dt.Of<TN>()}", Reduce.RowsWarp<T, TN>, needsWarp: true);
    /// <summary>reduce.cols: one thread per column.</summary>
    public static readonly Kernel<ArrayView<T>, int, int, int, ArrayView<T>, int, int> Cols = new($"reduce.cols.{Dt.Of<TN>()}", Reduce.Cols<T, TN>);
    /// <summary>reduce.arg_rows: value and index of each row's first maximum or minimum.</summary>
    public static readonly GroupKernel<ArrayView<T>, int, int, int, ArrayView<T>, ArrayView<long>> ArgRows = new($"reduce.arg_rows.{Dt.Of<TN>()}", Reduce.ArgRows<T, TN>);
    /// <summary>reduce.cumsum_rows: prefix sums of each row.</summary>
    public static readonly GroupKernel<ArrayView<T>, int, int, int, ArrayView<T>> CumsumRows = new($"reduce.cumsum_rows.{Dt.Of<TN>()}", Reduce.CumsumRows<T, TN>);
    /// <summary>reduce.cumprod_rows: running products of each row.</summary>
    public static readonly GroupKernel<ArrayView<T>, int, int, int, ArrayView<T>> CumprodRows = new($"reduce.cumprod_rows.{Dt.Of<TN>()}", Reduce.CumprodRows<T, TN>);
    /// <summary>reduce.arg_scan_rows: running maximum or minimum of each row with its index.</summary>
    public static readonly GroupKernel<ArrayView<T>, int, int, int, int, ArrayView<T>, ArrayView<long>> ArgScanRows = new($"reduce.arg_scan_rows.{Dt.Of<TN>()}", Reduce.ArgScanRows<T, TN>);
}

/// <summary>
/// A running product |p| = M · 2^E with M in [1, 2), and Flags: 1 a zero factor, 2 an infinite one, 4 a NaN, 8 an odd
/// number of factors with the sign bit. Combining two is exact up to the rounding of M.
/// </summary>
public readonly struct ScaledProduct<T> where T : unmanaged
{
    /// <summary>The significand, in [1, 2).</summary>
    public readonly T M;
    /// <summary>The binary exponent (clamped far outside every dtype's range, so it cannot wrap).</summary>
    public readonly int E;
    /// <summary>The special-factor and sign flags.</summary>
    public readonly int Flags;

    /// <summary>A product with these parts.</summary>
    public ScaledProduct(T m, int e, int flags) { M = m; E = e; Flags = flags; }

    /// <summary>The empty product.</summary>
    public static ScaledProduct<T> One<TF>() where TF : struct, IFloat<T> => new(default(TF).One, 0, 0);

    /// <summary>This product times the factor <paramref name="v"/>.</summary>
    public ScaledProduct<T> Times<TF>(T v) where TF : struct, IFloat<T>
    {
        TF f = default;
        int flags = f.SignBit(v) ? Flags ^ 8 : Flags;
        if (f.IsNaN(v)) return new(M, E, flags | 4);
        if (f.Eq(v, f.Zero)) return new(M, E, flags | 1);
        if (f.Eq(f.Abs(v), f.Highest)) return new(M, E, flags | 2);
        return Normalized<TF>(f.Mul(M, f.Significand(v)), E + f.ILogB(v), flags);
    }

    /// <summary>This product times <paramref name="q"/>.</summary>
    public ScaledProduct<T> Times<TF>(ScaledProduct<T> q) where TF : struct, IFloat<T> =>
        Normalized<TF>(default(TF).Mul(M, q.M), E + q.E, ((Flags | q.Flags) & 7) | ((Flags ^ q.Flags) & 8));

    static ScaledProduct<T> Normalized<TF>(T m, int e, int flags) where TF : struct, IFloat<T>
    {
        TF f = default;
        if (!f.Lt(m, f.FromDouble(2))) { m = f.Mul(m, f.FromDouble(0.5)); e++; }   // m in [1, 4): one halving, exact
        e = e > (1 << 29) ? 1 << 29 : e < -(1 << 29) ? -(1 << 29) : e;
        return new(m, e, flags);
    }

    /// <summary>The product rounded to T: NaN for a NaN factor or zeros with infinities, else a signed 0, infinity or M · 2^E.</summary>
    public T Value<TF>() where TF : struct, IFloat<T>
    {
        TF f = default;
        T mag = (Flags & 4) != 0 || (Flags & 3) == 3 ? f.FromDouble(double.NaN)
            : (Flags & 1) != 0 ? f.Zero : (Flags & 2) != 0 ? f.Highest : f.ScaleB(M, E);
        return (Flags & 8) != 0 ? f.Neg(mag) : mag;
    }
}

/// <summary>The typed floating-point kernels of <see cref="Reduce"/>: products with the exponent kept apart, log-cum-sum-exp.</summary>
public static class FloatReduceKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>reduce.prod_rows: each row's product with the exponent kept apart.</summary>
    public static readonly GroupKernel<ArrayView<T>, int, int, ArrayView<T>, int> ProdRows = new($"reduce.prod_rows.{Dt.Of<TF>()}", Reduce.ProdRows<T, TF>);
    /// <summary>reduce.prod_cols: each column's product with the exponent kept apart.</summary>
    public static readonly Kernel<ArrayView<T>, int, int, int, ArrayView<T>, int> ProdCols = new($"reduce.prod_cols.{Dt.Of<TF>()}", Reduce.ProdCols<T, TF>);
    /// <summary>reduce.logcumsumexp_rows: running log(sum(exp)) of each row.</summary>
    public static readonly GroupKernel<ArrayView<T>, int, int, int, ArrayView<T>> LogCumSumExpRows = new($"reduce.logcumsumexp_rows.{Dt.Of<TF>()}", Reduce.LogCumSumExpRows<T, TF>);
}

/// <summary>The typed boolean kernel of <see cref="Reduce"/>.</summary>
public static class ReduceKernels
{
    /// <summary>reduce.any_all_rows: any or all of each row.</summary>
    public static readonly Kernel<ArrayView<byte>, int, int, int, ArrayView<byte>> AnyAllRows = new("reduce.any_all_rows.bool", Reduce.AnyAllRows);
}
