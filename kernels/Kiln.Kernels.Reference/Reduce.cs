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
        if (op == ReduceOp.Prod) return Product(values);
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

    /// <summary>The product with its binary exponent kept apart, so no partial product overflows or underflows on the way.</summary>
    static double Product(ReadOnlySpan<double> values)
    {
        double m = 1.0;
        long e = 0;
        foreach (double v in values)
        {
            m *= v;
            if (m == 0 || !double.IsFinite(m)) return SpecialProduct(values);
            int k = Math.ILogB(m);
            m = Math.ScaleB(m, -k);
            e += k;
        }
        return Math.ScaleB(m, (int)Math.Clamp(e, -4000, 4000));
    }

    /// <summary>
    /// The product of factors that include a zero, an infinity or a NaN: NaN if any factor is NaN or zeros meet
    /// infinities, else a signed 0 or infinity.
    /// </summary>
    public static double SpecialProduct(ReadOnlySpan<double> values)
    {
        bool zero = false, inf = false, negative = false;
        foreach (double v in values)
        {
            if (double.IsNaN(v)) return double.NaN;
            zero |= v == 0;
            inf |= double.IsInfinity(v);
            negative ^= double.IsNegative(v);
        }
        if (zero && inf) return double.NaN;
        double r = zero ? 0.0 : double.PositiveInfinity;
        return negative ? -r : r;
    }
}
