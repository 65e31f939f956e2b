namespace Kiln.Ops;

/// <summary>
/// Philox 4x32-10 streams: every device must draw the same numbers as the CPU kernel for the same seed (uniform bit for
/// bit; normal within rounding of its float transcendental functions).
/// </summary>
public static class RandomOps
{
    /// <summary>Every definition of the family.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } = [new PhiloxDefinition(normal: false), new PhiloxDefinition(normal: true)];

    sealed class PhiloxDefinition(bool normal) : OpDefinition(normal ? "random.normal" : "random.uniform", "philox",
        DTypeLists.Floats, new(-1, 3), normal ? new Tolerance(0.1) : Tolerance.Exact)
    {
        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var shape = new Shape(c.Shape);
            Tensor Draw(Device d) => normal
                ? Tensor.Randn(shape, new Generator(c.Seed), Domain.Low, Domain.High, dtype, d)
                : Tensor.Rand(shape, new Generator(c.Seed), Domain.Low, Domain.High, dtype, d);
            var expected = Draw(Device.Cpu).ToDoubleArray();
            if (!normal) return CheckResult.Equal(expected, Draw(device).ToDoubleArray(), Name);
            return Tolerance.Check(expected, Draw(device).ToDoubleArray(), dtype, c, Name);
        }
    }
}
