using ILGPU;

namespace Kiln.Kernels.Gpu;

/// <summary>
/// Cooperative reductions inside one thread group: a shared-memory tree (portable to every backend) and a warp-shuffle
/// form (CUDA and ILGPU's CPU accelerator; OpenCL only with subgroups). Group sizes are powers of two.
/// </summary>
public static class GroupOps
{
    /// <summary>The largest group size a kernel is launched with (the size of its shared scratch).</summary>
    public const int MaxGroup = 1024;

    /// <summary><see cref="ReduceOp"/> of two values (NaN propagates through Max/Min).</summary>
    public static T Combine<T, TN>(int op, T a, T b) where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        switch ((ReduceOp)op)
        {
            case ReduceOp.Sum: return n.Add(a, b);
            case ReduceOp.Prod: return n.Mul(a, b);
            case ReduceOp.Max: return n.Max(a, b);
            default: return n.Min(a, b);
        }
    }

    /// <summary>The identity of <see cref="ReduceOp"/> <paramref name="op"/>.</summary>
    public static T Identity<T, TN>(int op) where T : unmanaged where TN : struct, INum<T>
    {
        TN n = default;
        switch ((ReduceOp)op)
        {
            case ReduceOp.Sum: return n.Zero;
            case ReduceOp.Prod: return n.One;
            case ReduceOp.Max: return n.Lowest;
            default: return n.Highest;
        }
    }

    /// <summary>Every thread of the group gets op over all threads' <paramref name="v"/> (shared-memory tree).</summary>
    public static T Reduce<T, TN>(T v, int op, ArrayView<T> sh) where T : unmanaged where TN : struct, INum<T>
    {
        int tid = Group.IdxX;
        sh[tid] = v;
        Group.Barrier();
        for (int s = Group.DimX / 2; s > 0; s >>= 1)
        {
            if (tid < s) sh[tid] = Combine<T, TN>(op, sh[tid], sh[tid + s]);
            Group.Barrier();
        }
        T r = sh[0];
        Group.Barrier();
        return r;
    }

    /// <summary>Every thread of the group gets op over all threads' <paramref name="v"/>: shuffles within each warp, then one warp combines the warp results.</summary>
    public static T ReduceWarp<T, TN>(T v, int op, ArrayView<T> sh) where T : unmanaged where TN : struct, INum<T>
    {
        int lane = Warp.LaneIdx, warp = Warp.WarpIdx, warps = Group.DimX / Warp.WarpSize;
        for (int off = Warp.WarpSize / 2; off > 0; off >>= 1)
            v = Combine<T, TN>(op, v, Warp.ShuffleDown(v, off));
        if (lane == 0) sh[warp] = v;
        Group.Barrier();
        if (warp == 0)
        {
            T w = lane < warps ? sh[lane] : Identity<T, TN>(op);
            for (int off = Warp.WarpSize / 2; off > 0; off >>= 1)
                w = Combine<T, TN>(op, w, Warp.ShuffleDown(w, off));
            if (lane == 0) sh[0] = w;
        }
        Group.Barrier();
        T r = sh[0];
        Group.Barrier();
        return r;
    }
}
