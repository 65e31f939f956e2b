using Kiln.Kernels;

namespace Kiln.Ops;

/// <summary>
/// The resample family's definitions: interpolate in each mode (nearest and nearest-exact over 1d to 3d, linear as
/// linear/bilinear/trilinear by rank, bicubic over 2d), forward and backward, on [N, C, *spatial] with an output size or
/// a scale factor and align_corners drawn from each case's seed.
/// </summary>
public static class ResampleOps
{
    /// <summary>Every definition of the family.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } =
    [
        .. new[] { ResampleMode.Nearest, ResampleMode.NearestExact, ResampleMode.Linear, ResampleMode.Cubic }
            .SelectMany(m => new[] { new InterpolateDefinition(m, backward: false), new InterpolateDefinition(m, backward: true) }),
    ];

    static string NameOf(ResampleMode m) => m switch
    {
        ResampleMode.Nearest => "nearest", ResampleMode.NearestExact => "nearest_exact", ResampleMode.Linear => "linear", _ => "bicubic",
    };

    sealed class InterpolateDefinition(ResampleMode mode, bool backward) : OpDefinition(
        $"resample.interpolate_{NameOf(mode)}{(backward ? "_backward" : "")}", "resample", [DType.Float32, DType.Float64], Domain.Default,
        mode is ResampleMode.Nearest or ResampleMode.NearestExact && !backward ? Tolerance.Exact : new Tolerance(4))
    {
        public override int MinRank => mode == ResampleMode.Cubic ? 4 : 3;
        public override int MaxRank => mode == ResampleMode.Cubic ? 4 : 5;
        bool Nearest => mode is ResampleMode.Nearest or ResampleMode.NearestExact;

        InterpolateMode Mode(int n) => mode switch
        {
            ResampleMode.Nearest => InterpolateMode.Nearest,
            ResampleMode.NearestExact => InterpolateMode.NearestExact,
            ResampleMode.Cubic => InterpolateMode.Bicubic,
            _ => n == 1 ? InterpolateMode.Linear : n == 2 ? InterpolateMode.Bilinear : InterpolateMode.Trilinear,
        };

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var inS = c.Shape[2..];
            int n = inS.Length;
            var rng = new Random((int)(c.Seed % int.MaxValue));
            bool align = !Nearest && rng.Next(2) == 1;
            double[] choices = [0.5, 0.7, 1, 1.5, 2, 7.0 / 3, 3];
            double[]? factors = rng.Next(2) == 0 ? [.. inS.Select(e => choices[rng.Next(choices.Length)])] : null;
            if (factors is not null && inS.Select((e, i) => Math.Floor(e * factors[i])).Any(o => o < 1)) factors = null;
            int[] outS = factors is null ? [.. inS.Select(e => rng.Next(1, 2 * Math.Max(e, 1) + 3))] : [.. inS.Select((e, i) => (int)Math.Floor(e * factors[i]))];
            Tensor Run(Tensor t) => factors is null ? t.Interpolate(outS, null, Mode(n), align) : t.Interpolate(null, factors, Mode(n), align);
            if (inS.Contains(0))
            {
                try { Run(x); }
                catch (ArgumentException) { return CheckResult.Ok; }
                return new CheckResult(double.PositiveInfinity, false, $"{Name}: an empty spatial dim was accepted");
            }
            int At(int[] v, int dim) => dim - (3 - n) is var i && i >= 0 ? v[i] : 1;
            double Factor(int dim) => factors is not null && dim - (3 - n) is var i && i >= 0 ? factors[i] : 0;
            var a = new ResampleArgs
            {
                Planes = c.Shape[0] * c.Shape[1], ID = At(inS, 0), IH = At(inS, 1), IW = At(inS, 2), OD = At(outS, 0), OH = At(outS, 1), OW = At(outS, 2),
                Mode = (int)mode, AlignCorners = align ? 1 : 0, Active = (1 << n) - 1, FactorD = Factor(0), FactorH = Factor(1), FactorW = Factor(2),
            };
            int taps = mode switch { ResampleMode.Linear => 2, ResampleMode.Cubic => 4, _ => 1 };
            // A gradient element sums the taps of every output that reaches it: about out / in + taps per dim.
            double extra = backward ? inS.Select((e, i) => (double)outS[i] / e + taps).Aggregate(1.0, (p, q) => p * q) : Math.Pow(taps, n);
            var (rtol, atol) = Tolerance.For(dtype, extra);
            int[] outShape = [c.Shape[0], c.Shape[1], .. outS];
            if (!backward)
            {
                var y = Run(x);
                if (!y.Shape.ToArray().SequenceEqual(outShape)) return new CheckResult(double.PositiveInfinity, false, $"{Name}: shape {y.Shape}, expected [{string.Join(", ", outShape)}]");
                var expected = Reference.Resample(x.Contiguous().ToDoubleArray(), a);
                return Tolerance.Scale == 0 ? CheckResult.Equal(expected, y.ToDoubleArray(), Name) : CheckResult.Compare(expected, y.ToDoubleArray(), rtol, atol, Name, dtype);
            }
            x.RequiresGrad_();
            var g = Input(outShape, InputView.Contiguous, c.Seed + 1, dtype, device, Domain.Default);
            Run(x).Backward(g);
            return CheckResult.Compare(Reference.ResampleBackward(g.ToDoubleArray(), a), x.Grad!.ToDoubleArray(), rtol, atol, Name, dtype);
        }
    }
}
