using Kiln.Gpu;
using Kiln.Kernels;
using Kiln.Kernels.Gpu;
using Kiln.Ops;
using G = Kiln.Kernels.Gpu;

namespace Kiln.Methods.Smoothing;

/// <summary>
/// The stump-sum dynamic program of deterministic smoothing as two ops on Kiln's extension API: the exact distribution
/// of the integer sum S of a decision-stump ensemble's leaf levels under input noise (<see cref="Pdf"/>), and its upper
/// tail (<see cref="Tail"/>). <c>upper</c> (Float64 [batch, thresholds]) holds P[x' &gt;= threshold] per input; meta-stump
/// g owns the thresholds <c>groupStarts[g] .. groupStarts[g+1]-1</c> (sorted ascending) and falls in its region k with
/// probability upper[k-1] - upper[k] (1 and 0 at the ends), adding <c>values[groupStarts[g] + g + k]</c> (&gt;= 0; values
/// holds thresholds + groups entries). Meta-stumps are independent, so pdf_g[t] = sum_k p_gk pdf_{g-1}[t - values_gk].
/// Kernels: kernels/Kiln.Kernels.Cpu/StumpSmoothing.cs and kernels/Kiln.Kernels.Gpu/StumpSmoothing.cs, against
/// <see cref="Reference.StumpSumPdf"/>. Not differentiable.
/// </summary>
public static class StumpSum
{
    /// <summary>A layout of meta-stumps: group starts and region values.</summary>
    public readonly record struct Layout(int[] GroupStarts, int[] Values);

    /// <summary>pdf[b, t] = P[S_b = t]: Float64 [batch, width], width = 1 + the sum over groups of the largest region value.</summary>
    public static CustomOp<Layout> PdfOp { get; } = new CustomOp<Layout>("stump.sum_pdf", 1,
        (xs, shapes, l) => Rows(xs[0], shapes[0], row => Reference.StumpSumPdf(row, l.GroupStarts, l.Values)),
        dtypes: [DType.Float64], tolerance: new Tolerance(1))
    {
        OutputShape = (shapes, l) => new Shape(shapes[0][0], Reference.StumpSumWidth(l.GroupStarts, l.Values)),
        Validate = (xs, l) => CheckUpper(xs[0], l, "stump_sum_pdf"),
        CaseInputs = (c, dtype) => Case(c, tail: false),
        MinInputRank = 1,
        MaxInputRank = 1,
    }
        .Cpu<double>(a => Kernels.Cpu.StumpSmoothing.SumPdf(a.InputShape(0)[0], a.InputArray<double>(0), 0, a.Params.GroupStarts, a.Params.Values, a.OutputArray, 0))
        .Ilgpu(ctx =>
        {
            using var pdf = GpuPdf(ctx, ctx.Output.Shape[1]);
            ctx.Backend.Copy(pdf, ctx.Output);
        }, StumpKernels.PdfInit, StumpKernels.PdfStep)
        .Register();

    /// <summary>tail[b] = P[S_b &gt; cuts[b]] without materializing the pdf: inputs upper and Int64 cuts [batch]; Float64 [batch].</summary>
    public static CustomOp<Layout> TailOp { get; } = new CustomOp<Layout>("stump.sum_tail", 2,
        (xs, shapes, l) => [.. Enumerable.Range(0, shapes[0][0]).Select(b =>
            Reference.StumpSumTail(xs[0].AsSpan(b * shapes[0][1], shapes[0][1]), l.GroupStarts, l.Values, (long)xs[1][b]))],
        dtypes: [DType.Float64], tolerance: new Tolerance(1))
    {
        OutputShape = (shapes, l) => new Shape(shapes[0][0]),
        Validate = (xs, l) =>
        {
            CheckUpper(xs[0], l, "stump_sum_tail");
            if (xs[1].DType != DType.Int64) throw new ArgumentException($"stump_sum_tail: cuts must be Int64, not {xs[1].DType}", "cuts");
            if (xs[1].Rank != 1 || xs[1].Shape[0] != xs[0].Shape[0])
                throw new ShapeMismatchException("stump_sum_tail", "cuts", new Shape(xs[0].Shape[0]), xs[1].Shape, "one cut per row of upper");
        },
        CaseInputs = (c, dtype) => Case(c, tail: true),
        MinInputRank = 1,
        MaxInputRank = 1,
    }
        .Cpu<double>(a => Kernels.Cpu.StumpSmoothing.SumTail(a.InputShape(0)[0], a.InputArray<double>(0), 0, a.Params.GroupStarts, a.Params.Values,
            a.InputArray<long>(1), 0, a.OutputArray, 0))
        .Ilgpu(ctx =>
        {
            int width = Reference.StumpSumWidth(ctx.Params.GroupStarts, ctx.Params.Values);
            using var pdf = GpuPdf(ctx, width);
            StumpKernels.Tail.Launch(ctx.Host, ctx.Inputs[0].Shape[0], ctx.View<double>(pdf), width, ctx.View<long>(ctx.Inputs[1]), 0, ctx.View<double>(ctx.Output), 0);
        }, StumpKernels.Tail)
        .Register();

