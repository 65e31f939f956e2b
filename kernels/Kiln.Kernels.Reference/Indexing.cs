namespace Kiln.Kernels;

public static partial class Reference
{
    /// <summary>y[o, i, n] = x[o, index[o, i, n], n] for row-major x [outer, xAxis, inner] and index [outer, yAxis, inner].</summary>
    public static double[] Gather(ReadOnlySpan<double> x, int outer, int xAxis, int inner, ReadOnlySpan<long> index, int yAxis)
    {
        var y = new double[outer * yAxis * inner];
        for (int o = 0; o < outer; o++)
            for (int i = 0; i < yAxis; i++)
                for (int n = 0; n < inner; n++)
                    y[(o * yAxis + i) * inner + n] = x[(o * xAxis + (int)index[(o * yAxis + i) * inner + n]) * inner + n];
        return y;
    }
}
