using FsCheck.Fluent;
using Kiln.Kernels;
using Kiln.Tests.TestKit;
using Xunit;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>
/// cumprod, cummax, cummin and logcumsumexp along any axis on every device against <see cref="Reference.Scan"/>, their
/// PyTorch semantics (ties, NaN, infinities, zeros), their float64 gradients, and their errors. The last-axis cases of
/// every layout and the special values run in <c>OpConformanceTests</c>.
/// </summary>
public class ScanTests
{
    static Tensor R(int seed, double lo, double hi, params int[] shape) => Tensor.Rand(new Shape(shape), new Generator((ulong)seed), lo, hi, DType.Float64);

    static void Ok(Func<Tensor[], Tensor> f, params Tensor[] inputs)
    {
        var r = GradCheck.Run(f, inputs);
        Assert.True(r.Passed, r.ToString());
    }

    // The reference applied to every line of row-major x along axis.
    static (double[] Values, long[] Indices) Lines(ScanOp op, double[] x, int[] shape, int axis)
    {
        var v = new double[x.Length];
        var idx = new long[x.Length];
        int stride = Naive.Strides(shape)[axis], len = shape[axis];
        for (int f = 0; f < x.Length; f++)
        {
            if (Naive.Unravel(f, shape)[axis] != 0) continue;
            var line = Enumerable.Range(0, len).Select(k => x[f + k * stride]).ToArray();
            var (lv, li) = Reference.Scan(op, line);
            for (int k = 0; k < len; k++) { v[f + k * stride] = lv[k]; idx[f + k * stride] = li[k]; }
        }
        return (v, idx);
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Scans_along_any_axis_match_the_reference(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from c in TensorGen.Case() where c.Shape.Length > 0
                         from axis in G.Choose(-c.Shape.Length, c.Shape.Length - 1) select (c, axis), t =>
        {
            var (c, axis) = t;
            int a = axis < 0 ? axis + c.Shape.Length : axis;
            // Halves of integers: many ties for cummax and cummin, exact products for cumprod.
            var x = (TensorGen.Make(c.Shape, c.View, c.Seed, DType.Float64, dev, -3, 3) * 2.0).Apply(UnaryOp.Floor) / 2.0;
            var xs = x.ToDoubleArray();
            foreach (var op in new[] { ScanOp.Max, ScanOp.Min })
            {
                var (v, i) = op == ScanOp.Max ? x.Cummax(axis) : x.Cummin(axis);
                var (ev, ei) = Lines(op, xs, c.Shape, a);
                Assert.Equal(new Shape(c.Shape), v.Shape);
                Assert.Equal(DType.Int64, i.DType);
                Assert.Equal(ev, v.ToDoubleArray());
                Assert.Equal(ei, i.ToArray<long>());
            }
            var (rtol, atol) = Close.For(DType.Float64, 4);
            Close.Check(Lines(ScanOp.Prod, xs, c.Shape, a).Values, x.Cumprod(axis).ToDoubleArray(), rtol, atol, "cumprod");
            Close.Check(Lines(ScanOp.LogSumExp, xs, c.Shape, a).Values, x.LogCumSumExp(axis).ToDoubleArray(), rtol * 64, atol * 64, "logcumsumexp");
            // Integer dtypes scan in their own dtype; on {-1, 0, 1} a product never wraps (wrapping is checked below).
            var xi = x.Clamp(-1, 1).To(DType.Int64);
            Assert.Equal(DType.Int64, xi.Cumprod(axis).DType);
            Assert.Equal(Lines(ScanOp.Prod, xi.ToDoubleArray(), c.Shape, a).Values, xi.Cumprod(axis).ToDoubleArray());
            Assert.Equal(Lines(ScanOp.Max, xi.ToDoubleArray(), c.Shape, a).Indices, xi.Cummax(axis).Indices.ToArray<long>());
        });
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Pytorch_semantics_of_ties_nan_infinities_and_zeros(string device)
    {
        var dev = Devices.Parse(device);
        double nan = double.NaN, inf = double.PositiveInfinity;
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            Tensor T(params double[] v) => Tensor.FromArray(v).To(dtype).To(dev);
            // Ties move the index to the later position; a NaN propagates and each later NaN takes the index.
            var (mv, mi) = T(1, 3, 3, 2, nan, 5, nan, 1).Cummax(0);
            Assert.Equal(new double[] { 1, 3, 3, 3, nan, nan, nan, nan }, mv.ToDoubleArray());
            Assert.Equal(new long[] { 0, 1, 2, 2, 4, 4, 6, 6 }, mi.ToArray<long>());
            var (nv, ni) = T(2, 1, 1, 3, -inf, -inf).Cummin(0);
            Assert.Equal(new double[] { 2, 1, 1, 1, -inf, -inf }, nv.ToDoubleArray());
            Assert.Equal(new long[] { 0, 1, 2, 2, 4, 5 }, ni.ToArray<long>());
            // -inf is the identity of logcumsumexp; +inf stays; NaN propagates; large inputs do not overflow.
            Assert.Equal(new double[] { -inf, -inf, 0, Math.Log(2) }, T(-inf, -inf, 0, 0).LogCumSumExp(0).ToDoubleArray(), new Tol(dtype));
            Assert.Equal(new double[] { 1000, 1000 + Math.Log(2), inf, inf, nan }, T(1000, 1000, inf, 3, nan).LogCumSumExp(0).ToDoubleArray(), new Tol(dtype));
            Assert.Equal(new double[] { 2, 0, 0, -0.0 }, T(2, 0, 5, -1).Cumprod(0).ToDoubleArray());
        }
        // Integer cumprod wraps like PyTorch's (two's complement).
        var big = Tensor.FromArray(new long[] { 1L << 40, 1L << 30 }).To(dev).Cumprod(0).ToArray<long>();
        Assert.Equal(unchecked((1L << 40) * (1L << 30)), big[1]);
        // Scalars: each scan is the identity, the index 0.
        var s = Tensor.Scalar(2.5, DType.Float64, dev);
        Assert.Equal(2.5, s.Cumprod(0).ToDoubleArray()[0]);
        Assert.Equal(2.5, s.LogCumSumExp(0).ToDoubleArray()[0]);
        Assert.Equal(0L, s.Cummax(0).Indices.ToArray<long>()[0]);
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void One_long_row_matches_the_reference(string device)
    {
        // Long enough for the CPU to split the row across cores, and for the GPU's threads to scan long chunks.
        var dev = Devices.Parse(device);
        int n = 300_001;
        var x = Tensor.Rand(new Shape(n), new Generator(46), -1, 1, DType.Float64).To(dev);
        // Factors near one keep the running product in range.
        var p = x * 1e-3 + 1.0;
        double[] xd = x.ToDoubleArray(), pd = p.ToDoubleArray();
        Close.Check(Reference.Scan(ScanOp.Prod, pd).Values, p.Cumprod(0).ToDoubleArray(), 1e-11, 0, "cumprod");
        Close.Check(Reference.Scan(ScanOp.LogSumExp, xd).Values, x.LogCumSumExp(0).ToDoubleArray(), 1e-11, 0, "logcumsumexp");
        if (dev == Device.Cpu)
        {
            var allCores = p.Cumprod(0).ToDoubleArray();
            using (Kiln.Backends.CpuBackend.LimitThreads(1)) Assert.Equal(allCores, p.Cumprod(0).ToDoubleArray());   // the same bits on one core
        }
        var r = (x * 4.0).Apply(UnaryOp.Floor);   // ties
        var (ev, ei) = Reference.Scan(ScanOp.Min, r.ToDoubleArray());
        var (v, i) = r.Cummin(0);
        Assert.Equal(ev, v.ToDoubleArray());
        Assert.Equal(ei, i.ToArray<long>());
    }

    sealed class Tol(DType dtype) : IEqualityComparer<double>
    {
        public bool Equals(double e, double a) => e.Equals(a) || Math.Abs(e - a) <= (dtype == DType.Float32 ? 1e-5 : 1e-12) * Math.Max(1, Math.Abs(e));
        public int GetHashCode(double v) => 0;
    }

    [Fact] public void Cumprod_gradient() => Ok(x => x[0].Cumprod(1) * x[0], R(40, 0.5, 1.5, 3, 5));

    [Fact]
    public void Cumprod_gradient_with_zeros()
    {
        // Zeros first, last, twice in a line, and a line without: the gradient at and after the first zero is PyTorch's.
        var x = Tensor.FromArray(new double[] { 0, 1.5, -0.7, 2, 0.9, 1.2, 0, 0.8, 0, 1.1, 0.6, -1.3, 0.7, 1.4, 0, -0.5, 1.7, 0.3, 0.9, 1.1 }, [4, 5]);
        Ok(a => a[0].Cumprod(1), x);
        Ok(a => a[0].Cumprod(0), x);
    }

    [Fact] public void Cummax_cummin_values_gradient() => Ok(x => x[0].Cummax(1).Values * 2.0 + x[0].Cummin(0).Values, R(41, -1, 1, 4, 5));

    [Fact] public void LogCumSumExp_gradient() => Ok(x => x[0].LogCumSumExp(1) * R(43, -1, 1, 3, 6) + x[0].LogCumSumExp(0), R(42, -3, 3, 3, 6));

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Gradients_on_every_device_match_the_cpu(string device)
    {
        // The backward passes run the reverse scans (logcumsumexp) and the zero-split cumprod rule on the device.
        var dev = Devices.Parse(device);
        var x = R(44, -2, 2, 3, 600);
        x = Tensor.Where(x.Abs() < 0.3, x.ZerosLike(), x);   // zeros in every line
        var g = R(45, -1, 1, 3, 600);
        foreach (var (name, f) in new (string, Func<Tensor, Tensor>)[]
                 { ("cumprod", t => t.Cumprod(1)), ("cummax", t => t.Cummax(1).Values), ("logcumsumexp", t => t.LogCumSumExp(1)) })
        {
            var expected = Autograd.Grad([f(x.RequiresGrad_())], [x], [g])[0].ToDoubleArray();
            var xd = x.Detach().To(dev).RequiresGrad_();
            var actual = Autograd.Grad([f(xd)], [xd], [g.To(dev)])[0].ToDoubleArray();
            Close.Check(expected, actual, 1e-9, 1e-9, name);
        }
    }

    [Fact]
    public void Bad_arguments_name_the_argument_and_value()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Zeros(2, 3).Cumprod(2));
        Assert.Contains("cumprod: axis 2", e.Message);
        Assert.Equal("axis", e.ParamName);
        Assert.Contains("cummax: axis -3", Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Zeros(2, 3).Cummax(-3)).Message);
        Assert.Contains("cummin: axis 1", Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Zeros(2).Cummin(1)).Message);
        var d = Assert.Throws<NotSupportedException>(() => Tensor.Zeros([3], DType.Int32).LogCumSumExp(0));
        Assert.Contains("logcumsumexp", d.Message);
        Assert.Contains("Int32", d.Message);
    }
}