    /// <summary>The distribution of the stump sums (see <see cref="PdfOp"/>).</summary>
    /// <exception cref="ShapeMismatchException"><paramref name="upper"/> is not [batch, thresholds].</exception>
    /// <exception cref="ArgumentException">The group layout is malformed or a value is negative.</exception>
    /// <exception cref="NotSupportedException"><paramref name="upper"/> is not Float64, or its device has no kernel.</exception>
    public static Tensor Pdf(Tensor upper, int[] groupStarts, int[] values) => PdfOp.Apply(new Layout(groupStarts, values), upper);

    /// <summary>The upper tails of the stump sums: exactly 1 where cuts[b] &lt; 0 and exactly 0 where cuts[b] &gt;= width - 1 (see <see cref="TailOp"/>).</summary>
    /// <exception cref="ShapeMismatchException">A shape does not fit.</exception>
    /// <exception cref="ArgumentException">The group layout is malformed, a value is negative, or cuts is not Int64 on upper's device.</exception>
    /// <exception cref="NotSupportedException"><paramref name="upper"/> is not Float64, or its device has no kernel.</exception>
    public static Tensor Tail(Tensor upper, int[] groupStarts, int[] values, Tensor cuts) => TailOp.Apply(new Layout(groupStarts, values), upper, cuts);

    static void CheckUpper(Tensor upper, Layout l, string op)
    {
        ArgumentNullException.ThrowIfNull(l.GroupStarts, "groupStarts");
        ArgumentNullException.ThrowIfNull(l.Values, "values");
        Reference.StumpSumWidth(l.GroupStarts, l.Values);
        int thresholds = l.GroupStarts[^1];
        if (upper.Rank != 2 || upper.Shape[1] != thresholds)
            throw new ShapeMismatchException(op, nameof(upper), new Shape(upper.Rank == 2 ? upper.Shape[0] : 0, thresholds), upper.Shape, "upper must be [batch, thresholds] with one column per threshold");
    }

    static double[] Rows(double[] x, Shape shape, Func<double[], double[]> f) =>
        [.. Enumerable.Range(0, shape[0]).SelectMany(b => f(x[(b * shape[1])..((b + 1) * shape[1])]))];

    /// <summary>The [batch, width] pdf on an ILGPU device: one launch per meta-stump, ping-ponging two device buffers.</summary>
    static Tensor GpuPdf(IlgpuKernelContext<Layout> ctx, int width)
    {
        var upper = ctx.Inputs[0];
        var (starts, values) = (ctx.Params.GroupStarts, ctx.Params.Values);
        int batch = upper.Shape[0], groups = starts.Length - 1, n = batch * width;
        var device = upper.Device;
        var cur = Tensor.Empty([batch, width], DType.Float64, device);
        using var next0 = Tensor.Empty([batch, width], DType.Float64, device);
        using var vals = Tensor.FromArray(values).To(device);
        StumpKernels.PdfInit.Launch(ctx.Host, n, ctx.View<double>(cur), width);
        var (a, b) = (cur, next0);
        int used = 1;
        for (int g = 0; g < groups; g++)
        {
            int first = starts[g], count = starts[g + 1] - first;
            var step = new G.StumpSmoothing.Step { Thresholds = upper.Shape[1], UpperOff = 0, First = first, Count = count, Group = g, Width = width, Used = used };
            StumpKernels.PdfStep.Launch(ctx.Host, n, ctx.View<double>(upper), ctx.View<int>(vals), ctx.View<double>(a), ctx.View<double>(b), step);
            int max = 0;
            for (int k = 0; k <= count; k++) max = Math.Max(max, values[first + g + k]);
            used += max;
            (a, b) = (b, a);
        }
        if (!ReferenceEquals(a, cur)) ctx.Backend.Copy(a, cur);
        return cur;
    }

    /// <summary>A random layout (up to 6 meta-stumps of 0-3 thresholds, values 0..12), its upper tails (non-increasing within each group, with exact 0s, 1s and ties) and, for the tail, cuts around the support.</summary>
    static (Tensor[] Inputs, Layout Params) Case(OpCase c, bool tail)
    {
        var rng = new Random((int)(c.Seed % int.MaxValue));
        var sizes = Enumerable.Range(0, rng.Next(0, 7)).Select(_ => rng.Next(0, 4)).ToArray();
        var starts = new int[sizes.Length + 1];
        for (int g = 0; g < sizes.Length; g++) starts[g + 1] = starts[g] + sizes[g];
        var values = Enumerable.Range(0, starts[^1] + sizes.Length).Select(_ => rng.Next(0, 13)).ToArray();
        int batch = c.Shape.Length == 0 ? 1 : c.Shape[0], t = starts[^1];
        var p = new double[batch * t];
        for (int b = 0; b < batch; b++)
            for (int g = 0; g < sizes.Length; g++)
            {
                double cur = rng.NextDouble() < 0.1 ? 1.0 : rng.NextDouble();
                for (int k = starts[g]; k < starts[g + 1]; k++)
                {
                    p[b * t + k] = cur;
                    if (rng.NextDouble() < 0.7) cur *= rng.NextDouble() < 0.1 ? 0 : rng.NextDouble();
                }
            }
        var upper = Tensor.FromArray(p, new Shape(batch, t));
        var layout = new Layout(starts, values);
        if (!tail) return ([upper], layout);
        int width = Reference.StumpSumWidth(starts, values);
        var cuts = Enumerable.Range(0, batch).Select(_ => (long)rng.Next(-2, width + 2)).ToArray();
        return ([upper, Tensor.FromArray(cuts)], layout);
    }
}
