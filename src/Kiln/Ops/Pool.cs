using Kiln.Kernels;

namespace Kiln.Ops;

/// <summary>
/// The pooling family's definitions: max (values and indices), average, adaptive max and adaptive average pooling,
/// forward and backward, over 1d, 2d and 3d inputs [N, C, *spatial] with a window geometry (kernel, stride, padding,
/// dilation, ceil mode, count_include_pad, divisor override) drawn from each case's seed.
/// </summary>
public static class PoolOps
{
    /// <summary>Every definition of the family.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } =
    [
        new PoolDefinition("max_pool", avg: false, adaptive: false, backward: false),
        new PoolDefinition("avg_pool", avg: true, adaptive: false, backward: false),
        new PoolDefinition("adaptive_max_pool", avg: false, adaptive: true, backward: false),
        new PoolDefinition("adaptive_avg_pool", avg: true, adaptive: true, backward: false),
        new PoolDefinition("max_pool_backward", avg: false, adaptive: false, backward: true),
        new PoolDefinition("avg_pool_backward", avg: true, adaptive: false, backward: true),
        new PoolDefinition("adaptive_max_pool_backward", avg: false, adaptive: true, backward: true),
        new PoolDefinition("adaptive_avg_pool_backward", avg: true, adaptive: true, backward: true),
    ];

    /// <summary>A pooling's arguments as the tensor methods take them, and the reference's geometry.</summary>
    sealed record Setup(int[] Kernel, int[] Stride, int[] Padding, int[] Dilation, bool CeilMode, bool CountIncludePad, int? Divisor, int[] Out, PoolArgs Args);

