namespace Kiln.Kernels;

/// <summary>Reductions over a contiguous run of values.</summary>
public enum ReduceOp
{
    /// <summary>Sum of the values.</summary>
    Sum,
    /// <summary>Product of the values.</summary>
    Prod,
    /// <summary>Maximum (NaN propagates).</summary>
    Max,
    /// <summary>Minimum (NaN propagates).</summary>
    Min,
}

public static partial class Reference
{
    /// <summary>The reduction <paramref name="op"/> of <paramref name="values"/> in order (identity for an empty run).</summary>
    public static double Reduce(ReduceOp op, ReadOnlySpan<double> values)
    {
        double acc = op switch
        {
            ReduceOp.Sum => 0.0,
            ReduceOp.Prod => 1.0,
            ReduceOp.Max => double.NegativeInfinity,
            ReduceOp.Min => double.PositiveInfinity,
            _ => throw new ArgumentOutOfRangeException(nameof(op)),
        };
        foreach (double v in values)
        {
            acc = op switch
            {
                ReduceOp.Sum => acc + v,
                ReduceOp.Prod => acc * v,
                ReduceOp.Max => double.IsNaN(v) || double.IsNaN(acc) ? double.NaN : Math.Max(acc, v),
                _ => double.IsNaN(v) || double.IsNaN(acc) ? double.NaN : Math.Min(acc, v),
            };
        }
        return acc;
    }
}
