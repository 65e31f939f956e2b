using System.Numerics;

namespace Kiln.Kernels.Cpu;

/// <summary>
/// Interpolation (nearest, nearest-exact, linear, cubic; 1d to 3d as [D, H, W] planes) and its input gradient, in
/// parallel over planes. The taps of every output index of a dim are computed once per call, in the dtype (PyTorch's
/// opmath for float32 and float64), except the nearest modes, which PyTorch computes in float32.
/// The backward pass scatters each output's gradient over its taps, one plane per thread, so it is deterministic.
/// Reference: <see cref="Reference.Resample"/>, <see cref="Reference.ResampleBackward"/>.
/// </summary>
public static class Resample
{
    /// <summary>y = the interpolation of x for every output of every plane.</summary>
    public static void Forward<T>(T[] x, ResampleArgs a, T[] y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (td, th, tw) = (Taps<T>.Of(a, 2), Taps<T>.Of(a, 1), Taps<T>.Of(a, 0));
        int outPlane = a.OutPlane, inPlane = a.InPlane;
        Strided.Parallel(a.Planes, (long)a.Planes * outPlane * td.N * th.N * tw.N, (s, e) =>
        {
            for (int p = s; p < e; p++)
            {
                int b = a.XOff + p * inPlane, q = p * outPlane;
                for (int od = 0; od < a.OD; od++)
                    for (int oh = 0; oh < a.OH; oh++)
                        for (int ow = 0; ow < a.OW; ow++, q++)
                        {
                            T sum = T.Zero;
                            for (int jd = 0; jd < td.N; jd++)
                                for (int jh = 0; jh < th.N; jh++)
                                {
                                    T wdh = td.W[od * td.N + jd] * th.W[oh * th.N + jh];
                                    int row = b + (td.I[od * td.N + jd] * a.IH + th.I[oh * th.N + jh]) * a.IW;
                                    for (int jw = 0; jw < tw.N; jw++) sum += wdh * tw.W[ow * tw.N + jw] * x[row + tw.I[ow * tw.N + jw]];
                                }
                            y[q] = sum;
                        }
            }
        });
    }

    /// <summary>dx = the gradient of the interpolation with respect to its input, for output gradient g.</summary>
    public static void Backward<T>(T[] g, ResampleArgs a, T[] dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (td, th, tw) = (Taps<T>.Of(a, 2), Taps<T>.Of(a, 1), Taps<T>.Of(a, 0));
        int outPlane = a.OutPlane, inPlane = a.InPlane;
        Strided.Parallel(a.Planes, (long)a.Planes * outPlane * td.N * th.N * tw.N, (s, e) =>
        {
            for (int p = s; p < e; p++)
            {
                int b = p * inPlane, q = p * outPlane;
                Array.Clear(dx, b, inPlane);
                for (int od = 0; od < a.OD; od++)
                    for (int oh = 0; oh < a.OH; oh++)
                        for (int ow = 0; ow < a.OW; ow++, q++)
                            for (int jd = 0; jd < td.N; jd++)
                                for (int jh = 0; jh < th.N; jh++)
                                {
                                    T wdh = td.W[od * td.N + jd] * th.W[oh * th.N + jh] * g[q];
                                    int row = b + (td.I[od * td.N + jd] * a.IH + th.I[oh * th.N + jh]) * a.IW;
                                    for (int jw = 0; jw < tw.N; jw++) dx[row + tw.I[ow * tw.N + jw]] += wdh * tw.W[ow * tw.N + jw];
                                }
            }
        });
    }
}

/// <summary>The taps of every output index along one dim: N per output, indices I and weights W, row-major by output.</summary>
readonly record struct Taps<T>(int N, int[] I, T[] W) where T : unmanaged, IFloatingPointIeee754<T>
{
    // dim 2 is D, 1 is H, 0 is W.
    public static Taps<T> Of(ResampleArgs a, int dim)
    {
        var (inSize, outSize, factor) = dim switch { 2 => (a.ID, a.OD, a.FactorD), 1 => (a.IH, a.OH, a.FactorH), _ => (a.IW, a.OW, a.FactorW) };
        var mode = (ResampleMode)a.Mode;
        if ((a.Active >> dim & 1) == 0) return new(1, [.. Enumerable.Range(0, outSize)], [.. Enumerable.Repeat(T.One, outSize)]);
        int n = mode switch { ResampleMode.Linear => 2, ResampleMode.Cubic => 4, _ => 1 };
        var idx = new int[outSize * n];
        var w = new T[outSize * n];
        for (int o = 0; o < outSize; o++)
        {
            if (n == 1) { idx[o] = Nearest(o, inSize, outSize, factor, mode); w[o] = T.One; continue; }
            T scale = a.AlignCorners != 0 ? (outSize > 1 ? T.CreateTruncating(inSize - 1) / T.CreateTruncating(outSize - 1) : T.Zero)
                : factor > 0 ? T.CreateTruncating(1 / factor) : T.CreateTruncating(inSize) / T.CreateTruncating(outSize);
            T real = a.AlignCorners != 0 ? scale * T.CreateTruncating(o) : scale * (T.CreateTruncating(o) + T.CreateTruncating(0.5)) - T.CreateTruncating(0.5);
            if (n == 2 && real < T.Zero) real = T.Zero;
            int i0 = Math.Min(int.CreateTruncating(T.Floor(real)), inSize - 1);
            T t = T.Clamp(real - T.CreateTruncating(i0), T.Zero, T.One);
            if (n == 2)
            {
                idx[2 * o] = i0; w[2 * o] = T.One - t;
                idx[2 * o + 1] = i0 < inSize - 1 ? i0 + 1 : i0; w[2 * o + 1] = t;
                continue;
            }
            var (w0, w1, w2, w3) = Cubic(t);
            w[4 * o] = w0; w[4 * o + 1] = w1; w[4 * o + 2] = w2; w[4 * o + 3] = w3;
            for (int k = 0; k < 4; k++) idx[4 * o + k] = Math.Clamp(i0 - 1 + k, 0, inSize - 1);
        }
        return new(n, idx, w);
    }

    // Keys' cubic convolution with A = -0.75 (PyTorch's), at distances t + 1, t, 1 - t and 2 - t.
    static (T, T, T, T) Cubic(T t)
    {
        T a = T.CreateTruncating(-0.75), two = T.CreateTruncating(2), three = T.CreateTruncating(3), five = T.CreateTruncating(5), eight = T.CreateTruncating(8), four = T.CreateTruncating(4);
        T Near(T x) => ((a + two) * x - (a + three)) * x * x + T.One;
        T Far(T x) => ((a * x - five * a) * x + eight * a) * x - four * a;
        return (Far(t + T.One), Near(t), Near(T.One - t), Far(two - t));
    }

    // PyTorch computes nearest source indices in float32 for every dtype; the legacy mode copies at scale 1 and halves at 2.
    static int Nearest(int o, int inSize, int outSize, double factor, ResampleMode mode)
    {
        if (mode == ResampleMode.Nearest && outSize == inSize) return o;
        if (mode == ResampleMode.Nearest && outSize == 2 * inSize) return o >> 1;
        float s = factor > 0 ? (float)(1.0 / factor) : (float)inSize / outSize;
        float src = mode == ResampleMode.Nearest ? o * s : (float)((o + 0.5) * s);
        return Math.Min((int)MathF.Floor(src), inSize - 1);
    }
}
