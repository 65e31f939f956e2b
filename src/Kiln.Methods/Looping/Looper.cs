using Kiln.NN.Decoder;

namespace Kiln.Methods.Looping;

/// <summary>
/// The loop rules and the stack wrapper. Layers are reused, never copied: the wrapper only decides how often and on which
/// state each layer of the window is evaluated, so a stack run without options is exactly the plain model.
/// </summary>
public static class Looper
{
    /// <summary>
    /// Applies <paramref name="o"/>'s rule to the map <paramref name="g"/> (called as g(x, write)) from <paramref name="x0"/>:
    /// naive x_{k+1} = g(x_k); damped x_{k+1} = x_k + (alpha/K)(g(x_k) - x_k); RK beta g(x0) + (1 - beta) x_K(damped), the
    /// anchor g(x0) being the first sub-step's evaluation. <c>write</c> is true on the sub-step chosen by
    /// <see cref="LoopOptions.Cache"/> (the first, whose input is x0, or the last), false otherwise.
    /// With K = 1 (and alpha = 1) every rule returns g(x0) itself.
    /// </summary>
    public static Tensor Apply(Func<Tensor, bool, Tensor> g, Tensor x0, LoopOptions o)
    {
        ArgumentNullException.ThrowIfNull(g); ArgumentNullException.ThrowIfNull(x0); ArgumentNullException.ThrowIfNull(o);
        int k = o.K;
        bool Write(int step) => o.Cache switch { LoopCache.First => step == 0, LoopCache.Last => step == k - 1, _ => false };
        var g0 = g(x0, Write(0));
        if (o.Rule == LoopRule.Naive)
        {
            var x = g0;
            for (int s = 1; s < k; s++) x = g(x, Write(s));
            return x;
        }
        double h = o.Alpha / k;
        // With h = 1 the damped step is g(x) itself; taking it directly keeps K = 1 bit-identical to the baseline.
        Tensor Step(Tensor x, Tensor gx) => h == 1 ? gx : x + (gx - x) * h;
        var xk = Step(x0, g0);
        for (int s = 1; s < k; s++) xk = Step(xk, g(xk, Write(s)));
        if (o.Rule == LoopRule.Damped || ReferenceEquals(xk, g0)) return xk;
        double b = o.Beta;
        if (b == 0) return xk;
        if (b == 1) return g0;
        return g0 * b + xk * (1 - b);
    }

    /// <summary>
    /// Runs <paramref name="layers"/> on <paramref name="x"/>: layers outside the window once each (writing the cache), the
    /// window [a, b] by the rule of <paramref name="loop"/>, as one map (block mode) or layer by layer with K sub-steps each
    /// (layer mode). With <paramref name="loop"/> null this is the plain stack.
    /// </summary>
    /// <param name="layers">The stack, in order.</param>
    /// <param name="x">Input to the first layer.</param>
    /// <param name="ctx">Sequence context handed to every layer.</param>
    /// <param name="loop">The loop, or null.</param>
    /// <param name="defaultMode">Mode used when <see cref="LoopOptions.Mode"/> is null.</param>
    /// <exception cref="ArgumentOutOfRangeException">The window reaches past the stack.</exception>
    public static Tensor RunStack(IReadOnlyList<ILayer> layers, Tensor x, SequenceContext ctx, LoopOptions? loop, LoopMode defaultMode = LoopMode.Block)
    {
        ArgumentNullException.ThrowIfNull(layers); ArgumentNullException.ThrowIfNull(ctx);
        if (loop is null)
        {
            foreach (var layer in layers) x = layer.Forward(x, ctx, true);
            return x;
        }
        loop.Validate(layers.Count);
        for (int i = 0; i < loop.Start; i++) x = layers[i].Forward(x, ctx, true);
        if ((loop.Mode ?? defaultMode) == LoopMode.Block)
            x = Apply((y, write) => Window(layers, loop.Start, loop.End, y, ctx, write), x, loop);
        else
            for (int i = loop.Start; i <= loop.End; i++)
            {
                var layer = layers[i];
                x = Apply((y, write) => layer.Forward(y, ctx, write), x, loop);
            }
        for (int i = loop.End + 1; i < layers.Count; i++) x = layers[i].Forward(x, ctx, true);
        return x;
    }

    /// <summary>The mode used when <see cref="LoopOptions.Mode"/> is null: block for dense models, layer for MoE and MLA
    /// models (so routers are re-evaluated at every sub-step of every layer).</summary>
    public static LoopMode DefaultMode(DecoderConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.Moe is null && config.Mla is null ? LoopMode.Block : LoopMode.Layer;
    }

    static Tensor Window(IReadOnlyList<ILayer> layers, int a, int b, Tensor x, SequenceContext ctx, bool write)
    {
        for (int i = a; i <= b; i++) x = layers[i].Forward(x, ctx, write);
        return x;
    }
}
