using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>Layer norm and RMS norm of rows, one thread group per row (two-pass mean and variance).
/// Reference: <see cref="Reference.LayerNorm"/>, <see cref="Reference.RmsNorm"/>.</summary>
public static class LayerNorm
{
    /// <summary>y[r, :] = (x - mean) / sqrt(var + eps) * w + b, with w and b used when hasW / hasB are non-zero.</summary>
    public static void Rows<T, TF>(ArrayView<T> x, int xOff, int len, ArrayView<T> w, int wOff, int hasW, ArrayView<T> bias, int bOff, int hasB, T eps, ArrayView<T> y)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        var sh = SharedMemory.Allocate<T>(GroupOps.MaxGroup);
        int r = Grid.IdxX, b = xOff + r * len, o = r * len;
        T n = f.FromLong(len);
        T s = f.Zero;
        for (int j = Group.IdxX; j < len; j += Group.DimX) s = f.Add(s, x[b + j]);
        T mean = f.Div(GroupOps.Reduce<T, TF>(s, (int)ReduceOp.Sum, sh), n);
        T v = f.Zero;
        for (int j = Group.IdxX; j < len; j += Group.DimX) { T d = f.Sub(x[b + j], mean); v = f.Add(v, f.Mul(d, d)); }
        T var = f.Div(GroupOps.Reduce<T, TF>(v, (int)ReduceOp.Sum, sh), n);
        T rstd = f.Div(f.One, f.Sqrt(f.Add(var, eps)));
        for (int j = Group.IdxX; j < len; j += Group.DimX)
        {
            T t = f.Mul(f.Sub(x[b + j], mean), rstd);
            if (hasW != 0) t = f.Mul(t, w[wOff + j]);
            if (hasB != 0) t = f.Add(t, bias[bOff + j]);
            y[o + j] = t;
        }
    }

    /// <summary>y[r, :] = x / sqrt(mean(x^2) + eps) * w, with w used when hasW is non-zero.</summary>
    public static void RmsRows<T, TF>(ArrayView<T> x, int xOff, int len, ArrayView<T> w, int wOff, int hasW, T eps, ArrayView<T> y)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        var sh = SharedMemory.Allocate<T>(GroupOps.MaxGroup);
        int r = Grid.IdxX, b = xOff + r * len, o = r * len;
        T s = f.Zero;
        for (int j = Group.IdxX; j < len; j += Group.DimX) { T t = x[b + j]; s = f.Add(s, f.Mul(t, t)); }
        T ms = f.Div(GroupOps.Reduce<T, TF>(s, (int)ReduceOp.Sum, sh), f.FromLong(len));
        T scale = f.Div(f.One, f.Sqrt(f.Add(ms, eps)));
        for (int j = Group.IdxX; j < len; j += Group.DimX)
        {
            T t = f.Mul(x[b + j], scale);
            if (hasW != 0) t = f.Mul(t, w[wOff + j]);
            y[o + j] = t;
        }
    }
}

/// <summary>The typed kernels of <see cref="LayerNorm"/> for one floating dtype.</summary>
public static class LayerNormKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>layernorm.rows: layer norm of each row with optional weight and bias.</summary>
    public static readonly GroupKernel<ArrayView<T>, int, int, ArrayView<T>, int, int, ArrayView<T>, int, int, T, ArrayView<T>> Rows =
        new($"layernorm.rows.{Dt.Of<TF>()}", LayerNorm.Rows<T, TF>);
    /// <summary>layernorm.rms_rows: RMS norm of each row with an optional weight.</summary>
    public static readonly GroupKernel<ArrayView<T>, int, int, ArrayView<T>, int, int, T, ArrayView<T>> RmsRows =
        new($"layernorm.rms_rows.{Dt.Of<TF>()}", LayerNorm.RmsRows<T, TF>);
}
