using Kiln.Kernels;

namespace Kiln;

public partial class Tensor
{
    /// <summary>
    /// Matrix product with NumPy semantics: 1-D operands are promoted (a vector on the left is a row, on the right a
    /// column, and the added dim is removed), and batch dims broadcast. [..., M, K] x [..., K, N] -> [..., M, N].
    /// Int32 and Int64 operands give an exact product in their dtype, accumulated in 64-bit integers and wrapping on
    /// overflow as PyTorch's (an Int32 result is the low 32 bits). BFloat16 and Float16 operands are widened to float32
    /// as they are read and accumulated in float32; two half operands of the same dtype give a result in that dtype,
    /// rounded once at the end, and a half operand with a Float32 one gives Float32.
    /// </summary>
    /// <exception cref="ShapeMismatchException">The inner dims differ or the batch dims do not broadcast.</exception>
    /// <exception cref="ArgumentException">The dtypes differ, other than Float32 with BFloat16 or Float16.</exception>
    /// <exception cref="NotSupportedException">The operands are Bool.</exception>
    public Tensor MatMul(Tensor other)
    {
        Storage.ThrowIfDisposed("matmul"); other.Storage.ThrowIfDisposed("matmul");
        if (Autocast.Lowers(this, other)) return Autocast.Lower(this).MatMul(Autocast.Lower(other));
        var dtype = ProductDType(this, other, "matmul", nameof(other));
        Check.SameDevice(this, other, "matmul", nameof(other));
        if (!dtype.IsFloating() && !dtype.IsInteger())
            throw new NotSupportedException($"matmul: input has dtype {DType}; matmul computes in Float32, Float64, BFloat16, Float16, Int32 or Int64 (convert with .To(...))");
        if (Rank == 0 || other.Rank == 0) throw new ShapeMismatchException("matmul", Rank == 0 ? "input" : nameof(other), "both operands need at least one dimension");
        var a = Rank == 1 ? Unsqueeze(0) : this;
        var b = other.Rank == 1 ? other.Unsqueeze(1) : other;
        int m = a.Shape[-2], k = a.Shape[-1], k2 = b.Shape[-2], n = b.Shape[-1];
        if (k != k2) throw new ShapeMismatchException("matmul", nameof(other), $"inner dimensions differ: {Shape} x {other.Shape} ({k} vs {k2})");
        var batchA = new Shape(a.Shape.Dims[..^2]); var batchB = new Shape(b.Shape.Dims[..^2]);
        var batch = Shape.Broadcast(batchA, batchB, "matmul");
        var y = MatMul3(a, b, batch, m, k, n, dtype);
        if (Rank == 1) y = y.Squeeze(-2);
        if (other.Rank == 1) y = y.Squeeze(-1);
        return y;
    }

    // The dtype of a matrix product: the operands' own, or Float32 for Float32 with a half type (its kernels widen the
    // half operand as they read it); other mixtures are refused.
    static DType ProductDType(Tensor a, Tensor b, string op, string paramName)
    {
        if (a.DType == DType.Float32 && b.DType.IsHalf() || b.DType == DType.Float32 && a.DType.IsHalf()) return DType.Float32;
        Check.SameDType(a, b, op, paramName);
        return a.DType;
    }

    // A gradient brought to its input's shape and dtype: broadcast dims summed (in float32 for half gradients).
    static Tensor GradFor(Tensor g, Tensor input)
    {
        if (g.Shape != input.Shape && g.DType.IsHalf()) g = g.To(DType.Float32);
        return g.SumTo(input.Shape).To(input.DType);
    }

    static Tensor MatMul3(Tensor a, Tensor b, Shape batch, int m, int k, int n, DType dtype)
    {
        int nb = batch.Numel;
        var a3 = a.Detach().BroadcastTo(new Shape([.. batch.Dims, m, k]));
        var b3 = b.Detach().BroadcastTo(new Shape([.. batch.Dims, k, n]));
        a3 = Flatten3(a3, nb, m, k); b3 = Flatten3(b3, nb, k, n);
        var c = Empty(new Shape(nb, m, n), dtype, a.Device);
        if (c.Numel > 0) a.Backend.MatMul(a3, b3, c);
        var y = c.Reshape([.. batch.Dims, m, n]).Detach();
        // A product whose input needs no gradient (a data batch, a frozen weight) is skipped: it is a full GEMM.
        return Record(y, "matmul", [a, b], g => [a.RequiresGrad ? GradFor(g.MatMul(b.T), a) : null, b.RequiresGrad ? GradFor(a.T.MatMul(g), b) : null]);
    }

    // Collapses the batch dims into one without copying when their strides allow (broadcast or evenly strided batches).
    static Tensor Flatten3(Tensor t, int nb, int r, int c)
    {
        var s = t.Layout.Strides;
        var dims = Enumerable.Range(0, t.Rank - 2).Where(i => t.Shape[i] != 1).ToArray();
        bool even = true;
        for (int q = 0; q + 1 < dims.Length; q++) even &= s[dims[q]] == s[dims[q + 1]] * t.Shape[dims[q + 1]];
        if (even)
            return new Tensor(t.Storage, new Layout(new Shape(nb, r, c), [dims.Length == 0 ? 0 : s[dims[^1]], s[^2], s[^1]], t.Layout.Offset));
        var cont = t.Contiguous();
        return new Tensor(cont.Storage, new Layout(new Shape(nb, r, c), [r * c, c, 1], cont.Layout.Offset));
    }

