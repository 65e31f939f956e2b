using System.Collections;

namespace Kiln;

/// <summary>The immutable extents of a tensor, outermost first. A rank-0 shape is a scalar. Write one as <c>[2, 3]</c>.</summary>
[System.Runtime.CompilerServices.CollectionBuilder(typeof(Shape), nameof(Create))]
public readonly struct Shape : IEquatable<Shape>, IReadOnlyList<int>
{
    readonly int[]? _dims;

    /// <summary>Creates a shape; every extent must be non-negative.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An extent is negative or the element count overflows.</exception>
    public Shape(params ReadOnlySpan<int> dims)
    {
        long n = 1;
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] < 0)
                throw new ArgumentOutOfRangeException(nameof(dims), $"shape [{string.Join(", ", dims.ToArray())}] has a negative size {dims[i]} at dimension {i}");
            n *= dims[i];
            if (n > int.MaxValue)
                throw new ArgumentOutOfRangeException(nameof(dims), $"shape [{string.Join(", ", dims.ToArray())}] has more than {int.MaxValue} elements");
        }
        _dims = dims.ToArray();
    }

    // Takes `dims` as they are: the caller built them (non-negative, product in range) and keeps no reference.
    Shape(int[] dims, bool owned) => _dims = dims;

    /// <summary>A shape over <paramref name="dims"/> without checking or copying them (see the private constructor).</summary>
    internal static Shape Owning(int[] dims) => new(dims, owned: true);

    /// <summary>Creates a shape from a collection expression.</summary>
    public static Shape Create(ReadOnlySpan<int> dims) => new(dims);

    /// <summary>Number of dimensions.</summary>
    public int Rank => _dims?.Length ?? 0;
    /// <summary>Same as <see cref="Rank"/>.</summary>
    public int Count => Rank;
    /// <summary>The extent of dimension <paramref name="i"/> (negative counts from the end).</summary>
    public int this[int i] => Dims[i < 0 ? i + Rank : i];
    /// <summary>Total number of elements (1 for a scalar).</summary>
    public int Numel { get { int n = 1; foreach (int d in Dims) n *= d; return n; } }
    /// <summary>The extents as a span.</summary>
    public ReadOnlySpan<int> Dims => _dims ?? [];
    /// <summary>A copy of the extents.</summary>
    public int[] ToArray() => Dims.ToArray();

    /// <summary>Row-major (C-order) strides of this shape, in elements.</summary>
    public int[] ContiguousStrides()
    {
        var s = new int[Rank];
        int acc = 1;
        for (int i = Rank - 1; i >= 0; i--) { s[i] = acc; acc *= Math.Max(Dims[i], 1); }
        return s;
    }

    /// <summary>NumPy broadcasting of two shapes.</summary>
    /// <exception cref="ShapeMismatchException">The shapes do not broadcast.</exception>
    public static Shape Broadcast(Shape a, Shape b, string op = "broadcast")
    {
        if (a.Dims.SequenceEqual(b.Dims)) return a;
        int r = Math.Max(a.Rank, b.Rank);
        Span<int> d = r <= 16 ? stackalloc int[r] : new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i - (r - a.Rank) >= 0 ? a.Dims[i - (r - a.Rank)] : 1;
            int db = i - (r - b.Rank) >= 0 ? b.Dims[i - (r - b.Rank)] : 1;
            if (da != db && da != 1 && db != 1)
                throw new ShapeMismatchException(op, "other", $"shapes {a} and {b} do not broadcast (dimension {i}: {da} vs {db})");
            d[i] = da == 1 ? db : da;
        }
        // Most operands already have the broadcast shape; a new one is checked for overflow.
        return d.SequenceEqual(a.Dims) ? a : d.SequenceEqual(b.Dims) ? b : new Shape(d);
    }

    /// <inheritdoc/>
    public bool Equals(Shape other) => Dims.SequenceEqual(other.Dims);
    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);
    /// <inheritdoc/>
    public override int GetHashCode() { var h = new HashCode(); foreach (int d in Dims) h.Add(d); return h.ToHashCode(); }
    /// <summary>Shape equality.</summary>
    public static bool operator ==(Shape a, Shape b) => a.Equals(b);
    /// <summary>Shape inequality.</summary>
    public static bool operator !=(Shape a, Shape b) => !a.Equals(b);
    /// <summary>Formats as [d0, d1, ...].</summary>
    public override string ToString() => "[" + string.Join(", ", Dims.ToArray()) + "]";
    /// <inheritdoc/>
    public IEnumerator<int> GetEnumerator() => ((IEnumerable<int>)(_dims ?? [])).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    /// <summary>Converts an array of extents.</summary>
    public static implicit operator Shape(int[] dims) => new(dims);
}

/// <summary>Where a tensor's elements sit in its storage: shape, strides (elements, may be 0 for broadcast) and offset.</summary>
public readonly record struct Layout(Shape Shape, int[] Strides, int Offset)
{
    /// <summary>A contiguous row-major layout of <paramref name="shape"/>.</summary>
    public static Layout Contiguous(Shape shape) => new(shape, shape.ContiguousStrides(), 0);

    /// <summary>True when the elements are dense and row-major from <see cref="Offset"/>.</summary>
    public bool IsContiguous
    {
        get
        {
            int expect = 1;
            for (int i = Shape.Rank - 1; i >= 0; i--)
            {
                int d = Shape.Dims[i];
                if (d == 0) return true;
                if (d != 1 && Strides[i] != expect) return false;
                expect *= d;
            }
            return true;
        }
    }

    /// <summary>Largest storage index any element touches, plus one (Offset for an empty tensor).</summary>
    public int Extent
    {
        get
        {
            if (Shape.Numel == 0) return Offset;
            long hi = Offset;
            for (int i = 0; i < Shape.Rank; i++) hi += (long)(Shape.Dims[i] - 1) * Math.Max(Strides[i], 0);
            return (int)(hi + 1);
        }
    }
}