    sealed class PoolDefinition(string op, bool avg, bool adaptive, bool backward) : OpDefinition("pool." + op, "pool", DTypeLists.Floats,
        !avg && !backward ? new(-3, 3, double.NaN, double.NegativeInfinity, double.PositiveInfinity) : Domain.Default,
        avg || backward ? new Tolerance(2) : Tolerance.Exact)
    {
        public override int MinRank => 3;
        public override int MaxRank => 5;

        // A valid random geometry for the case's spatial extents: a window that fits the padded input, padding at most half of it.
        Setup Draw(int[] spatial, int planes, ulong seed)
        {
            var rng = new Random((int)(seed % int.MaxValue));
            int n = spatial.Length;
            int[] k = new int[n], s = new int[n], p = new int[n], d = new int[n], o = new int[n];
            bool ceil = rng.Next(2) == 1;
            for (int i = 0; i < n; i++)
            {
                if (adaptive) { o[i] = rng.Next(1, spatial[i] + 3); k[i] = s[i] = d[i] = 1; continue; }
                k[i] = rng.Next(1, 5); s[i] = rng.Next(1, 4); d[i] = avg ? 1 : rng.Next(1, 3); p[i] = rng.Next(0, k[i] / 2 + 1);
                while (d[i] * (k[i] - 1) + 1 > spatial[i] + 2 * p[i])
                {
                    if (d[i] > 1) d[i] = 1; else k[i]--;
                    p[i] = Math.Min(p[i], k[i] / 2);
                }
                o[i] = Tensor.PoolOutputSize(spatial[i], k[i], s[i], p[i], d[i], ceil);
            }
            int[] Pad3(int[] v, int unit) => [.. Enumerable.Repeat(unit, 3 - n), .. v];
            int[] ins = Pad3(spatial, 1), outs = Pad3(o, 1), ks = Pad3(k, 1), ss = Pad3(s, 1), ps = Pad3(p, 0), ds = Pad3(d, 1);
            bool includePad = rng.Next(2) == 1;
            int? divisor = !adaptive && rng.Next(5) == 0 ? rng.Next(1, 10) : null;
            var args = new PoolArgs
            {
                Planes = planes, ID = ins[0], IH = ins[1], IW = ins[2], OD = outs[0], OH = outs[1], OW = outs[2],
                KD = ks[0], KH = ks[1], KW = ks[2], SD = ss[0], SH = ss[1], SW = ss[2], PD = ps[0], PH = ps[1], PW = ps[2],
                DD = ds[0], DH = ds[1], DW = ds[2], Avg = avg ? 1 : 0, Adaptive = adaptive ? 1 : 0,
                CountIncludePad = includePad ? 1 : 0, Divisor = avg ? divisor ?? 0 : 0,
            };
            return new Setup(k, s, p, d, ceil, includePad, divisor, o, args);
        }

        (Tensor Values, Tensor? Indices) Run(Tensor x, Setup u) => (avg, adaptive) switch
        {
            (false, false) => x.MaxPoolWithIndices(u.Kernel, u.Stride, u.Padding, u.Dilation, u.CeilMode),
            (true, false) => (x.AvgPool(u.Kernel, u.Stride, u.Padding, u.CeilMode, u.CountIncludePad, u.Divisor), null),
            (false, true) => x.AdaptiveMaxPoolWithIndices(u.Out),
            _ => (x.AdaptiveAvgPool(u.Out), null),
        };

        // The inputs an output reads: the kernel's volume, or the largest adaptive window.
        double Window(int[] spatial, Setup u) => adaptive ? spatial.Select((e, i) => (double)(e + u.Out[i] - 1) / u.Out[i] + 1).Aggregate(1.0, (p, q) => p * q)
            : u.Kernel.Aggregate(1.0, (p, q) => p * q);

        /// <summary>
        /// Special values planted in the input of a 2-d pooling (forward: max propagates NaN, sums of infinities give
        /// infinities or NaN) or in the upstream gradient (backward), against the float64 reference.
        /// </summary>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            int[] shape = [2, 2, 5, 6];
            const ulong seed = 11;
            var setup = Draw(shape[2..], shape[0] * shape[1], seed);
            var xd = Input(shape, InputView.Contiguous, seed, dtype, Device.Cpu, new Domain(Domain.Low, Domain.High)).ToDoubleArray();
            double window = Window(shape[2..], setup);
            if (!backward)
                return SpecialValues.Planted(this, device, dtype, relaxed, xd, shape, v => Reference.Pool(v, setup.Args).Values, x => Run(x, setup).Values, window);
            int[] outShape = [shape[0], shape[1], .. setup.Out];
            var indices = Reference.Pool(xd, setup.Args).Indices;
            var gd = Input(outShape, InputView.Contiguous, seed + 1, dtype, Device.Cpu, Domain.Default).ToDoubleArray();
            var x0 = Tensor.FromArray(xd, new Shape(shape)).To(dtype).To(device);
            return SpecialValues.Planted(this, device, dtype, relaxed, gd, outShape, g => Reference.PoolBackward(g, indices, setup.Args), g =>
            {
                var x = x0.Detach().RequiresGrad_();
                Run(x, setup).Values.Backward(g);
                return x.Grad!;
            }, window);
        }

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var spatial = c.Shape[2..];
            var setup = Draw(spatial.Select(e => Math.Max(e, 1)).ToArray(), c.Shape[0] * c.Shape[1], c.Seed);
            if (spatial.Contains(0))
            {
                try { Run(x, setup); }
                catch (ArgumentException) { return CheckResult.Ok; }
                return new CheckResult(double.PositiveInfinity, false, $"{Name}: an empty spatial dim was accepted");
            }
            var a = setup.Args;
            var (expected, expectedIdx) = Reference.Pool(x.Contiguous().ToDoubleArray(), a);
            int[] outShape = [c.Shape[0], c.Shape[1], .. setup.Out];
            var (rtol, atol) = Tolerance.For(dtype, Window(spatial, setup));
            if (!backward)
            {
                var (y, idx) = Run(x, setup);
                if (!y.Shape.ToArray().SequenceEqual(outShape)) return new CheckResult(double.PositiveInfinity, false, $"{Name}: shape {y.Shape}, expected [{string.Join(", ", outShape)}]");
                if (avg) return CheckResult.Compare(expected, y.ToDoubleArray(), rtol, atol, Name, dtype);
                return CheckResult.Equal(expected, y.ToDoubleArray(), Name)
                    .Merge(CheckResult.Equal([.. expectedIdx.Select(i => (double)i)], idx!.ToDoubleArray(), Name + " indices"));
            }
            x.RequiresGrad_();
            var g = Input(outShape, InputView.Contiguous, c.Seed + 1, dtype, device, Domain.Default);
            Run(x, setup).Values.Backward(g);
            var dx = Reference.PoolBackward(g.ToDoubleArray(), expectedIdx, a);
            return CheckResult.Compare(dx, x.Grad!.ToDoubleArray(), rtol, atol, Name, dtype);
        }
    }
}
