namespace Kiln.NN;

/// <summary>What layer-sequential unit-variance initialization did to one layer.</summary>
/// <param name="Name">The layer's dotted name in the model.</param>
/// <param name="Iterations">How many times its weight was divided by the output's standard deviation.</param>
/// <param name="Scale">The product of those factors: the final weight is the orthonormal one times this.</param>
/// <param name="Variance">The variance of the layer's output on the batch at the last forward pass, after the last rescaling.</param>
public sealed record LsuvLayerReport(string Name, int Iterations, double Scale, double Variance);

/// <summary>
/// Layer-sequential unit-variance initialization (Mishkin and Matas, "All you need is a good init", ICLR 2016). Every
/// <see cref="Linear"/> and convolution weight of the model is first set to an orthonormal matrix (the weight viewed
/// as [out, rest], <see cref="Init.Orthogonal_"/>) and its bias to zero; then, layer by layer in the order the forward
/// pass reaches them, the weight is divided by sqrt(Var(B)) where B is the layer's output on the batch, until
/// |Var(B) - 1| &lt; tolerance or <c>maxIterations</c> divisions were made (the paper's Algorithm 1; Var is the biased
/// variance over all elements of the output, before any nonlinearity that follows the layer).
/// </summary>
public static class Lsuv
{
    /// <summary>
    /// Initializes <paramref name="model"/> in place on <paramref name="batch"/> and reports each layer in forward
    /// order. Layers are found through forward hooks, so only those that the model runs through
    /// <see cref="Module{TIn, TOut}.Call(TIn)"/> are rescaled (Kiln's Sequential and MLP do); a layer called more than
    /// once in a forward pass is measured on its first call. No gradient is recorded.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The tolerance is not positive and finite, or maxIterations is negative.</exception>
    /// <exception cref="ArgumentException">The batch is empty, or the forward pass reaches no Linear or convolution layer.</exception>
    /// <exception cref="InvalidOperationException">A layer's output has zero (or non-finite) variance, so it cannot be rescaled to 1.</exception>
    public static IReadOnlyList<LsuvLayerReport> Init_(Module<Tensor, Tensor> model, Tensor batch, double tolerance = 0.1, int maxIterations = 10, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        if (!(tolerance > 0 && double.IsFinite(tolerance)))
            throw new ArgumentOutOfRangeException(nameof(tolerance), tolerance, "lsuv: tolerance must be positive and finite");
        if (maxIterations < 0)
            throw new ArgumentOutOfRangeException(nameof(maxIterations), maxIterations, "lsuv: maxIterations must not be negative");
        if (batch.Numel == 0)
            throw new ArgumentException($"lsuv: the batch is empty (shape {batch.Shape})", nameof(batch));

        var layers = model.NamedModules()
            .Select(m => (m.Name, Layer: m.Module as Module<Tensor, Tensor>, Weight: WeightOf(m.Module), Bias: BiasOf(m.Module)))
            .Where(m => m.Weight is not null).ToList();
        using (Autograd.NoGrad())
            foreach (var (_, _, w, b) in layers)
            {
                Init.Orthogonal_(w!, 1, generator);
                b?.Fill_(0);
            }

        // The forward order, which NamedModules' registration order need not match.
        var order = new List<int>();
        var handles = layers.Select((l, i) => l.Layer!.RegisterForwardHook((_, _, y) => { if (!order.Contains(i)) order.Add(i); return y; })).ToList();
        try { using (Autograd.NoGrad()) model.Call(batch); }
        finally { foreach (var h in handles) h.Dispose(); }
        if (order.Count == 0)
            throw new ArgumentException($"lsuv: the forward pass of {model.GetType().Name} reached no Linear or convolution layer through Call", nameof(model));

        var report = new List<LsuvLayerReport>();
        foreach (int i in order)
        {
            var (name, layer, w, _) = layers[i];
            double scale = 1, v = OutputVariance(model, layer!, batch);
            int it = 0;
            for (; it < maxIterations && !(Math.Abs(v - 1) < tolerance); it++)
            {
                if (!(v > 0 && double.IsFinite(v)))
                    throw new InvalidOperationException($"lsuv: layer '{name}' has output variance {v} on the batch; it cannot be scaled to unit variance");
                double f = 1 / Math.Sqrt(v);
                using (Autograd.NoGrad()) w!.Mul_(f);
                scale *= f;
                v = OutputVariance(model, layer!, batch);
            }
            report.Add(new LsuvLayerReport(name, it, scale, v));
        }
        return report;
    }

    static Parameter? WeightOf(Module m) => m switch { Linear l => l.Weight, ConvLayer c => c.Weight, _ => null };

    static Parameter? BiasOf(Module m) => m switch { Linear l => l.Bias, ConvLayer c => c.Bias, _ => null };

    // Var of the layer's first output in a forward pass of the whole model (earlier layers shape its input).
    static double OutputVariance(Module<Tensor, Tensor> model, Module<Tensor, Tensor> layer, Tensor batch)
    {
        double v = double.NaN;
        bool seen = false;
        using var hook = layer.RegisterForwardHook((_, _, y) =>
        {
            if (!seen) { v = y.Var(correction: 0).Item(); seen = true; }
            return y;
        });
        using (Autograd.NoGrad()) model.Call(batch);
        return v;
    }
}
