namespace Kiln.Methods.Generative;

/// <summary>
/// ResBit, residual bit vectors (Fuchi et al.): a dense code for C categories that extends analog bits. C − 1 is split
/// greedily into blocks of k_i bits with capacities M_i = 2^{k_i} − 1, k_i = ⌊log₂(R_i + 1)⌋, R_1 = C − 1,
/// R_{i+1} = R_i − M_i, so Σ M_i = C − 1; category n fills the blocks in order (block i holds
/// min(n − Σ_{j&lt;i} v_j, M_i)) and each block's value is written in binary as ±1 analog bits. Decoding thresholds the
/// bits at 0 and sums the block values, so every bit pattern, including a generator's noisy output, decodes to a valid
/// category in [0, C), which plain analog bits do not guarantee when C is not a power of two.
/// </summary>
public sealed class ResBit
{
    readonly int[] _bits;

    /// <summary>The code for <paramref name="categories"/> categories.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Fewer than one category.</exception>
    public ResBit(int categories)
    {
        if (categories < 1) throw new ArgumentOutOfRangeException(nameof(categories), categories, "resbit: categories must be at least 1");
        Categories = categories;
        var bits = new List<int>();
        for (long rest = categories - 1; rest > 0;)
        {
            int k = 63 - (int)long.LeadingZeroCount(rest + 1); // ⌊log₂(rest + 1)⌋
            bits.Add(k);
            rest -= (1L << k) - 1;
        }
        _bits = [.. bits];
        Width = _bits.Sum();
    }

    /// <summary>The number of categories C.</summary>
    public int Categories { get; }

    /// <summary>The bits k_i of each residual block, in order.</summary>
    public IReadOnlyList<int> BlockBits => _bits;

    /// <summary>The code length Σ k_i.</summary>
    public int Width { get; }

    /// <summary>Encodes integer categories [...] as ±1 codes [..., <see cref="Width"/>] of <paramref name="dtype"/>.</summary>
    /// <exception cref="ArgumentException">The indices are not integers, or one lies outside [0, C).</exception>
    public Tensor Encode(Tensor indices, DType dtype = DType.Float32)
    {
        if (indices.DType is not (DType.Int64 or DType.Int32)) throw new ArgumentException($"resbit_encode: indices must be Int32 or Int64, got {indices.DType}", nameof(indices));
        var idx = indices.To(DType.Int64).ToArray<long>();
        var code = new double[idx.Length * Width];
        for (int s = 0; s < idx.Length; s++)
        {
            long n = idx[s];
            if (n < 0 || n >= Categories) throw new ArgumentException($"resbit_encode: index {n} at flat position {s} is outside [0, {Categories})", nameof(indices));
            int at = s * Width;
            foreach (int k in _bits)
            {
                long v = Math.Min(n, (1L << k) - 1);
                n -= v;
                for (int b = 0; b < k; b++) code[at++] = ((v >> (k - 1 - b)) & 1) == 1 ? 1.0 : -1.0;
            }
        }
        return Tensor.FromArray(code, new Shape([.. indices.Shape.Dims, Width])).To(dtype).To(indices.Device);
    }

    /// <summary>Decodes codes [..., <see cref="Width"/>] (any reals; a bit is 1 where it is positive) to Int64 categories [...].</summary>
    /// <exception cref="ShapeMismatchException">The last axis is not <see cref="Width"/> long.</exception>
    /// <exception cref="ArgumentException">A code value is NaN.</exception>
    public Tensor Decode(Tensor bits)
    {
        if (bits.Rank < 1 || bits.Shape[^1] != Width)
            throw new ShapeMismatchException("resbit_decode", nameof(bits), $"bits must be [..., {Width}] for {Categories} categories, got {bits.Shape}");
        var v = bits.To(DType.Float64).ToArray<double>();
        var lead = new Shape(bits.Shape.Dims[..^1]);
        int count = lead.Numel;
        var idx = new long[count];
        for (int s = 0; s < count; s++)
        {
            int at = s * Width;
            foreach (int k in _bits)
            {
                long block = 0;
                for (int b = 0; b < k; b++, at++)
                {
                    if (double.IsNaN(v[at])) throw new ArgumentException($"resbit_decode: bit {at % Width} of code {s} is NaN", nameof(bits));
                    block = block << 1 | (v[at] > 0 ? 1L : 0L);
                }
                idx[s] += block;
            }
        }
        return Tensor.FromArray(idx, lead).To(bits.Device);
    }
}
