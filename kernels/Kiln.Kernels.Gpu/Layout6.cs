namespace Kiln.Kernels.Gpu;

/// <summary>
/// The extents of an iteration space of rank at most <see cref="MaxRank"/>, padded on the left with 1s
/// (kernels cannot take arrays, so shapes and strides travel as small fixed-size structs).
/// </summary>
public struct Dims6
{
    /// <summary>The largest rank a kernel sees; the host splits higher ranks (after coalescing) into launches.</summary>
    public const int MaxRank = 6;
    /// <summary>Extents, outermost first; D5 is the innermost.</summary>
    public int D0, D1, D2, D3, D4, D5;

    /// <summary>Builds from up to six extents (outermost first).</summary>
    public static Dims6 From(ReadOnlySpan<int> dims)
    {
        var d = new Dims6 { D0 = 1, D1 = 1, D2 = 1, D3 = 1, D4 = 1, D5 = 1 };
        int pad = MaxRank - dims.Length;
        for (int i = 0; i < dims.Length; i++)
            switch (pad + i)
            {
                case 0: d.D0 = dims[i]; break;
                case 1: d.D1 = dims[i]; break;
                case 2: d.D2 = dims[i]; break;
                case 3: d.D3 = dims[i]; break;
                case 4: d.D4 = dims[i]; break;
                default: d.D5 = dims[i]; break;
            }
        return d;
    }

    /// <summary>The number of elements.</summary>
    public readonly long Numel => (long)D0 * D1 * D2 * D3 * D4 * D5;
}

/// <summary>Where an operand's elements sit: an offset and a stride per dimension (0 for broadcast dimensions).</summary>
public struct Strides6
{
    /// <summary>The storage index of element (0, ..., 0).</summary>
    public int Offset;
    /// <summary>Strides in elements, matching <see cref="Dims6"/>.</summary>
    public int S0, S1, S2, S3, S4, S5;

    /// <summary>Builds from up to six strides (outermost first) and an offset.</summary>
    public static Strides6 From(ReadOnlySpan<int> strides, int offset)
    {
        var s = new Strides6 { Offset = offset };
        int pad = Dims6.MaxRank - strides.Length;
        for (int i = 0; i < strides.Length; i++)
            switch (pad + i)
            {
                case 0: s.S0 = strides[i]; break;
                case 1: s.S1 = strides[i]; break;
                case 2: s.S2 = strides[i]; break;
                case 3: s.S3 = strides[i]; break;
                case 4: s.S4 = strides[i]; break;
                default: s.S5 = strides[i]; break;
            }
        return s;
    }
}

/// <summary>The coordinates of a linear (row-major) index in a <see cref="Dims6"/> space.</summary>
public struct Coord6
{
    /// <summary>Coordinates, outermost first.</summary>
    public int C0, C1, C2, C3, C4, C5;

    /// <summary>Splits linear index <paramref name="i"/>.</summary>
    public static Coord6 Of(long i, Dims6 d)
    {
        var c = new Coord6();
        long r = i;
        c.C5 = (int)(r % d.D5); r /= d.D5;
        c.C4 = (int)(r % d.D4); r /= d.D4;
        c.C3 = (int)(r % d.D3); r /= d.D3;
        c.C2 = (int)(r % d.D2); r /= d.D2;
        c.C1 = (int)(r % d.D1); r /= d.D1;
        c.C0 = (int)r;
        return c;
    }

    /// <summary>The storage index of this coordinate in an operand laid out as <paramref name="s"/>.</summary>
    public readonly int At(Strides6 s) => s.Offset + C0 * s.S0 + C1 * s.S1 + C2 * s.S2 + C3 * s.S3 + C4 * s.S4 + C5 * s.S5;
}
