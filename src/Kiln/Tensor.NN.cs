namespace Kiln;

public sealed partial class Tensor
{
    // Moves `axis` last and makes the data contiguous, so row kernels see [rows, len]; returns the inverse permutation.
    (Tensor X, int[] Inverse, int Len) RowsAlong(int axis, string op)
    {
        int a = Check.Axis(axis, Rank, op);
        var perm = Enumerable.Range(0, Rank).Where(i => i != a).Append(a).ToArray();
        var inv = new int[Rank]; for (int i = 0; i < Rank; i++) inv[perm[i]] = i;
        var x = (Rank == 0 ? this : Permute(perm)).Detach().Contiguous();
        return (x, inv, Rank == 0 ? 1 : Shape[a]);
    }

    /// <summary>Softmax along <paramref name="axis"/> (fused kernel, max-shifted): rows sum to 1.</summary>
    public Tensor Softmax(int axis = -1) => SoftmaxImpl(axis, log: false);

    /// <summary>Log-softmax along <paramref name="axis"/> (fused kernel): x - logsumexp(x).</summary>
    public Tensor LogSoftmax(int axis = -1) => SoftmaxImpl(axis, log: true);

    Tensor SoftmaxImpl(int axis, bool log)
    {
        string name = log ? "log_softmax" : "softmax";
        Storage.ThrowIfDisposed(name);
        Check.Floating(this, name, "input");
        int a = Check.Axis(axis, Rank, name);
        var (x, inv, len) = RowsAlong(a, name);
        var y0 = Empty(x.Shape, DType, Device);
        if (Numel > 0) Backend.SoftmaxRows(x, Numel / len, len, log, y0);
        var y = (Rank == 0 ? y0 : y0.Permute(inv)).Detach();
        return Record(y, name, [this], g => log
            ? [g - y.Exp() * g.Sum(a, keepDim: true)]
            : [y * (g - (g * y).Sum(a, keepDim: true))]);
    }

    /// <summary>
    /// Layer norm over the last dim: (x - mean) / sqrt(var + eps) * weight + bias with the biased variance
    /// (fused kernel). weight and bias are [last dim] or null.
    /// </summary>
    public Tensor LayerNorm(Tensor? weight = null, Tensor? bias = null, double eps = 1e-5)
    {
        Storage.ThrowIfDisposed("layer_norm");
        Check.Floating(this, "layer_norm", "input");
        if (Rank == 0) throw new ShapeMismatchException("layer_norm", "input", "input must have at least one dimension");
        int len = Shape[-1];
        CheckNormParam(weight, len, "layer_norm", nameof(weight));
        CheckNormParam(bias, len, "layer_norm", nameof(bias));
        var x = Detach().Contiguous();
        var y = Empty(Shape, DType, Device);
        if (Numel > 0) Backend.LayerNormRows(x, weight?.Detach().Contiguous(), bias?.Detach().Contiguous(), eps, Numel / len, len, y);
        var inputs = new List<Tensor> { this };
        if (weight is not null) inputs.Add(weight);
        if (bias is not null) inputs.Add(bias);
        return Record(y, "layer_norm", inputs.ToArray(), g =>
        {
            // Recomputed statistics; the formulas are differentiable again for create-graph use.
            var mean = Mean(-1, keepDim: true);
            var rstd = (Var(-1, keepDim: true, correction: 0) + eps).Rsqrt();
            var xhat = (this - mean) * rstd;
            var gw = weight is null ? g : g * weight;
            var dx = rstd * (gw - gw.Mean(-1, keepDim: true) - xhat * (gw * xhat).Mean(-1, keepDim: true));
            var grads = new List<Tensor?> { dx };
            if (weight is not null) grads.Add((g * xhat).SumTo(weight.Shape));
            if (bias is not null) grads.Add(g.SumTo(bias.Shape));
            return grads.ToArray();
        });
    }

    /// <summary>RMS norm over the last dim: x / sqrt(mean(x^2) + eps) * weight (fused kernel); weight is [last dim] or null.</summary>
    public Tensor RmsNorm(Tensor? weight = null, double eps = 1e-6)
    {
        Storage.ThrowIfDisposed("rms_norm");
        Check.Floating(this, "rms_norm", "input");
        if (Rank == 0) throw new ShapeMismatchException("rms_norm", "input", "input must have at least one dimension");
        int len = Shape[-1];
        CheckNormParam(weight, len, "rms_norm", nameof(weight));
        var x = Detach().Contiguous();
        var y = Empty(Shape, DType, Device);
        if (Numel > 0) Backend.RmsNormRows(x, weight?.Detach().Contiguous(), eps, Numel / len, len, y);
        Tensor[] inputs = weight is null ? [this] : [this, weight];
        return Record(y, "rms_norm", inputs, g =>
        {
            var r = (Square().Mean(-1, keepDim: true) + eps).Rsqrt();
            var xhat = this * r;
            var gw = weight is null ? g : g * weight;
            var dx = r * (gw - xhat * (gw * xhat).Mean(-1, keepDim: true));
            return weight is null ? [dx] : [dx, (g * xhat).SumTo(weight.Shape)];
        });
    }

    void CheckNormParam(Tensor? p, int len, string op, string name)
    {
        if (p is null) return;
        if (p.Rank != 1 || p.Shape[0] != len) throw new ShapeMismatchException(op, name, new Shape(len), p.Shape, "it must match the last dimension of the input");
        Check.SameDType(this, p, op, name);
        Check.SameDevice(this, p, op, name);
    }
}