    /// <summary>
    /// A linear layer, y = x weight^T + bias, optionally followed by ReLU, with the bias and activation fused into the
    /// matrix product (PyTorch's F.linear layout). x is [..., in], weight [out, in], bias [out] or null; y is [..., out].
    /// x and weight are Float32 or Float64 of one dtype, or BFloat16/Float16 weights with x in Float32 (y Float32) or
    /// in the weight's dtype (y in that dtype, rounded once): half operands are widened to float32 as they are read and
    /// accumulated in float32. bias has the weight's dtype or y's.
    /// </summary>
    /// <exception cref="ShapeMismatchException">weight is not [out, in] for x's last dim, or bias is not [out].</exception>
    /// <exception cref="ArgumentException">The dtypes of x, weight and bias do not form one of those combinations.</exception>
    /// <exception cref="NotSupportedException">x is not a floating or half-precision dtype.</exception>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null, bool relu = false)
    {
        const string op = "linear";
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(weight);
        x.Storage.ThrowIfDisposed(op); weight.Storage.ThrowIfDisposed(op); bias?.Storage.ThrowIfDisposed(op);
        if (Autocast.Lowers(x, weight, bias)) return Linear(Autocast.Lower(x), Autocast.Lower(weight), Autocast.LowerOrNull(bias), relu);
        Check.Floating(x, op, nameof(x));
        var dtype = ProductDType(x, weight, op, nameof(weight));
        Check.SameDevice(x, weight, op, nameof(weight));
        if (x.Rank == 0) throw new ShapeMismatchException(op, nameof(x), "x must have at least one dimension");
        int inF = x.Shape[-1];
        if (weight.Rank != 2 || weight.Shape[1] != inF)
            throw new ShapeMismatchException(op, nameof(weight), $"weight must be [out, {inF}] for x of shape {x.Shape}, got {weight.Shape}");
        int outF = weight.Shape[0];
        if (bias is not null)
        {
            if (bias.DType != dtype && bias.DType != weight.DType)
                throw new ArgumentException($"{op}: bias has dtype {bias.DType}; it must have the weight's dtype {weight.DType} or the result's {dtype}", nameof(bias));
            Check.SameDevice(x, bias, op, nameof(bias));
            if (bias.Rank != 1 || bias.Shape[0] != outF) throw new ShapeMismatchException(op, nameof(bias), new Shape(outF), bias.Shape, "bias must have one entry per output feature");
        }
        int rows = 1;
        foreach (int d in x.Shape.Dims[..^1]) rows *= d;
        // Detached operands keep the reshapes around the kernel out of the record (only needed when there is one).
        bool tracks = Tracks(x, weight, bias);
        var xd = tracks ? x.Detach() : x;
        var x2 = x.Rank == 2 ? xd : xd.Contiguous().Reshape(rows, inF);
        var y2 = Empty(new Shape(rows, outF), dtype, x.Device);
        if (y2.Numel > 0) x.Backend.Linear(x2, tracks ? weight.Detach() : weight, bias is null ? null : (tracks ? bias.Detach() : bias).Contiguous(), relu, y2);
        var y = x.Rank == 2 ? y2 : y2.Reshape([.. x.Shape.Dims[..^1], outF]);
        return tracks ? RecordLinear(x, weight, bias, relu, y, rows, inF, outF) : y;
    }

    static Tensor RecordLinear(Tensor x, Tensor weight, Tensor? bias, bool relu, Tensor y, int rows, int inF, int outF)
    {
        Tensor[] inputs = bias is null ? [x, weight] : [x, weight, bias];
        return Record(y, "linear", inputs, g =>
        {
            // ReLU's own rule, g step(y) (step(relu(z)) = step(z)): two contiguous passes, where a Where with its Bool
            // mask and zeros took five, and the same values as an unfused ReLU. The bias's row sum of a half gz runs in
            // float32; each gradient ends in its input's dtype.
            var gz = !relu ? g : g * y.Apply(UnaryOp.Step);
            var gz2 = gz.Reshape(rows, outF);
            var xr = x.Rank == 2 ? x : x.Reshape(rows, inF);
            // Each gradient is a full product or reduction: skip those of inputs that need none (the first layer's x).
            var grads = new List<Tensor?> { x.RequiresGrad ? GradFor(gz.MatMul(weight), x) : null, weight.RequiresGrad ? GradFor(gz2.T.MatMul(xr), weight) : null };
            if (bias is not null) grads.Add(!bias.RequiresGrad ? null : (gz2.DType.IsHalf() ? gz2.To(DType.Float32) : gz2).Sum(0).To(bias.DType));
            return grads.ToArray();
        });
    }

    /// <summary>Inner product of two vectors of equal length.</summary>
    public Tensor Dot(Tensor other)
    {
        if (Rank != 1 || other.Rank != 1 || Shape[0] != other.Shape[0])
            throw new ShapeMismatchException("dot", nameof(other), $"dot needs two vectors of equal length, got {Shape} and {other.Shape}");
        return MatMul(other);
    }

    /// <summary>Outer product of two vectors: [n] x [m] -> [n, m].</summary>
    public Tensor Outer(Tensor other)
    {
        if (Rank != 1 || other.Rank != 1) throw new ShapeMismatchException("outer", nameof(other), $"outer needs two vectors, got {Shape} and {other.Shape}");
        return Unsqueeze(1) * other.Unsqueeze(0);
    }
}
