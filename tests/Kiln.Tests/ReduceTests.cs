using FsCheck.Fluent;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>Reductions over random axis sets, keepDim or not, on every device and layout, against float64 folds.</summary>
public class ReduceTests
{
    static FsCheck.Gen<(int[] Shape, TensorGen.ViewKind View, int Seed, int[] Axes, bool Keep)> Cases =>
        from c in TensorGen.Case()
        from mask in G.ArrayOf(G.Elements(true, false), c.Shape.Length)
        from keep in G.Elements(true, false)
        select (c.Shape, c.View, c.Seed, Enumerable.Range(0, c.Shape.Length).Where(i => mask[i]).ToArray(), keep);

    static void CheckFold(Tensor x, int[] axes, bool keep, Tensor y, Func<IReadOnlyList<double>, double> fold, double rtol, double atol, string what)
    {
        var shape = x.Shape.ToArray();
        var ax = axes.Length == 0 ? Enumerable.Range(0, shape.Length).ToArray() : axes;
        var (expected, kShape) = Naive.Reduce(x.ToDoubleArray(), shape, ax, fold);
        var expectShape = keep ? kShape : shape.Where((_, i) => !ax.Contains(i)).ToArray();
        Assert.Equal(new Shape(expectShape), y.Shape);
        Close.Check(expected, y.ToDoubleArray(), rtol, atol, what);
    }

    static double Round(double v, DType dtype) => dtype == DType.Float32 ? (float)v : v;

