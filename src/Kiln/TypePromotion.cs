namespace Kiln;

/// <summary>
/// PyTorch's type promotion (<c>torch.result_type</c>), which Kiln's binary ops, comparisons and selections follow.
/// Dtypes fall in three categories, Bool &lt; integer &lt; floating. Operands with dimensions decide the result within
/// the highest category among them; a zero-dimensional tensor or a .NET scalar only lifts the category, to its own type
/// (a zero-dimensional tensor) or to the default float dtype Float32 (a .NET double meeting integers or Bools).
/// So an Int64 tensor times 0.5 is Float32, Float32 plus a float64 scalar stays Float32, Float32 plus a Float64 tensor is
/// Float64, and an Int32 tensor plus 2 stays Int32.
/// </summary>
public static class TypePromotion
{
    /// <summary>How an operand takes part: with dimensions, as a zero-dimensional tensor, or as a .NET scalar.</summary>
    public enum Role
    {
        /// <summary>A tensor of rank 1 or more.</summary>
        Dimensioned,
        /// <summary>A tensor of rank 0.</summary>
        ZeroDim,
        /// <summary>A .NET number (double: the default float dtype; long: Int64; bool: Bool).</summary>
        Scalar,
    }

    /// <summary>The dtype of floating results from integer operands: true division, or a .NET double meeting integers.</summary>
    public const DType DefaultFloat = DType.Float32;

    static int Category(DType t) => t == DType.Bool ? 0 : t.IsInteger() ? 1 : 2;

    /// <summary>
    /// The smallest dtype both <paramref name="a"/> and <paramref name="b"/> convert to without losing their category
    /// (<c>torch.promote_types</c>): Bool yields to anything, Int32 to Int64, integers to any floating type, Float16 and
    /// BFloat16 meet in Float32, and Float64 absorbs every other floating type.
    /// </summary>
    public static DType Promote(DType a, DType b)
    {
        if (a == b) return a;
        if (a == DType.Bool) return b;
        if (b == DType.Bool) return a;
        if (a.IsInteger() && b.IsInteger()) return DType.Int64;
        if (a.IsInteger()) return b;
        if (b.IsInteger()) return a;
        if (a == DType.Float64 || b == DType.Float64) return DType.Float64;
        return DType.Float32;   // Float32 with a half type, or Float16 with BFloat16
    }

    /// <summary>Whether a result of dtype <paramref name="from"/> may be written into a tensor of <paramref name="to"/> (in-place ops): never to a lower category.</summary>
    public static bool CanCast(DType from, DType to) => Category(from) <= Category(to);

    /// <summary>The result dtype of operands of the given dtypes and roles (<c>torch.result_type</c>).</summary>
    /// <exception cref="ArgumentException">No operand is given.</exception>
    public static DType ResultType(params (DType DType, Role Role)[] operands)
    {
        ArgumentNullException.ThrowIfNull(operands);
        if (operands.Length == 0) throw new ArgumentException("result_type: at least one operand", nameof(operands));
        DType? dim = null, zero = null, scalar = null;
        foreach (var (t, role) in operands)
        {
            // A .NET double counts as the default float dtype, so it cannot widen Float32 to Float64.
            var u = role == Role.Scalar && t.IsFloating() ? DefaultFloat : t;
            ref DType? group = ref role == Role.Dimensioned ? ref dim : ref role == Role.ZeroDim ? ref zero : ref scalar;
            group = group is { } g ? Promote(g, u) : u;
        }
        return Combine(dim, Combine(zero, scalar))!.Value;
    }

    // The higher-priority group keeps its type unless the lower one reaches a higher category.
    static DType? Combine(DType? higher, DType? lower)
    {
        if (higher is not { } h) return lower;
        if (lower is not { } l) return h;
        if (Category(h) == 2) return h;
        if (h == DType.Bool || Category(l) == 2) return Promote(h, l);
        return h;
    }

    internal static (DType, Role) Of(Tensor t) => (t.DType, t.Rank == 0 ? Role.ZeroDim : Role.Dimensioned);
}
