namespace Kiln.Tests.TestKit;

/// <summary>Plain index arithmetic over row-major float64 arrays: the oracle for movement and reduction tests.</summary>
public static class Naive
{
    public static int[] Strides(int[] shape)
    {
        var s = new int[shape.Length]; int acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
        return s;
    }

    public static int[] Unravel(int flat, int[] shape)
    {
        var idx = new int[shape.Length];
        for (int i = shape.Length - 1; i >= 0; i--) { if (shape[i] > 0) { idx[i] = flat % shape[i]; flat /= shape[i]; } }
        return idx;
    }

    public static int Ravel(int[] idx, int[] shape)
    {
        int f = 0;
        for (int i = 0; i < shape.Length; i++) f = f * shape[i] + idx[i];
        return f;
    }

    public static int Numel(int[] shape) => shape.Aggregate(1, (a, b) => a * b);

    /// <summary>Reduces row-major data over `axes` with a float64 fold, keepDim-shaped result.</summary>
    public static (double[] Values, int[] Shape) Reduce(double[] x, int[] shape, int[] axes, Func<IReadOnlyList<double>, double> fold)
    {
        var outShape = shape.Select((d, i) => axes.Contains(i) ? 1 : d).ToArray();
        var groups = new List<double>[Numel(outShape)];
        for (int i = 0; i < groups.Length; i++) groups[i] = [];
        for (int f = 0; f < x.Length; f++)
        {
            var idx = Unravel(f, shape);
            foreach (int a in axes) idx[a] = 0;
            groups[Ravel(idx, outShape)].Add(x[f]);
        }
        return (groups.Select(g => fold(g)).ToArray(), outShape);
    }
}
