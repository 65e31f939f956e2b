using Kiln.Kernels;

namespace Kiln.Ops;

/// <summary>
/// One convolution problem: the input's shape, the kernel, stride, padding, dilation, groups, output channels, output
/// padding (transposed only) and whether there is a bias. <see cref="Sample"/> draws one from a case's input shape.
/// </summary>
/// <param name="Transposed">A transposed convolution (input [N, Cin, ..], weight [Cin, Cout / groups, ..]).</param>
/// <param name="Input">The input's shape [N, C, spatial...] (1 to 3 spatial axes).</param>
/// <param name="OutChannels">O for a convolution, Cout for a transposed one.</param>
/// <param name="Groups">Channel groups.</param>
/// <param name="Kernel">Kernel extents.</param>
/// <param name="Stride">Strides.</param>
/// <param name="Padding">Paddings.</param>
/// <param name="Dilation">Dilations.</param>
/// <param name="OutputPadding">Output paddings (zeros for a convolution).</param>
/// <param name="Bias">Whether a bias is added.</param>
public sealed record ConvProblem(bool Transposed, int[] Input, int OutChannels, int Groups, int[] Kernel, int[] Stride, int[] Padding,
    int[] Dilation, int[] OutputPadding, bool Bias)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"{(Transposed ? "conv_transpose" : "conv")}{Dims}d input [{string.Join(", ", Input)}] out channels {OutChannels} groups {Groups} kernel ({string.Join(", ", Kernel)}) " +
        $"stride ({string.Join(", ", Stride)}) padding ({string.Join(", ", Padding)}) dilation ({string.Join(", ", Dilation)})" +
        (Transposed ? $" output padding ({string.Join(", ", OutputPadding)})" : "") + (Bias ? " bias" : "");

    /// <summary>Spatial axes.</summary>
    public int Dims => Input.Length - 2;

    /// <summary>The weight's shape.</summary>
    public int[] WeightShape => Transposed ? [Input[1], OutChannels / Groups, .. Kernel] : [OutChannels, Input[1] / Groups, .. Kernel];

    /// <summary>
    /// The geometry of the underlying convolution: for a transposed problem, the convolution from its output back to
    /// its input (whose input gradient it is).
    /// </summary>
    public ConvGeometry Geometry()
    {
        int d = Dims;
        var inExt = Input[2..];
        var outExt = new int[d];
        for (int a = 0; a < d; a++)
            outExt[a] = Transposed ? (inExt[a] - 1) * Stride[a] - 2 * Padding[a] + Dilation[a] * (Kernel[a] - 1) + OutputPadding[a] + 1
                : ConvGeometry.OutExtent(inExt[a], Kernel[a], Stride[a], Padding[a], Dilation[a]);
        int[] F(int[] v, int fill) => [.. Enumerable.Repeat(fill, 3 - v.Length), .. v];
        var (i3, o3) = Transposed ? (F(outExt, 1), F(inExt, 1)) : (F(inExt, 1), F(outExt, 1));
        var (k3, s3, p3, d3) = (F(Kernel, 1), F(Stride, 1), F(Padding, 0), F(Dilation, 1));
        return new ConvGeometry
        {
            N = Input[0], C = Transposed ? OutChannels : Input[1], O = Transposed ? Input[1] : OutChannels, G = Groups,
            ID = i3[0], IH = i3[1], IW = i3[2], KD = k3[0], KH = k3[1], KW = k3[2], OD = o3[0], OH = o3[1], OW = o3[2],
            SD = s3[0], SH = s3[1], SW = s3[2], PD = p3[0], PH = p3[1], PW = p3[2], DD = d3[0], DH = d3[1], DW = d3[2],
        };
    }

    /// <summary>The problem's output shape.</summary>
    public int[] OutputShape()
    {
        var g = Geometry();
        int[] ext = Transposed ? [g.ID, g.IH, g.IW] : [g.OD, g.OH, g.OW];
        return [Input[0], OutChannels, .. ext[(3 - Dims)..]];
    }

    /// <summary>Runs the problem through the public API (Conv1d..3d or ConvTranspose1d..3d).</summary>
    public Tensor Run(Tensor x, Tensor w, Tensor? b) => (Transposed, Dims) switch
    {
        (false, 1) => Tensor.Conv1d(x, w, b, Stride, Padding, Dilation, Groups),
        (false, 2) => Tensor.Conv2d(x, w, b, Stride, Padding, Dilation, Groups),
        (false, _) => Tensor.Conv3d(x, w, b, Stride, Padding, Dilation, Groups),
        (true, 1) => Tensor.ConvTranspose1d(x, w, b, Stride, Padding, OutputPadding, Groups, Dilation),
        (true, 2) => Tensor.ConvTranspose2d(x, w, b, Stride, Padding, OutputPadding, Groups, Dilation),
        (true, _) => Tensor.ConvTranspose3d(x, w, b, Stride, Padding, OutputPadding, Groups, Dilation),
    };

    /// <summary>The float64 reference of <see cref="Run"/> on row-major values.</summary>
    public double[] Reference(double[] x, double[] w, double[]? b)
    {
        var g = Geometry();
        if (!Transposed) return Kernels.Reference.ConvForward(g, x, w, b);
        var y = Kernels.Reference.ConvBackwardData(g, x, w);
        if (b is not null)
            for (int i = 0; i < y.Length; i++) y[i] += b[i / g.InVol % g.C];
        return y;
    }

    /// <summary>Terms summed into each output element (the error budget's multiplier).</summary>
    public int Terms => Transposed ? OutChannels / Groups * Kernel.Aggregate(1, (p, q) => p * q) : Input[1] / Groups * Kernel.Aggregate(1, (p, q) => p * q);

    /// <summary>
    /// A problem on input shape <paramref name="input"/> ([N, C, 1 to 3 spatial extents]) drawn from <paramref name="seed"/>:
    /// groups divide C (depthwise included), kernels up to 3 (up to 2 in 3-d), strides and dilations up to 2, paddings
    /// up to the kernel (more where the output would otherwise be empty: a kernel larger than the input).
    /// </summary>
    public static ConvProblem Sample(int[] input, ulong seed, bool transposed)
    {
        var rng = new Random((int)(seed % int.MaxValue));
        int d = input.Length - 2, c = input[1];
        var divisors = Enumerable.Range(1, Math.Max(c, 1)).Where(q => c % q == 0).ToArray();
        int groups = rng.Next(4) == 0 ? Math.Max(c, 1) : divisors[rng.Next(divisors.Length)];
        int outChannels = groups * rng.Next(1, groups > 2 ? 2 : 4);
        int maxK = d == 3 ? 2 : 3;
        int[] k = new int[d], s = new int[d], p = new int[d], dil = new int[d], op = new int[d];
        for (int a = 0; a < d; a++)
        {
            k[a] = rng.Next(1, maxK + 1); s[a] = rng.Next(1, 3); dil[a] = rng.Next(1, 3); p[a] = rng.Next(0, k[a] + 1);
            int extent = input[2 + a];
            if (transposed)
            {
                op[a] = rng.Next(0, Math.Max(s[a], dil[a]));
                while ((extent - 1) * s[a] - 2 * p[a] + dil[a] * (k[a] - 1) + op[a] + 1 < 1 && p[a] > 0) p[a]--;
            }
            else
                while (ConvGeometry.OutExtent(extent, k[a], s[a], p[a], dil[a]) < 1) p[a]++;
        }
        return new ConvProblem(transposed, input, outChannels, groups, k, s, p, dil, op, rng.Next(2) == 0);
    }
}

