namespace Kiln.Methods.Sketching;

/// <summary>The oblivious row sketches S [m, n] of randomized least squares.</summary>
public enum SketchKind
{
    /// <summary>Dense Gaussian: S_ij ~ N(0, 1/m).</summary>
    Gaussian,
    /// <summary>Subsampled randomized Hadamard transform: S = √(N/m) P (H/√N) D with D random signs, H the N x N Walsh-Hadamard matrix (N the next power of two ≥ n, A zero-padded), P m distinct rows chosen uniformly.</summary>
    Srht,
    /// <summary>CountSketch (sparse embedding): each column of S holds one random sign in a uniformly chosen row.</summary>
    CountSketch,
}

/// <summary>
/// Row sketches for least squares, applied to Kiln tensors. Each sketch has E[SᵀS] = I, so ‖S x‖² is an unbiased
/// estimate of ‖x‖²; <see cref="Apply"/> uses each kind's fast form (a matmul, log₂ N butterfly stages, or one
/// scatter-add) and <see cref="Matrix"/> builds the same S explicitly from the same random draws.
/// </summary>
public static class Sketch
{
    /// <summary>S A for A [n, d] with a fresh m-row sketch of the given kind drawn from <paramref name="generator"/>; [m, d], A's dtype and device.</summary>
    /// <param name="kind">The sketch family.</param>
    /// <param name="a">The matrix whose rows are sketched, [n, d] (a vector [n] is taken as [n, 1] and gives [m]).</param>
    /// <param name="m">Sketch rows (for SRHT at most the padded size N).</param>
    /// <param name="generator">The random source; two calls with generators of the same seed draw the same S.</param>
    /// <exception cref="ArgumentException">A is not a floating matrix or vector.</exception>
    /// <exception cref="ArgumentOutOfRangeException">m is not positive, or exceeds N for SRHT.</exception>
    public static Tensor Apply(SketchKind kind, Tensor a, int m, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(generator);
        bool vector = a.Rank == 1;
        var x = vector ? a.Unsqueeze(-1) : a;
        if (x.Rank != 2 || !a.DType.IsFloating())
            throw new ArgumentException($"Sketch.Apply: a must be a floating [n, d] matrix or [n] vector, got {a.DType} of shape {a.Shape}", nameof(a));
        int n = x.Shape[0], d = x.Shape[1];
        var draw = Draw(kind, m, n, generator, a.Device);
        Tensor y = kind switch
        {
            SketchKind.Gaussian => draw.Gaussian!.To(a.DType).MatMul(x),
            SketchKind.Srht => Hadamard(Pad(draw.Signs!.To(a.DType).Unsqueeze(-1) * x, draw.Padded))
                .IndexSelect(0, draw.Rows!) * Math.Sqrt((double)draw.Padded / m),
            _ => Tensor.Zeros(new Shape(m, d), a.DType, a.Device)
                .ScatterAdd(0, draw.Rows!.Unsqueeze(-1).BroadcastTo(new Shape(n, d)).Contiguous(), draw.Signs!.To(a.DType).Unsqueeze(-1) * x),
        };
        return vector ? y.Squeeze(-1) : y;
    }

    /// <summary>The explicit sketch S [m, n] (Float64) that <see cref="Apply"/> applies for a generator in the same state.</summary>
    /// <param name="kind">The sketch family.</param>
    /// <param name="m">Sketch rows.</param>
    /// <param name="n">Rows of the matrices it will sketch.</param>
    /// <param name="generator">The random source.</param>
    /// <param name="device">Where S lives (default: the CPU).</param>
    /// <exception cref="ArgumentOutOfRangeException">m or n is not positive, or m exceeds N for SRHT.</exception>
    public static Tensor Matrix(SketchKind kind, int m, int n, Generator generator, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(generator);
        var draw = Draw(kind, m, n, generator, device);
        return Explicit(draw, kind, m, n, device);
    }

    static Tensor Explicit(Drawn draw, SketchKind kind, int m, int n, Device? device)
    {
        var eye = Tensor.Eye(n, dtype: DType.Float64, device: device);
        return kind switch
        {
            SketchKind.Gaussian => draw.Gaussian!,
            // Rows of H D restricted to the first n columns (the zero padding never reaches them).
            SketchKind.Srht => Hadamard(Pad(draw.Signs!.Unsqueeze(-1) * eye, draw.Padded)).IndexSelect(0, draw.Rows!) * Math.Sqrt((double)draw.Padded / m),
            _ => Tensor.Zeros(new Shape(m, n), DType.Float64, device)
                .ScatterAdd(0, draw.Rows!.Unsqueeze(0), draw.Signs!.Reshape(1, n)),
        };
    }

    sealed record Drawn(Tensor? Gaussian, Tensor? Signs, Tensor? Rows, int Padded);

    // The random draws of one sketch, in a fixed order so Apply and Matrix agree for equal generator states.
    static Drawn Draw(SketchKind kind, int m, int n, Generator generator, Device? device)
    {
        if (m <= 0) throw new ArgumentOutOfRangeException(nameof(m), m, "Sketch: the sketch size m must be positive");
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, "Sketch: the sketched matrix needs at least one row");
        switch (kind)
        {
            case SketchKind.Gaussian:
                return new(Tensor.Randn(new Shape(m, n), generator, std: 1 / Math.Sqrt(m), dtype: DType.Float64, device: device), null, null, n);
            case SketchKind.Srht:
            {
                int padded = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)n);
                if (m > padded) throw new ArgumentOutOfRangeException(nameof(m), m, $"Sketch: an SRHT of {n} rows samples at most N = {padded} rows (the padded Hadamard size), got m = {m}");
                var signs = RandomSigns(n, generator, device);
                var rows = Tensor.RandPerm(padded, generator, device).Narrow(0, 0, m);
                return new(null, signs, rows, padded);
            }
            case SketchKind.CountSketch:
            {
                var signs = RandomSigns(n, generator, device);
                var rows = Tensor.RandInt(new Shape(n), 0, m, generator, device: device);
                return new(null, signs, rows, n);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "Sketch: unknown sketch kind");
        }
    }

    static Tensor RandomSigns(int n, Generator generator, Device? device) =>
        Tensor.RandInt(new Shape(n), 0, 2, generator, device: device).To(DType.Float64) * 2.0 - 1.0;

    static Tensor Pad(Tensor x, int rows) => x.Shape[0] == rows ? x
        : Tensor.Concat([x, Tensor.Zeros(new Shape(rows - x.Shape[0], x.Shape[1]), x.DType, x.Device)], 0);

    /// <summary>(H/√N) X for the Walsh-Hadamard matrix H [N, N] (entries ±1, N a power of two) and X [N, d], in log₂ N butterfly stages.</summary>
    internal static Tensor Hadamard(Tensor x)
    {
        int n = x.Shape[0], d = x.Shape[1];
        for (int h = 1; h < n; h *= 2)
        {
            var pairs = x.Reshape(n / (2 * h), 2, h, d);
            var top = pairs.Narrow(1, 0, 1);
            var bottom = pairs.Narrow(1, 1, 1);
            x = Tensor.Concat([top + bottom, top - bottom], 1).Reshape(n, d);
        }
        return x / Math.Sqrt(n);
    }
}
