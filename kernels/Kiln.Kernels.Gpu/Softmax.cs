using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>Row softmax and log-softmax, one thread group per row: max, sum of exponentials, scale.
/// Reference: <see cref="Reference.Softmax"/>.</summary>
public static class Softmax
{
    /// <summary>y[r, :] = softmax(x[r, :]) (log-softmax when log != 0); y contiguous.</summary>
    public static void Rows<T, TF>(ArrayView<T> x, int xOff, int len, int log, ArrayView<T> y)
        where T : unmanaged where TF : struct, IFloat<T>
    {
        TF f = default;
        var sh = SharedMemory.Allocate<T>(GroupOps.MaxGroup);
        int r = Grid.IdxX, b = xOff + r * len, o = r * len;
        T m = f.Lowest;
        for (int j = Group.IdxX; j < len; j += Group.DimX) m = f.Max(m, x[b + j]);
        m = GroupOps.Reduce<T, TF>(m, (int)ReduceOp.Max, sh);
        if (f.Eq(m, f.Lowest)) m = f.Zero;            // an all -inf row: exp(-inf - 0) = 0, as on the CPU
        T s = f.Zero;
        for (int j = Group.IdxX; j < len; j += Group.DimX) s = f.Add(s, f.Exp(f.Sub(x[b + j], m)));
        s = GroupOps.Reduce<T, TF>(s, (int)ReduceOp.Sum, sh);
        if (log != 0)
        {
            T lse = f.Log(s);
            for (int j = Group.IdxX; j < len; j += Group.DimX) y[o + j] = f.Sub(f.Sub(x[b + j], m), lse);
        }
        else
        {
            T inv = f.Div(f.One, s);
            for (int j = Group.IdxX; j < len; j += Group.DimX) y[o + j] = f.Mul(f.Exp(f.Sub(x[b + j], m)), inv);
        }
    }
}

/// <summary>The typed kernel of <see cref="Softmax"/> for one floating dtype.</summary>
public static class SoftmaxKernels<T, TF> where T : unmanaged where TF : struct, IFloat<T>
{
    /// <summary>softmax.rows: softmax or log-softmax of each row.</summary>
    public static readonly GroupKernel<ArrayView<T>, int, int, int, ArrayView<T>> Rows = new($"softmax.rows.{Dt.Of<TF>()}", Softmax.Rows<T, TF>);
}