/// <summary>The convolution definitions: forward, transposed (the input gradient's kernel) and the weight gradient.</summary>
public static class ConvOps
{
    /// <summary>Every definition of the family.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } =
        [new ConvDefinition("conv.forward", false), new ConvDefinition("conv.transpose", true), new WeightGradDefinition()];

    // Cases are [N, C, spatial...] with 1 to 3 spatial axes; transposed inputs with an empty spatial extent have no output.
    static bool Runnable(OpCase c, bool transposed) => !transposed || c.Shape[2..].All(e => e >= 1);

    /// <summary>A convolution (or transposed one) of the case's input (any layout) by a random weight, against the float64 reference.</summary>
    sealed class ConvDefinition(string name, bool transposed) : OpDefinition(name, "conv", DTypeLists.Floats, new(-1, 1), new Tolerance(4))
    {
        public override int MinRank => 3;
        public override int MaxRank => 5;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            if (!Runnable(c, transposed)) return CheckResult.Ok;
            var p = ConvProblem.Sample(c.Shape, c.Seed, transposed);
            var x = Input(c, dtype, device);
            var w = Input(p.WeightShape, InputView.Contiguous, c.Seed + 1, dtype, device, Domain);
            var b = p.Bias ? Input([p.OutChannels], InputView.Contiguous, c.Seed + 2, dtype, device, Domain) : null;
            var expected = p.Reference(x.Contiguous().ToDoubleArray(), w.ToDoubleArray(), b?.ToDoubleArray());
            var y = p.Run(x, w, b);
            if (!y.Shape.Dims.SequenceEqual(p.OutputShape())) return new CheckResult(double.PositiveInfinity, false, $"{Name}: shape {y.Shape}, expected [{string.Join(", ", p.OutputShape())}]");
            var (rtol, atol) = Tolerance.For(dtype, Math.Max(p.Terms, 1));
            return CheckResult.Compare(expected, y.ToDoubleArray(), rtol, atol, Name, dtype);
        }

