using Kiln.Kernels;
using Kiln.Methods.Smoothing;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>The stump-sum dynamic program (StumpSum.Pdf / StumpSum.Tail, an op on the extension API) against the float64 reference, on every device.</summary>
public class StumpSumKernelTests
{
    // A random layout: up to 6 meta-stumps with 0-3 thresholds each; region values 0..12 with repeats and zeros.
    static FsCheck.Gen<(int Batch, int[] Starts, int[] Values, int Seed, bool Strided)> Case =>
        from batch in G.Frequency((1, G.Constant(0)), (2, G.Constant(1)), (6, G.Choose(2, 9)), (1, G.Choose(30, 70)))
        from sizes in G.ListOf(G.Choose(0, 3)).Select(l => l.Take(6).ToArray())
        from vals in G.ArrayOf(G.Choose(0, 12), sizes.Sum() + sizes.Length)
        from seed in TensorGen.Seed
        from strided in G.Elements(true, false)
        select (batch, Starts(sizes), vals, seed, strided);

    static int[] Starts(int[] sizes)
    {
        var s = new int[sizes.Length + 1];
        for (int g = 0; g < sizes.Length; g++) s[g + 1] = s[g] + sizes[g];
        return s;
    }

    // Upper-tail probabilities, non-increasing within each group, with exact 0s, 1s and ties.
    static double[] Probabilities(int batch, int[] starts, int seed)
    {
        var rng = new Random(seed);
        int t = starts[^1];
        var p = new double[batch * t];
        for (int b = 0; b < batch; b++)
            for (int g = 0; g + 1 < starts.Length; g++)
            {
                double cur = rng.NextDouble() < 0.1 ? 1.0 : rng.NextDouble();
                for (int k = starts[g]; k < starts[g + 1]; k++)
                {
                    p[b * t + k] = cur;
                    double u = rng.NextDouble();
                    cur = u < 0.15 ? cur : u < 0.25 ? 0 : cur * rng.NextDouble();
                }
            }
        return p;
    }

    // probs as a tensor on the device, either contiguous or a strided column slice of a wider tensor.
    static Tensor Make(double[] p, int batch, int regions, bool strided, Device dev)
    {
        if (!strided) return Tensor.FromArray(p, new Shape(batch, regions)).To(dev);
        var wide = new double[batch * regions * 2];
        for (int b = 0; b < batch; b++) for (int r = 0; r < regions; r++) wide[b * regions * 2 + 2 * r + 1] = p[b * regions + r];
        return Tensor.FromArray(wide, new Shape(batch, regions * 2)).To(dev).Slice(1, 1, null, 2);
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Pdf_matches_reference(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(Case, c =>
        {
            var (batch, starts, values, seed, strided) = c;
            int regions = starts[^1];
            var p = Probabilities(batch, starts, seed);
            var pdf = StumpSum.Pdf(Make(p, batch, regions, strided, dev), starts, values);
            int width = Reference.StumpSumWidth(starts, values);
            Assert.Equal(new Shape(batch, width), pdf.Shape);
            var got = pdf.ToArray<double>();
            for (int b = 0; b < batch; b++)
            {
                var expected = Reference.StumpSumPdf(p.AsSpan(b * regions, regions), starts, values);
                Close.Check(expected, got.AsSpan(b * width, width), 1e-12, 1e-15, $"row {b}");
                Assert.Equal(1.0, got.AsSpan(b * width, width).ToArray().Sum(), 1e-12);
            }
        });
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Tail_matches_reference_including_guarded_cuts(string device)
    {
        var dev = Devices.Parse(device);
        Props.Check(Case, c =>
        {
            var (batch, starts, values, seed, strided) = c;
            int regions = starts[^1], width = Reference.StumpSumWidth(starts, values);
            var p = Probabilities(batch, starts, seed);
            var rng = new Random(seed);
            var cuts = Enumerable.Range(0, batch).Select(_ => (long)rng.Next(-3, width + 3)).ToArray();
            var tail = StumpSum.Tail(Make(p, batch, regions, strided, dev), starts, values, Tensor.FromArray(cuts).To(dev)).ToArray<double>();
            for (int b = 0; b < batch; b++)
            {
                double expected = Reference.StumpSumTail(p.AsSpan(b * regions, regions), starts, values, cuts[b]);
                if (cuts[b] < 0) Assert.Equal(1.0, tail[b]);
                else if (cuts[b] >= width - 1) Assert.Equal(0.0, tail[b]);
                else Assert.True(Math.Abs(expected - tail[b]) <= 1e-12, $"row {b} cut {cuts[b]}: {tail[b]} vs {expected}");
            }
        });
    }

    [Fact]
    public void Reference_matches_enumeration_of_all_outcomes()
    {
        Props.Check(Case, c =>
        {
            var (_, starts, values, seed, _) = c;
            var p = Probabilities(1, starts, seed);
            var expected = new double[Reference.StumpSumWidth(starts, values)];
            void Walk(int g, int sum, double prob)
            {
                if (g + 1 == starts.Length) { expected[sum] += prob; return; }
                for (int k = 0; k <= starts[g + 1] - starts[g]; k++)
                {
                    double hi = k == 0 ? 1 : p[starts[g] + k - 1], lo = k == starts[g + 1] - starts[g] ? 0 : p[starts[g] + k];
                    Walk(g + 1, sum + values[starts[g] + g + k], prob * (hi - lo));
                }
            }
            Walk(0, 0, 1);
            Close.Check(expected, Reference.StumpSumPdf(p, starts, values), 1e-12, 1e-15);
        });
    }

    [Fact]
    public void Bad_arguments_are_named()
    {
        // Two meta-stumps: thresholds 0-1 (three regions) and threshold 2 (two regions): five values.
        var p = Tensor.FromArray(new[] { 0.9, 0.5, 0.3 }, new Shape(1, 3));
        int[] starts = [0, 2, 3], values = [0, 1, 2, 0, 4];
        Assert.Equal(1, StumpSum.Pdf(p, starts, values).ToArray<double>().Sum(), 1e-14);
        Assert.Throws<NotSupportedException>(() => StumpSum.Pdf(p.To(DType.Float32), starts, values));
        Assert.Throws<ShapeMismatchException>(() => StumpSum.Pdf(p, [0, 2], [0, 1, 2]));
        Assert.Throws<ShapeMismatchException>(() => StumpSum.Pdf(p.Reshape(3), starts, values));
        var neg = Assert.Throws<ArgumentException>(() => StumpSum.Pdf(p, starts, [0, -1, 2, 0, 4]));
        Assert.Contains("values[1]", neg.Message);
        Assert.Throws<ArgumentException>(() => StumpSum.Pdf(p, starts, [0, 1, 2, 0]));
        Assert.Throws<ArgumentException>(() => StumpSum.Pdf(p, [0, 2, 1, 3], [0, 1, 2, 0, 4, 5]));
        Assert.Throws<ArgumentException>(() => StumpSum.Pdf(p, [1, 3], [0, 1, 2]));
        Assert.Throws<ArgumentException>(() => StumpSum.Tail(p, starts, values, Tensor.FromArray(new[] { 1 })));
        Assert.Throws<ShapeMismatchException>(() => StumpSum.Tail(p, starts, values, Tensor.FromArray(new long[] { 1, 2 })));
    }
}
