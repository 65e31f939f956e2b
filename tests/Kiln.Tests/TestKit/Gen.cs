using FsCheck;
using FsCheck.Fluent;

namespace Kiln.Tests.TestKit;

/// <summary>
/// FsCheck generators for tensors: random shapes (rank 0-4, extents 0-9 so empty, unit and odd sizes that exercise
/// SIMD tails all occur, plus occasional long rows), and strided views of them (permuted, sliced with steps, broadcast).
/// </summary>
public static class TensorGen
{
    /// <summary>A random shape.</summary>
    public static Gen<int[]> Shape(int maxRank = 4, int maxDim = 9) =>
        from rank in FsCheck.Fluent.Gen.Choose(0, maxRank)
        from dims in FsCheck.Fluent.Gen.ArrayOf(FsCheck.Fluent.Gen.Frequency(
            (1, FsCheck.Fluent.Gen.Constant(0)), (3, FsCheck.Fluent.Gen.Constant(1)), (12, FsCheck.Fluent.Gen.Choose(2, maxDim)), (1, FsCheck.Fluent.Gen.Choose(30, 70))), rank)
        select dims;

    /// <summary>A non-empty random shape of rank at least one.</summary>
    public static Gen<int[]> NonEmptyShape(int maxRank = 4, int maxDim = 9) =>
        from rank in FsCheck.Fluent.Gen.Choose(1, maxRank)
        from dims in FsCheck.Fluent.Gen.ArrayOf(FsCheck.Fluent.Gen.Frequency(
            (2, FsCheck.Fluent.Gen.Constant(1)), (12, FsCheck.Fluent.Gen.Choose(2, maxDim)), (1, FsCheck.Fluent.Gen.Choose(30, 70))), rank)
        select dims;

    /// <summary>How a test tensor is laid out.</summary>
    public enum ViewKind { Contiguous, Permuted, Sliced, Broadcast }

    /// <summary>A layout kind.</summary>
    public static Gen<ViewKind> View => FsCheck.Fluent.Gen.Elements(ViewKind.Contiguous, ViewKind.Permuted, ViewKind.Sliced, ViewKind.Broadcast);

    /// <summary>A shape, a layout and a seed: the usual input of a single-tensor property.</summary>
    public static Gen<(int[] Shape, ViewKind View, int Seed)> Case(int maxRank = 4, int maxDim = 9) =>
        from s in Shape(maxRank, maxDim) from v in View from seed in Seed select (s, v, seed);

    /// <summary>A seed.</summary>
    public static Gen<int> Seed => FsCheck.Fluent.Gen.Choose(0, int.MaxValue);

    /// <summary>
    /// A tensor of <paramref name="shape"/> with values from <paramref name="values"/> (float64 data), laid out as
    /// <paramref name="kind"/>: built as a larger or reordered tensor and viewed down to the shape, so strides differ.
    /// </summary>
    public static Tensor Make(int[] shape, ViewKind kind, int seed, DType dtype, Device device, double low = -3, double high = 3)
    {
        var g = new Generator((ulong)seed);
        var s = new Kiln.Shape(shape);
        switch (kind)
        {
            case ViewKind.Permuted when shape.Length >= 2:
            {
                var rev = shape.Reverse().ToArray();
                var perm = Enumerable.Range(0, shape.Length).Reverse().ToArray();
                return Tensor.Rand(new Kiln.Shape(rev), g, low, high, DType.Float64).To(dtype).To(device).Permute(perm);
            }
            case ViewKind.Sliced when shape.Length >= 1:
            {
                var big = (int[])shape.Clone(); big[^1] = shape[^1] * 2 + 1;
                return Tensor.Rand(new Kiln.Shape(big), g, low, high, DType.Float64).To(dtype).To(device).Slice(-1, 1, null, 2);
            }
            case ViewKind.Broadcast when shape.Length >= 1:
            {
                var small = (int[])shape.Clone(); small[0] = Math.Min(1, shape[0]);
                return Tensor.Rand(new Kiln.Shape(small), g, low, high, DType.Float64).To(dtype).To(device).BroadcastTo(s);
            }
            default:
                return Tensor.Rand(s, g, low, high, DType.Float64).To(dtype).To(device);
        }
    }
}

/// <summary>Runs an FsCheck property inside a [Fact], reporting the shrunk counterexample.</summary>
public static class Props
{
    /// <summary>Number of cases per property (KILN_PROPERTY_TESTS overrides, for long soak runs).</summary>
    public static int DefaultMaxTest { get; } = int.TryParse(Environment.GetEnvironmentVariable("KILN_PROPERTY_TESTS"), out int n) ? n : 60;

    public static void Check<T>(Gen<T> gen, Action<T> property, int? maxTest = null) =>
        FsCheck.Check.One(Config.QuickThrowOnFailure.WithMaxTest(maxTest ?? DefaultMaxTest), Prop.ForAll(gen.ToArbitrary(), (T v) => { property(v); }));

    /// <summary>
    /// Checks a property of kernels on <paramref name="device"/>, with the case count scaled for that device: ILGPU's CPU
    /// accelerator simulates every GPU thread on the host, and an OpenCL device may be PoCL on the same two cores, so they
    /// run a third of the cases (each still covers random shapes and layouts; the full count runs on the CPU and on CUDA).
    /// </summary>
    public static void Check<T>(Device device, Gen<T> gen, Action<T> property, int? maxTest = null) =>
        Check(gen, property, MaxTests(device, maxTest ?? DefaultMaxTest));

    /// <summary>The number of cases a property runs on <paramref name="device"/>.</summary>
    public static int MaxTests(Device device, int maxTest) => device.Kind is DeviceKind.IlgpuCpu or DeviceKind.OpenCL ? Math.Max(10, maxTest / 3) : maxTest;
}