        /// <summary>
        /// Special values planted in the input of a padded 2-d problem whose weight holds exact zeros, so an infinity
        /// meets a zero weight (NaN, as PyTorch's products give) as well as ordinary ones; against the float64 reference.
        /// </summary>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            int[] shape = [2, 4, 5, 6];
            var p = new ConvProblem(transposed, shape, 4, 2, [3, 2], [1, 2], [1, 1], [1, 1], transposed ? [0, 1] : [0, 0], Bias: true);
            var ordinary = new Domain(Domain.Low, Domain.High);
            var wd = Input(p.WeightShape, InputView.Contiguous, 21, dtype, Device.Cpu, ordinary).ToDoubleArray();
            for (int i = 0; i < wd.Length; i += 5) wd[i] = 0;
            var bd = Input([p.OutChannels], InputView.Contiguous, 22, dtype, Device.Cpu, ordinary).ToDoubleArray();
            var w = Tensor.FromArray(wd, new Shape(p.WeightShape)).To(dtype).To(device);
            var b = Tensor.FromArray(bd).To(dtype).To(device);
            var xd = Input(shape, InputView.Contiguous, 23, dtype, Device.Cpu, ordinary).ToDoubleArray();
            return SpecialValues.Planted(this, device, dtype, relaxed, xd, shape, v => p.Reference(v, wd, bd), x => p.Run(x, w, b), p.Terms);
        }
    }

    /// <summary>The weight gradient of a convolution of the case's input (through autodiff) against the float64 reference.</summary>
    sealed class WeightGradDefinition() : OpDefinition("conv.weight_grad", "conv", DTypeLists.Floats, new(-1, 1), new Tolerance(4))
    {
        public override int MinRank => 3;
        public override int MaxRank => 5;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var p = ConvProblem.Sample(c.Shape, c.Seed, false);
            var x = Input(c, dtype, device);
            var w = Input(p.WeightShape, InputView.Contiguous, c.Seed + 1, dtype, device, Domain).RequiresGrad_();
            var gy = Input(p.OutputShape(), InputView.Contiguous, c.Seed + 2, dtype, device, Domain);
            p.Run(x, w, null).Backward(gy);
            var expected = Kernels.Reference.ConvBackwardWeight(p.Geometry(), x.Contiguous().ToDoubleArray(), gy.ToDoubleArray());
            var g = p.Geometry();
            var (rtol, atol) = Tolerance.For(dtype, Math.Max(g.N * g.OutVol, 1));
            return CheckResult.Compare(expected, w.Grad!.ToDoubleArray(), rtol, atol, Name, dtype);
        }

        /// <summary>Special values planted in the input of a padded 2-d problem (each reaches the weight gradient through every tap that reads it).</summary>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            int[] shape = [2, 4, 5, 6];
            var p = new ConvProblem(false, shape, 4, 2, [3, 2], [1, 2], [1, 1], [1, 1], [0, 0], Bias: false);
            var ordinary = new Domain(Domain.Low, Domain.High);
            var gyd = Input(p.OutputShape(), InputView.Contiguous, 24, dtype, Device.Cpu, ordinary).ToDoubleArray();
            var gy = Tensor.FromArray(gyd, new Shape(p.OutputShape())).To(dtype).To(device);
            var w0 = Input(p.WeightShape, InputView.Contiguous, 25, dtype, device, ordinary);
            var xd = Input(shape, InputView.Contiguous, 26, dtype, Device.Cpu, ordinary).ToDoubleArray();
            var geometry = p.Geometry();
            return SpecialValues.Planted(this, device, dtype, relaxed, xd, shape, v => Kernels.Reference.ConvBackwardWeight(geometry, v, gyd), x =>
            {
                var w = w0.Detach().RequiresGrad_();
                p.Run(x, w, null).Backward(gy);
                return w.Grad!;
            }, Math.Max(geometry.N * geometry.OutVol, 1));
        }
    }
}