    public static IEnumerable<object[]> DeviceDtype => from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    [Theory, MemberData(nameof(DeviceDtype))]
    public void Sum_mean_prod_max_min_match_folds(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        Props.Check(Cases, c =>
        {
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, dtype, dev, 0.5, 1.5);
            var (rtol, atol) = Close.For(dtype, 4);
            int[]? axes = c.Axes.Length == 0 ? null : c.Axes;
            CheckFold(x, c.Axes, c.Keep, x.Sum(axes, c.Keep), g => g.Sum(), rtol, atol * 10, "sum");
            // A float32 product may overflow where the float64 fold does not: round the expectation to the dtype.
            CheckFold(x, c.Axes, c.Keep, x.Prod(axes, c.Keep), g => Round(g.Aggregate(1.0, (a, b) => a * b), dtype), rtol * 10, atol, "prod");
            bool anyEmpty = (axes ?? Enumerable.Range(0, c.Shape.Length).ToArray()).Any(a => c.Shape[a] == 0);
            if (x.Numel > 0 || !anyEmpty)
            {
                if (!anyEmpty)
                {
                    CheckFold(x, c.Axes, c.Keep, x.Amax(axes, c.Keep), g => g.Max(), 0, 0, "amax");
                    CheckFold(x, c.Axes, c.Keep, x.Amin(axes, c.Keep), g => g.Min(), 0, 0, "amin");
                    CheckFold(x, c.Axes, c.Keep, x.Mean(axes, c.Keep), g => g.Average(), rtol, atol, "mean");
                }
            }
        });
    }

    [Theory, MemberData(nameof(DeviceDtype))]
    public void Products_do_not_overflow_on_the_way(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        // 64 large factors then 64 small ones: every partial product of a left fold or of vector lanes leaves the range
        // (and lanes meeting as infinity times zero made NaN), yet the product is 1. Rows and columns both.
        double big = dtype == DType.Float32 ? 1e20 : 1e200;
        var v = Enumerable.Repeat(big, 64).Concat(Enumerable.Repeat(1 / big, 64)).ToArray();
        var row = Tensor.FromArray(v, new Shape(1, 128)).To(dtype).To(dev);
        Close.Check([1.0], row.Prod([1]).ToDoubleArray(), 1e-5, 0, "row prod");
        Close.Check([1.0, 1.0, 1.0], Tensor.FromArray(v.SelectMany(a => new[] { a, a, a }).ToArray(), new Shape(128, 3)).To(dtype).To(dev).Prod([0]).ToDoubleArray(), 1e-5, 0, "column prod");
        // An underflowing product is a signed zero, a zero factor with an infinite one NaN.
        double under = Tensor.FromArray(Enumerable.Repeat(1 / big, 63).Append(-1 / big).ToArray()).To(dtype).To(dev).Prod().ToDoubleArray()[0];
        Assert.True(under == 0 && double.IsNegative(under), $"underflow: got {under}, expected -0");
        // A subnormal factor keeps its digits: 1e-40 (float32) or 1e-310 (float64) times factors that bring it back to 1.
        var sub = dtype == DType.Float32 ? new[] { 1e-40, 1e20, 1e20 } : new[] { 1e-310, 1e200, 1e110 };
        var subT = Tensor.FromArray(sub).To(dtype);
        double expectSub = subT.ToDoubleArray().Aggregate(1.0, (a, b) => a * b);
        Close.Check([expectSub], subT.To(dev).Prod().ToDoubleArray(), 1e-6, 0, "subnormal factor");
        Assert.True(double.IsNaN(Tensor.FromArray(new[] { 0.0, double.PositiveInfinity, 2.0 }).To(dtype).To(dev).Prod().ToDoubleArray()[0]));
    }

    [Theory, MemberData(nameof(DeviceDtype))]
    public void Var_and_std_are_two_pass_stable(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        Props.Check(Cases, c =>
        {
            // A large common offset: a one-pass E[x^2] - E[x]^2 would lose every digit in float32.
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, dtype, dev, -1, 1) + 1000.0;
            int[] ax = c.Axes.Length == 0 ? Enumerable.Range(0, c.Shape.Length).ToArray() : c.Axes;
            if (ax.Any(a => c.Shape[a] < 2)) return;
            double Var(IReadOnlyList<double> g) { double m = g.Average(); return g.Sum(v => (v - m) * (v - m)) / (g.Count - 1); }
            var (rtol, atol) = Close.For(dtype, dtype == DType.Float32 ? 5000 : 100);
            CheckFold(x, c.Axes, c.Keep, x.Var(c.Axes.Length == 0 ? null : c.Axes, c.Keep), Var, rtol, atol, "var");
            // std is not relatively stable near 0: a mean rounded by delta adds up to delta to the std, and both the
            // kernel's and the oracle's means round by up to n * eps * |offset|.
            long n = ax.Aggregate(1L, (p, a) => p * c.Shape[a]);
            double eps = dtype == DType.Float64 ? Math.Pow(2, -52) : Math.Pow(2, -23);
            CheckFold(x, c.Axes, c.Keep, x.Std(c.Axes.Length == 0 ? null : c.Axes, c.Keep), g => Math.Sqrt(Var(g)), rtol, Math.Max(atol, 2 * n * eps * 1001), "std");
        });
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Max_with_indices_argmax_and_cumsum(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(from c in TensorGen.Case() where c.Shape.Length > 0 && c.Shape.All(d => d > 0)
                    from axis in G.Choose(0, c.Shape.Length - 1) select (c, axis), t =>
        {
            var (c, axis) = t;
            var x = (TensorGen.Make(c.Shape, c.View, c.Seed, DType.Float64, dev) * 2.0).Apply(Kiln.Kernels.UnaryOp.Sign); // ties: first index wins
            var (vals, idx) = x.Max(axis, keepDim: true);
            var xs = x.ToDoubleArray();
            var (expected, _) = Naive.Reduce(xs, c.Shape, [axis], g => g.Max());
            Assert.Equal(expected, vals.ToDoubleArray());
            var (firstIdx, _) = Naive.Reduce(Enumerable.Range(0, xs.Length).Select(i => (double)i).ToArray(), c.Shape, [axis],
                g => g.Select(f => (int)f).First(f => xs[f] == g.Select(q => xs[(int)q]).Max()));
            var ia = idx.ToArray<long>();
            for (int i = 0; i < ia.Length; i++) Assert.Equal(Naive.Unravel((int)firstIdx[i], c.Shape)[axis], ia[i]);
            Assert.Equal(ia, x.ArgMax(axis, keepDim: true).ToArray<long>());
            var (minv, _) = x.Min(axis);
            Assert.Equal(Naive.Reduce(xs, c.Shape, [axis], g => g.Min()).Values, minv.ToDoubleArray());

            var cs = x.Cumsum(axis).ToDoubleArray();
            var strides = Naive.Strides(c.Shape);
            for (int f = 0; f < xs.Length; f++)
            {
                var ix = Naive.Unravel(f, c.Shape);
                double acc = 0;
                for (int k = 0; k <= ix[axis]; k++) acc += xs[f + (k - ix[axis]) * strides[axis]];
                Assert.Equal(acc, cs[f], 1e-12);
            }
        });
    }

    [Theory, MemberData(nameof(DeviceDtype))]
    public void LogSumExp_matches_and_never_overflows(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        Props.Check(Cases, c =>
        {
            int[] ax = c.Axes.Length == 0 ? Enumerable.Range(0, c.Shape.Length).ToArray() : c.Axes;
            if (ax.Any(a => c.Shape[a] == 0)) return;
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, dtype, dev, -5, 5) + 1e4;
            double Lse(IReadOnlyList<double> g) { double m = g.Max(); return m + Math.Log(g.Sum(v => Math.Exp(v - m))); }
            var (rtol, atol) = Close.For(dtype, 4);
            CheckFold(x, c.Axes, c.Keep, x.LogSumExp(c.Axes.Length == 0 ? null : c.Axes, c.Keep), Lse, rtol, atol, "logsumexp");
        });
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Norms_any_all(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(Cases, c =>
        {
            int[]? axes = c.Axes.Length == 0 ? null : c.Axes;
            int[] ax = axes ?? Enumerable.Range(0, c.Shape.Length).ToArray();
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, DType.Float64, dev);
            CheckFold(x, c.Axes, c.Keep, x.Norm(1, axes, c.Keep), g => g.Sum(Math.Abs), 1e-12, 1e-12, "l1");
            CheckFold(x, c.Axes, c.Keep, x.Norm(2, axes, c.Keep), g => Math.Sqrt(g.Sum(v => v * v)), 1e-12, 1e-12, "l2");
            CheckFold(x, c.Axes, c.Keep, x.Norm(3, axes, c.Keep), g => Math.Pow(g.Sum(v => Math.Pow(Math.Abs(v), 3)), 1.0 / 3), 1e-10, 1e-12, "l3");
            if (!ax.Any(a => c.Shape[a] == 0))
                CheckFold(x, c.Axes, c.Keep, x.Norm(double.PositiveInfinity, axes, c.Keep), g => g.Max(Math.Abs), 0, 0, "linf");
            var b = x > 1.0;
            CheckFold(x, c.Axes, c.Keep, b.Any(axes, c.Keep).To(DType.Float64), g => g.Any(v => v > 1) ? 1 : 0, 0, 0, "any");
            CheckFold(x, c.Axes, c.Keep, b.All(axes, c.Keep).To(DType.Float64), g => g.All(v => v > 1) ? 1 : 0, 0, 0, "all");
        });
    }

    [Fact]
    public void Reducing_all_axes_equals_reducing_one_at_a_time()
    {
        Props.Check(TensorGen.Case(), c =>
        {
            var x = TensorGen.Make(c.Shape, c.View, c.Seed, DType.Float64, Device.Cpu);
            var seq = x;
            for (int a = c.Shape.Length - 1; a >= 0; a--) seq = seq.Sum(a);
            Assert.Equal(x.Sum().Item(), seq.Item(), 1e-10);
        });
    }

    [Fact]
    public void Long_sums_are_split_across_cores_deterministically()
    {
        var x = Tensor.Rand([3_000_001], new Generator(3), dtype: DType.Float32);
        double a = x.Sum().Item(), b = x.Sum().Item();
        Assert.Equal(a, b);
        Assert.Equal(x.ToDoubleArray().Sum(), a, 20.0);   // float32 sum of 3e6 values near 0.5: relative error ~1e-5
    }
}
