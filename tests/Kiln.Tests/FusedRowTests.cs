using FsCheck.Fluent;
using Kiln.Kernels;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>Fused softmax, log-softmax, layer norm and RMS norm against <see cref="Reference"/> row by row.</summary>
public class FusedRowTests
{
    public static IEnumerable<object[]> DeviceDtype => from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    static IEnumerable<(double[] Row, int[] Positions)> Rows(double[] xs, int[] shape, int axis)
    {
        var strides = Naive.Strides(shape);
        for (int f = 0; f < xs.Length; f++)
        {
            var ix = Naive.Unravel(f, shape);
            if (ix[axis] != 0) continue;
            var pos = Enumerable.Range(0, shape[axis]).Select(k => f + k * strides[axis]).ToArray();
            yield return (pos.Select(p => xs[p]).ToArray(), pos);
        }
    }

    [Theory, MemberData(nameof(DeviceDtype))]
    public void Softmax_and_log_softmax_along_any_axis(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        Props.Check(from c in TensorGen.Case() where c.Shape.Length > 0 from axis in G.Choose(0, c.Shape.Length - 1) select (c, axis), t =>
        {
            var (c, axis) = t;
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, dtype, dev, -20, 20);
            var xs = x.ToDoubleArray();
            var sm = x.Softmax(axis).ToDoubleArray();
            var lsm = x.LogSoftmax(axis).ToDoubleArray();
            var (rtol, atol) = Close.For(dtype, 8);
            foreach (var (row, pos) in Rows(xs, c.Shape, axis))
            {
                Close.Check(Reference.Softmax(row), pos.Select(p => sm[p]).ToArray(), rtol, atol, "softmax");
                Close.Check(Reference.Softmax(row, log: true), pos.Select(p => lsm[p]).ToArray(), rtol, atol * 20, "log_softmax");
                Assert.Equal(1.0, pos.Sum(p => sm[p]), dtype == DType.Float32 ? 5 : 12);
            }
            // Shift invariance: softmax(x + c) = softmax(x), even for c = 1e4.
            Close.Check(sm, (x + 1e4).Softmax(axis).ToDoubleArray(), rtol * 100, atol * 100, "shifted softmax");
        });
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(16)]
    [InlineData(33)]
    [InlineData(47)]
    [InlineData(4099)]
    public void Float32_softmax_rows_with_masked_huge_and_nan_entries(int len)
    {
        // The CPU kernel's one-pass exp-and-sum: -inf (masked) entries give exactly 0, entries more than 87 below the
        // maximum give 0 to within float32's subnormals, and NaN or +inf anywhere in a row make that row NaN. (Log-softmax
        // near 0 is a difference of two rounded values, hence its absolute term.)
        var rng = new Random(len);
        var xs = new float[5 * len];
        for (int i = 0; i < xs.Length; i++) xs[i] = (float)(rng.NextDouble() * 40 - 20);
        for (int j = 0; j < len; j += 3) xs[j] = float.NegativeInfinity;
        xs[len] = 120f;
        for (int j = len + 1; j < 2 * len; j += 2) xs[j] = 20f;
        for (int j = 2 * len; j < 3 * len; j++) xs[j] = float.NegativeInfinity;
        xs[3 * len + len / 2] = float.NaN;
        xs[4 * len + len - 1] = float.PositiveInfinity;
        var x = Tensor.FromArray(xs).Reshape(5, len);
        foreach (bool log in new[] { false, true })
        {
            var got = (log ? x.LogSoftmax(-1) : x.Softmax(-1)).ToDoubleArray();
            for (int r = 0; r < 5; r++)
            {
                var e = Reference.Softmax(xs.AsSpan(r * len, len).ToArray().Select(v => (double)v).ToArray(), log);
                for (int j = 0; j < len; j++)
                {
                    double a = got[r * len + j], ej = e[j];
                    bool ok = double.IsNaN(ej) ? double.IsNaN(a) : ej == 0 || double.IsInfinity(ej) ? a == ej : Math.Abs(a - ej) <= 1e-5 * Math.Abs(ej) + (log ? 1e-6 : 1e-37);
                    Assert.True(ok, $"{(log ? "log_softmax" : "softmax")} row {r} [{j}] of {len}: {a:R}, expected {ej:R}");
                }
            }
        }
    }

    [Theory, MemberData(nameof(DeviceDtype))]
    public void Layer_norm_and_rms_norm_match_reference(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        Props.Check(from c in TensorGen.Case() where c.Shape.Length > 0 from affine in G.Elements(true, false) select (c, affine), t =>
        {
            var (c, affine) = t;
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, dtype, dev, -4, 6);
            int len = c.Shape[^1];
            var w = affine ? TensorGen.Make([len], TensorGen.ViewKind.Contiguous, c.Seed + 1, dtype, dev) : null;
            var b = affine ? TensorGen.Make([len], TensorGen.ViewKind.Contiguous, c.Seed + 2, dtype, dev) : null;
            var ln = x.LayerNorm(w, b, 1e-5).ToDoubleArray();
            var rms = x.RmsNorm(w, 1e-6).ToDoubleArray();
            double[] wd = w?.ToDoubleArray() ?? [], bd = b?.ToDoubleArray() ?? [];
            var (rtol, atol) = Close.For(dtype, 8);
            double wmax = wd.Length == 0 ? 1 : wd.Max(Math.Abs);
            foreach (var (row, pos) in Rows(x.ToDoubleArray(), c.Shape, c.Shape.Length - 1))
            {
                // Centring loses digits in proportion to max|x| / std (the row's condition number): the rounding of
                // the mean, relative to max|x|, is amplified by 1/std.
                double mean = row.Average(), std = Math.Sqrt(row.Sum(v => (v - mean) * (v - mean)) / row.Length + 1e-5);
                double cond = row.Max(Math.Abs) / std;
                Close.Check(Reference.LayerNorm(row, wd, bd, 1e-5), pos.Select(p => ln[p]).ToArray(), rtol, (rtol + atol) * cond * wmax, "layer_norm");
                Close.Check(Reference.RmsNorm(row, wd, 1e-6), pos.Select(p => rms[p]).ToArray(), rtol, atol, "rms_norm");
            }
        });
    }

    [Theory]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(64)]
    [InlineData(100)]
    [InlineData(1024)]
    [InlineData(4099)]
    public void Float32_layer_norm_rows_of_every_length_match_reference(int len)
    {
        // The vector kernel's loops (blocks of four vectors, single vectors, the scalar tail) on rows offset from their
        // mean, with each combination of weight and bias.
        var g = new Generator((ulong)len);
        var x = Tensor.Randn([3, len], g) * 3 + 2;
        var (w, b) = (Tensor.Rand([len], g, 0.5, 1.5), Tensor.Randn([len], g));
        var xd = x.ToDoubleArray();
        foreach (var (wt, bt) in new (Tensor?, Tensor?)[] { (w, b), (w, null), (null, b), (null, null) })
        {
            var got = x.LayerNorm(wt, bt, 1e-5).ToDoubleArray();
            double[] wd = wt?.ToDoubleArray() ?? [], bd = bt?.ToDoubleArray() ?? [];
            for (int r = 0; r < 3; r++)
            {
                var row = xd.AsSpan(r * len, len);
                Close.Check(Reference.LayerNorm(row, wd, bd, 1e-5), got.AsSpan(r * len, len), 1e-5, 1e-5, $"layer_norm len {len} w {wt is not null} b {bt is not null}");
            }
        }
    }
}
