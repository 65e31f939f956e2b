namespace Kiln;

/// <summary>Thrown when tensor shapes do not fit an operation; the message names the operation, the argument and the shapes.</summary>
public sealed class ShapeMismatchException : ArgumentException
{
    /// <summary>Creates the exception for <paramref name="op"/> with a message that names both shapes.</summary>
    public ShapeMismatchException(string op, string paramName, Shape expected, Shape actual, string? detail = null)
        : base($"{op}: {paramName} has shape {actual}, which does not fit {expected}{(detail is null ? "" : "; " + detail)}", paramName)
    {
        Op = op; Expected = expected; Actual = actual;
    }

    /// <summary>Creates the exception with a free-form message.</summary>
    public ShapeMismatchException(string op, string paramName, string message) : base($"{op}: {message}", paramName)
    {
        Op = op;
    }

    /// <summary>The operation that failed.</summary>
    public string Op { get; }
    /// <summary>The shape the operation needed, where one shape was expected.</summary>
    public Shape? Expected { get; }
    /// <summary>The shape it was given.</summary>
    public Shape? Actual { get; }
}

internal static class Check
{
    public static int Axis(int axis, int rank, string op, string paramName = "axis")
    {
        int a = axis < 0 ? axis + rank : axis;
        if (a < 0 || a >= Math.Max(rank, 1) || (rank == 0 && a != 0))
            throw new ArgumentOutOfRangeException(paramName, axis, $"{op}: axis {axis} is out of range for a tensor of rank {rank} (valid: {-Math.Max(rank, 1)}..{Math.Max(rank, 1) - 1})");
        return a;
    }

    public static void Floating(Tensor t, string op, string paramName)
    {
        if (!t.DType.IsFloating())
            throw new NotSupportedException($"{op}: {paramName} has dtype {t.DType}; this op computes in a floating dtype (convert with .To(DType.Float32))");
    }

    /// <summary>For ops PyTorch runs only in Float32 and Float64 (decompositions, matrix functions): refuses every other dtype, halves included.</summary>
    public static void FullFloat(Tensor t, string op, string paramName)
    {
        if (t.DType is not (DType.Float32 or DType.Float64))
            throw new NotSupportedException($"{op}: {paramName} has dtype {t.DType}; this op computes in Float32 or Float64 only (convert with .To(DType.Float32))");
    }

    public static void SameDType(Tensor a, Tensor b, string op, string paramName)
    {
        if (a.DType != b.DType)
            throw new ArgumentException($"{op}: {paramName} has dtype {b.DType} but the other operand has {a.DType}; convert one with .To(dtype)", paramName);
    }

    public static void SameDevice(Tensor a, Tensor b, string op, string paramName)
    {
        if (a.Device != b.Device)
            throw new ArgumentException($"{op}: {paramName} is on {b.Device} but the other operand is on {a.Device}; move one with .To(device)", paramName);
    }
}
