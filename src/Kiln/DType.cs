namespace Kiln;

/// <summary>
/// Element types of a tensor. Binary ops promote their operands' dtypes by PyTorch's rules (<see cref="TypePromotion"/>).
/// Integer arithmetic wraps on overflow (two's complement), as PyTorch's. BFloat16 and Float16 are compute dtypes as on
/// PyTorch's CPU: an op widens half inputs to Float32, computes there (reductions, softmax, norms and attention accumulate
/// in Float32) and rounds its result once to the half dtype (round to nearest even); gradients come back in the input's
/// dtype. Ops PyTorch does not run in half (the decompositions and matrix functions) throw
/// <see cref="NotSupportedException"/> naming op and dtype. <see cref="Autocast"/> runs matmul-class ops in a half dtype
/// and keeps reductions, softmax, norms and losses in Float32.
/// </summary>
public enum DType
{
    /// <summary>IEEE 754 binary32, the workhorse.</summary>
    Float32,
    /// <summary>IEEE 754 binary64, for references and statistics.</summary>
    Float64,
    /// <summary>Signed 32-bit integer.</summary>
    Int32,
    /// <summary>Signed 64-bit integer (indices).</summary>
    Int64,
    /// <summary>Boolean (masks, comparison results).</summary>
    Bool,
    /// <summary>bfloat16 (the top half of a float32: float32's range, 8 significant bits); computes in Float32, rounds on store.</summary>
    BFloat16,
    /// <summary>IEEE 754 binary16 (11 significant bits, largest finite 65504); computes in Float32, rounds on store.</summary>
    Float16,
}

/// <summary>Facts about <see cref="DType"/> values.</summary>
public static class DTypeInfo
{
    /// <summary>Bytes per element.</summary>
    public static int Size(this DType dtype) => dtype switch
    {
        DType.Float32 or DType.Int32 => 4,
        DType.Float64 or DType.Int64 => 8,
        DType.Bool => 1,
        DType.BFloat16 or DType.Float16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>True for the floating dtypes (Float32, Float64, BFloat16, Float16), as <c>torch.is_floating_point</c>: the ones gradients flow through.</summary>
    public static bool IsFloating(this DType dtype) => dtype is DType.Float32 or DType.Float64 or DType.BFloat16 or DType.Float16;

    /// <summary>True for the half-precision dtypes (BFloat16, Float16), which compute in Float32 and round on store.</summary>
    public static bool IsHalf(this DType dtype) => dtype is DType.BFloat16 or DType.Float16;

    /// <summary>True for Int32 and Int64.</summary>
    public static bool IsInteger(this DType dtype) => dtype is DType.Int32 or DType.Int64;

    /// <summary>The managed element type that holds one element (ushort for BFloat16).</summary>
    public static Type ClrType(this DType dtype) => dtype switch
    {
        DType.Float32 => typeof(float),
        DType.Float64 => typeof(double),
        DType.Int32 => typeof(int),
        DType.Int64 => typeof(long),
        DType.Bool => typeof(bool),
        DType.BFloat16 => typeof(ushort),
        DType.Float16 => typeof(Half),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>The dtype whose elements are of type <typeparamref name="T"/>.</summary>
    public static DType Of<T>() => typeof(T) == typeof(float) ? DType.Float32
        : typeof(T) == typeof(double) ? DType.Float64
        : typeof(T) == typeof(int) ? DType.Int32
        : typeof(T) == typeof(long) ? DType.Int64
        : typeof(T) == typeof(bool) ? DType.Bool
        : typeof(T) == typeof(Half) ? DType.Float16
        : throw new NotSupportedException($"no Kiln dtype holds elements of type {typeof(T).Name}");
}
